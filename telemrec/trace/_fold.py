"""From a journal to a trace: reading a journal's state, and folding it into the HDF5 file.

``read_journal`` rebuilds what a recorder had written: the manifest, the catalog, and
for every table the segments that cover its rows (a final segment, or a provisional
one, replaces the provisional segments whose rows it holds). ``fold_journal`` writes
the trace file: final segments' streams are copied as they are; the provisional tail
a crashed recorder left is decoded, merged and sealed first. A live recorder's
journal is read the same way, without the merge (``v3.V3Reader`` reads its streams
where they are).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from telemrec.errors import TelemrecError, TraceCorruptError
from telemrec.trace import _catalog as C
from telemrec.trace import journal as _journal
from telemrec.trace._segments import Segment, decode_piece, encode_piece
from telemrec.trace.manifest import journal_frame_problem
from telemrec.trace._tables import merge_pieces


@dataclass
class JournalState:
    path: str  # what to read: the journal, or /proc/self/fd/N of an open one
    manifest: dict | None = None
    end: dict | None = None
    readers: dict = field(default_factory=dict)
    catalog: C.Catalog = field(default_factory=C.Catalog)
    segments: dict[int, list[Segment]] = field(default_factory=dict)
    scan: _journal.ScanResult = field(default_factory=_journal.ScanResult)
    name: str = ""  # the journal's path, for messages

    def __post_init__(self) -> None:
        self.name = self.name or self.path

    def all_segments(self) -> list[Segment]:
        return [s for t in sorted(self.segments) for s in self.segments[t]]

    def read(self, offset: int, size: int) -> bytes:
        with open(self.path, "rb") as f:
            return os.pread(f.fileno(), size, offset)


@dataclass
class _Pending:
    """A segment frame as the scan first sees it: where its rows are, the rest checked only if it
    is still there at the end (most provisional segments are replaced by a merged one later: a day
    at 1 Hz journals tens of thousands, and checking each header in full was most of a live open)."""

    table: int
    row_lo: int
    row_hi: int
    final: bool
    header: dict
    body: int
    offset: int


def read_journal(path: str, *, verify: bool = True, name: str | None = None, end: int | None = None) -> JournalState:
    """The state of a version 2 or 3 journal (``verify``: check every frame's CRC, as recovery does);
    ``name``: the journal's path when ``path`` is another way to it (/proc/self/fd/N); ``end``:
    the journal is read as if it ended at that byte."""
    state = None if verify or end is not None else _from_checkpoint(path, name)
    start = (state.scan.valid_bytes, state.scan.ordinal) if state is not None else None
    state = state or JournalState(path, name=name or path)
    for frame in _journal.scan(path, state.scan, verify=verify, start=start):
        if end is not None and frame.offset >= end:
            _cut(state, frame.offset, state.scan.torn_reason)
            break
        try:
            _apply(state, frame)
        except TraceCorruptError as exc:
            # a frame that passed its checks but does not fit what came before: the journal is
            # treated as ending there, like a torn frame, and the reason is kept
            _cut(state, frame.offset, f"frame at byte {frame.offset}: {exc.message}")
            break
    kept = state.segments
    try:
        state.segments = {table: [_segment(p, state.catalog) for p in pending] for table, pending in kept.items()}
        if verify:
            _check_streams(state, kept)
    except _Invalid as bad:  # a segment kept to the end whose header does not hold: the journal ends there
        state = read_journal(path, verify=verify, name=name, end=bad.pending.offset)
        _cut(state, bad.pending.offset, f"frame at byte {bad.pending.offset}: {bad.message}")
        return state
    if state.manifest is None:
        raise TraceCorruptError(f"{state.name} holds no complete start frame: the recorder died before its first "
                                "flush", "Nothing was recorded; delete the journal and record again.", path=state.name)
    return state


def _from_checkpoint(path: str, name: str | None) -> JournalState | None:
    """A live journal's state as of its latest checkpoint (the frames that checkpoint lists, read
    where they are), to be read on from there: a live open costs the frames since the checkpoint,
    not the recording. None when there is no usable checkpoint (then the whole journal is scanned);
    a recovery never starts from one: it checks every frame."""
    slot = _journal.read_slot(path)
    if slot is None:
        return None
    ((frame, after),) = _journal.read_frames_at(path, [slot], verify=True)
    obj = frame.obj if frame is not None and frame.kind == _journal.JSON_FRAME else {}
    if obj.get("t") != "checkpoint" or journal_frame_problem(obj, 3):
        return None
    state = JournalState(path, name=name or path)
    state.scan.version = 3
    refs = obj["frames"]
    if any(not a < b for (a, _), (b, _) in zip(refs, refs[1:])) or (refs and refs[-1][0] >= slot[0]):
        return None  # listed in file order, all before the checkpoint
    try:
        for listed, _ in _journal.read_frames_at(path, refs, verify=False):
            if listed is None:
                return None
            _apply(state, listed)
    except TraceCorruptError:
        return None
    state.scan.valid_bytes, state.scan.ordinal = after, slot[1] + 1
    return state


class _Invalid(Exception):
    def __init__(self, pending: _Pending, message: str):
        super().__init__(message)
        self.pending, self.message = pending, message


def _segment(pending: _Pending, catalog: C.Catalog) -> Segment:
    try:
        return Segment.from_header(pending.header, pending.body, catalog)
    except TraceCorruptError as exc:
        raise _Invalid(pending, exc.message) from None


def _check_streams(state: JournalState, kept: dict) -> None:
    """Recovery: the streams of the segments kept are what their frames said (a frame's CRC-32 covers
    them, but only as a whole), so one that fails its own CRC-32 ends the journal at its frame,
    like a torn frame, and the segments before it are recovered, not refused with it."""
    import zlib

    pairs = sorted(((p.offset, p, seg) for table in kept for p, seg in zip(kept[table], state.segments[table])),
                   key=lambda x: x[0])
    with open(state.path, "rb") as f:
        for _, pending, seg in pairs:
            for start, size, crc in seg.streams[:, [C.ST_OFFSET, C.ST_SIZE, C.ST_CRC]].tolist():
                if zlib.crc32(os.pread(f.fileno(), size, start)) != crc:
                    raise _Invalid(pending, f"table {seg.table} rows {seg.row_lo}-{seg.row_hi}: a stream fails "
                                            "its CRC-32")


def _cut(state: JournalState, offset: int, reason: str | None) -> None:
    state.scan.torn_reason = reason
    state.scan.valid_bytes = offset
    state.scan.torn_bytes = state.scan.size - offset


def _pending(obj: dict, frame: _journal.Frame, catalog: C.Catalog) -> _Pending:
    """The frame's rows, and that the entities and columns it names were defined before it: they are
    numbered by position, so one whose definition is missing would read as another."""
    try:
        table, (row_lo, row_hi), final = obj["table"], obj["rows"], obj["final"]
        if type(table) is not int or type(row_lo) is not int or type(row_hi) is not int or type(final) is not bool:
            raise TypeError("not integers")
        entities, columns = obj["entities"], [row[0] for row in obj["streams"]]
        if not 0 <= table < len(catalog.tables):
            raise TraceCorruptError(f"a segment of table {table}, which is not defined before it")
        if entities and not 0 <= min(entities) <= max(entities) < len(catalog.entities):
            raise TraceCorruptError("a segment names an entity that is not defined before it")
        if columns and not 0 <= min(columns) <= max(columns) < len(catalog.tables[table].columns):
            raise TraceCorruptError("a segment holds a column that is not defined before it")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise TraceCorruptError(f"a segment header is not valid ({exc})") from None
    return _Pending(table, row_lo, row_hi, final, obj, frame.body, frame.offset)


def _apply(state: JournalState, frame: _journal.Frame) -> None:
    obj = frame.obj
    if frame.kind == _journal.SEGMENT_FRAME:
        if state.manifest is None or state.end is not None:
            raise TraceCorruptError("a segment frame before the start frame or after the end frame")
        seg = _pending(obj, frame, state.catalog)
        segs = state.segments.setdefault(seg.table, [])
        # a segment replaces the provisional ones whose rows it holds
        while segs and segs[-1].row_lo >= seg.row_lo:
            if segs[-1].final or segs[-1].row_hi > seg.row_hi:
                raise TraceCorruptError(f"segment rows {seg.row_lo}-{seg.row_hi} overlap an earlier segment")
            segs.pop()
        if (segs[-1].row_hi if segs else 0) != seg.row_lo:
            raise TraceCorruptError(f"segment rows {seg.row_lo}-{seg.row_hi} leave a gap")
        segs.append(seg)
        return
    problem = journal_frame_problem(obj, 3 if state.scan.version == 3 else 2)
    if problem:
        raise TraceCorruptError(f"a frame that does not follow the journal schema ({problem})")
    kind = obj["t"]
    if kind == "checkpoint":
        if state.manifest is None or state.end is not None:
            raise TraceCorruptError("a checkpoint frame before the start frame or after the end frame")
    elif kind == "start":
        if state.manifest is not None:
            raise TraceCorruptError("a second start frame")
        state.manifest = obj["manifest"]
    elif state.manifest is None:
        raise TraceCorruptError("the first frame is not the start frame")
    elif state.end is not None:
        raise TraceCorruptError("a frame after the end frame")
    elif kind == "def":
        for item in obj["items"]:
            state.catalog.apply(item)
    elif kind == "reader":
        state.readers[obj["reader"]["label"]] = obj["reader"]
    else:
        state.end = obj


def seal_tail(state: JournalState) -> None:
    """Merge each table's provisional segments into one final segment, held in memory."""
    for table, segs in state.segments.items():
        tail = [s for s in segs if not s.final]
        if not tail:
            continue
        piece = merge_pieces([decode_piece(s, state.read, state.catalog) for s in tail])
        segment, streams = encode_piece(piece, final=True)
        segment.data = streams  # written from memory by the fold
        state.segments[table] = [s for s in segs if s.final] + [segment]


def finish_manifest(state: JournalState) -> dict:
    """The manifest of the folded trace: the start frame's, updated by reader frames and the end frame,
    with stats counted from the data; after a crash, what recovery kept and why."""
    manifest = dict(state.manifest)
    if state.readers:
        by_label = {r.get("label"): r for r in manifest.get("readers") or [] if isinstance(r, dict)}
        by_label.update(state.readers)
        manifest["readers"] = list(by_label.values())
    counted = _counts(state)
    stats = dict(manifest.get("stats") or {})
    end = state.end
    if end is not None:
        manifest["stop"] = end.get("stop")
        if end.get("command") is not None:
            manifest["command"] = end["command"]
        stats.update(end.get("stats") or {})
        stats.update(counted)
        manifest["closed_cleanly"] = bool(end.get("clean", True))
        manifest.update(end.get("manifest") or {})
        if end.get("error"):
            manifest["stop_reason"] = end["error"]
    else:
        stats.update(counted)
        last = _last_time(state)
        manifest["closed_cleanly"] = False
        manifest["stop"] = None if last is None else {"wall_ns": last[1], "mono_ns": last[0],
                                                      "reason": "recorder did not stop cleanly"}
        manifest["recovery"] = {
            "recovered_wall_ns": time.time_ns(),
            "journal_valid_bytes": state.scan.valid_bytes,
            "journal_discarded_bytes": state.scan.torn_bytes,
            "discarded_reason": state.scan.torn_reason or None,
        }
    manifest["stats"] = stats
    return manifest


def _counts(state: JournalState) -> dict:
    cat = state.catalog
    records = ticks = values = 0
    for table, segs in state.segments.items():
        kind = cat.tables[table].kind
        rows = segs[-1].row_hi if segs else 0
        if kind == C.RECORDS:
            records += rows
            values += sum(s.values for s in segs)
        elif kind == C.TICKS:
            ticks += rows
    out = {"records": records, "values": values}
    if ticks or state.end is None:  # a recorder that died did not say; the tick tables do
        out["ticks"] = ticks
    return out


def _last_time(state: JournalState) -> tuple[int, int] | None:
    """(mono_ns, wall_ns) of the last record: the largest seq's timestamp."""
    from telemrec.trace.v3 import V3Reader

    reader = V3Reader.from_journal(state)
    return reader.last_time()


def fold_journal(jpath: str, out: str, *, verify: bool = True, remove: bool = True) -> None:
    """Fold a journal into the trace ``out`` (atomically: temporary name, fsync, rename), then
    remove the journal. Version 1 journals (an older telemrec) are folded record by record.
    ``verify=False`` (the writer's own clean stop) reads segment frames' headers only; the
    streams copied are checked against their CRC-32 either way."""
    if _journal.journal_version(jpath) == 1:
        from telemrec.trace._legacy import fold_v1_journal

        fold_v1_journal(jpath, out)
        return
    state = read_journal(jpath, verify=verify)
    write_folded(state, out, remove=remove)


def write_folded(state: JournalState, out: str, *, remove: bool = True) -> None:
    """Write the trace of a journal's state (its tail sealed here), then remove the journal."""
    from telemrec.trace import _filewrite

    seal_tail(state)
    manifest = finish_manifest(state)
    _filewrite.write_trace(out, state, manifest)
    if remove:
        os.unlink(state.path)
        _journal._fsync_dir(out)


__all__ = ["JournalState", "TelemrecError", "finish_manifest", "fold_journal", "read_journal", "seal_tail",
           "write_folded"]

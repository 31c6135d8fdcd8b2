"""``TraceWriter``: the one way telemrec writes traces (recorder, import, upgrade, re-record).

Records go into tables (``_tables``); each ``flush()`` encodes the rows written since
the last one into the journal as *provisional* segments and fsyncs (crash-safe from
then on). A table's rows are sealed into a *final* segment once they hold
``seal_values`` values (or ``seal_rows`` rows): the trace file gets that segment's
streams as they are. ``close()`` seals what is left and folds the journal into the
HDF5 trace, copying encoded streams: its cost follows the unsealed tail, not the
recording. A writer that is never closed leaves a journal that the next
``open_trace`` recovers.

Provisional segments are merged, eight of a level into one of the next, so a
journal never holds more than a few dozen pieces of a table's unsealed rows:
recovery and live readers decode a bounded tail.
"""

from __future__ import annotations

import os
from operator import attrgetter
from typing import Iterable, Mapping

from telemrec.errors import TraceWriteError
from telemrec.record import RawRecord
from telemrec.trace import _catalog as C
from telemrec.trace import journal as _journal
from telemrec.trace._segments import FLUSH_LEVEL, PROVISIONAL_LEVEL, encode_piece, provisional_frame
from telemrec.trace._records import TableWriter
from telemrec.trace._tables import Piece, merge_pieces

SEAL_VALUES = int(os.environ.get("TELEMREC_SEAL_VALUES", 1 << 21))
"""Values per sealed segment: large enough that per-segment costs vanish, small enough that the
rows kept in memory (about 9 bytes a value) and the tail encoded at the stop stay small.
(``TELEMREC_SEAL_VALUES`` changes it: tests use it to seal often.)"""
SEAL_ROWS = 1 << 20
MERGE_FANIN = 8
CHECKPOINT_FRAMES = 1024
"""Frames between checkpoints: a live reader scans at most about this many frames beyond the ones
its checkpoint lists (docs/format.md section 2.2)."""
_FIELDS = attrgetter("fields")


class _TableState:
    __slots__ = ("pieces", "levels", "values", "frames")

    def __init__(self) -> None:
        self.pieces: list[Piece] = []                  # in memory since the last seal, in row order
        self.levels: list[tuple[int, int, int]] = []   # journalled provisional segments: (first piece, end, level)
        self.values = 0
        self.frames: list[tuple[int, int]] = []        # (offset, ordinal) of each of those segments' frames


class TraceWriter:
    def __init__(self, path: str | os.PathLike, manifest: Mapping, *, frame_records: int = 20000,
                 overwrite: bool = False, seal_values: int = SEAL_VALUES, seal_rows: int = SEAL_ROWS,
                 chunk_rows: int | None = None, checkpoint_frames: int = CHECKPOINT_FRAMES):
        """``frame_records``: records the tables hold before they are journalled (without fsync);
        ``seal_values``/``seal_rows``: when a table's rows become a final segment; ``chunk_rows``
        sets both ``frame_records`` and ``seal_rows`` (small segments, for tests of their boundaries);
        ``checkpoint_frames``: journal frames between checkpoints."""
        if chunk_rows is not None:
            frame_records = seal_rows = max(1, int(chunk_rows))
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not overwrite:
            raise TraceWriteError(f"{self.path} already exists", "Choose another -o path or remove the old trace.",
                                  path=self.path)
        self.journal_path = _journal.journal_path(self.path)
        start = {"t": "start", "manifest": finite(dict(manifest))}
        self._journal = _journal.JournalWriter(self.journal_path, start)
        # the frames a checkpoint lists (offset, ordinal): those a reader of the journal still needs
        self._kept_frames: list[tuple[int, int]] = [self._journal.last_frame]  # start, def, final segments
        self._reader_frames: dict = {}
        self._checkpointed = 0
        self._checkpoint_frames = max(1, checkpoint_frames)
        # what reading the journal back would give, kept so the stop need not read it back
        self._start_manifest = _as_journalled(start)["manifest"]
        self._readers: dict = {}
        self._sealed: dict[int, list] = {}  # table -> its final segments, offsets in the journal
        self._tables = TableWriter()
        self._state: dict[int, _TableState] = {}
        self._frame_records = max(1, frame_records)
        self._seal_values, self._seal_rows = seal_values, seal_rows
        self.records = 0
        self.values = 0
        self._closed = False

    @property
    def catalog(self) -> C.Catalog:
        return self._tables.catalog

    @property
    def bytes_written(self) -> int:
        return self._journal.bytes_written

    def write(self, records: Iterable[RawRecord]) -> None:
        batch = records if isinstance(records, list) else list(records)
        at = 0
        while at < len(batch):
            # journal what the tables hold every ``frame_records`` records
            part = batch[at:at + self._frame_records - self._tables.pending] if at or len(batch) + \
                self._tables.pending > self._frame_records else batch
            self._tables.add_records(part)
            self.records += len(part)
            self.values += sum(map(len, map(_FIELDS, part)))
            at += len(part)
            if self._tables.pending >= self._frame_records:
                self._write_pieces()

    def write_ticks(self, label: str, rows: list[Mapping[str, int]]) -> None:
        for row in rows:
            self._tables.add_row(C.TICKS, label, row)

    def write_reader(self, info: Mapping) -> None:
        frame = {"t": "reader", "reader": finite(dict(info))}
        self._journal.append_json(frame)
        self._reader_frames[info.get("label")] = self._journal.last_frame
        self._readers[info.get("label")] = _as_journalled(frame)["reader"]

    def annotate(self, label: str, start_wall_ns: int, end_wall_ns: int, start_mono_ns: int | None = None,
                 end_mono_ns: int | None = None) -> None:
        self._tables.add_row(C.ANNOTATIONS, C.ANNOTATIONS_ENTITY, {
            "label": label, "start_wall_ns": start_wall_ns, "end_wall_ns": end_wall_ns,
            "start_mono_ns": start_mono_ns, "end_mono_ns": end_mono_ns})

    def flush(self) -> None:
        """Make everything written so far durable (survives SIGKILL and power loss)."""
        self._write_pieces()
        checkpoint = self._checkpoint() if self._journal.frames - self._checkpointed >= self._checkpoint_frames else None
        self._journal.sync()
        if checkpoint is not None:
            self._journal.set_checkpoint(*checkpoint)

    def _checkpoint(self) -> tuple[int, int]:
        """A frame listing the frames a reader still needs, so a live reader starts there."""
        frames = self._kept_frames + list(self._reader_frames.values()) + \
            [ref for state in self._state.values() for ref in state.frames]
        self._journal.append_json({"t": "checkpoint", "frames": sorted(frames)})
        self._checkpointed = self._journal.frames
        return self._journal.last_frame

    # -- segments ---------------------------------------------------------------------------------
    def _write_pieces(self, *, seal_all: bool = False) -> None:
        pieces = self._tables.flush()
        definitions = self.catalog.take_definitions()
        if definitions:
            self._journal.append_json({"t": "def", "items": definitions})
            self._kept_frames.append(self._journal.last_frame)
        for piece in pieces:
            state = self._state.setdefault(piece.table, _TableState())
            state.pieces.append(piece)
            state.values += piece.values
            rows = state.pieces[-1].row_hi - state.pieces[0].row_lo
            if state.values >= self._seal_values or rows >= self._seal_rows:
                self._seal(state)
            elif not seal_all:
                self._journal_provisional(state)
        if seal_all:
            for state in self._state.values():
                if state.pieces:
                    self._seal(state)

    def _seal(self, state: _TableState) -> None:
        self._append(merge_pieces(state.pieces), final=True)
        self._kept_frames.append(self._journal.last_frame)
        state.pieces, state.levels, state.values, state.frames = [], [], 0, []

    def _journal_provisional(self, state: _TableState) -> None:
        n = len(state.pieces)
        self._append(state.pieces[-1], final=False, level=FLUSH_LEVEL)
        state.levels.append((n - 1, n, 0))
        state.frames.append(self._journal.last_frame)
        # eight journalled segments of one level become one of the next: a bounded number of
        # pieces for recovery to merge, each row re-encoded a few times at most; the merged piece
        # also replaces its parts in memory, so sealing merges a few dozen pieces, not thousands
        while len(state.levels) >= MERGE_FANIN and len({lv for _, _, lv in state.levels[-MERGE_FANIN:]}) == 1:
            group = state.levels[-MERGE_FANIN:]
            first, level = group[0][0], group[0][2]  # the group ends with the newest piece
            merged = merge_pieces(state.pieces[first:])
            self._append(merged, final=False)
            state.pieces[first:] = [merged]
            state.levels[-MERGE_FANIN:] = [(first, first + 1, level + 1)]
            state.frames[-MERGE_FANIN:] = [self._journal.last_frame]

    def _append(self, piece: Piece, final: bool, level: int | None = None) -> None:
        if not final:  # journalled only, and superseded: no Segment to keep
            frame = provisional_frame(piece, PROVISIONAL_LEVEL if level is None else level)
            if frame is not None:
                self._journal.append_segment(*frame)
                return
        segment, streams = encode_piece(piece, final, level)
        body = self._journal.append_segment(segment.header(), streams)
        if final:
            segment.streams[:, C.ST_OFFSET] += body  # offsets from 0: now where they are in the journal
            self._sealed.setdefault(segment.table, []).append(segment)

    # -- the end ----------------------------------------------------------------------------------
    def close(self, *, stop: Mapping | None = None, command: Mapping | None = None,
              stats: Mapping | None = None, clean: bool = True, error: str | None = None,
              manifest_updates: Mapping | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._write_pieces(seal_all=True)
        end = finite({"t": "end", "stop": dict(stop) if stop else None,
                      "command": dict(command) if command else None,
                      "stats": dict(stats or {}), "clean": clean, "error": error,
                      "manifest": dict(manifest_updates or {})})
        self._journal.append_json(end)
        self._journal.sync()
        from telemrec.trace._fold import JournalState, write_folded

        # The writer knows what the journal holds: the trace is written from that, not from the
        # journal read back (a day at 1 Hz is ~70,000 segment frames, superseded provisional ones
        # included: seconds of the stop). What a reader of the journal would get, exactly: the
        # texts as journalled, the final segments where they are. The journal stays open, and
        # locked, until the trace is written: a reader meanwhile reads the journal in place
        # instead of folding it too (docs/format.md section 1, "Locks").
        state = JournalState(self.journal_path, manifest=self._start_manifest, end=_as_journalled(end),
                             readers=dict(self._readers), catalog=self.catalog, segments=self._sealed,
                             name=self.journal_path)
        try:
            write_folded(state, self.path)
        finally:
            self._journal.close()

    def rescue(self) -> str:
        """After the journal was removed while recording (``TraceWriteError`` with ``vanished``): write
        what it held, read through the still-open file, to the trace path if its directory exists,
        else beside it in the temporary directory; return where. The writer is closed."""
        import tempfile

        from telemrec.trace._fold import fold_journal

        self._closed = True
        try:
            self._write_pieces(seal_all=True)
        except TraceWriteError:
            pass  # what could not be appended is lost; the rest is saved
        directory = os.path.dirname(os.path.abspath(self.path))
        out = self.path if os.path.isdir(directory) else os.path.join(
            tempfile.gettempdir(), f"{os.path.basename(self.path)}.rescued-{os.getpid()}.h5")
        try:
            fold_journal(f"/proc/self/fd/{self._journal.fileno}", out, remove=False)
        finally:
            self._journal.close()
        return out

    def abandon(self) -> None:
        """Stop writing without folding (the journal stays for recovery)."""
        if not self._closed:
            self._closed = True
            try:
                self._write_pieces()
            finally:
                self._journal.close()


def _as_journalled(frame: dict) -> dict:
    """A JSON frame as a reader of the journal gets it back (tuples as lists, keys as strings)."""
    import json

    return json.loads(_journal._encoder.encode(frame))


def finite(value):
    """Strict JSON: a non-finite number (from a bad option) becomes null, so a journal can always be folded."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value

"""Journals of an older telemrec (journal version 1, JSON records): recovered into format 3.

A recorder of telemrec's trace format 2 that died left records, tick rows and
annotations as JSON frames. They are put through the same tables as new records
(``_tables``) and sealed in memory, so recovery and in-place reading work as for a
version 2 or 3 journal; the manifest is the one the old recorder wrote, updated the same way.
"""

from __future__ import annotations

from telemrec.errors import RecordError, TraceCorruptError
from telemrec.record import validate_record
from telemrec.trace import _catalog as C
from telemrec.trace import journal as _journal
from telemrec.trace._fold import JournalState, finish_manifest
from telemrec.trace._segments import encode_piece
from telemrec.trace._records import TableWriter
from telemrec.trace._tables import merge_pieces


def read_v1_journal(path: str, name: str | None = None) -> JournalState:
    state = JournalState(path, name=name or path)
    tables = TableWriter(state.catalog)
    pieces: dict[int, list] = {}
    offset = len(_journal.HEADER_V1)
    last_mono: dict[tuple[str, str], int] = {}
    for frame in _journal.scan_v1(path, state.scan):
        try:
            _apply_v1(state, tables, frame, last_mono)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecordError) as exc:
            # a frame that passed its CRC but does not hold what a version 1 frame holds: the journal
            # ends there, like at a torn frame, and the reason is kept
            state.scan.torn_reason = f"frame after byte {offset}: {type(exc).__name__}: {str(exc)[:200]}"
            state.scan.torn_bytes = state.scan.size - offset
            state.scan.valid_bytes = offset
            break
        offset = state.scan.valid_bytes
        if tables.pending >= 50000:
            for piece in tables.flush():
                pieces.setdefault(piece.table, []).append(piece)
    for piece in tables.flush():
        pieces.setdefault(piece.table, []).append(piece)
    if state.manifest is None:
        raise TraceCorruptError(f"{path} holds no complete start frame: the recorder died before its first flush",
                                "Nothing was recorded; delete the journal and record again.", path=path)
    state.catalog.take_definitions()
    for table, parts in pieces.items():
        segment, streams = encode_piece(merge_pieces(parts), final=True)
        segment.data = streams
        state.segments[table] = [segment]
    return state


def _apply_v1(state: JournalState, tables: TableWriter, frame: dict, last: dict) -> None:
    """Apply one frame; ``last``: each (source, entity)'s latest mono_ns so far."""
    kind = frame["t"]
    if kind == "start":
        if state.manifest is not None or not isinstance(frame["manifest"], dict):
            raise ValueError("a second or malformed start frame")
        state.manifest = frame["manifest"]
    elif state.manifest is None:
        raise ValueError("the first frame is not the start frame")
    elif kind == "rec":
        records = [validate_record(_journal.decode_record_v1(row)) for row in frame["r"]]
        for record in records:  # version 1 frames carry no sequence numbers: the clock tells a repeated frame
            key = (record.source, record.entity)
            if record.mono_ns <= last.get(key, -1 << 63):
                raise ValueError(f"{record.source}/{record.entity}: a record not after the one before it "
                                 "(a frame repeated or out of order)")
            last[key] = record.mono_ns
        tables.add_records(records)
    elif kind == "ticks":
        if not isinstance(frame["label"], str):
            raise TypeError("a tick label is not a string")
        for row in frame["rows"]:
            if len(row) != len(C.TICK_COLUMNS) or any(v is not None and type(v) is not int for v in row):
                raise TypeError("a tick row is not 8 integers")
            tables.add_row(C.TICKS, frame["label"], dict(zip(C.TICK_COLUMNS, row)))
    elif kind == "reader":
        if not isinstance(frame["reader"], dict) or not isinstance(frame["reader"]["label"], str):
            raise TypeError("a malformed reader entry")
        state.readers[frame["reader"]["label"]] = frame["reader"]
    elif kind == "ann":
        row = dict(frame["row"])
        if not all(row.get(c) is None or type(row.get(c)) is (str if c == "label" else int) for c in C.ANNOTATION_COLUMNS):
            raise TypeError("a malformed annotation")
        tables.add_row(C.ANNOTATIONS, C.ANNOTATIONS_ENTITY, row)
    elif kind == "end":
        if not isinstance(frame.get("manifest") or {}, dict) or not isinstance(frame.get("stats") or {}, dict):
            raise TypeError("a malformed end frame")
        state.end = frame
    else:
        raise ValueError(f"an unknown frame kind {str(kind)[:40]!r}")


def fold_v1_journal(jpath: str, out: str) -> None:
    import os

    from telemrec.trace import _filewrite

    state = read_v1_journal(jpath)
    _filewrite.write_trace(out, state, finish_manifest(state))
    os.unlink(jpath)
    _journal._fsync_dir(out)

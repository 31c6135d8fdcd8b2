"""Journals of an older telemrec (journal version 1, JSON records): recovered into format 3.

A recorder of telemrec's trace format 2 that died left records, tick rows and
annotations as JSON frames. They are put through the same tables as new records
(``_tables``) and sealed in memory, so recovery and in-place reading work as for a
version 2 journal; the manifest is the one the old recorder wrote, updated the same way.
"""

from __future__ import annotations

from telemrec.errors import TraceCorruptError
from telemrec.trace import _catalog as C
from telemrec.trace import journal as _journal
from telemrec.trace._fold import JournalState, finish_manifest
from telemrec.trace._segments import encode_piece
from telemrec.trace._records import TableWriter
from telemrec.trace._tables import merge_pieces


def read_v1_journal(path: str) -> JournalState:
    state = JournalState(path)
    tables = TableWriter(state.catalog)
    pieces: dict[int, list] = {}
    try:
        for frame in _journal.scan_v1(path, state.scan):
            kind = frame.get("t")
            if kind == "start":
                state.manifest = frame["manifest"]
            elif kind == "rec":
                tables.add_records([_journal.decode_record_v1(row) for row in frame["r"]])
            elif kind == "ticks":
                for row in frame["rows"]:
                    tables.add_row(C.TICKS, frame["label"], dict(zip(C.TICK_COLUMNS, row)))
            elif kind == "reader":
                state.readers[frame["reader"]["label"]] = frame["reader"]
            elif kind == "ann":
                tables.add_row(C.ANNOTATIONS, C.ANNOTATIONS_ENTITY, frame["row"])
            elif kind == "end":
                state.end = frame
            if tables.pending >= 50000:
                for piece in tables.flush():
                    pieces.setdefault(piece.table, []).append(piece)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise TraceCorruptError(f"{path}: a version 1 journal frame is not valid ({type(exc).__name__}: {exc})",
                                path=path) from None
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


def fold_v1_journal(jpath: str, out: str) -> None:
    import os

    from telemrec.trace import _filewrite

    state = read_v1_journal(jpath)
    _filewrite.write_trace(out, state, finish_manifest(state))
    os.unlink(jpath)
    _journal._fsync_dir(out)

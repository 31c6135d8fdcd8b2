"""Rewriting a trace of an older format version as the current one (upgrade only).

Readers read every older version as it is, so upgrading is never required; it buys
the current version's smaller, faster-loading files. Records, tick tables,
annotations and manifest are copied exactly (``records_identical`` on every record
is tested); only the manifest's ``format_version`` changes.

Columns are copied as columns: each entity's rows are decoded in blocks (NumPy or C),
put in the tables of format 3 and encoded segment by segment, with the writer's
codec (``_segments``) and file layout (``_filewrite``); no record is built in Python.
"""

from __future__ import annotations

import os

import numpy as np

from telemrec.errors import TraceWriteError
from telemrec.trace import _catalog as C
from telemrec.trace._fold import JournalState
from telemrec.trace._segments import encode_piece
from telemrec.trace._store import open_trace
from telemrec.trace._records import TableWriter
from telemrec.trace._tables import Piece, choose_table, concat_columns, packed_column, place_blocks
from telemrec.trace.writer import SEAL_VALUES

__all__ = ["upgrade"]


def upgrade(src: str | os.PathLike, dst: str | os.PathLike, *, seal_values: int = SEAL_VALUES) -> int:
    """Write trace ``src`` (any supported version) to the new file ``dst`` in the current
    version, atomically; return the version ``src`` had."""
    from telemrec.trace import _filewrite

    src, dst = os.fspath(src), os.fspath(dst)
    if os.path.exists(dst):
        raise TraceWriteError(f"{dst} already exists", "Choose another output path or remove the old file.", path=dst)
    with open_trace(src) as trace:
        version = trace.format_version
        state = _copy(trace, seal_values)
        _filewrite.write_trace(dst, state, dict(trace.manifest), exclusive=True)
    return version


def _copy(trace, seal_values: int) -> JournalState:
    state = JournalState(None, manifest=dict(trace.manifest))
    cat = state.catalog
    entities = trace._reader.entities()
    by_source: dict[str, list] = {}
    for ent in entities.values():
        if ent.rows:
            first = int(ent.read("_seq", 0, 1).ints[0])
            by_source.setdefault(ent.source, []).append((first, ent))
    for source in sorted(by_source, key=lambda s: min(f for f, _ in by_source[s])):
        ents = [e for _, e in sorted(by_source[source], key=lambda fe: fe[0])]
        sid = cat.add_source(source)
        time_table = cat.add_table(C.TIME, sid)
        time_entity = cat.add_entity(time_table, C.TIMELINE_ENTITY)
        state.segments[time_table] = _time_segments(ents[0].time, time_table, time_entity)
        tables: list[int] = []
        members: dict[int, list] = {}
        for ent in ents:
            table = choose_table(cat, tables, ent.fields)
            if table is None:
                table = cat.add_table(C.RECORDS, sid)
                tables.append(table)
            for name in ent.fields:
                if name not in cat.tables[table].field_index:
                    cat.add_field(table, name)
            eid = cat.add_entity(table, ent.name)
            cat.set_entity_fields(eid, [cat.tables[table].field_index[f] for f in ent.fields])
            members.setdefault(table, []).append((eid, ent))
        for table, group in members.items():
            state.segments[table] = _table_segments(cat, table, group, ents[0].time, seal_values)
    _copy_rows(trace, state)
    cat.take_definitions()
    return state


def _time_segments(time, table: int, eid: int) -> list:
    mono, wall = time.mono.read(), time.wall.read()
    piece = Piece(table, 0, len(mono), np.array([eid], np.int64), np.array([len(mono)], np.int64),
                  [packed_column(mono.kinds, mono.ints.copy(), None), packed_column(wall.kinds, wall.ints.copy(), None)],
                  wall_lo=int(wall.ints.min()) if len(wall) else C.NO_WALL,
                  wall_hi=int(wall.ints.max()) if len(wall) else C.NO_WALL)
    return [_sealed(piece)] if len(mono) else []


def _table_segments(cat: C.Catalog, table: int, group: list, time, seal_values: int) -> list:
    """A table's rows in segments of about ``seal_values`` values, cut at record positions (seq)."""
    seqs = [ent.read("_seq").ints for _, ent in group]
    widths = np.concatenate([np.full(len(s), max(1, len(ent.fields)), np.int64) for s, (_, ent) in zip(seqs, group)])
    order = np.argsort(np.concatenate(seqs), kind="stable")
    all_seq = np.concatenate(seqs)[order]
    cum = np.cumsum(widths[order])
    n = len(all_seq)
    marks = np.searchsorted(cum, np.arange(seal_values, int(cum[-1]), seal_values), side="right") if n else []
    cuts = [0] + sorted({int(c) for c in marks if 0 < c < n}) + [n]
    bounds = [int(all_seq[c]) for c in cuts[:-1]] + [int(all_seq[-1]) + 1]
    n_meta = len(C.RECORD_META)
    segments, row = [], 0
    for lo_seq, hi_seq in zip(bounds[:-1], bounds[1:]):
        eids, counts, parts = [], [], {}
        for (eid, ent), seq in zip(group, seqs):
            a, b = int(np.searchsorted(seq, lo_seq)), int(np.searchsorted(seq, hi_seq))
            if b <= a:
                continue
            eids.append(eid)
            counts.append(b - a)
            for k, name in enumerate(C.RECORD_META):
                parts.setdefault(k, []).append(ent.read(name, a, b))
            for name in ent.fields:
                parts.setdefault(n_meta + cat.tables[table].field_index[name], []).append((len(eids) - 1, ent.read_field(name, a, b)))
        total = int(sum(counts))
        columns: list = [None] * (n_meta + len(cat.tables[table].fields))
        for k in range(n_meta):
            columns[k] = concat_columns(parts[k])
        starts = np.concatenate([[0], np.cumsum(counts[:-1])]).astype(np.int64)
        for c in range(n_meta, len(columns)):
            pieces = parts.get(c)
            if pieces:
                columns[c] = _spread(pieces, starts, counts, total)
        tidx = columns[1].ints
        _, wall = time.gather(tidx)
        seq = columns[0].ints
        values = sum(int(np.count_nonzero(col.kinds)) for col in columns[n_meta:] if col is not None)
        piece = Piece(table, row, row + total, np.array(eids, np.int64), np.array(counts, np.int64), columns,
                      int(seq.min()), int(seq.max()) + 1, int(wall.min()), int(wall.max()), values)
        segments.append(_sealed(piece))
        row += total
    return segments


def _spread(pieces: list, starts: np.ndarray, counts: list, total: int):
    """One table column from the entities that have the field (absent for the others)."""
    if len(pieces) == len(counts):
        return concat_columns([col for _, col in pieces])
    out = None
    for k, col in pieces:
        out = place_blocks(out, col, [(int(starts[k]), int(counts[k]))], total)
    return out


def _sealed(piece: Piece):
    segment, streams = encode_piece(piece, final=True)
    segment.data = streams
    return segment


def _copy_rows(trace, state: JournalState) -> None:
    """Tick tables (None stays None) and annotations, through the writer's tables."""
    tables = TableWriter(state.catalog)
    for label in trace.tick_labels():
        columns = {name: col.to_list() for name, col in trace.tick_columns(label).items()}
        for values in zip(*columns.values()):
            tables.add_row(C.TICKS, label, dict(zip(columns, values)))
    for row in trace.annotations():
        tables.add_row(C.ANNOTATIONS, C.ANNOTATIONS_ENTITY, row)
    for piece in tables.flush():
        state.segments[piece.table] = [_sealed(piece)]

"""Format 3's write side: records into tables, tables into segments (docs/format.md, section 3).

Records go into per-entity buffers as they arrive: one tuple of values per record
(``write`` does no per-value work in Python). ``flush`` turns the buffers into
*pieces*, columnar NumPy arrays of the rows since the last flush, table by table,
with each entity's rows as one run; the writer journals them encoded
(``encode_piece``) and keeps them until the table's segment is sealed, when
``merge_pieces`` makes one piece of them, ordered by entity.

An entity joins the table of its source whose fields it shares most (at least
half of both), else a new table: processes, CPUs, GPUs, disks and NICs each end
up in one table, whatever their number, so the trace's metadata grows with the
field sets of a source, not with entities x fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from telemrec.errors import RecordError
from telemrec.record import RawRecord
from telemrec.trace import _catalog as C
from telemrec.trace._codec import ABSENT, FLOAT, INT, NONE, STR
from telemrec.trace._columns import Column

_KIND_OF = {float: FLOAT, int: INT, str: STR, type(None): NONE}
_EMPTY_OBJ = np.zeros(0, object)


def absent(n: int) -> Column:
    return packed_column(np.zeros(n, np.uint8), np.zeros(n, np.int64), None)


def column_of_values(values, what: str = "a field") -> Column:
    """A ``Column`` from Python values (float, int, str, None): typed in C-level passes when
    every value has one type, value by value otherwise."""
    n = len(values)
    types = set(map(type, values))
    if len(types) == 1:
        t = next(iter(types))
        if t is float:
            return packed_column(np.full(n, FLOAT, np.uint8), np.array(values, np.float64).view(np.int64), None)
        if t is int:
            try:
                ints = np.array(values, np.int64)
            except OverflowError:
                raise RecordError(f"{what} holds an int that does not fit in int64",
                                  "Store such values as float or str.") from None
            return packed_column(np.full(n, INT, np.uint8), ints, None)
        if t is str:
            strs = np.empty(n, object)
            strs[:] = values
            return packed_column(np.full(n, STR, np.uint8), np.zeros(n, np.int64), strs)
        if t is type(None):
            return packed_column(np.full(n, NONE, np.uint8), np.zeros(n, np.int64), None)
    bad = types - _KIND_OF.keys()
    if bad:
        raise RecordError(f"{what} has a value of type {sorted(t.__name__ for t in bad)[0]}; allowed: float, int, str, None",
                          "Convert booleans to int and numpy scalars with .item().")
    kinds = np.fromiter(map(_KIND_OF.__getitem__, map(type, values)), np.uint8, n)
    ints = np.zeros(n, np.int64)
    floats = ints.view(np.float64)
    strs = None
    obj = np.empty(n, object)
    obj[:] = values
    is_float, is_int, is_str = kinds == FLOAT, kinds == INT, kinds == STR
    if is_float.any():
        floats[is_float] = obj[is_float].astype(np.float64)
    if is_int.any():
        try:
            ints[is_int] = obj[is_int].astype(np.int64)
        except OverflowError:
            raise RecordError(f"{what} holds an int that does not fit in int64", "Store such values as float or str.") from None
    if is_str.any():
        strs = np.where(is_str, obj, None)
    return packed_column(kinds, ints, strs)


def packed(col: Column) -> np.ndarray:
    """One int64 per row: the int of an INT row, the bits of a FLOAT row's float. Columns built
    here hold their numbers this way already (``floats`` is a view of ``ints``)."""
    ints, floats = col.ints, col.floats
    if col.packed:
        return ints
    values = ints.astype(np.int64, copy=True)
    is_float = col.kinds == FLOAT
    values[is_float] = floats[is_float].view(np.int64)
    return values


def packed_column(kinds: np.ndarray, values: np.ndarray, strs) -> Column:
    return Column(kinds, values, values.view(np.float64), strs, packed=True)


def concat_columns(parts: list[Column]) -> Column:
    if len(parts) == 1:
        return parts[0]
    kinds = np.concatenate([p.kinds for p in parts])
    values = np.concatenate([packed(p) for p in parts])
    strs = None
    if any(p.strs is not None for p in parts):
        strs = np.concatenate([p.strs if p.strs is not None else np.full(len(p.kinds), None, object) for p in parts])
    return packed_column(kinds, values, strs)


def take_rows(col: Column, index: np.ndarray) -> Column:
    return packed_column(col.kinds[index], packed(col)[index], None if col.strs is None else col.strs[index])


@dataclass
class Piece:
    """Rows [row_lo, row_hi) of one table (rows numbered in the order they were written),
    columnar: entity after entity (``entities``/``counts``, one run each), a Column per column
    number (None or missing: every row absent)."""

    table: int
    row_lo: int
    row_hi: int
    entities: np.ndarray
    counts: np.ndarray
    columns: list
    seq_lo: int = 0
    seq_hi: int = 0
    wall_lo: int = C.NO_WALL
    wall_hi: int = C.NO_WALL
    values: int = 0  # present values, for the writer's sealing policy

    @property
    def rows(self) -> int:
        return self.row_hi - self.row_lo


def merge_pieces(pieces: list[Piece]) -> Piece:
    """One piece of consecutive pieces of a table, each entity's rows one run again (in row order)."""
    if len(pieces) == 1:
        return pieces[0]
    bases = np.cumsum([0] + [p.rows for p in pieces[:-1]])
    ent = np.concatenate([p.entities for p in pieces])
    counts = np.concatenate([p.counts for p in pieces])
    piece_no = np.concatenate([np.full(len(p.entities), i) for i, p in enumerate(pieces)])
    starts = np.concatenate([b + np.concatenate([[0], np.cumsum(p.counts[:-1])]).astype(np.int64)
                             for b, p in zip(bases, pieces)])
    order = np.lexsort((piece_no, ent))
    ent, counts, starts = ent[order], counts[order], starts[order]
    total = int(counts.sum())
    # the rows of each run, in the new order: starts repeated, plus 0..count-1 within each run
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    gather = np.repeat(starts, counts) + offsets
    first = np.concatenate([[True], ent[1:] != ent[:-1]])
    run_entities = ent[first]
    run_counts = np.add.reduceat(counts, np.flatnonzero(first))
    width = max(len(p.columns) for p in pieces)
    columns = []
    for c in range(width):
        parts = [p.columns[c] if c < len(p.columns) else None for p in pieces]
        if all(part is None for part in parts):
            columns.append(None)
            continue
        full = concat_columns([part if part is not None else absent(p.rows) for part, p in zip(parts, pieces)])
        columns.append(take_rows(full, gather))
    first_piece, last = pieces[0], pieces[-1]
    return Piece(first_piece.table, first_piece.row_lo, last.row_hi, run_entities.astype(np.int64),
                 run_counts.astype(np.int64), columns,
                 min(p.seq_lo for p in pieces), max(p.seq_hi for p in pieces),
                 _wall_min([p.wall_lo for p in pieces]), max(p.wall_hi for p in pieces), sum(p.values for p in pieces))


def _wall_min(values: list[int]) -> int:
    real = [v for v in values if v != C.NO_WALL]
    return min(real) if real else C.NO_WALL


def choose_table(catalog: C.Catalog, tables: list[int], fields) -> int | None:
    """The record table (of ``tables``) an entity with these fields joins: the one sharing most of
    them, if at least half of both the entity's and the table's; None: a new table."""
    names = set(fields)
    best, best_score = None, 0.0
    for tid in tables:
        have = catalog.tables[tid].field_index
        if not names or not have:
            score = 1.0 if not names and not have else 0.0
        else:
            score = sum(1 for f in names if f in have) / max(len(names), len(have))
        if score >= 0.5 and score > best_score:
            best, best_score = tid, score
    return best


# -- accumulating records --------------------------------------------------------------------------

class _EntityRows:
    """One entity's rows since the last flush: blocks of value tuples sharing one key tuple."""

    __slots__ = ("eid", "keys", "rows", "blocks", "seq", "tidx", "sv", "err", "order", "fieldset")

    def __init__(self, eid: int):
        self.eid = eid
        self.keys: tuple | None = None
        self.rows: list = []
        self.blocks: list[tuple[tuple, list]] = []
        self.seq: list[int] = []
        self.tidx: list[int] = []
        self.sv: list[str] = []
        self.err: list = []
        self.order: list[int] = []    # field numbers in first-appearance order
        self.fieldset: set[int] = set()

    def start_block(self, keys: tuple) -> None:
        self.keys = keys
        self.rows = []
        self.blocks.append((keys, self.rows))

    def pending(self) -> int:
        return sum(len(rows) for _, rows in self.blocks)

    def clear(self) -> None:
        self.blocks = []
        self.keys = None
        self.rows = []
        self.seq, self.tidx, self.sv, self.err = [], [], [], []


class _Source:
    __slots__ = ("sid", "time_table", "time_entity", "pairs", "last_mono", "last_wall", "last_tidx", "rows",
                 "base", "mono", "wall", "tables", "entities")

    def __init__(self, sid: int, time_table: int, time_entity: int):
        self.sid = sid
        self.time_table, self.time_entity = time_table, time_entity
        self.pairs: dict[tuple[int, int], int] = {}
        self.last_mono = self.last_wall = None
        self.last_tidx = -1
        self.rows = 0        # time rows so far
        self.base = 0        # first time row not yet flushed
        self.mono: list[int] = []
        self.wall: list[int] = []
        self.tables: list[int] = []
        self.entities: dict[str, _EntityRows] = {}

    def tidx(self, mono: int, wall: int) -> int:
        key = (mono, wall)
        idx = self.pairs.get(key)
        if idx is None:
            if len(self.pairs) > 4096:  # only recent ticks share a row; keep the map small
                self.pairs.clear()
            idx = self.pairs[key] = self.rows
            self.mono.append(mono)
            self.wall.append(wall)
            self.rows += 1
        self.last_mono, self.last_wall, self.last_tidx = mono, wall, idx
        return idx


class TableWriter:
    """Accumulates records, ticks and annotations; ``flush()`` returns them as pieces."""

    def __init__(self, catalog: C.Catalog | None = None):
        self.catalog = catalog or C.Catalog()
        self._sources: dict[str, _Source] = {}
        self._table_rows: dict[int, int] = {}            # table -> rows written so far
        self._pending: dict[int, dict[int, _EntityRows]] = {}  # table -> entity -> rows since flush
        self._others: dict[tuple[int, str], _EntityRows] = {}   # ticks and annotations entities
        self.values = 0

    # -- hot path ---------------------------------------------------------------------------------
    def add_record(self, rec: RawRecord, seq: int) -> None:
        src = self._sources.get(rec.source)
        if src is None:
            src = self._new_source(rec.source)
        mono, wall = rec.mono_ns, rec.wall_ns
        tidx = src.last_tidx if (mono == src.last_mono and wall == src.last_wall) else src.tidx(mono, wall)
        ent = src.entities.get(rec.entity)
        fields = rec.fields
        if ent is None:
            ent = self._new_entity(src, rec.entity, fields)
        keys = tuple(fields)
        if keys != ent.keys:
            self._new_keys(ent, keys)
        ent.rows.append(tuple(fields.values()))
        ent.seq.append(seq)
        ent.tidx.append(tidx)
        ent.sv.append(rec.source_version)
        ent.err.append(rec.error)

    def _new_source(self, name: str) -> _Source:
        cat = self.catalog
        sid = cat.add_source(name)
        time_table = cat.add_table(C.TIME, sid)
        src = self._sources[name] = _Source(sid, time_table, cat.add_entity(time_table, C.TIMELINE_ENTITY))
        return src

    def _new_entity(self, src: _Source, name: str, fields) -> _EntityRows:
        cat = self.catalog
        table = choose_table(cat, src.tables, fields)
        if table is None:
            table = cat.add_table(C.RECORDS, src.sid)
            src.tables.append(table)
            self._table_rows[table] = 0
        ent = src.entities[name] = _EntityRows(cat.add_entity(table, name))
        return ent

    def _new_keys(self, ent: _EntityRows, keys: tuple) -> None:
        cat = self.catalog
        table = cat.tables[cat.entities[ent.eid].table]
        changed = False
        for name in keys:
            f = table.field_index.get(name)
            if f is None:
                f = cat.add_field(cat.entities[ent.eid].table, name)
            if f not in ent.fieldset:
                ent.fieldset.add(f)
                ent.order.append(f)
                changed = True
        if changed:
            cat.set_entity_fields(ent.eid, ent.order)
        ent.start_block(keys)
        self._pending.setdefault(cat.entities[ent.eid].table, {})[ent.eid] = ent

    def add_row(self, kind: str, entity: str, row) -> None:
        """A tick table row (entity = reader label) or an annotation (a mapping of the kind's columns)."""
        cat = self.catalog
        tid = cat.ticks_table if kind == C.TICKS else cat.annotations_table
        if tid is None:
            tid = cat.add_table(kind, -1)
            self._table_rows[tid] = 0
        ent = self._others.get((tid, entity))
        if ent is None:
            ent = self._others[(tid, entity)] = _EntityRows(cat.add_entity(tid, entity))
            ent.order = list(range(len(cat.tables[tid].fields)))
            ent.fieldset = set(ent.order)
        names = cat.tables[tid].fields
        if ent.keys is None:
            ent.start_block(tuple(names))
            self._pending.setdefault(tid, {})[ent.eid] = ent
        ent.rows.append(tuple(row.get(c) for c in names))

    # -- flushing ---------------------------------------------------------------------------------
    def flush(self) -> list[Piece]:
        """The rows written since the last flush, one piece per table that has any: time tables
        first, so that every prefix of the pieces (what a crash leaves of a flush) holds the
        timestamps of the records in it."""
        tables = []
        for tid in sorted(self._pending):
            ents = self._pending[tid]
            if ents:
                tables.append(self._table_piece(tid, [ents[e] for e in sorted(ents)]))
        self._pending = {}
        times = [self._time_piece(src) for src in self._sources.values() if src.rows > src.base]
        return times + tables  # made after the tables: their wall ranges read the unflushed times

    def _time_piece(self, src: _Source) -> Piece:
        n = src.rows - src.base
        mono, wall = np.array(src.mono, np.int64), np.array(src.wall, np.int64)
        cols = [packed_column(np.full(n, INT, np.uint8), mono, None), packed_column(np.full(n, INT, np.uint8), wall, None)]
        piece = Piece(src.time_table, src.base, src.rows, np.array([src.time_entity], np.int64),
                      np.array([n], np.int64), cols, wall_lo=int(wall.min()), wall_hi=int(wall.max()), values=2 * n)
        src.base = src.rows
        src.mono, src.wall = [], []
        return piece

    def _table_piece(self, tid: int, ents: list[_EntityRows]) -> Piece:
        cat = self.catalog
        table = cat.tables[tid]
        n_meta = len(table.meta)
        counts = np.array([ent.pending() for ent in ents], np.int64)
        total = int(counts.sum())
        # rows of all entities that share a key tuple are typed together: one pass per field and
        # key tuple (mostly one per table), not per entity
        groups: dict[tuple, tuple[list, list]] = {}
        at = 0
        for ent in ents:
            for keys, block in ent.blocks:
                if block:
                    rows, spans = groups.setdefault(keys, ([], []))
                    rows.extend(block)
                    spans.append((at, len(block)))
                    at += len(block)
        columns: list = [None] * (n_meta + len(table.fields))
        values = 0
        for keys, (rows, spans) in groups.items():
            where = _positions(spans, total)
            for name, vals in zip(keys, zip(*rows)):
                c = n_meta + table.field_index[name]
                col = column_of_values(vals, f"field {name!r}")
                columns[c] = col if where is None else _scatter(columns[c], col, where, total)
                values += len(vals)
        keep = counts > 0
        piece = Piece(tid, 0, 0, np.array([e.eid for e in ents], np.int64)[keep], counts[keep], columns, values=values)
        if table.kind == C.RECORDS:
            self._record_meta(piece, ents, columns)
        rows_before = self._table_rows.get(tid, 0)
        piece.row_lo, piece.row_hi = rows_before, rows_before + total
        self._table_rows[tid] = rows_before + total
        for ent in ents:
            ent.clear()
        return piece

    def _record_meta(self, piece: Piece, ents: list[_EntityRows], columns: list) -> None:
        seq = np.array([s for e in ents for s in e.seq], np.int64)
        tidx = np.array([t for e in ents for t in e.tidx], np.int64)
        columns[0] = packed_column(np.full(len(seq), INT, np.uint8), seq, None)
        columns[1] = packed_column(np.full(len(tidx), INT, np.uint8), tidx, None)
        columns[2] = column_of_values([v for e in ents for v in e.sv], "source_version")
        columns[3] = column_of_values([v for e in ents for v in e.err], "error")
        if len(seq):
            piece.seq_lo, piece.seq_hi = int(seq.min()), int(seq.max()) + 1
            src = self._sources[self.catalog.sources[self.catalog.tables[piece.table].source]]
            walls = self._walls(src, tidx)
            piece.wall_lo, piece.wall_hi = int(walls.min()), int(walls.max())

    def _walls(self, src: _Source, tidx: np.ndarray) -> np.ndarray:
        """Wall clock of time rows: the unflushed ones from the buffer; a recurring older pair from the pair map."""
        new = np.array(src.wall, np.int64)
        out = np.empty(len(tidx), np.int64)
        fresh = tidx >= src.base
        out[fresh] = new[tidx[fresh] - src.base]
        if not fresh.all():
            older = {i: w for (_, w), i in src.pairs.items()}
            out[~fresh] = [older[int(i)] for i in tidx[~fresh]]
        return out


def _positions(spans: list[tuple[int, int]], total: int) -> np.ndarray | None:
    """The rows (of ``total``) that ``spans`` cover, in order; None when they cover all rows in order."""
    if len(spans) == 1 and spans[0] == (0, total):
        return None
    starts = np.array([a for a, _ in spans], np.int64)
    lengths = np.array([n for _, n in spans], np.int64)
    if int(lengths.sum()) == total and (starts == np.concatenate([[0], np.cumsum(lengths[:-1])])).all():
        return None
    return np.repeat(starts - np.concatenate([[0], np.cumsum(lengths[:-1])]), lengths) + np.arange(int(lengths.sum()))


def _scatter(into: Column | None, col: Column, where: np.ndarray, total: int) -> Column:
    """``col``'s rows put at rows ``where`` of a column of ``total`` rows (absent elsewhere)."""
    if into is None:
        into = absent(total)
    values = packed(into)
    values[where] = packed(col)
    into.kinds[where] = col.kinds
    strs = into.strs
    if col.strs is not None:
        if strs is None:
            strs = np.full(total, None, object)
        strs[where] = col.strs
    return packed_column(into.kinds, values, strs)

"""Records into tables: format 3's write side, before encoding (docs/format.md, section 3).

``write`` only keeps the records (one ``list.extend`` per batch); every ``flush``
turns those since the last one into *pieces* (``_tables.Piece``): columnar NumPy
arrays of each table's new rows, entity after entity. The work is done a batch at a
time with C-level passes (``map`` over attribute getters, ``zip(*rows)`` to make
columns, NumPy to type them); Python loops run per entity, per distinct timestamp
and per key layout, not per record or per value.

An entity joins the table of its source whose fields it shares most (at least half
of both), else a new table (``_tables.choose_table``).
"""

from __future__ import annotations

from operator import attrgetter, methodcaller

import numpy as np

from telemrec.errors import RecordError
from telemrec.trace import _catalog as C
from telemrec.trace._codec import INT
from telemrec.trace._segments import _ccodec
from telemrec.trace._tables import Piece, choose_table, column_of_values, packed_column, place_blocks

_KEY = attrgetter("source", "entity")
_FIELDS = attrgetter("fields")
_MONO = attrgetter("mono_ns")
_WALL = attrgetter("wall_ns")
_VERSION = attrgetter("source_version")
_ERROR = attrgetter("error")
_VALUES = methodcaller("values")


class _Source:
    __slots__ = ("sid", "time_table", "time_entity", "pairs", "rows", "base", "mono", "wall", "tables")

    def __init__(self, sid: int, time_table: int, time_entity: int):
        self.sid = sid
        self.time_table, self.time_entity = time_table, time_entity
        self.pairs: dict[tuple[int, int], int] = {}
        self.rows = 0        # time rows so far
        self.base = 0        # first time row not yet flushed
        self.mono: list[int] = []
        self.wall: list[int] = []
        self.tables: list[int] = []

    def assign(self, mono: np.ndarray, wall: np.ndarray) -> np.ndarray:
        """The time-table row of each (mono, wall): the pair's row if it is recent, else a new row."""
        n = len(mono)
        change = np.ones(n, bool)
        change[1:] = (mono[1:] != mono[:-1]) | (wall[1:] != wall[:-1])
        starts = np.flatnonzero(change)  # records of one tick come together: one lookup per tick
        rows = []
        pairs = self.pairs
        for m, w in zip(mono[starts].tolist(), wall[starts].tolist()):
            row = pairs.get((m, w))
            if row is None:
                if len(pairs) > 4096:  # only recent ticks share a row; keep the map small
                    pairs.clear()
                row = pairs[(m, w)] = self.rows
                self.mono.append(m)
                self.wall.append(w)
                self.rows += 1
            rows.append(row)
        return np.repeat(np.array(rows, np.int64), np.diff(np.append(starts, n)))


class _Entity:
    __slots__ = ("eid", "table", "source", "keys", "order", "fieldset", "mark")

    def __init__(self, eid: int, table: int, source: int):
        self.eid, self.table, self.source = eid, table, source
        self.keys: tuple | None = None
        self.mark = b""  # which of its table's fields it held in its rows of the last flush
        self.order: list[int] = []
        self.fieldset: set[int] = set()


class _Rows:
    """Ticks or annotation rows of one label since the last flush."""

    __slots__ = ("eid", "rows")

    def __init__(self, eid: int):
        self.eid = eid
        self.rows: list[tuple] = []


class TableWriter:
    """Accumulates records, ticks and annotations; ``flush()`` returns them as pieces."""

    def __init__(self, catalog: C.Catalog | None = None):
        self.catalog = catalog or C.Catalog()
        self._sources: dict[str, _Source] = {}
        self._source_list: list[_Source] = []
        self._index: dict[tuple[str, str], int] = {}  # (source, entity) -> position in _entities
        self._entities: list[_Entity] = []
        self._records: list = []
        self._seq0 = 0
        self._table_rows: dict[int, int] = {}
        self._others: dict[tuple[int, str], _Rows] = {}

    # -- writing ---------------------------------------------------------------------------------
    def add_records(self, records: list) -> None:
        """Keep ``records`` (in order: their positions are the trace's ``_seq``)."""
        self._records.extend(records)

    @property
    def pending(self) -> int:
        return len(self._records)

    def add_row(self, kind: str, entity: str, row) -> None:
        """A tick table row (entity = reader label) or an annotation (a mapping of the kind's columns)."""
        cat = self.catalog
        tid = cat.ticks_table if kind == C.TICKS else cat.annotations_table
        if tid is None:
            tid = cat.add_table(kind, -1)
        rows = self._others.get((tid, entity))
        if rows is None:
            rows = self._others[(tid, entity)] = _Rows(cat.add_entity(tid, entity))
        rows.rows.append(tuple(row.get(c) for c in cat.tables[tid].fields))

    # -- flushing --------------------------------------------------------------------------------
    def flush(self) -> list[Piece]:
        """The rows written since the last flush, one piece per table that has any: time tables
        first, so that every prefix of the pieces (what a crash leaves of a flush) holds the
        timestamps of the records in it."""
        tables = self._record_pieces() if self._records else []
        for key in sorted(self._others, key=lambda k: self._others[k].eid):
            rows = self._others[key]
            if rows.rows:
                tables.append(self._rows_piece(key[0], rows))
        times = [self._time_piece(src) for src in self._source_list if src.rows > src.base]
        return times + tables

    def _record_pieces(self) -> list[Piece]:
        recs, seq0 = self._records, self._seq0
        n = len(recs)
        self._records = []
        self._seq0 += n
        keys = list(map(_KEY, recs))
        codes = list(map(self._index.get, keys))
        if None in codes:
            for i, (key, code) in enumerate(zip(keys, codes)):
                if code is None and key not in self._index:
                    self._new_entity(key, recs[i].fields)
            codes = list(map(self._index.get, keys))
        codes = np.array(codes, np.int64)
        try:
            mono = np.fromiter(map(_MONO, recs), np.int64, n)
            wall = np.fromiter(map(_WALL, recs), np.int64, n)
        except (TypeError, ValueError, OverflowError):
            raise RecordError("a record's mono_ns or wall_ns is not an int64", "Timestamps are int64 nanoseconds.") \
                from None
        if len(self._source_list) == 1:  # one reader's records: no source to pick out
            tidx = self._source_list[0].assign(mono, wall)
        else:
            sources = np.array([e.source for e in self._entities], np.int64)[codes]
            tidx = np.empty(n, np.int64)
            for s in np.unique(sources).tolist():
                mask = sources == s
                tidx[mask] = self._source_list[s].assign(mono[mask], wall[mask])
        order = np.argsort(codes, kind="stable")
        ordered = codes[order]
        cuts = [0, *(np.flatnonzero(ordered[1:] != ordered[:-1]) + 1).tolist(), n]
        by_table: dict[int, list] = {}
        for code, a, b in zip(ordered[cuts[:-1]].tolist(), cuts[:-1], cuts[1:]):
            ent = self._entities[code]
            by_table.setdefault(ent.table, []).append((ent, order[a:b]))
        pieces = []
        for table in sorted(by_table):
            members = sorted(by_table[table], key=lambda m: m[0].eid)
            pieces.append(self._table_piece(table, members, recs, seq0, tidx, wall))
        return pieces

    def _new_entity(self, key: tuple[str, str], fields) -> None:
        cat = self.catalog
        name, entity = key
        if not isinstance(name, str) or not isinstance(entity, str):
            raise RecordError(f"a record's source and entity must be strings, got {key!r}", "")
        src = self._sources.get(name)
        if src is None:
            sid = cat.add_source(name)
            time_table = cat.add_table(C.TIME, sid)
            src = self._sources[name] = _Source(sid, time_table, cat.add_entity(time_table, C.TIMELINE_ENTITY))
            self._source_list.append(src)
        table = choose_table(cat, src.tables, fields)
        if table is None:
            table = cat.add_table(C.RECORDS, src.sid)
            src.tables.append(table)
        self._index[key] = len(self._entities)
        ent = _Entity(cat.add_entity(table, entity), table, src.sid)
        self._entities.append(ent)
        self._learn(ent, tuple(fields))  # its fields now: the next entity of the flush may join this table

    def _learn(self, ent: _Entity, keys: tuple) -> None:
        """New field names of an entity: columns of its table, and its first-appearance order."""
        cat = self.catalog
        table = cat.tables[ent.table]
        changed = False
        for name in keys:
            if not isinstance(name, str) or not name:
                raise RecordError(f"field names must be non-empty strings, got {name!r}", "")
            f = table.field_index.get(name)
            if f is None:
                f = cat.add_field(ent.table, name)
            if f not in ent.fieldset:
                ent.fieldset.add(f)
                ent.order.append(f)
                changed = True
        if changed or ent.keys is None:  # a new entity's list, even empty (none: every field of its table)
            cat.set_entity_fields(ent.eid, ent.order)
        ent.keys = keys

    def _table_piece(self, tid: int, members: list, recs: list, seq0: int, tidx: np.ndarray,
                     wall: np.ndarray) -> Piece:
        table = self.catalog.tables[tid]
        n_meta = len(table.meta)
        order = np.concatenate([idx for _, idx in members]) if len(members) > 1 else members[0][1]
        every = list(map(recs.__getitem__, order.tolist()))  # entity after entity
        total = len(every)
        fields = list(map(_FIELDS, every))
        columns: list = [None] * (n_meta + len(table.fields))
        values = self._fast_columns(table, members, fields, columns) if _ccodec is not None else None
        if values is None:
            values = self._grouped_columns(table, members, every, fields, columns)
        seq = order.astype(np.int64) + seq0
        columns[0] = packed_column(np.full(total, INT, np.uint8), seq, None)
        columns[1] = packed_column(np.full(total, INT, np.uint8), tidx[order], None)
        columns[2] = column_of_values(list(map(_VERSION, every)), "source_version")
        columns[3] = column_of_values(list(map(_ERROR, every)), "error")
        walls = wall[order]
        rows_before = self._table_rows.get(tid, 0)
        self._table_rows[tid] = rows_before + total
        return Piece(tid, rows_before, rows_before + total, np.array([e.eid for e, _ in members], np.int64),
                     np.array([len(idx) for _, idx in members], np.int64), columns, int(seq.min()),
                     int(seq.max()) + 1, int(walls.min()), int(walls.max()), values)

    def _fast_columns(self, table, members: list, fields: list, columns: list) -> int | None:
        """The columns in one C pass (``_ccodec.fill_table``), whatever fields each record holds,
        as long as the table knows them all; None when a record names a field new to the table."""
        n, k = len(fields), len(table.fields)
        kinds = np.zeros((k, n), np.uint8)
        values = np.zeros((k, n), np.int64)
        counts = [len(idx) for _, idx in members]
        try:
            out = _ccodec.fill_table(fields, table.field_index, kinds, values, counts)
        except (TypeError, OverflowError) as exc:
            raise RecordError(str(exc), "Field values are float, int (int64), str or None; convert booleans to "
                                        "int and numpy scalars with .item().") from None
        if out[0] != n:
            return None  # a new field: learnt on the grouped path
        _, strs, marks, used, present = out
        # the fields each entity holds in these rows (marks): only an entity holding one new to it is learnt
        start = 0
        for j, (ent, _) in enumerate(members):
            mark = marks[j * k:(j + 1) * k]
            if mark != ent.mark:
                self._learn_rows(ent, fields[start:start + counts[j]], np.frombuffer(mark, np.bool_))
                ent.mark = mark
            start += counts[j]
        n_meta = len(table.meta)
        for f in used:
            found = strs.get(f)
            if found is not None:
                found = np.array(found, object)
            columns[n_meta + f] = packed_column(kinds[f], values[f], found)
        return present

    def _learn_rows(self, ent: _Entity, rows: list, held: np.ndarray) -> None:
        """Learn the fields an entity holds in ``rows`` that it did not before, in the order they
        first appear (what learning every record's keys in turn gives)."""
        if ent.fieldset.issuperset(np.flatnonzero(held).tolist()):
            return
        seen = set()
        for keys in map(tuple, rows):
            if keys not in seen:
                seen.add(keys)
                self._learn(ent, keys)

    def _grouped_columns(self, table, members: list, every: list, fields: list, columns: list) -> int:
        """Records whose field names differ: rows of every entity that share a key layout are typed
        together, one pass per field and layout."""
        groups: dict[tuple, tuple[list, list]] = {}
        at = 0
        for ent, idx in members:
            sub = every[at:at + len(idx)]
            mine = fields[at:at + len(sub)]
            for keys, start, stop in _runs_of_equal(list(map(tuple, mine))):
                if keys != ent.keys:
                    self._learn(ent, keys)
                rows, spans = groups.setdefault(keys, ([], []))
                rows.extend(map(tuple, map(_VALUES, mine[start:stop])))
                spans.append((at + start, stop - start))
            at += len(sub)
        n_meta = len(table.meta)
        if len(columns) < n_meta + len(table.fields):
            columns.extend([None] * (n_meta + len(table.fields) - len(columns)))
        values = 0
        for keys, (rows, spans) in groups.items():
            blocks = list(zip(keys, zip(*rows))) if rows and keys else []
            for name, vals in blocks:
                c = n_meta + table.field_index[name]
                columns[c] = place_blocks(columns[c], column_of_values(vals, f"field {name!r}"), spans, at)
            values += len(rows) * len(keys)
        return values

    def _rows_piece(self, tid: int, rows: _Rows) -> Piece:
        names = self.catalog.tables[tid].fields
        n = len(rows.rows)
        columns = [column_of_values(vals, f"{name}") for name, vals in zip(names, zip(*rows.rows))]
        rows.rows = []
        before = self._table_rows.get(tid, 0)
        self._table_rows[tid] = before + n
        return Piece(tid, before, before + n, np.array([rows.eid], np.int64), np.array([n], np.int64), columns,
                     values=n * len(names))

    def _time_piece(self, src: _Source) -> Piece:
        n = src.rows - src.base
        mono, wall = np.array(src.mono, np.int64), np.array(src.wall, np.int64)
        cols = [packed_column(np.full(n, INT, np.uint8), mono, None), packed_column(np.full(n, INT, np.uint8), wall, None)]
        piece = Piece(src.time_table, src.base, src.rows, np.array([src.time_entity], np.int64),
                      np.array([n], np.int64), cols, wall_lo=int(wall.min()), wall_hi=int(wall.max()), values=2 * n)
        src.base = src.rows
        src.mono, src.wall = [], []
        return piece


def _runs_of_equal(layouts: list[tuple]):
    """(layout, start, stop) of each stretch of records with the same field names in the same order."""
    first = layouts[0]
    if layouts.count(first) == len(layouts):
        yield first, 0, len(layouts)
        return
    start = 0
    for i in range(1, len(layouts) + 1):
        if i == len(layouts) or layouts[i] != layouts[start]:
            yield layouts[start], start, i
            start = i

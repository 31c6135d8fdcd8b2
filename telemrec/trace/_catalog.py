"""What a format 3 trace holds, apart from its values: sources, tables, columns, entities, and
the index of segments, runs and streams (docs/format.md, section 3).

The writer grows a ``Catalog`` as records arrive and journals every addition
(``definitions``); recovery and live readers rebuild it from the journal with
``apply``; the trace file stores it as JSON (``to_json``/``from_json``). Every
reader of the format uses this one model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from telemrec.errors import TraceCorruptError

RECORDS, TIME, TICKS, ANNOTATIONS = "records", "time", "ticks", "annotations"
TABLE_KINDS = (RECORDS, TIME, TICKS, ANNOTATIONS)
RECORD_META = ("_seq", "_tidx", "_source_version", "_error")
TIME_COLUMNS = ("mono_ns", "wall_ns")
TICK_COLUMNS = ("tick", "scheduled_mono_ns", "start_mono_ns", "end_mono_ns", "start_wall_ns",
                "status", "records", "cpu_ns")
ANNOTATION_COLUMNS = ("start_wall_ns", "end_wall_ns", "start_mono_ns", "end_mono_ns", "label")
ANNOTATIONS_ENTITY = "annotations"
TIMELINE_ENTITY = "$time"  # the one entity of a source's time table

# index columns (int64 arrays; docs/format.md 3.3)
SEG_TABLE, SEG_ROW_LO, SEG_ROW_HI, SEG_RUN0, SEG_RUNS, SEG_STREAM0, SEG_STREAMS, SEG_SEQ_LO, SEG_SEQ_HI, \
    SEG_WALL_LO, SEG_WALL_HI, SEG_VALUES = range(12)
SEG_COLUMNS = 12  # SEG_VALUES: the field values (rows x fields, absent ones not counted) a segment holds
RUN_ENTITY, RUN_ROWS = range(2)
RUN_COLUMNS = 2
ST_COLUMN, ST_OFFSET, ST_SIZE, ST_CRC, ST_RAW, ST_ENCODING, ST_SCALE, ST_WIDTH, ST_KINDS, ST_RUNKINDS = range(10)
STREAM_COLUMNS = 10  # ST_RUNKINDS: where the stream's per-run kinds are in the run_kinds index, -1 when uniform
NO_WALL = -(2**63)  # wall range of a segment whose rows have no wall clock (ticks, annotations)


@dataclass
class Table:
    kind: str
    source: int  # -1 for ticks and annotations
    meta: tuple[str, ...]
    fields: list[str] = field(default_factory=list)
    field_index: dict[str, int] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Meta columns then fields: a stream's column number indexes this list."""
        return [*self.meta, *self.fields]

    def column_of(self, name: str) -> int:
        """The column number of field ``name``."""
        return len(self.meta) + self.field_index[name]


@dataclass
class Entity:
    table: int
    name: str
    fields: list[int] | None = None  # field numbers in first-appearance order; None: all of the table's, in order


def _meta_of(kind: str) -> tuple[str, ...]:
    return RECORD_META if kind == RECORDS else ()


def _fields_of(kind: str) -> tuple[str, ...]:
    return {TIME: TIME_COLUMNS, TICKS: TICK_COLUMNS, ANNOTATIONS: ANNOTATION_COLUMNS}.get(kind, ())


class Catalog:
    """Sources, tables (with their columns) and entities, each numbered in order of creation."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.tables: list[Table] = []
        self.entities: list[Entity] = []
        self.source_index: dict[str, int] = {}
        self.time_tables: dict[int, int] = {}   # source -> its time table
        self.time_entities: dict[int, int] = {}  # source -> the entity of its time table
        self.entity_index: dict[tuple[int, str], int] = {}  # (table, name) -> entity
        self.ticks_table: int | None = None
        self.annotations_table: int | None = None
        self.definitions: list[list] = []  # additions not yet journalled

    # -- growing (writer side; every change is also queued in ``definitions``) ---------------------
    def add_source(self, name: str) -> int:
        sid = len(self.sources)
        self._apply(["source", name])
        return sid

    def add_table(self, kind: str, source: int) -> int:
        tid = len(self.tables)
        self._apply(["table", kind, source])
        return tid

    def add_field(self, table: int, name: str) -> int:
        self._apply(["column", table, name])
        return len(self.tables[table].fields) - 1

    def add_entity(self, table: int, name: str) -> int:
        eid = len(self.entities)
        self._apply(["entity", table, name])
        return eid

    def set_entity_fields(self, entity: int, fields: list[int]) -> None:
        self._apply(["fields", entity, list(fields)])

    def _apply(self, item: list) -> None:
        self.apply(item)
        self.definitions.append(item)

    def take_definitions(self) -> list[list]:
        out, self.definitions = self.definitions, []
        return out

    # -- replaying additions (journal readers) ----------------------------------------------------
    def apply(self, item) -> None:
        """One addition, as journalled; anything malformed is TraceCorruptError."""
        try:
            self._apply_item(item)
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise TraceCorruptError(f"a catalog entry {str(item)[:120]} is not valid ({exc})") from None

    def _apply_item(self, item) -> None:
        what = item[0]
        if what == "source":
            name = _str(item[1])
            if name in self.source_index:
                raise ValueError(f"source {name!r} defined twice")
            sid = len(self.sources)
            self.sources.append(name)
            self.source_index[name] = sid
        elif what == "table":
            kind, source = _str(item[1]), _int(item[2])
            if kind not in TABLE_KINDS or not (-1 <= source < len(self.sources)) or (kind in (RECORDS, TIME)) != (source >= 0):
                raise ValueError(f"table kind {kind!r} of source {source}")
            tid = len(self.tables)
            table = Table(kind, source, _meta_of(kind))
            for name in _fields_of(kind):
                table.field_index[name] = len(table.fields)
                table.fields.append(name)
            self.tables.append(table)
            if kind == TIME:
                if source in self.time_tables:
                    raise ValueError(f"a second time table for source {source}")
                self.time_tables[source] = tid
            elif kind == TICKS:
                self.ticks_table = tid
            elif kind == ANNOTATIONS:
                self.annotations_table = tid
        elif what == "column":
            table, name = self.tables[_int(item[1])], _str(item[2])
            if name in table.field_index or table.kind != RECORDS:
                raise ValueError(f"field {name!r} cannot be added to that table")
            table.field_index[name] = len(table.fields)
            table.fields.append(name)
        elif what == "entity":
            tid, name = _int(item[1]), _str(item[2])
            table = self.tables[tid]
            key = (tid, name)
            if key in self.entity_index:
                raise ValueError(f"entity {name!r} defined twice")
            eid = len(self.entities)
            self.entities.append(Entity(tid, name))
            self.entity_index[key] = eid
            if table.kind == TIME:
                self.time_entities[table.source] = eid
        elif what == "fields":
            entity = self.entities[_int(item[1])]
            fields = list(item[2])
            n = len(self.tables[entity.table].fields)
            if fields and (set(map(type, fields)) != {int} or min(fields) < 0 or max(fields) >= n
                           or len(set(fields)) != len(fields)):
                raise ValueError("field numbers out of range")
            entity.fields = fields
        else:
            raise ValueError(f"unknown entry {what!r}")

    # -- reading ---------------------------------------------------------------------------------
    def entity_fields(self, eid: int) -> list[str]:
        """The entity's field names in first-appearance order."""
        entity = self.entities[eid]
        table = self.tables[entity.table]
        if entity.fields is None:
            return list(table.fields)
        return [table.fields[f] for f in entity.fields]

    def record_entities(self) -> list[int]:
        return [eid for eid, e in enumerate(self.entities) if self.tables[e.table].kind == RECORDS]

    # -- the trace file's JSON -------------------------------------------------------------------
    def to_json(self) -> dict:
        tables = [{"kind": t.kind, "source": t.source, "fields": t.fields if t.kind == RECORDS else None}
                  for t in self.tables]
        entities = [[e.table, e.name] if e.fields is None else [e.table, e.name, e.fields] for e in self.entities]
        return {"sources": list(self.sources), "tables": tables, "entities": entities}

    @classmethod
    def from_json(cls, data) -> "Catalog":
        cat = cls()
        try:
            for name in data["sources"]:
                cat.apply(["source", name])
            for t in data["tables"]:
                cat.apply(["table", t["kind"], t["source"]])
                if t["kind"] == RECORDS:
                    for name in t["fields"]:
                        cat.apply(["column", len(cat.tables) - 1, name])
            for e in data["entities"]:
                cat.apply(["entity", e[0], e[1]])
                if len(e) > 2:
                    cat.apply(["fields", len(cat.entities) - 1, e[2]])
        except (TypeError, KeyError, IndexError) as exc:
            raise TraceCorruptError(f"the catalog is not valid ({type(exc).__name__}: {exc})") from None
        return cat


def _int(value) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


def _str(value) -> str:
    if type(value) is not str:
        raise TypeError(f"{value!r} is not a string")
    return value


@dataclass
class Index:
    """Where every segment, run and stream is (int64 arrays, columns as named above)."""

    segments: np.ndarray
    runs: np.ndarray
    streams: np.ndarray
    run_kinds: np.ndarray  # 1-D: each run's kinds (bit 1 << kind) of the streams whose rows' kinds differ

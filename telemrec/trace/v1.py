"""On-disk format version 1: the HDF5 layout (docs/format.md is the spec).

    /                       attrs: format="telemrec-trace", format_version=1, telemrec_version
    /manifest               scalar UTF-8 string: the manifest JSON
    /records/<source>/<entity>/
        _seq _mono_ns _wall_ns _source_version _error   columns (one row per record)
        fields/<field>/                                 columns
        attribute wall_range: int64[n_chunks, 2], min and max wall_ns per chunk
    /ticks/<reader label>/  columns: tick, scheduled_mono_ns, start_mono_ns, end_mono_ns,
                            start_wall_ns, status, records, cpu_ns
    /annotations/           columns: start_wall_ns, end_wall_ns, start_mono_ns, end_mono_ns, label

Group names are the original names percent-encoded (``urllib.parse.quote(name, safe="")``,
with a leading "." also encoded); the original is the group's ``name`` attribute.
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping
from urllib.parse import quote

import h5py
import numpy as np

from telemrec._version import __version__
from telemrec.record import RawRecord
from telemrec.trace._columns import Column, ColumnBuilder, ColumnReader
from telemrec.trace._version import CURRENT_FORMAT_VERSION, FORMAT_NAME

FORMAT_VERSION = 1
DEFAULT_CHUNK_ROWS = 8192
META_COLUMNS = ("_seq", "_mono_ns", "_wall_ns", "_source_version", "_error")
TICK_COLUMNS = ("tick", "scheduled_mono_ns", "start_mono_ns", "end_mono_ns", "start_wall_ns",
                "status", "records", "cpu_ns")
TICK_OK, TICK_LATE, TICK_MISSED = 0, 1, 2
ANNOTATION_COLUMNS = ("start_wall_ns", "end_wall_ns", "start_mono_ns", "end_mono_ns", "label")


def h5name(name: str) -> str:
    q = quote(name, safe="")
    return "%2E" + q[1:] if q.startswith(".") else q


def default_filters() -> dict:
    # shuffle + deflate: readable by every HDF5 build, no plugin needed (docs/format.md, "Filters")
    return {"shuffle": True, "compression": "gzip", "compression_opts": 6}


class _EntityBuilder:
    __slots__ = ("group", "chunk_rows", "filters", "rows", "meta", "fields", "field_order", "wall_ranges",
                 "_wall_pending", "fields_group")

    def __init__(self, group: h5py.Group, chunk_rows: int, filters: dict):
        self.group = group
        self.chunk_rows = chunk_rows
        self.filters = filters
        self.rows = 0
        self.meta = {name: ColumnBuilder(group.create_group(name), chunk_rows, filters) for name in META_COLUMNS}
        self.fields: dict[str, ColumnBuilder] = {}
        self.field_order: list[str] = []
        self.fields_group = group.create_group("fields")
        self.wall_ranges: list[tuple[int, int]] = []
        self._wall_pending: list[int] = []

    def append(self, seq: int, rec: RawRecord) -> None:
        meta = self.meta
        meta["_seq"].append(seq)
        meta["_mono_ns"].append(rec.mono_ns)
        meta["_wall_ns"].append(rec.wall_ns)
        meta["_source_version"].append(rec.source_version)
        meta["_error"].append(rec.error)
        self._wall_pending.append(rec.wall_ns)
        fields = rec.fields
        seen = 0
        for name, col in self.fields.items():
            if name in fields:
                col.append(fields[name])
                seen += 1
            else:
                col.append_absent()
        if seen != len(fields):
            for name, value in fields.items():
                if name not in self.fields:
                    grp = self.fields_group.create_group(h5name(name))
                    grp.attrs["name"] = name
                    grp.attrs["order"] = len(self.field_order)
                    col = ColumnBuilder(grp, self.chunk_rows, self.filters, leading_absent=self.rows)
                    col.append(value)
                    self.fields[name] = col
                    self.field_order.append(name)
        self.rows += 1
        if len(self._wall_pending) == self.chunk_rows:
            self._close_wall_range()

    def _close_wall_range(self) -> None:
        if self._wall_pending:
            self.wall_ranges.append((min(self._wall_pending), max(self._wall_pending)))
            self._wall_pending = []

    def finish(self) -> None:
        self._close_wall_range()
        for col in (*self.meta.values(), *self.fields.values()):
            col.finish()
        self.group.attrs["rows"] = self.rows
        self.group.attrs["chunk_rows"] = self.chunk_rows
        self.group.attrs["wall_range"] = np.array(self.wall_ranges, np.int64).reshape(-1, 2)


class _TableBuilder:
    """A group of equally long columns (ticks, annotations)."""

    def __init__(self, group: h5py.Group, columns: Iterable[str], chunk_rows: int, filters: dict):
        self.group = group
        self.columns = {c: ColumnBuilder(group.create_group(c), chunk_rows, filters) for c in columns}
        self.rows = 0

    def append(self, row: Mapping[str, object]) -> None:
        for name, col in self.columns.items():
            col.append(row.get(name))
        self.rows += 1

    def finish(self) -> None:
        for col in self.columns.values():
            col.finish()
        self.group.attrs["rows"] = self.rows


class V1Writer:
    """Writes one complete v1 trace into an open, empty h5py.File (the caller owns the file)."""

    def __init__(self, h5: h5py.File, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, filters: dict | None = None):
        self.h5 = h5
        self.chunk_rows = chunk_rows
        self.filters = default_filters() if filters is None else filters
        self.records_group = h5.create_group("records")
        self.ticks_group = h5.create_group("ticks")
        self._entities: dict[tuple[str, str], _EntityBuilder] = {}
        self._ticks: dict[str, _TableBuilder] = {}
        self._annotations: _TableBuilder | None = None
        self.seq = 0
        self.values = 0

    def _entity(self, source: str, entity: str) -> _EntityBuilder:
        key = (source, entity)
        builder = self._entities.get(key)
        if builder is None:
            sname = h5name(source)
            if sname not in self.records_group:
                self.records_group.create_group(sname).attrs["name"] = source
            group = self.records_group[sname].create_group(h5name(entity))
            group.attrs["name"] = entity
            builder = self._entities[key] = _EntityBuilder(group, self.chunk_rows, self.filters)
        return builder

    def add_record(self, rec: RawRecord) -> None:
        self._entity(rec.source, rec.entity).append(self.seq, rec)
        self.seq += 1
        self.values += len(rec.fields)

    def add_tick(self, label: str, row: Mapping[str, object]) -> None:
        table = self._ticks.get(label)
        if table is None:
            group = self.ticks_group.create_group(h5name(label))
            group.attrs["name"] = label
            table = self._ticks[label] = _TableBuilder(group, TICK_COLUMNS, self.chunk_rows, self.filters)
        table.append(row)

    def add_annotation(self, row: Mapping[str, object]) -> None:
        if self._annotations is None:
            self._annotations = _TableBuilder(self.h5.create_group("annotations"), ANNOTATION_COLUMNS,
                                              self.chunk_rows, self.filters)
        self._annotations.append(row)

    def finish(self, manifest: Mapping) -> None:
        for builder in self._entities.values():
            builder.finish()
        for table in self._ticks.values():
            table.finish()
        if self._annotations is not None:
            self._annotations.finish()
        self.h5.attrs["format"] = FORMAT_NAME
        self.h5.attrs["format_version"] = CURRENT_FORMAT_VERSION
        self.h5.attrs["telemrec_version"] = __version__
        self.h5.create_dataset("manifest", data=json.dumps(manifest, sort_keys=True, allow_nan=False),
                               dtype=h5py.string_dtype("utf-8"))


# -- reading ----------------------------------------------------------------------------------

class EntityReader:
    """One (source, entity) series of a v1 trace."""

    def __init__(self, source: str, group: h5py.Group):
        self.source = source
        self.group = group
        self.name = str(group.attrs["name"])
        self.rows = int(group.attrs["rows"])
        self.chunk_rows = int(group.attrs["chunk_rows"])
        fields = group["fields"]
        named = [(int(g.attrs["order"]), str(g.attrs["name"]), key) for key, g in fields.items()]
        named.sort()
        self._field_keys = {name: key for _, name, key in named}
        self.fields = [name for _, name, _ in named]
        self._cols: dict[str, ColumnReader] = {}

    def wall_ranges(self) -> np.ndarray:
        return np.asarray(self.group.attrs["wall_range"], np.int64).reshape(-1, 2)

    def column(self, name: str) -> ColumnReader:
        col = self._cols.get(name)
        if col is None:
            if name in META_COLUMNS:
                col = ColumnReader(self.group[name])
            else:
                col = ColumnReader(self.group["fields"][self._field_keys[name]])
            self._cols[name] = col
        return col

    def read(self, name: str, lo: int = 0, hi: int | None = None) -> Column:
        return self.column(name).read(lo, hi)

    def ints(self, name: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        return self.read(name, lo, hi).ints

    def row_range(self, start_wall_ns: int | None, end_wall_ns: int | None) -> tuple[int, int]:
        """Rows [lo, hi) whose wall_ns lies in [start, end); reads only the chunks that can hold them."""
        if start_wall_ns is None and end_wall_ns is None:
            return 0, self.rows
        ranges = self.wall_ranges()
        lo_ns = -(2**63) if start_wall_ns is None else start_wall_ns
        hi_ns = 2**63 - 1 if end_wall_ns is None else end_wall_ns
        hit = np.nonzero((ranges[:, 1] >= lo_ns) & (ranges[:, 0] < hi_ns))[0]
        if not len(hit):
            return 0, 0
        a = int(hit[0]) * self.chunk_rows
        b = min((int(hit[-1]) + 1) * self.chunk_rows, self.rows)
        wall = self.ints("_wall_ns", a, b)
        inside = np.nonzero((wall >= lo_ns) & (wall < hi_ns))[0]
        if not len(inside):
            return 0, 0
        return a + int(inside[0]), a + int(inside[-1]) + 1


class V1Reader:
    """Read access to a v1 trace in an open h5py.File."""

    def __init__(self, h5: h5py.File):
        self.h5 = h5
        self.manifest = json.loads(h5["manifest"].asstr()[()])
        self._entities: dict[tuple[str, str], EntityReader] | None = None

    def entities(self) -> dict[tuple[str, str], EntityReader]:
        if self._entities is None:
            found = {}
            for sgroup in self.h5["records"].values():
                source = str(sgroup.attrs["name"])
                for egroup in sgroup.values():
                    reader = EntityReader(source, egroup)
                    found[(source, reader.name)] = reader
            self._entities = found
        return self._entities

    def tick_labels(self) -> list[str]:
        return [str(g.attrs["name"]) for g in self.h5["ticks"].values()]

    def ticks(self, label: str) -> dict[str, np.ndarray]:
        group = self.h5["ticks"][h5name(label)]
        return {name: ColumnReader(group[name]).read().ints for name in TICK_COLUMNS}

    def annotations(self) -> list[dict]:
        if "annotations" not in self.h5:
            return []
        group = self.h5["annotations"]
        cols = {name: ColumnReader(group[name]).read().to_list() for name in ANNOTATION_COLUMNS}
        return [dict(zip(cols, values)) for values in zip(*cols.values())]

"""On-disk format version 1: the HDF5 layout (docs/format.md is the spec). Format 2
(``telemrec.trace.v2``) keeps this layout and changes only how delta chunks are stored.

    /                       attrs: format="telemrec-trace", format_version=1, telemrec_version
    /manifest               scalar UTF-8 string: the manifest JSON
    /records/<source>/
        $time/mono_ns, $time/wall_ns      columns: the distinct timestamps of this source's records
                                          ("$" is never produced by the name encoding: no entity clashes)
        <entity>/
            _seq _tidx _source_version _error   columns (one row per record); _tidx indexes $time
            fields/<field>/                     columns
            _directory                          scalar UTF-8 JSON: every column's metadata in one read
            _where                              optional chunk index (``_chunkindex``; V2Writer writes it)
            attribute wall_range: int64[n_chunks, 2], min and max wall_ns per chunk
    /ticks/<reader label>/  columns: tick, scheduled_mono_ns, start_mono_ns, end_mono_ns,
                            start_wall_ns, status, records, cpu_ns
    /annotations/           columns: start_wall_ns, end_wall_ns, start_mono_ns, end_mono_ns, label

Group names are the original names percent-encoded (``urllib.parse.quote(name, safe="")``,
with a leading "." also encoded); the original is the group's ``name`` attribute.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Mapping
from urllib.parse import quote

import h5py
import numpy as np

from telemrec.trace._damage import typed_reads
from telemrec._version import __version__
from telemrec.record import RawRecord
from telemrec.errors import TraceCorruptError
from telemrec.trace import _chunkindex, _strings
from telemrec.trace._codec import INT as INT_KIND
from telemrec.trace._columns import Column, ColumnBuilder, ColumnReader, EntityReads, TimeGather
from telemrec.trace._version import FORMAT_NAME

FORMAT_VERSION = 1
DEFAULT_CHUNK_ROWS = 8192
STORED_META = ("_seq", "_tidx", "_source_version", "_error")
META_COLUMNS = ("_seq", "_mono_ns", "_wall_ns", "_source_version", "_error")
"""What ``EntityReader.read`` answers besides fields; _mono_ns/_wall_ns resolve through $time."""
TIME_GROUP = "$time"
WHERE = "_where"  # an entity's (or $time's) chunk index (telemrec.trace._chunkindex)
WHERE_SIZE = "_where_size"  # root attribute: the file size the chunk index was written for
TICK_COLUMNS = ("tick", "scheduled_mono_ns", "start_mono_ns", "end_mono_ns", "start_wall_ns",
                "status", "records", "cpu_ns")
TICK_OK, TICK_LATE, TICK_MISSED = 0, 1, 2
ANNOTATION_COLUMNS = ("start_wall_ns", "end_wall_ns", "start_mono_ns", "end_mono_ns", "label")


def h5name(name: str) -> str:
    q = quote(name, safe="", errors="surrogatepass")
    return "%2E" + q[1:] if q.startswith(".") else q


def default_filters() -> dict:
    # shuffle + deflate: readable by every HDF5 build, no plugin needed (docs/format.md, "Filters")
    return {"shuffle": True, "compression": "gzip", "compression_opts": 6}


class _SourceTime:
    """The distinct (mono_ns, wall_ns) pairs of one source's records, in first-use order.

    Records of one tick share a timestamp pair; storing it once per source instead of once
    per entity removes most of a trace's timestamp bytes.
    """

    __slots__ = ("mono", "wall", "index", "rows")

    def __init__(self, group: h5py.Group, chunk_rows: int, filters: dict, anchored: bool):
        self.mono = ColumnBuilder(group.create_group("mono_ns"), chunk_rows, filters, anchored=anchored)
        self.wall = ColumnBuilder(group.create_group("wall_ns"), chunk_rows, filters, anchored=anchored)
        self.index: dict[tuple[int, int], int] = {}
        self.rows = 0

    def lookup(self, mono: int, wall: int) -> int:
        key = (mono, wall)
        idx = self.index.get(key)
        if idx is None:
            if len(self.index) > 4096:  # only recent ticks are shared; keep the map small
                self.index.clear()
            idx = self.index[key] = self.rows
            self.mono.append(mono)
            self.wall.append(wall)
            self.rows += 1
        return idx

    def finish(self) -> None:
        self.mono.finish()
        self.wall.finish()


class _EntityBuilder:
    __slots__ = ("group", "chunk_rows", "filters", "anchored", "rows", "meta", "fields", "field_order",
                 "wall_ranges", "_wall_pending", "fields_group", "time")

    def __init__(self, group: h5py.Group, chunk_rows: int, filters: dict, time: _SourceTime, anchored: bool):
        self.group = group
        self.chunk_rows = chunk_rows
        self.filters = filters
        self.anchored = anchored
        self.time = time
        self.rows = 0
        self.meta = {name: ColumnBuilder(group.create_group(name), chunk_rows, filters, anchored=anchored)
                     for name in STORED_META}
        self.fields: dict[str, ColumnBuilder] = {}
        self.field_order: list[str] = []
        self.fields_group = group.create_group("fields")
        self.wall_ranges: list[tuple[int, int]] = []
        self._wall_pending: list[int] = []

    def append(self, seq: int, rec: RawRecord) -> None:
        meta = self.meta
        meta["_seq"].append(seq)
        meta["_tidx"].append(self.time.lookup(rec.mono_ns, rec.wall_ns))
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
                    grp.attrs["name"] = _strings.store(name)
                    grp.attrs["order"] = len(self.field_order)
                    col = ColumnBuilder(grp, self.chunk_rows, self.filters, leading_absent=self.rows,
                                        anchored=self.anchored)
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
        directory = {"meta": {name: col.finish() for name, col in self.meta.items()},
                     "fields": [dict(col.finish(), name=name, key=h5name(name)) for name, col in self.fields.items()]}
        self.group.attrs["rows"] = self.rows
        self.group.attrs["chunk_rows"] = self.chunk_rows
        self.group.attrs["wall_range"] = np.array(self.wall_ranges, np.int64).reshape(-1, 2)
        self.group.create_dataset("_directory", data=json.dumps(directory, separators=(",", ":")),
                                  dtype=h5py.string_dtype("utf-8"))


class _TableBuilder:
    """A group of equally long columns (ticks, annotations)."""

    def __init__(self, group: h5py.Group, columns: Iterable[str], chunk_rows: int, filters: dict, anchored: bool):
        self.group = group
        self.columns = {c: ColumnBuilder(group.create_group(c), chunk_rows, filters, anchored=anchored)
                        for c in columns}
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
    """Writes one complete trace of this layout into an open, empty h5py.File (the caller owns the
    file). telemrec writes only the latest version (``v2.V2Writer``); this class is its base and
    writes format 1 itself only for tests of reading format 1."""

    FORMAT_VERSION = FORMAT_VERSION
    ANCHORED = False
    INDEXED = False  # write the chunk index (_where)? V2Writer does; format 1 files never have one

    def __init__(self, h5: h5py.File, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, filters: dict | None = None):
        self.h5 = h5
        self.chunk_rows = chunk_rows
        self.filters = default_filters() if filters is None else filters
        self.records_group = h5.create_group("records")
        self.ticks_group = h5.create_group("ticks")
        self._entities: dict[tuple[str, str], _EntityBuilder] = {}
        self._times: dict[str, _SourceTime] = {}
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
                sgroup = self.records_group.create_group(sname)
                sgroup.attrs["name"] = _strings.store(source)
                self._times[source] = _SourceTime(sgroup.create_group(TIME_GROUP), self.chunk_rows, self.filters,
                                                  self.ANCHORED)
            group = self.records_group[sname].create_group(h5name(entity))
            group.attrs["name"] = _strings.store(entity)
            builder = self._entities[key] = _EntityBuilder(group, self.chunk_rows, self.filters, self._times[source],
                                                           self.ANCHORED)
        return builder

    def add_record(self, rec: RawRecord) -> None:
        self._entity(rec.source, rec.entity).append(self.seq, rec)
        self.seq += 1
        self.values += len(rec.fields)

    def add_tick(self, label: str, row: Mapping[str, object]) -> None:
        table = self._ticks.get(label)
        if table is None:
            group = self.ticks_group.create_group(h5name(label))
            group.attrs["name"] = _strings.store(label)
            table = self._ticks[label] = _TableBuilder(group, TICK_COLUMNS, self.chunk_rows, self.filters,
                                                       self.ANCHORED)
        table.append(row)

    def add_annotation(self, row: Mapping[str, object]) -> None:
        if self._annotations is None:
            self._annotations = _TableBuilder(self.h5.create_group("annotations"), ANNOTATION_COLUMNS,
                                              self.chunk_rows, self.filters, self.ANCHORED)
        self._annotations.append(row)

    def finish(self, manifest: Mapping) -> None:
        for builder in self._entities.values():
            builder.finish()
        for time_table in self._times.values():
            time_table.finish()
        for table in self._ticks.values():
            table.finish()
        if self._annotations is not None:
            self._annotations.finish()
        self.h5.attrs["format"] = FORMAT_NAME
        self.h5.attrs["format_version"] = self.FORMAT_VERSION
        self.h5.attrs["telemrec_version"] = __version__
        # the manifest names the version of the file it is in (a journal may come from an older telemrec)
        manifest = dict(manifest, format=FORMAT_NAME, format_version=self.FORMAT_VERSION)
        self.h5.create_dataset("manifest", data=json.dumps(_finite(manifest), sort_keys=True, allow_nan=False),
                               dtype=h5py.string_dtype("utf-8"))
        if self.INDEXED and self.h5.driver == "sec2":  # an in-memory view (a live snapshot) has no offsets
            self._write_chunk_index()

    def _write_chunk_index(self) -> None:
        """Each entity's (and each ``$time``'s) ``_where``: where every chunk of its columns is
        (``_chunkindex``), so readers need not ask HDF5 column by column."""
        self.h5.flush()  # every chunk is in its final place: HDF5 never moves a chunk it does not rewrite
        fd = os.open(self.h5.filename, os.O_RDONLY)
        try:
            for builder in self._entities.values():
                _write_index(builder.group, list(builder.fields.values()) + list(builder.meta.values()), fd)
            for time_table in self._times.values():
                _write_index(time_table.mono.group.parent, [time_table.mono, time_table.wall], fd)
        finally:
            os.close(fd)
        # the file's size as it is closed: an edit in place that moves a chunk grows the file, and
        # readers then ignore the index (rewriting a same-size attribute does not change the size)
        self.h5.attrs[WHERE_SIZE] = np.int64(0)
        for _ in range(3):
            self.h5.flush()
            size = self.h5.id.get_filesize()
            self.h5.attrs[WHERE_SIZE] = np.int64(size)
            self.h5.flush()
            if self.h5.id.get_filesize() == size:
                break


def _write_index(group: h5py.Group, columns: list[ColumnBuilder], fd: int) -> None:
    parts = [np.zeros((0, _chunkindex.WHERE_COLUMNS), np.int64)]
    for col in columns:
        widths = np.array(col.chunk_desc, np.uint8).reshape(-1, 3)[:, 2]
        where = _chunkindex.locate(lambda name, g=col.group: h5py.h5d.open(g.id, name.encode()), widths,
                                   col.chunk_rows)
        _chunkindex.add_checksums(where, fd)
        parts.append(where)
    group.create_dataset(WHERE, data=np.concatenate(parts))


def _finite(value):
    """The manifest is strict JSON: a non-finite number (from a bad option) becomes null, so a
    journal can always be folded."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# -- reading ----------------------------------------------------------------------------------

@typed_reads
class SourceTimeReader(TimeGather):
    """A source's timestamp table, read slice by slice and cached per chunk range."""

    def __init__(self, group: h5py.Group, use_index: bool = False):
        self.group = group
        self.mono = ColumnReader(group["mono_ns"])
        self.wall = ColumnReader(group["wall_ns"])
        parts = _read_index(group, [len(self.mono.descriptors), len(self.wall.descriptors)]) if use_index else None
        if parts is not None:
            self.mono.where, self.wall.where = parts

    def _read_span(self, lo: int, hi: int) -> tuple[int, np.ndarray, np.ndarray]:
        cr = self.mono.chunk_rows  # whole chunks: each is decoded once whichever rows are asked for
        a, b = lo // cr * cr, min(-(-hi // cr) * cr, self.mono.rows)
        return a, self.mono.read(a, b).ints, self.wall.read(a, b).ints


@typed_reads
class EntityReader(EntityReads):
    """One (source, entity) series of a trace (format 1 or 2: the same layout)."""

    META_NAMES = frozenset(STORED_META)

    def __init__(self, source: str, group: h5py.Group, time: SourceTimeReader, use_index: bool = False):
        self.source = source
        self.group = group
        self.time = time
        self.use_index = use_index
        self.name = _strings.load(group.attrs["name"])
        self._directory: dict | None = None  # read on first use: opening a trace touches only names
        self._cols: dict[tuple[bool, str], ColumnReader] = {}

    def _dir(self) -> dict:
        if self._directory is None:
            directory = json.loads(self.group["_directory"].asstr()[()])
            seq = directory["meta"].get("_seq")  # every column has the entity's rows: no attribute reads
            if seq is not None and "rows" in seq and "chunk_rows" in seq:
                directory["rows"], directory["chunk_rows"] = int(seq["rows"]), int(seq["chunk_rows"])
            else:
                attrs = self.group.attrs
                directory["rows"], directory["chunk_rows"] = int(attrs["rows"]), int(attrs["chunk_rows"])
            directory["field_meta"] = {f["name"]: f for f in directory["fields"]}
            directory["names"] = [f["name"] for f in directory["fields"]]
            if self.use_index:
                metas = directory["fields"] + list(directory["meta"].values())
                parts = _read_index(self.group, [len(m["chunks"]) for m in metas])
                for meta, where in zip(metas, parts or ()):  # each column's rows of the chunk index
                    meta["where"] = where
            self._directory = directory
        return self._directory

    @property
    def rows(self) -> int:
        return self._dir()["rows"]

    @property
    def chunk_rows(self) -> int:
        return self._dir()["chunk_rows"]

    @property
    def fields(self) -> list[str]:
        return self._dir()["names"]

    @property
    def _meta(self) -> dict:
        return self._dir()["meta"]

    @property
    def _field_meta(self) -> dict:
        return self._dir()["field_meta"]

    @property
    def has_index(self) -> bool:
        """Whether the entity group holds a chunk index (``_where``), fitting or not."""
        return WHERE in self.group

    def wall_ranges(self) -> np.ndarray:
        return np.asarray(self.group.attrs["wall_range"], np.int64).reshape(-1, 2)

    def field_column(self, name: str) -> ColumnReader:
        col = self._cols.get((False, name))
        if col is None:
            meta = self._field_meta[name]
            # opened lazily by relative path: a wide load never opens the group itself
            col = self._cols[(False, name)] = ColumnReader((self.group, f"fields/{meta['key']}"), meta)
        return col

    def meta_column(self, name: str) -> ColumnReader:
        col = self._cols.get((True, name))
        if col is None:
            col = self._cols[(True, name)] = ColumnReader(self.group[name], self._meta[name])
        return col

    def timestamps(self, lo: int = 0, hi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mono_ns, wall_ns) of rows [lo, hi)."""
        return self.time.gather(self.meta_column("_tidx").read(lo, hi).ints)

    def block_ranges(self, lo: int, hi: int, rows: int | None = None):
        """[a, b) ranges covering rows [lo, hi), cut at chunk boundaries, about ``rows`` rows each
        (at least one chunk): the unit streaming readers decode."""
        step = self.chunk_rows * max(1, (rows or self.chunk_rows) // self.chunk_rows)
        a = lo
        while a < hi:
            b = min((a // step + 1) * step, hi)
            yield a, b
            a = b

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
        _, wall = self.timestamps(a, b)
        inside = np.nonzero((wall >= lo_ns) & (wall < hi_ns))[0]
        if not len(inside):
            return 0, 0
        return a + int(inside[0]), a + int(inside[-1]) + 1


def _read_index(group: h5py.Group, counts: list[int]) -> list[np.ndarray] | None:
    """The group's chunk index (``_where``) split per column; None when it is missing (files
    written before it existed, in-memory snapshots) or malformed: readers then locate the
    chunks through HDF5."""
    try:
        dset = group.get(WHERE)
        if not isinstance(dset, h5py.Dataset) or dset.dtype.kind not in "iu" or dset.ndim != 2:
            return None
        index = dset[()] if dset.dtype == np.int64 else dset.astype(np.int64)[()]
    except (KeyError, OSError, TypeError, ValueError):
        return None
    return _chunkindex.split(index, counts)


def index_usable(h5: h5py.File) -> bool:
    """Whether the file still has the size its chunk index was written for (``WHERE_SIZE``)."""
    try:
        return int(h5.attrs[WHERE_SIZE]) == h5.id.get_filesize()
    except (KeyError, TypeError, ValueError, OSError):
        return False


def _named(key: str, group: h5py.Group, what: str, name: str | None = None) -> str:
    """The name a group stores, which must be the one its link was made from: formats 1 and 2 keep
    names in HDF5's unchecksummed global heap, so the two copies are what tells a flipped letter."""
    name = _strings.load(group.attrs["name"]) if name is None else name
    if h5name(name) != key:
        raise TraceCorruptError(f"{group.file.filename}: the {what} named {name!r} is stored under {key!r}: "
                                "one of the two copies of its name is damaged",
                                "Restore the trace from a copy.", path=group.file.filename)
    return name


@typed_reads
class V1Reader:
    """Read access to a trace of this layout (format 1; ``v2.V2Reader`` for 2) in an open h5py.File."""

    def __init__(self, h5: h5py.File):
        self.h5 = h5
        self.manifest = json.loads(h5["manifest"].asstr()[()])
        self.use_index = index_usable(h5)
        self._entities: dict[tuple[str, str], EntityReader] | None = None

    def entities(self) -> dict[tuple[str, str], EntityReader]:
        if self._entities is None:
            found = {}
            for skey, sgroup in self.h5["records"].items():
                source = _named(skey, sgroup, "source")
                time = SourceTimeReader(sgroup[TIME_GROUP], self.use_index)
                for key, egroup in sgroup.items():
                    if key != TIME_GROUP:
                        reader = EntityReader(source, egroup, time, self.use_index)
                        _named(key, egroup, f"entity of {source!r}", reader.name)
                        found[(source, reader.name)] = reader
            self._entities = found
        return self._entities

    def tick_labels(self) -> list[str]:
        return [_named(key, g, "tick label") for key, g in self.h5["ticks"].items()]

    def tick_columns(self, label: str, lo: int = 0, hi: int | None = None, columns=None) -> dict[str, Column]:
        group = self.h5["ticks"][h5name(label)]
        names = TICK_COLUMNS if columns is None else columns
        return {name: ColumnReader(group[name]).read(lo, hi) for name in names}

    def ticks(self, label: str, lo: int = 0, hi: int | None = None, columns=None) -> dict[str, np.ndarray]:
        return {name: col.ints for name, col in self.tick_columns(label, lo, hi, columns).items()}

    def annotations(self) -> list[dict]:
        if "annotations" not in self.h5:
            return []
        group = self.h5["annotations"]
        cols = {name: ColumnReader(group[name]).read().to_list() for name in ANNOTATION_COLUMNS}
        return [dict(zip(cols, values)) for values in zip(*cols.values())]

"""On-disk format version 3: tables of entities, encoded in segments (docs/format.md).

    /                attrs: format="telemrec-trace", format_version=3, telemrec_version, spec,
                            contents, manifest_crc32, catalog_crc32
    /manifest        UTF-8 JSON: the manifest
    /catalog         UTF-8 JSON: sources, tables (kind, source, fields), entities (table, name,
                     field order), where the index arrays are, the size of /streams
    /streams         uint8, contiguous: every column stream, then the index arrays

A source's entities that share most of their fields form one table; a table's rows
are stored in segments, entity after entity (a *run* each), one zlib stream per
column (``_streams``). The index says, per segment, its table, rows, runs and
streams, so metadata grows with tables and segments, not with entities x fields.

``V3Reader`` reads a trace file, or a live recorder's journal in place (the same
segments; the provisional ones not merged): it presents each entity with the
interface of format 1's ``EntityReader``, so iteration, loading and replay work
on every version alike.
"""

from __future__ import annotations

import json
import os
import zlib
from collections import OrderedDict
from typing import Callable

import h5py
import numpy as np

from telemrec.trace._damage import typed_reads
from telemrec.errors import TraceCorruptError
from telemrec.trace import _catalog as C
from telemrec.trace._codec import ABSENT, INT, STR
from telemrec.trace._columns import Column
from telemrec.trace._segments import read_stream
from telemrec.trace._tables import absent

FORMAT_VERSION = 3
META_COLUMNS = ("_seq", "_mono_ns", "_wall_ns", "_source_version", "_error")
_CACHE_BYTES = 64 << 20      # decoded streams kept at least ...
_CACHE_MAX_BYTES = 1 << 30   # ... and at most, whatever the segments' sizes


class _StreamCache:
    """Decoded streams, least recently used first out, bounded in bytes."""

    def __init__(self, limit: int = _CACHE_BYTES):
        self.limit = limit
        self.size = 0
        self.items: OrderedDict = OrderedDict()

    def get(self, key, make):
        hit = self.items.get(key)
        if hit is not None:
            self.items.move_to_end(key)
            return hit
        value = make()
        self.items[key] = value
        self.size += _cost(value)
        while self.size > self.limit and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.size -= _cost(old)
        return value


def _cost(col: Column) -> int:
    """Bytes a decoded stream holds (format 3's are packed: floats are a view of ints)."""
    size = col.kinds.nbytes + col.ints.nbytes + (0 if col.packed else col.floats.nbytes) + 64
    return size + (8 * len(col.strs) if col.strs is not None else 0)


@typed_reads
class V3Reader:
    """Read access to a format 3 trace (a file, or a live journal's segments)."""

    def __init__(self, catalog: C.Catalog, index: C.Index, read: Callable[[int, int], bytes], manifest: dict,
                 what: str, h5: h5py.File | None = None):
        self.catalog = catalog
        self.index = index
        self.read_bytes = read
        self.manifest = manifest
        self.what = what
        self.h5 = h5
        self.use_index = False
        self._cache = _StreamCache()
        self._entities: dict | None = None
        self._times: dict = {}
        self._layouts: dict = {}
        self._fd: int | None = None
        self.streams_size: int | None = None  # a file's /streams size (None: a journal)
        self.index_spans: list = []           # where a file's index arrays are in /streams
        self._check_index()
        self._layout_runs()
        self._cache.limit = min(max(_CACHE_BYTES, self._working_set() * 5 // 4), _CACHE_MAX_BYTES)

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, h5: h5py.File) -> "V3Reader":
        path = h5.filename
        attrs = h5.attrs
        manifest_text = _text(h5, "manifest", attrs.get("manifest_crc32"), path)
        catalog_text = _text(h5, "catalog", attrs.get("catalog_crc32"), path)
        try:
            manifest = json.loads(manifest_text)
            data = json.loads(catalog_text)
        except ValueError as exc:
            raise TraceCorruptError(f"{path}: the manifest or catalog is not JSON ({exc})", path=path) from None
        if not isinstance(manifest, dict) or not isinstance(data, dict):
            raise TraceCorruptError(f"{path}: the manifest or catalog is not a JSON object", path=path)
        catalog = C.Catalog.from_json(data)
        blob = h5.get("streams")
        if not isinstance(blob, h5py.Dataset) or blob.dtype != np.uint8 or blob.ndim != 1:
            raise TraceCorruptError(f"{path}: /streams is missing or not a byte array", path=path)
        if blob.shape[0] != data.get("streams_size"):
            raise TraceCorruptError(f"{path}: /streams holds {blob.shape[0]} bytes, the catalog says "
                                    f"{data.get('streams_size')}", path=path)
        read, fd = _blob_reader(h5, blob)
        try:
            index = _read_index(data.get("index"), read, path)
            streams = index.streams
            if len(streams) and int((streams[:, C.ST_OFFSET] + streams[:, C.ST_SIZE]).max()) > blob.shape[0]:
                raise TraceCorruptError(f"{path}: a stream lies beyond the end of /streams", path=path)
            reader = cls(catalog, index, read, manifest, path, h5)
            reader.streams_size = int(blob.shape[0])
            reader.index_spans = [tuple(int(v) for v in data["index"][name][:2]) for name in _INDEX_ARRAYS]
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        reader._fd = fd
        return reader

    @classmethod
    def from_journal(cls, state) -> "V3Reader":
        """A live (or crashed) recorder's journal, read where its streams are; segments held in
        memory (a converted version 1 journal) are read from memory."""
        segs = state.all_segments()
        seg_rows, run_rows, stream_rows, run_kinds = [], [], [], []
        kinds_at = 0
        memory: list[bytes] = []
        base = state.scan.size
        at = base
        for seg in segs:
            seg_rows.append([seg.table, seg.row_lo, seg.row_hi, len(run_rows), len(seg.entities), len(stream_rows),
                             len(seg.streams), seg.seq_lo, seg.seq_hi, seg.wall_lo, seg.wall_hi, seg.values])
            run_rows.extend(zip(seg.entities.tolist(), seg.counts.tolist()))
            rows = seg.streams.copy()
            for pos, masks in (seg.run_kinds or {}).items():
                rows[pos, C.ST_RUNKINDS] = kinds_at
                run_kinds.append(masks)
                kinds_at += len(masks)
            if seg.data is not None:
                for i, data in enumerate(seg.data):
                    rows[i, C.ST_OFFSET] = at
                    at += len(data)
                    memory.append(data)
            stream_rows.extend(rows.tolist())
        index = C.Index(np.array(seg_rows, np.int64).reshape(-1, C.SEG_COLUMNS),
                        np.array(run_rows, np.int64).reshape(-1, C.RUN_COLUMNS),
                        np.array(stream_rows, np.int64).reshape(-1, C.STREAM_COLUMNS),
                        np.concatenate(run_kinds) if run_kinds else np.zeros(0, np.int64))
        held = b"".join(memory)
        fd = os.open(state.path, os.O_RDONLY)

        def read(offset: int, size: int) -> bytes:
            if offset >= base:
                return held[offset - base:offset - base + size]
            return os.pread(fd, size, offset) if offset + size <= base else b""
        try:
            reader = cls(state.catalog, index, read, state.manifest, state.name)
        except BaseException:
            os.close(fd)
            raise
        reader._fd = fd
        return reader

    def close(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    def _check_index(self) -> None:
        seg, runs, streams = self.index.segments, self.index.runs, self.index.streams
        n_tables = len(self.catalog.tables)
        problem = None
        if len(seg) and ((seg[:, C.SEG_TABLE] < 0).any() or (seg[:, C.SEG_TABLE] >= n_tables).any()):
            problem = "a segment names a table that is not in the catalog"
        elif len(seg) and (seg[:, C.SEG_RUNS].sum() != len(runs) or seg[:, C.SEG_STREAMS].sum() != len(streams)
                           or (seg[:, [C.SEG_RUNS, C.SEG_STREAMS]] < 0).any()
                           or (seg[:, C.SEG_RUN0] != np.concatenate([[0], np.cumsum(seg[:-1, C.SEG_RUNS])])).any()
                           or (seg[:, C.SEG_STREAM0] != np.concatenate([[0], np.cumsum(seg[:-1, C.SEG_STREAMS])])).any()):
            problem = "the segments do not list their runs and streams in order"
        elif not len(seg) and (len(runs) or len(streams)):
            problem = "runs or streams without segments"
        elif len(runs) and ((runs[:, C.RUN_ENTITY] < 0).any() or (runs[:, C.RUN_ENTITY] >= len(self.catalog.entities)).any()
                            or (runs[:, C.RUN_ROWS] <= 0).any()):
            problem = "a run names an unknown entity or holds no rows"
        elif len(seg) and (np.add.reduceat(runs[:, C.RUN_ROWS], seg[:, C.SEG_RUN0]) if len(runs) else np.zeros(0)).tolist() \
                != (seg[:, C.SEG_ROW_HI] - seg[:, C.SEG_ROW_LO]).tolist() and (seg[:, C.SEG_RUNS] > 0).all():
            problem = "a segment's runs do not add up to its rows"
        if problem is None and len(runs):
            seg_of_run = np.repeat(np.arange(len(seg)), seg[:, C.SEG_RUNS])
            tables = np.array([e.table for e in self.catalog.entities], np.int64)
            ent = runs[:, C.RUN_ENTITY]
            same = seg_of_run[1:] == seg_of_run[:-1]
            if (tables[ent] != seg[seg_of_run, C.SEG_TABLE]).any():
                problem = "a run names an entity of another table"
            elif (ent[1:][same] <= ent[:-1][same]).any():
                problem = "a segment's runs are not in ascending entity order"  # swapped, they would trade rows
        if problem is None and len(streams):
            widths = np.array([len(t.columns) for t in self.catalog.tables], np.int64)
            seg_of_stream = np.repeat(np.arange(len(seg)), seg[:, C.SEG_STREAMS])
            col = streams[:, C.ST_COLUMN]
            if (col < 0).any() or (col >= widths[seg[seg_of_stream, C.SEG_TABLE]]).any() \
                    or (streams[:, C.ST_SIZE] <= 0).any() or (streams[:, C.ST_RAW] < 16).any() \
                    or (streams[:, C.ST_OFFSET] < 0).any():
                problem = "a stream's column or size is not valid"
        if problem is None and len(streams):
            at = streams[:, C.ST_RUNKINDS]
            seg_of_stream = np.repeat(np.arange(len(seg)), seg[:, C.SEG_STREAMS])
            n = seg[seg_of_stream, C.SEG_RUNS]
            kinds = self.index.run_kinds
            if ((at < -1) | ((at >= 0) & (at + n > len(kinds)))).any() or (len(kinds) and ((kinds <= 0) | (kinds >= 32)).any()):
                problem = "the per-run kinds index is not valid"
        if problem is None and len(streams) and not self._fields_fit_runs():
            problem = "a stream holds values of an entity that does not have its field"
        if problem:
            raise TraceCorruptError(f"{self.what}: {problem}", path=self.what)

    def _working_set(self) -> int:
        """Bytes of the largest segment of every table with all its columns decoded: what reading
        every entity at once (the record iterator, replay) keeps in use. A cache smaller than that
        decodes each stream again for every entity of its table."""
        seg = self.index.segments
        largest: dict[int, int] = {}
        for table, rows in zip(seg[:, C.SEG_TABLE].tolist(), (seg[:, C.SEG_ROW_HI] - seg[:, C.SEG_ROW_LO]).tolist()):
            largest[table] = max(largest.get(table, 0), rows)
        return sum(rows * 9 * len(self.catalog.tables[t].columns) for t, rows in largest.items())

    def _fields_fit_runs(self) -> bool:
        """Entities that list their own fields have no values in the columns of the others: the
        catalog's field lists and the index's per-run kinds are two records of the same fact."""
        entities = self.catalog.entities
        explicit = [eid for eid, e in enumerate(entities) if e.fields is not None]
        if not explicit:
            return True
        seg, runs, streams, kinds = self.index.segments, self.index.runs, self.index.streams, self.index.run_kinds
        seg_of_run = np.repeat(np.arange(len(seg)), seg[:, C.SEG_RUNS])
        chosen = np.flatnonzero(np.isin(runs[:, C.RUN_ENTITY], explicit))
        if not len(chosen):
            return True
        g = seg_of_run[chosen]
        per = seg[g, C.SEG_STREAMS]
        pair_run = np.repeat(chosen, per)
        starts = np.repeat(seg[g, C.SEG_STREAM0] - np.concatenate([[0], np.cumsum(per[:-1])]), per)
        pair_stream = starts + np.arange(len(pair_run))
        eid = runs[pair_run, C.RUN_ENTITY]
        meta = np.array([len(t.meta) for t in self.catalog.tables], np.int64)
        field = streams[pair_stream, C.ST_COLUMN] - meta[seg[seg_of_run[pair_run], C.SEG_TABLE]]
        at = streams[pair_stream, C.ST_RUNKINDS]
        position = pair_run - seg[seg_of_run[pair_run], C.SEG_RUN0]
        run_kinds = np.where(at >= 0, kinds[np.where(at >= 0, at + position, 0)] if len(kinds) else 0,
                             streams[pair_stream, C.ST_KINDS])
        width = max(len(t.fields) for t in self.catalog.tables) + 1
        listed = np.array([e * width + f for e in explicit for f in entities[e].fields], np.int64)
        has = np.isin(eid * width + field, listed)
        return not ((field >= 0) & ~has & (run_kinds != 1 << ABSENT)).any()

    def _layout_runs(self) -> None:
        """Per entity: its runs (segment, first row in the segment, rows) in row order."""
        seg, runs = self.index.segments, self.index.runs
        n = len(runs)
        seg_of_run = np.repeat(np.arange(len(seg)), seg[:, C.SEG_RUNS]) if len(seg) else np.zeros(0, np.int64)
        counts = runs[:, C.RUN_ROWS] if n else np.zeros(0, np.int64)
        first_in_seg = np.zeros(n, np.int64)
        if n:
            cs = np.cumsum(counts) - counts
            first_in_seg = cs - cs[seg[seg_of_run, C.SEG_RUN0]]
        order = np.argsort(runs[:, C.RUN_ENTITY], kind="stable") if n else np.zeros(0, np.int64)
        ents = runs[order, C.RUN_ENTITY] if n else np.zeros(0, np.int64)
        bounds = np.searchsorted(ents, np.arange(len(self.catalog.entities) + 1))
        self._run_seg = seg_of_run[order]
        self._run_pos = (np.arange(n) - seg[seg_of_run, C.SEG_RUN0])[order] if n else np.zeros(0, np.int64)
        self._run_first = first_in_seg[order]
        self._run_rows = counts[order]
        self._entity_bounds = bounds
        streams = self.index.streams
        width = max((len(t.columns) for t in self.catalog.tables), default=0)
        self.stream_table = np.full((len(seg), width), -1, np.int64)
        """The stream row of (segment, column), -1 where the segment has no stream for it."""
        if len(streams):
            seg_of_stream = np.repeat(np.arange(len(seg)), seg[:, C.SEG_STREAMS])
            self.stream_table[seg_of_stream, streams[:, C.ST_COLUMN]] = np.arange(len(streams))

    def runs_of(self, eid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(segment, first row in the segment, rows) of each run of an entity, in row order."""
        a, b = self._entity_bounds[eid], self._entity_bounds[eid + 1]
        return self._run_seg[a:b], self._run_first[a:b], self._run_rows[a:b]

    def entity_layout(self, eid: int):
        """The entity's runs and per-column kinds (``_v3entity.EntityLayout``), computed once."""
        layout = self._layouts.get(eid)
        if layout is None:
            from telemrec.trace._v3entity import EntityLayout

            layout = self._layouts[eid] = EntityLayout(self, eid)
        return layout

    def run_positions(self, eid: int) -> np.ndarray:
        """The position of each run of an entity among its segment's runs."""
        return self._run_pos[self._entity_bounds[eid]:self._entity_bounds[eid + 1]]

    # -- streams -----------------------------------------------------------------------------------
    def stream_row(self, segment: int, column: int) -> int | None:
        row = int(self.stream_table[segment, column])
        return None if row < 0 else row

    def segment_runs(self, segment: int) -> np.ndarray:
        seg = self.index.segments[segment]
        a = int(seg[C.SEG_RUN0])
        return self.index.runs[a:a + int(seg[C.SEG_RUNS]), C.RUN_ROWS]

    def decode(self, segment: int, column: int) -> Column:
        """The whole column of one segment (absent rows where the segment has no stream for it)."""
        def make():
            row = self.stream_row(segment, column)
            rows = self.segment_rows(segment)
            if row is None:
                return absent(rows)
            what = f"{self.what}: table {int(self.index.segments[segment, C.SEG_TABLE])} segment {segment} column {column}"
            return read_stream(self.read_bytes, self.index.streams[row], self.segment_runs(segment), what)

        return self._cache.get((segment, column), make)

    def segment_rows(self, segment: int) -> int:
        seg = self.index.segments[segment]
        return int(seg[C.SEG_ROW_HI] - seg[C.SEG_ROW_LO])

    def stream_kinds(self, segment: int, column: int) -> int:
        row = self.stream_row(segment, column)
        return 1 << ABSENT if row is None else int(self.index.streams[row, C.ST_KINDS])

    def run_kinds(self, segment: int, column: int) -> np.ndarray:
        """Each run's kinds (bit 1 << kind) in one column of a segment."""
        row = self.stream_row(segment, column)
        runs = int(self.index.segments[segment, C.SEG_RUNS])
        if row is None:
            return np.full(runs, 1 << ABSENT, np.int64)
        at = int(self.index.streams[row, C.ST_RUNKINDS])
        if at < 0:
            return np.full(runs, int(self.index.streams[row, C.ST_KINDS]), np.int64)
        return self.index.run_kinds[at:at + runs]

    # -- the trace ---------------------------------------------------------------------------------
    def entities_time(self, source: int):
        """The time table of a source (``_v3entity.V3Time``)."""
        time = self._times.get(source)
        if time is None:
            from telemrec.trace._v3entity import V3Time

            eid = self.catalog.time_entities.get(source)
            if eid is None:
                raise TraceCorruptError(f"{self.what}: source {source} has no time table", path=self.what)
            time = self._times[source] = V3Time(self, eid)
        return time

    def time_span(self) -> tuple[int | None, int | None]:
        """(first, last) wall_ns over all records: from the sources' time tables (a row is made for
        records only), one column each, not entity by entity. Not from the index's segment wall
        ranges: those only narrow a read, and nothing checks them at open."""
        from telemrec.trace._v3entity import read_rows

        lo = hi = None
        for source in sorted(self.catalog.time_entities):
            time = self.entities_time(source)
            if time.rows:
                wall = read_rows(self, time.eid, 1, 0, time.rows).ints
                a, b = int(wall.min()), int(wall.max())
                lo, hi = (a, b) if lo is None else (min(lo, a), max(hi, b))
        return lo, hi

    def entities(self) -> dict:
        if self._entities is None:
            from telemrec.trace._v3entity import V3Entity

            found = {}
            for eid in self.catalog.record_entities():
                entity = self.catalog.entities[eid]
                source = self.catalog.tables[entity.table].source
                if self._entity_bounds[eid + 1] > self._entity_bounds[eid]:
                    found[(self.catalog.sources[source], entity.name)] = V3Entity(self, eid, self.entities_time(source))
            self._entities = found
        return self._entities

    def _table_entity(self, table: int | None, name: str) -> int | None:
        if table is None:
            return None
        return self.catalog.entity_index.get((table, name))

    def tick_labels(self) -> list[str]:
        table = self.catalog.ticks_table
        if table is None:
            return []
        return [e.name for eid, e in enumerate(self.catalog.entities)
                if e.table == table and self._entity_bounds[eid + 1] > self._entity_bounds[eid]]

    def tick_columns(self, label: str, lo: int = 0, hi: int | None = None, columns=None) -> dict[str, Column]:
        from telemrec.trace._v3entity import read_rows

        eid = self._table_entity(self.catalog.ticks_table, label)
        if eid is None:
            raise KeyError(label)
        names = C.TICK_COLUMNS if columns is None else columns
        return {name: read_rows(self, eid, C.TICK_COLUMNS.index(name), lo, hi) for name in names}

    def ticks(self, label: str, lo: int = 0, hi: int | None = None, columns=None) -> dict[str, np.ndarray]:
        return {name: col.ints for name, col in self.tick_columns(label, lo, hi, columns).items()}

    def annotations(self) -> list[dict]:
        from telemrec.trace._v3entity import read_rows

        eid = self._table_entity(self.catalog.annotations_table, C.ANNOTATIONS_ENTITY)
        if eid is None:
            return []
        cols = {name: read_rows(self, eid, k).to_list() for k, name in enumerate(C.ANNOTATION_COLUMNS)}
        return [dict(zip(cols, values)) for values in zip(*cols.values())]

    def last_time(self) -> tuple[int, int] | None:
        """(mono_ns, wall_ns) of the record written last."""
        best = None
        for ent in self.entities().values():
            if ent.rows:
                seq = ent.read("_seq", ent.rows - 1).ints
                if len(seq) and (best is None or int(seq[-1]) > best[0]):
                    best = (int(seq[-1]), ent)
        if best is None:
            return None
        mono, wall = best[1].timestamps(best[1].rows - 1)
        return int(mono[-1]), int(wall[-1])


def _text(h5: h5py.File, name: str, crc, path: str) -> str:
    dset = h5.get(name)
    if not isinstance(dset, h5py.Dataset) or dset.shape != () or dset.dtype.kind not in "OS":
        raise TraceCorruptError(f"{path}: /{name} is missing or not a string", path=path)
    try:
        raw = dset[()]
    except (OSError, ValueError) as exc:
        raise TraceCorruptError(f"{path}: /{name} cannot be read ({exc})", path=path) from None
    data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogatepass")
    try:
        expected = int(crc)
    except (TypeError, ValueError):
        raise TraceCorruptError(f"{path}: the root attribute {name}_crc32 is missing", path=path) from None
    if zlib.crc32(data) != expected:
        raise TraceCorruptError(f"{path}: /{name} fails its CRC-32 (the file was damaged or edited)", path=path)
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise TraceCorruptError(f"{path}: /{name} is not UTF-8 ({exc.reason})", path=path) from None


def _blob_reader(h5: h5py.File, blob: h5py.Dataset) -> tuple[Callable[[int, int], bytes], int | None]:
    """Read ranges of /streams: straight from the file where HDF5 stores it as one contiguous
    block (what telemrec writes), else through HDF5 (a repacked or in-memory file)."""
    size = blob.shape[0]
    offset = blob.id.get_offset() if size else None
    if offset is not None and h5.driver == "sec2" and blob.compression is None and blob.chunks is None:
        fd = os.open(h5.filename, os.O_RDONLY)

        def read(at: int, n: int) -> bytes:
            if at < 0 or n < 0 or at + n > size:
                return b""
            return os.pread(fd, n, offset + at)
        return read, fd

    def read_h5(at: int, n: int) -> bytes:
        if at < 0 or n < 0 or at + n > size:
            return b""
        try:
            return blob[at:at + n].tobytes()
        except (OSError, ValueError):
            return b""
    return read_h5, None


def _read_index(index, read, path: str) -> C.Index:
    from telemrec.trace._filewrite import load_index_array

    arrays = {}
    for name, columns in _INDEX_ARRAYS.items():
        try:
            offset, size, crc, rows = (int(v) for v in index[name])
        except (KeyError, TypeError, ValueError):
            raise TraceCorruptError(f"{path}: the catalog does not say where the {name} index is", path=path) from None
        data = read(offset, size)
        if len(data) != size or zlib.crc32(data) != crc:
            raise TraceCorruptError(f"{path}: the {name} index fails its CRC-32", path=path)
        arrays[name] = load_index_array(data, rows, columns, name)
    return C.Index(arrays["segments"], arrays["runs"], arrays["streams"], arrays["run_kinds"].reshape(-1))


_INDEX_ARRAYS = {"segments": C.SEG_COLUMNS, "runs": C.RUN_COLUMNS, "streams": C.STREAM_COLUMNS, "run_kinds": 1}


__all__ = ["FORMAT_VERSION", "INT", "META_COLUMNS", "STR", "V3Reader"]

"""Format 3's entities, seen one at a time: the interface of format 1's ``EntityReader``.

An entity's rows are its runs in the segments of its table, in row order; row *i*
of every column belongs to its *i*-th record. Reading rows decodes the streams of
the segments that hold them (``V3Reader.decode``, cached), so entities of one
table read in step share each decoded stream.
"""

from __future__ import annotations

import numpy as np

from telemrec.trace._damage import typed_reads
from telemrec.trace import _catalog as C
from telemrec.trace._codec import INT
from telemrec.trace._columns import Column, EntityReads, TimeGather
from telemrec.trace._tables import concat_columns, packed, packed_column

BLOCK_ROWS = 8192
"""Rows per block for streaming readers (iteration, replay): the unit they hold in memory."""

_META = {"_seq": 0, "_tidx": 1, "_source_version": 2, "_error": 3}


def read_rows(reader, eid: int, column: int, lo: int = 0, hi: int | None = None) -> Column:
    """Rows [lo, hi) of one column of an entity."""
    segs, firsts, counts = reader.runs_of(eid)
    total = int(counts.sum())
    hi = total if hi is None else max(0, min(hi, total))
    lo = max(0, min(lo, hi))
    starts = np.cumsum(counts) - counts
    parts = []
    if hi > lo:
        i = int(np.searchsorted(starts, lo, side="right")) - 1
        while i < len(counts) and starts[i] < hi:
            a = max(lo, int(starts[i])) - int(starts[i])
            b = min(hi, int(starts[i] + counts[i])) - int(starts[i])
            col = reader.decode(int(segs[i]), column)
            f = int(firsts[i])
            parts.append(Column(col.kinds[f + a:f + b], col.ints[f + a:f + b], col.floats[f + a:f + b],
                                None if col.strs is None else col.strs[f + a:f + b], col.packed))
            i += 1
    if not parts:
        z = np.zeros(0, np.int64)
        return Column(np.zeros(0, np.uint8), z, z.view(np.float64), None)
    if len(parts) == 1:
        p = parts[0]
        return packed_column(p.kinds.copy(), packed(p).copy(), None if p.strs is None else p.strs.copy())
    return concat_columns(parts)


@typed_reads
class V3Time(TimeGather):
    """A source's timestamps (its time table), looked up by row (``_tidx``)."""

    def __init__(self, reader, eid: int):
        self.reader = reader
        self.eid = eid
        self.mono = V3Column(reader, eid, 0)
        self.wall = V3Column(reader, eid, 1)
        self.rows = self.mono.rows

    def _read_span(self, lo: int, hi: int) -> tuple[int, np.ndarray, np.ndarray]:
        if lo < 0 or hi > self.rows:
            from telemrec.errors import TraceCorruptError
            raise TraceCorruptError(f"{self.reader.what}: a record points at timestamp row {hi - 1} of "
                                    f"{self.rows}", path=self.reader.what)
        return lo, read_rows(self.reader, self.eid, 0, lo, hi).ints, read_rows(self.reader, self.eid, 1, lo, hi).ints


@typed_reads
class EntityLayout:
    """What planning a read of one entity needs, computed once: its runs and, per column, every
    kind its rows have (from the index, nothing decoded)."""

    __slots__ = ("segments", "firsts", "counts", "starts", "positions", "rows", "kinds")

    def __init__(self, reader, eid: int):
        self.segments, self.firsts, self.counts = reader.runs_of(eid)
        self.starts = np.cumsum(self.counts) - self.counts
        self.positions = reader.run_positions(eid)
        self.rows = int(self.counts.sum())
        streams = reader.index.streams
        rows = reader.stream_table[self.segments]  # [runs, columns]
        masks = np.where(rows >= 0, streams[np.maximum(rows, 0), C.ST_KINDS], 1 << 0)  # no stream: absent
        mixed = (masks & (masks - 1)) != 0
        if mixed.any():  # the runs of a stream whose rows' kinds differ have their own
            run_pos = np.broadcast_to(self.positions[:, None], rows.shape)
            masks[mixed] = reader.index.run_kinds[streams[rows[mixed], C.ST_RUNKINDS] + run_pos[mixed]]
        self.kinds = np.bitwise_or.reduce(masks, axis=0) if len(masks) else np.zeros(rows.shape[1], np.int64)


@typed_reads
class V3Column:
    """One column of one entity: what loaders ask of a column before and while decoding it."""

    def __init__(self, reader, eid: int, column: int):
        self.reader = reader
        self.eid = eid
        self.column = column
        layout = reader.entity_layout(eid)
        self.rows = layout.rows
        mask = int(layout.kinds[column])
        self.kinds_mask = mask
        """Every kind a row of the entity has in this column."""
        self.uniform_kind: int | None = mask.bit_length() - 1 if mask and mask & (mask - 1) == 0 else None

    def kinds(self, lo: int, hi: int) -> np.ndarray:
        if self.uniform_kind is not None:
            return np.full(hi - lo, self.uniform_kind, np.uint8)
        return self.read(lo, hi).kinds

    def read(self, lo: int = 0, hi: int | None = None) -> Column:
        return read_rows(self.reader, self.eid, self.column, lo, hi)


@typed_reads
class V3Entity(EntityReads):
    """One (source, entity) series of a format 3 trace."""

    META_NAMES = frozenset(_META)

    chunk_rows = BLOCK_ROWS

    def __init__(self, reader, eid: int, time: V3Time):
        self.reader = reader
        self.eid = eid
        self.time = time
        entity = reader.catalog.entities[eid]
        self.table = reader.catalog.tables[entity.table]
        self.source = reader.catalog.sources[self.table.source]
        self.name = entity.name
        self.fields = reader.catalog.entity_fields(eid)
        self.rows = int(reader.runs_of(eid)[2].sum())
        self._cols: dict[tuple[bool, str], V3Column] = {}

    def block_ranges(self, lo: int, hi: int, rows: int | None = None, join: bool = True):
        """[a, b) ranges covering rows [lo, hi), cut where the entity's runs end (a run is one
        decoded stream per column), about ``rows`` rows each: runs are joined up to it (unless not
        ``join``: readers walking every entity in step keep one segment per table decoded), and a
        run longer than twice that is cut."""
        rows = rows or BLOCK_ROWS
        ends = np.cumsum(self.reader.runs_of(self.eid)[2])
        cuts = ends[(ends > lo) & (ends < hi)].tolist() + [hi]
        a = lo
        for end in cuts:
            while end - a > 2 * rows:
                yield a, a + rows
                a += rows
            if end - a >= rows or end == hi or not join:
                if end > a:
                    yield a, end
                a = end

    def wall_ranges(self) -> np.ndarray:
        """(min, max) wall_ns of the segments that hold each run (a run's own rows lie within)."""
        segs = self.reader.runs_of(self.eid)[0]
        index = self.reader.index.segments
        return np.stack([index[segs, C.SEG_WALL_LO], index[segs, C.SEG_WALL_HI]], axis=1).reshape(-1, 2)

    def field_column(self, name: str) -> V3Column:
        col = self._cols.get((False, name))
        if col is None:
            col = self._cols[(False, name)] = V3Column(self.reader, self.eid, self.table.column_of(name))
        return col

    def meta_column(self, name: str) -> V3Column:
        col = self._cols.get((True, name))
        if col is None:
            col = self._cols[(True, name)] = V3Column(self.reader, self.eid, _META[name])
        return col

    def timestamps(self, lo: int = 0, hi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.time.gather(read_rows(self.reader, self.eid, _META["_tidx"], lo, hi).ints)

    def row_range(self, start_wall_ns: int | None, end_wall_ns: int | None) -> tuple[int, int]:
        """Rows [lo, hi) whose wall_ns lies in [start, end); decodes only the runs that can hold them."""
        if start_wall_ns is None and end_wall_ns is None:
            return 0, self.rows
        ranges = self.wall_ranges()
        counts = self.reader.runs_of(self.eid)[2]
        starts = np.cumsum(counts) - counts
        lo_ns = -(2**63) if start_wall_ns is None else start_wall_ns
        hi_ns = 2**63 - 1 if end_wall_ns is None else end_wall_ns
        hit = np.nonzero((ranges[:, 1] >= lo_ns) & (ranges[:, 0] < hi_ns))[0]
        if not len(hit):
            return 0, 0
        a = int(starts[hit[0]])
        b = int(starts[hit[-1]] + counts[hit[-1]])
        _, wall = self.timestamps(a, b)
        inside = np.nonzero((wall >= lo_ns) & (wall < hi_ns))[0]
        if not len(inside):
            return 0, 0
        return a + int(inside[0]), a + int(inside[-1]) + 1

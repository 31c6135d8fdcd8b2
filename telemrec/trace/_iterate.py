"""Streaming iteration over a trace: records in recorded order, or columnar blocks.

Both walk each selected entity chunk by chunk (``chunk_rows`` rows, the unit the
codec decodes), so memory is one decoded chunk per selected entity, whatever the
trace's length. Records of different entities are merged by ``seq`` a step at
a time with one numpy argsort, not record by record.
"""

from __future__ import annotations

import dataclasses
import gc
from collections import deque
from contextlib import contextmanager
from itertools import compress, repeat
from typing import Iterable, Iterator, Mapping, NamedTuple

import numpy as np

from telemrec.record import RawRecord
from telemrec.trace._segments import _ccodec
from telemrec.trace._codec import ABSENT, FLOAT, INT, NONE, STR
from telemrec.trace._columns import Column
from telemrec.trace.v1 import EntityReader

__all__ = ["BATCH_VALUES", "MERGE_ROWS", "Batch", "build_records", "entity_map", "iter_batches",
           "iter_entity_records", "iter_records", "iter_records_with_seq", "select_entities"]

MERGE_ROWS = 16384
"""Records built per merge step, summed over entities: bounds memory, amortises overhead."""

BATCH_VALUES = 1 << 21
"""Values per ``iter_batches`` block (rounded to whole chunks): ~35 MB decoded."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Batch(NamedTuple):
    """One block of rows of one entity, columnar (rows in recorded order within the entity)."""

    source: str
    entity: str
    seq: np.ndarray        # int64: the records' position in the whole trace
    mono_ns: np.ndarray    # int64
    wall_ns: np.ndarray    # int64
    columns: dict          # field name -> Column (kinds ABSENT where the record lacked the field)
    source_version: Column
    error: Column


# -- selection --------------------------------------------------------------------------------

def entity_map(trace_or_entities) -> Mapping[tuple[str, str], EntityReader]:
    """{(source, entity): EntityReader} of a ``Trace``, or the mapping itself."""
    if isinstance(trace_or_entities, Mapping):
        return trace_or_entities
    return {key: trace_or_entities.entity(*key) for key in trace_or_entities.entities()}


def select_entities(entities: Mapping[tuple[str, str], EntityReader], *, sources: Iterable[str] | None = None,
                    entity_names: Iterable[str] | None = None,
                    fields: Iterable[str] | None = None) -> list[tuple[EntityReader, list[str]]]:
    """(entity, field names to decode) for each entity matching the exact names given.

    With ``fields``, entities holding none of them are left out.
    """
    srcs = set(sources) if sources is not None else None
    ents = set(entity_names) if entity_names is not None else None
    wanted_set = set(fields) if fields is not None else None
    chosen = []
    for (source, name), ent in sorted(entities.items()):
        if (srcs is not None and source not in srcs) or (ents is not None and name not in ents):
            continue
        if wanted_set is None:
            names = list(ent.fields)
        else:
            names = [f for f in ent.fields if f in wanted_set]
            if not names:
                continue
        chosen.append((ent, names))
    return chosen


# -- decoding one block into numpy value arrays --------------------------------------------------

def _values(col: Column) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, present): ``values.tolist()`` gives the exact Python value of each row
    (anything where absent); ``present`` is None when no row is absent."""
    kinds = col.kinds
    n = len(kinds)
    if n:
        first = kinds[0]
        if (kinds == first).all():
            if first == FLOAT:
                return col.floats, None
            if first == INT:
                return col.ints, None
            if first == STR:
                return col.strs, None
            if first == NONE:
                return np.full(n, None, object), None
            return np.full(n, None, object), np.zeros(n, bool)
    out = np.full(n, None, object)
    for kind, source in ((FLOAT, col.floats), (INT, col.ints), (STR, col.strs)):
        mask = kinds == kind
        if mask.any():
            # astype(object) makes Python floats and ints, bits kept (-0.0, NaN payloads)
            out[mask] = source[mask].astype(object) if kind != STR else source[mask]
    present = kinds != ABSENT
    return out, (None if present.all() else present)


def _slot_setters():
    """RawRecord's slot setters in field order, or None if RawRecord is not a plain slotted
    dataclass. Filling slots column by column is ~3x faster than ``__init__`` per record and
    gives the same objects (RawRecord's ``__init__`` only assigns)."""
    names = tuple(f.name for f in dataclasses.fields(RawRecord))
    if getattr(RawRecord, "__slots__", None) != names or hasattr(RawRecord, "__post_init__"):
        return None
    return tuple(RawRecord.__dict__[name].__set__ for name in names)


_SETTERS = _slot_setters()
_consume = deque(maxlen=0).extend
_new = object.__new__


def build_records(n: int, mono: list, wall: list, entity: str, fields: list, source: str, versions: list,
                  errors: list) -> list[RawRecord]:
    """``n`` RawRecords from per-attribute lists (``entity`` and ``source`` shared)."""
    if _SETTERS is None:
        return list(map(RawRecord, mono, wall, repeat(entity, n), fields, repeat(source, n), versions, errors))
    recs = list(map(_new, repeat(RawRecord, n)))
    for setter, values in zip(_SETTERS, (mono, wall, repeat(entity, n), fields, repeat(source, n), versions,
                                         errors)):
        _consume(map(setter, recs, values))
    return recs


class _Block:
    """The selected rows of one chunk of one entity, decoded (numpy), turned into records on demand."""

    __slots__ = ("ent", "names", "names_tuple", "template", "dense", "seq", "mono", "wall", "ver", "err", "cols",
                 "present", "n")

    def __init__(self, ent: EntityReader, names: list[str], a: int, b: int,
                 start_wall_ns: int | None, end_wall_ns: int | None, fields_selected: bool):
        self.ent = ent
        self.names = names
        self.names_tuple = tuple(names)
        self.template = dict.fromkeys(names)
        seq = ent.read("_seq", a, b).ints
        mono, wall = ent.timestamps(a, b)
        ver = _values(ent.read("_source_version", a, b))[0]
        err_col = ent.read("_error", a, b)
        err = _values(err_col)[0]
        decoded = [_values(ent.read_field(name, a, b)) for name in names]
        cols = [values for values, _ in decoded]
        present = [mask for _, mask in decoded]
        keep = None
        if start_wall_ns is not None or end_wall_ns is not None:
            # row_range spans first..last row inside the window; a wall clock step can put rows
            # in between outside it
            lo_ns = _INT64_MIN if start_wall_ns is None else start_wall_ns
            hi_ns = _INT64_MAX if end_wall_ns is None else end_wall_ns
            keep = (wall >= lo_ns) & (wall < hi_ns)
        if fields_selected and all(mask is not None for mask in present):
            # a record holding none of the selected fields is left out, unless it reports an error
            useful = err_col.kinds != NONE
            for mask in present:
                useful = useful | mask
            if not useful.all():
                keep = useful if keep is None else keep & useful
        if keep is not None and not keep.all():
            seq, mono, wall, ver, err = seq[keep], mono[keep], wall[keep], ver[keep], err[keep]
            cols = [c[keep] for c in cols]
            present = [None if m is None or m[keep].all() else m[keep] for m in present]
        self.seq, self.mono, self.wall, self.ver, self.err = seq, mono, wall, ver, err
        self.cols = cols
        self.present = present
        self.n = len(seq)
        self._set_density()

    def _set_density(self) -> None:
        absent = sum(int(self.n - np.count_nonzero(m)) for m in self.present if m is not None)
        self.dense = absent * 4 <= self.n * len(self.names)  # at least 3 of 4 values present

    def joined(self, pos: int, other: "_Block") -> "_Block":
        """Rows [pos, n) of this block followed by all of ``other`` (the entity's next block)."""
        new = object.__new__(_Block)
        new.ent, new.names, new.names_tuple, new.template = self.ent, self.names, self.names_tuple, self.template
        new.seq, new.mono, new.wall = (np.concatenate([a[pos:], b]) for a, b in
                                       ((self.seq, other.seq), (self.mono, other.mono), (self.wall, other.wall)))
        new.ver, new.err = _join(self.ver[pos:], other.ver), _join(self.err[pos:], other.err)
        new.cols = [_join(a[pos:], b) for a, b in zip(self.cols, other.cols)]
        new.present = [None if a is None and b is None else
                       np.concatenate([np.ones(self.n - pos, bool) if a is None else a[pos:],
                                       np.ones(other.n, bool) if b is None else b])
                       for a, b in zip(self.present, other.present)]
        new.n = self.n - pos + other.n
        new._set_density()
        return new

    def records(self, i: int, j: int) -> list[RawRecord]:
        """Records of rows [i, j), built column by column: in C (``_ccodec.build_records``, which
        makes the numbers' objects itself, sharing one between equal neighbours) where it is built,
        else one Python loop per field over the rows.

        Where most fields are present (the usual case), each row's dict starts as a copy of a
        template holding every field (no resizing) and absent fields are deleted afterwards;
        sparse blocks start from empty dicts and insert only what is present.
        """
        n = j - i
        ent = self.ent
        if _ccodec is not None:
            recs = _ccodec.build_records(RawRecord, self.mono[i:j], self.wall[i:j], ent.name, self.names_tuple,
                                         [values[i:j] if values.dtype.kind in "if" and values.itemsize == 8
                                          else values[i:j].tolist() for values in self.cols],
                                         [None if p is None else p[i:j] for p in self.present], ent.source,
                                         self.ver[i:j].tolist(), self.err[i:j].tolist())
            if recs is not None:
                return recs
        if self.dense:
            dicts = list(map(dict.copy, repeat(self.template, n)))
            for name, values, present in zip(self.names, self.cols, self.present):
                for d, v in zip(dicts, values[i:j].tolist()):
                    d[name] = v
                if present is not None:
                    absent = ~present[i:j]
                    if absent.any():
                        for d in compress(dicts, absent.tolist()):
                            del d[name]
        else:
            dicts = [{} for _ in range(n)]
            for name, values, present in zip(self.names, self.cols, self.present):
                if present is None:
                    for d, v in zip(dicts, values[i:j].tolist()):
                        d[name] = v
                else:
                    mask = present[i:j]
                    for d, v in zip(compress(dicts, mask.tolist()), values[i:j][mask].tolist()):
                        d[name] = v
        return build_records(n, self.mono[i:j].tolist(), self.wall[i:j].tolist(), ent.name, dicts, ent.source,
                             self.ver[i:j].tolist(), self.err[i:j].tolist())


def _join(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Concatenate value arrays without numpy's type promotion (int64 + float64 would give
    float64): arrays of different dtypes meet as Python objects."""
    if a.dtype == b.dtype:
        return np.concatenate([a, b])
    return np.concatenate([a.astype(object), b.astype(object)])


@contextmanager
def _gc_paused():
    """Pause the cyclic GC while a merge step builds its records (as ``timeit`` does).

    A step allocates ~16k RawRecords that all outlive the young generations, so the GC would
    otherwise run a full collection every step or two, scanning everything alive: a third of
    the replay's time. Records hold no cycles; a previous disabled state is kept."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Cursor:
    """Walks one entity block by block."""

    __slots__ = ("blocks", "block", "pos", "last")

    def __init__(self, blocks: Iterator[_Block]):
        self.blocks = blocks
        self.block: _Block | None = None
        self.pos = 0
        self.last = False

    def advance(self) -> bool:
        """Make sure a block with unread rows is loaded; False when the entity is done."""
        while self.block is None or self.pos >= self.block.n:
            self.block = next(self.blocks, None)
            self.pos = 0
            if self.block is None:
                return False
        return True

    def ensure(self, rows: int) -> None:
        """Have ``rows`` unread rows loaded where the entity has them: a block's short tail is
        joined to the next block, so no merge step is cut short at a chunk boundary (which
        would make one tiny step per entity there)."""
        while not self.last and self.block.n - self.pos < rows:
            nxt = next(self.blocks, None)
            if nxt is None:
                self.last = True
            elif nxt.n:
                self.block = self.block.joined(self.pos, nxt)
                self.pos = 0


def _entity_blocks(ent: EntityReader, names: list[str], start_wall_ns, end_wall_ns,
                   fields_selected: bool) -> Iterator[_Block]:
    lo, hi = ent.row_range(start_wall_ns, end_wall_ns)
    # format 3: a block per run, so the entities of a table, moving in step, share decoded streams
    ranges = ent.block_ranges(lo, hi, join=False) if hasattr(ent, "eid") else ent.block_ranges(lo, hi)
    for a, b in ranges:
        yield _Block(ent, names, a, b, start_wall_ns, end_wall_ns, fields_selected)


def _windows(selected: list[tuple[EntityReader, list[str]]], start_wall_ns, end_wall_ns,
             fields_selected: bool, merge_rows: int) -> Iterator[tuple[np.ndarray, list[RawRecord]]]:
    """Lists of records in seq order (with their seqs), a merge step at a time."""
    cursors = [_Cursor(_entity_blocks(ent, names, start_wall_ns, end_wall_ns, fields_selected))
               for ent, names in selected]
    cursors = [c for c in cursors if c.advance()]
    while cursors:
        step = max(1, merge_rows // len(cursors))
        for cur in cursors:
            cur.ensure(step)
        if len(cursors) == 1:
            cur = cursors[0]
            j = min(cur.pos + step, cur.block.n)
            with _gc_paused():
                recs = cur.block.records(cur.pos, j)
            yield cur.block.seq[cur.pos:j], recs
            cur.pos = j
        else:
            # every record with seq <= frontier is in a loaded block: emit those, sorted
            # (a cursor whose step reaches the entity's very last row bounds nothing)
            frontier = min((int(c.block.seq[min(c.pos + step, c.block.n) - 1]) for c in cursors
                            if not (c.last and c.pos + step >= c.block.n)), default=_INT64_MAX)
            seqs, recs = [], []
            with _gc_paused():
                for cur in cursors:
                    block = cur.block
                    j = cur.pos + int(np.searchsorted(block.seq[cur.pos:min(cur.pos + step, block.n)], frontier,
                                                      side="right"))
                    if j > cur.pos:
                        seqs.append(block.seq[cur.pos:j])
                        recs.extend(block.records(cur.pos, j))
                        cur.pos = j
            seq = np.concatenate(seqs)
            order = np.argsort(seq, kind="stable")
            recs = [recs[k] for k in order.tolist()]
            yield seq[order], recs
        del recs  # the consumer may drop them while we decode the next blocks
        cursors = [c for c in cursors if c.advance()]


# -- public iterators ---------------------------------------------------------------------------

def iter_records(entities, *, start_wall_ns: int | None = None,
                 end_wall_ns: int | None = None, sources: Iterable[str] | None = None,
                 entity_names: Iterable[str] | None = None,
                 fields: Iterable[str] | None = None, merge_rows: int = MERGE_ROWS) -> Iterator[list[RawRecord]]:
    """Lists of records in recorded (seq) order; concatenated, they are the selection.

    ``entities`` is a ``Trace`` or its {(source, entity): EntityReader} mapping.

    ``merge_rows`` bounds the records built per merge step (summed over entities): memory
    against per-step overhead.

    The window is on ``wall_ns``, start inclusive, end exclusive. With ``fields``, records
    keep only those fields and a record holding none of them is skipped unless its
    ``error`` is set.
    """
    selected = select_entities(entity_map(entities), sources=sources, entity_names=entity_names, fields=fields)
    for _, recs in _windows(selected, start_wall_ns, end_wall_ns, fields is not None, merge_rows):
        yield recs


def iter_records_with_seq(entities, *, start_wall_ns=None,
                          end_wall_ns=None, sources=None, entity_names=None,
                          fields=None, merge_rows: int = MERGE_ROWS) -> Iterator[tuple[int, RawRecord]]:
    """(seq, record) in recorded order; see ``iter_records`` for the selection rules."""
    selected = select_entities(entity_map(entities), sources=sources, entity_names=entity_names, fields=fields)
    for seq, recs in _windows(selected, start_wall_ns, end_wall_ns, fields is not None, merge_rows):
        yield from zip(seq.tolist(), recs)


def iter_entity_records(ent: EntityReader, lo: int, hi: int, fields: list[str] | None = None,
                        block: int = 65536) -> Iterator[tuple[int, RawRecord]]:
    """(seq, record) for rows [lo, hi) of one entity (all its records there, fields filtered)."""
    wanted = None if fields is None else set(fields)
    names = ent.fields if wanted is None else [f for f in ent.fields if f in wanted]
    for a, b in ent.block_ranges(lo, hi):
        blk = _Block(ent, names, a, b, None, None, False)
        for i in range(0, blk.n, block):
            j = min(i + block, blk.n)
            yield from zip(blk.seq[i:j].tolist(), blk.records(i, j))


def iter_batches(entities, *, start_wall_ns: int | None = None,
                 end_wall_ns: int | None = None, sources: Iterable[str] | None = None,
                 entity_names: Iterable[str] | None = None, fields: Iterable[str] | None = None,
                 batch_values: int = BATCH_VALUES) -> Iterator[Batch]:
    """Columnar blocks of a ``Trace`` (or its entity mapping), not merged (``seq`` interleaves them).

    A block is rows of one entity, about ``batch_values`` values. Formats 1 and 2: whole chunks,
    entity after entity (few large reads keep HDF5's per-call cost small). Format 3: the entities
    of a table in step, one segment after the other, a block per entity and segment (its run
    there), so each stream is decoded once for all the entities it holds. The window is applied
    to whole rows on ``wall_ns``; ``fields`` only limits which columns are decoded.
    """
    selected = select_entities(entity_map(entities), sources=sources, entity_names=entity_names, fields=fields)
    windowed = start_wall_ns is not None or end_wall_ns is not None
    lo_ns = _INT64_MIN if start_wall_ns is None else start_wall_ns
    hi_ns = _INT64_MAX if end_wall_ns is None else end_wall_ns
    for ent, names, a, b in _batch_ranges(selected, start_wall_ns, end_wall_ns, batch_values):
        mono, wall = ent.timestamps(a, b)
        batch = Batch(ent.source, ent.name, ent.read("_seq", a, b).ints, mono, wall,
                      {name: ent.read_field(name, a, b) for name in names},
                      ent.read("_source_version", a, b), ent.read("_error", a, b))
        if windowed:
            keep = (wall >= lo_ns) & (wall < hi_ns)
            if not keep.all():
                batch = _take(batch, keep)
        if len(batch.seq):
            yield batch


def _batch_ranges(selected, start_wall_ns, end_wall_ns, batch_values: int):
    """(entity, names, a, b) of every block ``iter_batches`` yields, in its order."""
    tables: dict = {}
    for ent, names in selected:
        if hasattr(ent, "eid"):  # format 3: group the entities that share streams
            tables.setdefault((id(ent.reader), id(ent.table)), []).append((ent, names))
        else:
            lo, hi = ent.row_range(start_wall_ns, end_wall_ns)
            for a, b in ent.block_ranges(lo, hi, max(1, batch_values // (len(names) + 3))):
                yield ent, names, a, b
    for group in tables.values():
        runs = []  # (segment, order in the group, a, b) of every run inside the window
        for order, (ent, names) in enumerate(group):
            lo, hi = ent.row_range(start_wall_ns, end_wall_ns)
            segments, _, counts = ent.reader.runs_of(ent.eid)
            ends = np.cumsum(counts)
            for segment, a, b in zip(segments.tolist(), (ends - counts).tolist(), ends.tolist()):
                if a < hi and b > lo:
                    runs.append((segment, order, max(a, lo), min(b, hi)))
        runs.sort()
        for _, order, a, b in runs:
            ent, names = group[order]
            rows = max(1, batch_values // (len(names) + 3))
            for at in range(a, b, rows):
                yield ent, names, at, min(at + rows, b)


def _take(batch: Batch, keep: np.ndarray) -> Batch:
    def cut(col: Column) -> Column:
        return Column(col.kinds[keep], col.ints[keep], col.floats[keep],
                      col.strs[keep] if col.strs is not None else None)

    return Batch(batch.source, batch.entity, batch.seq[keep], batch.mono_ns[keep], batch.wall_ns[keep],
                 {name: cut(col) for name, col in batch.columns.items()}, cut(batch.source_version),
                 cut(batch.error))

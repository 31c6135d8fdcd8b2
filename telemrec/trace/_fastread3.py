"""Decoding many numeric columns of format 3 at once (``telemrec.trace.columnar`` dispatches here).

A job asks for rows [lo, hi) of one column of one entity; the entity's rows are runs
in its table's segments, and one stream holds a column's rows for every entity of a
segment. So jobs are grouped by stream: each stream is read once and, in C with the GIL
released (on a small thread pool), checked, inflated and decoded straight into the
jobs' outputs, run by run, as float64 or int64; runs no job asks for are skipped.
Without the compiled codec, each stream is decoded with NumPy and the rows copied.

``decode_block_v3`` is the same for loaders filling 2-D blocks (the wide frame): a job
names several columns of one entity, and each stream's destinations go to C as one int64
array, so the Python work per load grows with the streams read, not with entities x columns.
"""

from __future__ import annotations

import heapq
import os
import threading
import weakref
from bisect import bisect_left, bisect_right
from itertools import accumulate
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait

import numpy as np

from telemrec.errors import TraceCorruptError
from telemrec.trace import _catalog as C
from telemrec.trace._codec import FLOAT, INT, NONE, STR
from telemrec.trace._segments import _ccodec, call_decoder, decode_stream
from telemrec.trace._v3entity import _META

_WORKERS = max(1, min(4, os.cpu_count() or 1))
_BATCH_ROWS = 1 << 20  # stream rows (or cost) per pool task at most: amortises the executor
_SMALL = 1 << 16  # less is decoded in the calling thread: handing it to the pool costs more
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The decode threads, started once per process: starting a pool per load cost a 1 h load
    more than a tenth of its time."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="telemrec-decode")
        return _pool


def _forget_pool() -> None:
    """A forked child has none of its parent's threads: it starts its own pool when it needs one."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _in_batches(tasks: dict, run, threads: bool, wait: bool = True, cost=None):
    """``run`` over the tasks ((reader, ..., segment) -> parts) in batches. On the pool, the
    batches are balanced by ``cost(key, parts)`` (default: the segment's rows), longest first
    into the least loaded batch: streams cost very different times per row, and batches cut by
    rows alone left one core decoding alone for half of a 1 h load. Unless ``wait``, returns at
    once with the function that finishes them (and raises what the batches raised)."""
    items = list(tasks.items())
    if not (threads and _WORKERS > 1 and len(items) > 1):
        run(items)
        return _done
    costs = [cost(k, p) if cost is not None else p[0].segment_rows(k[-1]) for k, p in items]
    total = sum(costs)
    if total < _SMALL:
        run(items)
        return _done
    count = min(len(items), max(2 * _WORKERS, -(-total // _BATCH_ROWS)))
    batches: list[list] = [[] for _ in range(count)]
    loads = [(0, i) for i in range(count)]  # a heap of (cost so far, batch)
    for c, item in sorted(zip(costs, items), key=lambda x: -x[0]):
        load, i = heapq.heappop(loads)
        batches[i].append(item)
        heapq.heappush(loads, (load + c, i))
    pool = _executor()
    futures = [pool.submit(run, b) for b in batches]

    def finish() -> None:
        """Run here the batches no decode thread has started (this thread would only wait), then
        wait for the others: every batch ends before an error is raised (the trace may close then)."""
        try:
            for future, batch in zip(futures, batches):
                if future.cancel():
                    run(batch)
        finally:
            futures_wait(futures)
        for future in futures:
            if not future.cancelled():
                future.result()

    if not wait:
        return finish
    finish()
    return _done


def _done() -> None:
    pass


def decode_numeric_v3(jobs: list, *, threads: bool = True) -> None:
    """Fill each job's ``out`` (float64: numbers, NaN elsewhere; int64: the ints) and ``kinds``."""
    tasks: dict[tuple, list] = {}
    spans: dict[tuple, list] = {}  # (reader, entity, lo, hi) -> the runs those rows are in: planned once
    for job in jobs:
        col = job.col
        reader, eid = col.reader, col.eid
        uniform = col.uniform_kind
        job.kinds = uniform if uniform is not None else np.zeros(job.hi - job.lo, np.uint8)
        where = spans.get((id(reader), eid, job.lo, job.hi))
        if where is None:
            where = spans[(id(reader), eid, job.lo, job.hi)] = _runs_in(reader, eid, job.lo, job.hi)
        key0 = (id(reader), col.column, job.out.dtype == np.float64)
        for seg, run in where:
            entry = tasks.get((key0, seg))
            if entry is None:
                entry = tasks[(key0, seg)] = [reader]
            entry.append((job, *run))
    _in_batches(tasks, _run, threads)
    for job in jobs:
        kinds = job.kinds
        if isinstance(kinds, (int, np.integer)):
            job.has_none, job.has_str = kinds == NONE, kinds == STR
            if job.out.dtype == np.float64 and kinds not in (INT, FLOAT):
                job.out[:] = np.nan
        else:
            job.has_none = bool((kinds == NONE).any())
            job.has_str = bool((kinds == STR).any())


def _runs_in(reader, eid: int, lo: int, hi: int) -> list:
    """(segment, (run position, first row in the segment, a, b, offset in the output)) for the
    entity's runs holding rows [lo, hi); a, b: rows of the run. (In Python on lists: an entity
    has a few runs, and NumPy's per-call cost on such small arrays was most of a load's planning.)"""
    segments, positions, firsts, starts, counts = _runs_of(reader, eid)
    i = max(0, bisect_right(starts, lo, 0, len(counts)) - 1)
    j = bisect_left(starts, hi, 0, len(counts))
    out = []
    for seg, pos, first, start, count in zip(segments[i:j], positions[i:j], firsts[i:j], starts[i:j], counts[i:j]):
        x, y = max(lo - start, 0), min(hi - start, count)
        if y > x:
            out.append((seg, (pos, first, x, y, start + x - lo)))
    return out


_runs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _runs_of(reader, eid: int) -> tuple[list, ...]:
    """An entity's runs as lists (segment, position in it, first row, first row of the entity, rows),
    kept while its trace is open: a load plans each entity's reads more than once."""
    per_entity = _runs.get(reader)
    if per_entity is None:
        per_entity = _runs[reader] = {}
    found = per_entity.get(eid)
    if found is None:
        segments, firsts, counts = reader.runs_of(eid)
        counts = counts.tolist()
        found = per_entity[eid] = (segments.tolist(), reader.run_positions(eid).tolist(), firsts.tolist(),
                                   list(accumulate(counts, initial=0)), counts)
    return found


_table_kinds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def table_kinds(reader) -> dict[int, np.ndarray]:
    """Per table of a format 3 trace, every kind (a bit mask) any row of each column holds, over
    all its entities and segments: read from the index once per open trace."""
    found = _table_kinds.get(reader)
    if found is None:
        streams, table_of = reader.index.streams, reader.index.segments[:, C.SEG_TABLE]
        rows = reader.stream_table
        masks = np.where(rows >= 0, streams[np.maximum(rows, 0), C.ST_KINDS], 1 << 0) if rows.size else rows
        found = _table_kinds[reader] = {int(t): np.bitwise_or.reduce(masks[table_of == t], axis=0)
                                        for t in np.unique(table_of).tolist()}
    return found


def _run(batch: list) -> None:
    for ((_, column, as_float), segment), parts in batch:
        reader = parts[0]
        row = reader.stream_row(segment, column)
        what = f"{reader.what}: segment {segment} column {column}"
        if row is None:  # the segment has no stream: every row of this column is absent there
            for job, _, _, a, b, out_at in parts[1:]:
                job.out[out_at:out_at + b - a] = np.nan if as_float else 0
                if not isinstance(job.kinds, (int, np.integer)):
                    job.kinds[out_at:out_at + b - a] = 0
            continue
        offset, size, crc, raw = (int(v) for v in reader.index.streams[row, C.ST_OFFSET:C.ST_RAW + 1])
        data = reader.read_bytes(offset, size)
        if len(data) != size:
            raise TraceCorruptError(f"{what}: the stream ends early", path=reader.what)
        runs = reader.segment_runs(segment)
        if _ccodec is not None:
            dests = []
            for job, pos, _, a, b, out_at in parts[1:]:
                out = job.out[out_at:out_at + b - a]
                kinds = None if isinstance(job.kinds, (int, np.integer)) else job.kinds[out_at:out_at + b - a]
                dests.append((pos, a, b, out.view(np.int64), kinds))
            call_decoder(data, raw, crc, np.ascontiguousarray(runs, np.int64), dests, as_float, what)
            continue
        col = decode_stream(data, raw, crc, runs, what, as_float=as_float)
        values = col.ints.view(np.float64) if as_float else col.ints
        for job, _, first, a, b, out_at in parts[1:]:
            job.out[out_at:out_at + b - a] = values[first + a:first + b]
            if not isinstance(job.kinds, (int, np.integer)):
                job.kinds[out_at:out_at + b - a] = col.kinds[first + a:first + b]


def decode_block_v3(jobs: list, *, threads: bool = True, wait: bool = True):
    """Fill the rows of each ``columnar.BlockJob`` (entities of format 3): float64 blocks with
    numbers (NaN where a row holds none), int64 blocks with the ints. Unless ``wait``, returns
    the function that waits for the decode threads."""
    outs: list[np.ndarray] = []
    out_of: dict[int, int] = {}
    numbers: dict[tuple, np.ndarray] = {}  # (table, names) -> column numbers: entities share them
    pieces: dict[tuple, list] = {}  # (reader, segment, as float) -> [reader, [(run, a, b, out, at, columns, rows)]]
    for job in jobs:
        if job.hi <= job.lo or not job.names:
            continue
        ent = job.entity
        reader = ent.reader
        o = out_of.get(id(job.out))
        if o is None:
            o = out_of[id(job.out)] = len(outs)
            outs.append(job.out)
        names = tuple(job.names)
        columns = numbers.get((id(ent.table), names))
        if columns is None:
            columns = numbers[(id(ent.table), names)] = np.array(column_numbers(ent, names), np.int64)
        rows = np.asarray(job.rows, np.int64) * job.out.shape[1] + job.at
        as_float = job.out.dtype == np.float64
        for seg, (pos, _, a, b, at) in _runs_in(reader, ent.eid, job.lo, job.hi):
            entry = pieces.get((id(reader), seg, as_float))
            if entry is None:
                entry = pieces[(id(reader), seg, as_float)] = [reader, []]
            entry[1].append((pos, a, b, o, at, columns, rows))
    # (reader, column, as float, segment) -> [reader, dests (run, a, b, out, at), cost]; the cost: about
    # the time the stream takes (calibrated on the reference trace), its inflated size plus the rows it writes
    tasks: dict[tuple, list] = {}
    for (rid, seg, as_float), (reader, parts) in pieces.items():
        columns = np.concatenate([p[5] for p in parts])
        dests = np.repeat(np.array([p[:5] for p in parts], np.int64), [len(p[5]) for p in parts], axis=0)
        dests[:, 4] += np.concatenate([p[6] for p in parts])
        order = np.argsort(columns, kind="stable")
        columns, dests = columns[order], dests[order]
        firsts = np.r_[0, np.flatnonzero(columns[1:] != columns[:-1]) + 1]
        rows = np.add.reduceat(dests[:, 2] - dests[:, 1], firsts)
        stream = reader.stream_table[seg, columns[firsts]]
        raw = np.where(stream >= 0, reader.index.streams[np.maximum(stream, 0), C.ST_RAW], 0)
        for column, part, cost in zip(columns[firsts].tolist(), np.split(dests, firsts[1:]), (raw + rows).tolist()):
            tasks[(rid, column, as_float, seg)] = [reader, part, cost]
    return _in_batches(tasks, lambda batch: _run_into(batch, outs), threads, wait, lambda _, task: task[2])


def column_numbers(ent, names) -> list[int]:
    """The columns of a format 3 table that hold the fields or meta columns ``names`` of ``ent``."""
    table = ent.table
    base, index = len(table.meta), table.field_index
    return [_META[n] if n in _META else base + index[n] for n in names]


def _run_into(batch: list, outs: list) -> None:
    for (_, column, as_float, segment), (reader, dests, _) in batch:
        row = reader.stream_row(segment, column)
        if row is None:  # the segment has no stream: every row of this column is absent there
            for _, a, b, o, at in dests.tolist():
                outs[o].reshape(-1)[at:at + b - a] = np.nan if as_float else 0
            continue
        what = f"{reader.what}: segment {segment} column {column}"
        offset, size, crc, raw = (int(v) for v in reader.index.streams[row, C.ST_OFFSET:C.ST_RAW + 1])
        data = reader.read_bytes(offset, size)
        if len(data) != size:
            raise TraceCorruptError(f"{what}: the stream ends early", path=reader.what)
        runs = np.ascontiguousarray(reader.segment_runs(segment), np.int64)
        if _ccodec is not None:
            try:
                _ccodec.decode_into(data, raw, crc, runs, dests, outs, as_float)
            except ValueError as exc:
                raise TraceCorruptError(f"{what}: {exc}") from None
            continue
        col = decode_stream(data, raw, crc, runs, what, as_float=as_float)
        values = col.ints.view(np.float64) if as_float else col.ints
        firsts = np.cumsum(runs) - runs
        for pos, a, b, o, at in dests.tolist():
            first = int(firsts[pos])
            outs[o].reshape(-1)[at:at + b - a] = values[first + a:first + b]

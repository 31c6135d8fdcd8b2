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

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from telemrec.errors import TraceCorruptError
from telemrec.trace import _catalog as C
from telemrec.trace._codec import FLOAT, INT, NONE, STR
from telemrec.trace._segments import _ccodec, call_decoder, decode_stream
from telemrec.trace._v3entity import _META

_WORKERS = max(1, min(4, os.cpu_count() or 1))
_BATCH_ROWS = 1 << 20  # stream rows per pool task: amortises the executor, keeps every core busy
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


def _in_batches(tasks: dict, run, threads: bool) -> None:
    """``run`` over the tasks ((reader, ..., segment) -> parts) in batches of about _BATCH_ROWS
    stream rows, on the pool when there are several."""
    batches, batch, size = [], [], 0
    for key, parts in tasks.items():
        batch.append((key, parts))
        size += parts[0].segment_rows(key[-1])
        if size >= _BATCH_ROWS:
            batches.append(batch)
            batch, size = [], 0
    if batch:
        batches.append(batch)
    if threads and _WORKERS > 1 and len(batches) > 1:
        for _ in _executor().map(run, batches):
            pass
    else:
        for b in batches:
            run(b)


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
            where = spans[(id(reader), eid, job.lo, job.hi)] = _runs_in(reader.entity_layout(eid), job.lo, job.hi)
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


def _runs_in(layout, lo: int, hi: int) -> list:
    """(segment, (run position, first row in the segment, a, b, offset in the output)) for the
    entity's runs holding rows [lo, hi); a, b: rows of the run."""
    starts, counts = layout.starts, layout.counts
    i = max(0, int(np.searchsorted(starts, lo, side="right")) - 1)
    j = int(np.searchsorted(starts, hi, side="left"))
    if j <= i:
        return []
    a = np.maximum(lo - starts[i:j], 0)
    b = np.minimum(hi - starts[i:j], counts[i:j])
    return [(seg, (pos, first, x, y, at)) for seg, pos, first, x, y, at in zip(
        layout.segments[i:j].tolist(), layout.positions[i:j].tolist(), layout.firsts[i:j].tolist(), a.tolist(),
        b.tolist(), (starts[i:j] + a - lo).tolist()) if y > x]


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


def decode_block_v3(jobs: list, *, threads: bool = True) -> None:
    """Fill the rows of each ``columnar.BlockJob`` (entities of format 3) as float64."""
    outs: list[np.ndarray] = []
    out_of: dict[int, int] = {}
    tasks: dict[tuple, list] = {}  # (reader, column, segment) -> [reader, (run, a, b, out, at), ...]
    for job in jobs:
        if job.hi <= job.lo or not job.names:
            continue
        ent = job.entity
        reader = ent.reader
        o = out_of.get(id(job.out))
        if o is None:
            o = out_of[id(job.out)] = len(outs)
            outs.append(job.out)
        width = job.out.shape[1]
        columns = [column_number(ent, name) for name in job.names]
        for seg, (pos, _, a, b, at) in _runs_in(reader.entity_layout(ent.eid), job.lo, job.hi):
            for column, row in zip(columns, job.rows):
                entry = tasks.get((id(reader), column, seg))
                if entry is None:
                    entry = tasks[(id(reader), column, seg)] = [reader]
                entry.append((pos, a, b, o, row * width + at))
    _in_batches(tasks, lambda batch: _run_into(batch, outs), threads)


def column_number(ent, name: str) -> int:
    """The column of a format 3 table that holds field or meta column ``name`` of ``ent``."""
    meta = _META.get(name)
    return ent.table.column_of(name) if meta is None else meta


def _run_into(batch: list, outs: list) -> None:
    for (_, column, segment), parts in batch:
        reader = parts[0]
        row = reader.stream_row(segment, column)
        if row is None:  # the segment has no stream: every row of this column is absent there
            for _, a, b, o, at in parts[1:]:
                outs[o].reshape(-1)[at:at + b - a] = np.nan
            continue
        what = f"{reader.what}: segment {segment} column {column}"
        offset, size, crc, raw = (int(v) for v in reader.index.streams[row, C.ST_OFFSET:C.ST_RAW + 1])
        data = reader.read_bytes(offset, size)
        if len(data) != size:
            raise TraceCorruptError(f"{what}: the stream ends early", path=reader.what)
        runs = np.ascontiguousarray(reader.segment_runs(segment), np.int64)
        if _ccodec is not None:
            try:
                _ccodec.decode_into(data, raw, crc, runs, np.array(parts[1:], np.int64), outs, True)
            except ValueError as exc:
                raise TraceCorruptError(f"{what}: {exc}") from None
            continue
        values = decode_stream(data, raw, crc, runs, what, as_float=True).ints.view(np.float64)
        firsts = np.cumsum(runs) - runs
        for pos, a, b, o, at in parts[1:]:
            first = int(firsts[pos])
            outs[o].reshape(-1)[at:at + b - a] = values[first + a:first + b]

"""Decoding many numeric columns of format 3 at once (``telemrec.trace.columnar`` dispatches here).

A job asks for rows [lo, hi) of one column of one entity; the entity's rows are runs
in its table's segments, and one stream holds a column's rows for every entity of a
segment. So the jobs are grouped by stream: each stream a job needs is read, checked,
inflated and decoded once (in C with the GIL released, on a small thread pool,
straight to float64 or int64 as the output wants), and every job takes its rows from it.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from telemrec.errors import TraceCorruptError
from telemrec.trace import _catalog as C
from telemrec.trace._codec import FLOAT, INT, NONE, STR
from telemrec.trace._segments import decode_stream

_WORKERS = max(1, min(4, os.cpu_count() or 1))
_BATCH_VALUES = 1 << 20  # rows decoded per pool task: amortises the executor, keeps both cores busy


def decode_numeric_v3(jobs: list, *, threads: bool = True) -> None:
    """Fill each job's ``out`` (float64: numbers, NaN elsewhere; int64: the ints) and ``kinds``."""
    tasks: dict[tuple, list] = {}
    for job in jobs:
        col = job.col
        reader, eid = col.reader, col.eid
        if col.uniform_kind is not None:
            job.kinds = col.uniform_kind
        else:
            job.kinds = np.zeros(job.hi - job.lo, np.uint8)
        segs, firsts, counts = reader.runs_of(eid)
        starts = np.cumsum(counts) - counts
        i = max(0, int(np.searchsorted(starts, job.lo, side="right")) - 1)
        as_float = job.out.dtype == np.float64
        while i < len(counts) and starts[i] < job.hi:
            a = max(job.lo, int(starts[i]))
            b = min(job.hi, int(starts[i] + counts[i]))
            if b > a:
                key = (id(reader), int(segs[i]), col.column, as_float)
                tasks.setdefault(key, [reader]).append((job, int(firsts[i]) + a - int(starts[i]), b - a, a - job.lo))
            i += 1
    batches, batch, size = [], [], 0
    for key, parts in tasks.items():
        batch.append((key, parts))
        size += parts[0].segment_rows(key[1])
        if size >= _BATCH_VALUES:
            batches.append(batch)
            batch, size = [], 0
    if batch:
        batches.append(batch)
    if threads and _WORKERS > 1 and len(batches) > 1:
        with ThreadPoolExecutor(_WORKERS) as pool:
            for _ in pool.map(_run, batches):
                pass
    else:
        for b in batches:
            _run(b)
    for job in jobs:
        kinds = job.kinds
        if isinstance(kinds, (int, np.integer)):
            job.has_none, job.has_str = kinds == NONE, kinds == STR
            if job.out.dtype == np.float64 and kinds not in (INT, FLOAT):
                job.out[:] = np.nan
        else:
            job.has_none = bool((kinds == NONE).any())
            job.has_str = bool((kinds == STR).any())


def _run(batch: list) -> None:
    for (_, segment, column, as_float), parts in batch:
        reader = parts[0]
        col = _decode(reader, segment, column, as_float)
        values = col.ints.view(np.float64) if as_float else col.ints
        for job, at, n, out_at in parts[1:]:
            job.out[out_at:out_at + n] = values[at:at + n]
            if not isinstance(job.kinds, (int, np.integer)):
                job.kinds[out_at:out_at + n] = col.kinds[at:at + n]


def _decode(reader, segment: int, column: int, as_float: bool):
    row = reader.stream_row(segment, column)
    rows = reader.segment_rows(segment)
    if row is None:
        from telemrec.trace._tables import absent

        col = absent(rows)
        if as_float:
            col.ints.view(np.float64)[:] = np.nan
        return col
    stream = reader.index.streams[row]
    offset, size, crc, raw = (int(v) for v in stream[C.ST_OFFSET:C.ST_RAW + 1])
    what = f"{reader.what}: segment {segment} column {column}"
    data = reader.read_bytes(offset, size)
    if len(data) != size or zlib.crc32(data) != crc:
        raise TraceCorruptError(f"{what}: the stream's bytes fail their CRC-32", path=reader.what)
    return decode_stream(data, raw, reader.segment_runs(segment), what, as_float=as_float)

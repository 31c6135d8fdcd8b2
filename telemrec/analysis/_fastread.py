"""Decoding many numeric columns straight into one float64 block.

``ColumnReader.read`` returns a ``Column`` (kinds, ints, floats, strs: four arrays
per column, then ``as_float`` makes two more). For a wide frame of hundreds of
columns that is most of the time, so this module decodes each chunk directly
into its slice of the caller's output row (the frame's column-major block) and
reads the compressed chunks itself when the dataset uses exactly the format's
default filters (shuffle + deflate), decompressing them on a small thread pool
(zlib releases the GIL; h5py's own reads hold a global lock). Anything else
(other filters, a chunk stored unfiltered, a missing chunk) goes through h5py.

The chunk encodings are those of ``telemrec.trace._codec``; the result is equal
to ``ColumnReader.read(lo, hi).as_float()[0]`` bit for bit (tested).
"""

from __future__ import annotations

import mmap
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import h5py
import numpy as np

from telemrec.trace import _codec
from telemrec.trace._codec import FLOAT, INT, NONE, STR
from telemrec.trace._columns import ColumnReader

_POW10 = [float(10**k) for k in range(19)]
_DEFLATE, _SHUFFLE = 1, 2
_WORKERS = max(1, min(4, os.cpu_count() or 1))


_POPULATE_MIN_BYTES = 1 << 22


def _inflater():
    """The fastest zlib-stream decompressor installed: ISA-L, then libdeflate, then zlib (3x apart)."""
    try:
        from isal import isal_zlib

        return isal_zlib.decompress, "isal"
    except ImportError:
        pass
    try:
        import deflate

        return (lambda data, size: deflate.zlib_decompress(data, size)), "libdeflate"
    except ImportError:
        return (lambda data, size: zlib.decompress(data)), "zlib"


_INFLATE, INFLATER = _inflater()
if INFLATER == "isal":
    _INFLATE = (lambda data, size, _f=_INFLATE: _f(data))


def empty_block(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """An uninitialised array whose pages are mapped up front.

    Touching fresh memory page by page costs one fault per 4 KiB; on virtual
    machines that is 10-30 us each (2 s for the 265 MB of the 24 h reference
    frame). ``MAP_POPULATE`` maps the whole block in one system call. The
    memory is released when the last array viewing it is collected.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    flags = getattr(mmap, "MAP_POPULATE", None)
    if size < _POPULATE_MIN_BYTES or flags is None:
        return np.empty(shape, dtype)
    try:
        buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flags)
    except (OSError, ValueError):
        return np.empty(shape, dtype)
    return np.frombuffer(buf, dtype).reshape(shape)


@dataclass
class NumericJob:
    """Decode rows [lo, hi) of ``col`` into ``out`` (float64, length hi - lo)."""

    col: ColumnReader
    lo: int
    hi: int
    out: np.ndarray
    has_none: bool = False
    has_str: bool = False
    kinds: object = None  # uniform kind (int) or per-row uint8 kinds, set by decode_numeric


class Prefilled:
    """A pseudo-column whose values are already known (timestamps from the source's time table)."""

    uniform_kind = INT

    def __init__(self, values: np.ndarray):
        self.values = values


def chunk_descriptors(col: ColumnReader) -> np.ndarray:
    return col.descriptors


def _kinds(col: ColumnReader, lo: int, hi: int) -> np.ndarray | int:
    kind = col.uniform_kind
    if kind is not None:
        return kind
    return col.kinds(lo, hi)


def _plain_filters(dsid, width: int) -> bool:
    """True when the pipeline is exactly what the format writes: shuffle (not for 1-byte data), then deflate."""
    plist = dsid.get_create_plist()
    expected = [_DEFLATE] if width == 1 else [_SHUFFLE, _DEFLATE]
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == expected


def _unshuffle(buf: bytes, n: int, width: int) -> np.ndarray:
    """Undo HDF5's byte shuffle of n values of ``width`` bytes: plane k holds byte k of every value.

    Plane-by-plane strided stores are twice as fast as ``planes.T.copy()``, and the
    planes that are all zero (the high bytes of small values) are skipped.
    """
    dtype = _codec._UNSIGNED[width]
    if width == 1:
        return np.frombuffer(buf, np.uint8)[:n].copy()
    planes = np.frombuffer(buf, np.uint8).reshape(width, n)
    used = planes.any(axis=1)
    out = np.zeros(n, dtype) if not used.all() else np.empty(n, dtype)
    dest = out.view(np.uint8).reshape(n, width)
    for k in np.flatnonzero(used).tolist():
        dest[:, k] = planes[k]
    return out


def _decode_into(data: np.ndarray, enc: int, scale: int, out: np.ndarray) -> None:
    """Decode one chunk's stored unsigned payload into ``out`` (float64, or int64 for INT chunks)."""
    if enc <= _codec.DEC_DELTA2:
        is_dec = enc >= _codec.DEC_RAW
        values = _codec.unzigzag(data)
        if not values.flags.writeable:
            values = values.copy()
        for k in range(enc - (_codec.DEC_RAW if is_dec else _codec.INT_RAW), 0, -1):
            np.cumsum(values[k - 1:], out=values[k - 1:])
        if is_dec and scale:
            if out.dtype != np.float64:
                raise ValueError("a decimal chunk cannot be decoded into integers")
            np.divide(values, _POW10[scale], out=out)
        else:
            out[:] = values
    elif out.dtype != np.float64:
        raise ValueError("a float chunk cannot be decoded into integers")
    elif enc == _codec.F64_XOR:
        out.view(np.int64)[:] = np.bitwise_xor.accumulate(data.astype(np.uint64, copy=False).view(np.int64))
    elif enc in (_codec.F64_BITS, _codec.MIXED_RAW):
        out.view(np.int64)[:] = data.astype(np.uint64, copy=False).view(np.int64)
    else:
        raise ValueError(f"unknown chunk encoding {enc}")


def _finish_kinds(job: NumericJob, kinds) -> None:
    """Put NaN where the row holds no number; note None and str rows."""
    if job.out.dtype != np.float64:
        return
    if isinstance(kinds, int):
        if kinds not in (INT, FLOAT):
            job.out[:] = np.nan
        job.has_none = kinds == NONE
        job.has_str = kinds == STR
        return
    numeric = (kinds == INT) | (kinds == FLOAT)
    if not numeric.all():
        job.out[~numeric] = np.nan
    job.has_none = bool((kinds == NONE).any())
    job.has_str = bool((kinds == STR).any())
    # a MIXED_RAW chunk holds int64 values in INT rows and float64 bits in FLOAT rows
    is_int = kinds == INT
    if is_int.any():
        desc = chunk_descriptors(job.col)
        cr = job.col.chunk_rows
        for c in range(job.lo // cr, (job.hi - 1) // cr + 1):
            if int(desc[c, 0]) == _codec.MIXED_RAW:
                a, b = max(c * cr, job.lo) - job.lo, min((c + 1) * cr, job.hi) - job.lo
                seg = job.out[a:b]
                m = is_int[a:b]
                seg[m] = seg.view(np.int64)[m].astype(np.float64)


def _plan(job: NumericJob) -> list[tuple]:
    """(chunk index, rows [s, e) within the chunk, target slice) for the chunks the job needs."""
    cr = job.col.chunk_rows
    tasks = []
    for c in range(job.lo // cr, (job.hi - 1) // cr + 1):
        a = max(c * cr, job.lo)
        b = min((c + 1) * cr, job.hi)
        tasks.append((c, a - c * cr, b - c * cr, a - job.lo, b - job.lo))
    return tasks


def decode_numeric(jobs: list[NumericJob], *, threads: bool = True, raw: bool = True) -> None:
    """Fill every job's ``out``: numbers as float64, NaN for None, absent and str rows.

    ``raw=False`` reads every chunk through h5py's filter pipeline (the reference path).
    """
    work = []  # (job, enc, scale, s, e, t0, t1, payload, rows, width)
    for job in jobs:
        if job.hi <= job.lo:
            continue
        if isinstance(job.col, Prefilled):
            job.out[:] = job.col.values
            job.kinds = INT
            continue
        kinds = job.kinds = _kinds(job.col, job.lo, job.hi)
        numeric_present = (kinds in (INT, FLOAT)) if isinstance(kinds, int) else bool(
            ((kinds == INT) | (kinds == FLOAT)).any())
        if not numeric_present:
            job.out[:] = np.nan
            continue
        col = job.col
        desc = chunk_descriptors(col)
        cr = col.chunk_rows
        datasets: dict[int, tuple] = {}
        for c, s, e, t0, t1 in _plan(job):
            enc, scale, width = int(desc[c, 0]), int(desc[c, 1]), int(desc[c, 2])
            rows = min(cr, col.rows - c * cr)
            payload = None
            if width == 0:
                payload = np.zeros(rows, np.uint8)
            else:
                if width not in datasets:
                    dsid = h5py.h5d.open(col.group.id, f"u{width}".encode())
                    datasets[width] = (dsid, raw and _plain_filters(dsid, width))
                dsid, raw_ok = datasets[width]
                if raw_ok:
                    try:
                        mask, payload = dsid.read_direct_chunk((c * cr,))
                    except (KeyError, OSError, ValueError):
                        payload = None
                    else:
                        if mask != 0:
                            payload = None
                if payload is None:
                    payload = col.stored_chunk(c)
            work.append((job, enc, scale, s, e, t0, t1, payload, rows, width))

    def run(item):
        job, enc, scale, s, e, t0, t1, payload, rows, width = item
        if isinstance(payload, bytes):
            payload = _unshuffle(_INFLATE(payload, job.col.chunk_rows * width), job.col.chunk_rows, width)[:rows]
        # deltas restart at each chunk, so a chunk decodes from its first row
        if s == 0:
            _decode_into(payload[:e], enc, scale, job.out[t0:t1])
        else:
            buf = np.empty(e, job.out.dtype)
            _decode_into(payload[:e], enc, scale, buf)
            job.out[t0:t1] = buf[s:e]

    if threads and len(work) > 8 and _WORKERS > 1:
        # a task per ~64 chunks: per-chunk tasks cost more in executor overhead than they save
        batches = [work[i:i + 64] for i in range(0, len(work), 64)]
        with ThreadPoolExecutor(_WORKERS) as pool:
            for _ in pool.map(lambda batch: [run(item) for item in batch], batches):
                pass
    else:
        for item in work:
            run(item)
    for job in jobs:
        if job.kinds is not None and not isinstance(job.col, Prefilled):
            _finish_kinds(job, job.kinds)

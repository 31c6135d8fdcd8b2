"""Decoding many numeric columns of format 1 and 2 straight into one float64 block
(``telemrec.trace.columnar`` dispatches here; format 3 is ``_fastread3``).

``ColumnReader.read`` returns a ``Column`` (kinds, ints, floats, strs: four arrays
per column, then ``as_float`` makes two more). For a wide frame of hundreds of
columns that is most of the time, so this module decodes chunks directly into
their slice of the caller's output row (the frame's column-major block).

When the file is on HDF5's default driver, each column's compressed chunks are
located once: from the trace's chunk index (``_where``, ``telemrec.trace._chunkindex``),
else with HDF5's ``chunk_iter`` per dataset stored exactly as the format writes it
(shuffle + deflate, little-endian). They are read with ``os.pread``, outside
h5py's global lock:

- with the compiled decoder (``_ccodec``, built by setup.py when a C compiler is
  there), whole columns are read, inflated and decoded in C with the GIL
  released, in batches of ~64 chunks on a small thread pool. The Python
  bindings of ISA-L and libdeflate hold the GIL while they inflate, so two
  threads calling them run no faster than one (measured); in C both cores work.
- without it, runs of chunks are inflated in Python and decoded by the NumPy
  kernels of ``_kernels``.

Anything else (other filters, a stale index, a chunk that does not read back
cleanly) goes through h5py, which also reports real damage. The chunk encodings are those of
``telemrec.trace._codec``; both decoders give ``ColumnReader.read(lo, hi).as_float()[0]``
bit for bit (tested).
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import h5py
import numpy as np

from telemrec.errors import TelemrecError
from telemrec.trace._damage import LOW_LEVEL, corrupt
from telemrec.trace._kernels import decode_into, scratch
from telemrec.trace import _chunkindex, _codec
from telemrec.trace._codec import FLOAT, INT, NONE, STR
from telemrec.trace._columns import ColumnReader

try:
    from telemrec.trace import _ccodec as _cdecode
except ImportError:  # not built (setup.py): the NumPy kernels give the same bits, more slowly
    _cdecode = None

_DEFLATE, _SHUFFLE = 1, 2
_WORKERS = max(1, min(4, os.cpu_count() or 1))


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
# what decodes a clean chunk read directly: benchmarks print it
DECODER = f"compiled ({_cdecode.INFLATER})" if _cdecode is not None else f"NumPy ({INFLATER})"


def empty_block(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """An uninitialised array for the decoders to fill.

    NumPy asks the kernel for transparent huge pages on large allocations, so
    the decode threads fault the block in 2 MiB at a time while they fill it;
    pre-faulting it in 4 KiB pages (``MAP_POPULATE``) measured 0.2 s for the
    588 MB of the 24 h reference frame against 0.04 s this way.
    """
    return np.empty(shape, dtype)


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


def _kinds(col: ColumnReader, lo: int, hi: int) -> np.ndarray | int:
    kind = col.uniform_kind
    if kind is not None:
        return kind
    return col.kinds(lo, hi)


def _plain_layout(dsid, width: int, chunk_rows: int) -> bool:
    """True when the dataset is stored exactly as the format writes it, so its chunks can be
    read and decoded without HDF5: little-endian unsigned values of ``width`` bytes in chunks of
    ``chunk_rows``, filtered by shuffle (not for 1-byte data), then deflate."""
    if dsid.dtype != np.dtype(f"<u{width}"):
        return False  # e.g. rewritten big-endian: the planes would be read in the wrong order
    plist = dsid.get_create_plist()
    if plist.get_layout() != h5py.h5d.CHUNKED or plist.get_chunk() != (chunk_rows,):
        return False
    expected = [_DEFLATE] if width == 1 else [_SHUFFLE, _DEFLATE]
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == expected


def _deflated_size_ok(size: int, plain: int) -> bool:
    """A compressed chunk cannot be much larger than its data (deflate's stored blocks add 5
    bytes per 64 KiB): a larger size in the chunk index is damage, not worth reading."""
    return 0 < size <= plain + plain // 8 + 64


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
        desc = job.col.descriptors
        cr = job.col.chunk_rows
        for c in range(job.lo // cr, (job.hi - 1) // cr + 1):
            if int(desc[c, 0]) == _codec.MIXED_RAW:
                a, b = max(c * cr, job.lo) - job.lo, min((c + 1) * cr, job.hi) - job.lo
                seg = job.out[a:b]
                m = is_int[a:b]
                seg[m] = seg.view(np.int64)[m].astype(np.float64)


class _ChunkSource:
    """Where the stored chunks of one width dataset of a column come from (the NumPy path).

    A chunk with a known location (``_Files.where``) is read with ``os.pread`` and
    inflated on the worker thread. Otherwise, and for any chunk that does not read
    back cleanly that way, h5py reads and filters it (``stored_chunk``).
    """

    __slots__ = ("col", "width", "fd", "where")

    def __init__(self, col: ColumnReader, width: int, fd: int | None, where: np.ndarray | None):
        self.col, self.width, self.fd, self.where = col, width, fd, where

    def _inflated(self, c: int) -> bytes | None:
        if self.where is None:
            return None
        offset, length, adler = self.where[c].tolist()
        size = self.col.chunk_rows * self.width
        if offset < 0 or not _deflated_size_ok(length, size):
            return None
        packed = os.pread(self.fd, length, offset)
        if adler >= 0 and packed[-4:] != adler.to_bytes(4, "big"):
            return None  # not the stream the index describes: the file was rewritten
        try:
            raw = _INFLATE(packed, size)
        except Exception:  # noqa: BLE001 - isal and libdeflate raise their own error types
            return None  # h5py reads it again and raises the error a damaged file deserves
        return raw if len(raw) == size else None

    def stored(self, c0: int, count: int, rows: int) -> np.ndarray:
        """The first ``rows`` stored values of chunks c0 .. c0+count-1 (called on a worker thread):
        their shuffled bytes as uint8 [count, width, rows] when read directly, else the values
        as unsigned [count, rows]."""
        cr, width = self.col.chunk_rows, self.width
        planes = None
        for i in range(count):
            raw = self._inflated(c0 + i)
            if raw is None:
                return np.stack([self.col.stored_chunk(c)[:rows] for c in range(c0, c0 + count)])
            if count == 1:
                planes = np.frombuffer(raw, np.uint8).reshape(1, width, cr)
            else:
                if planes is None:
                    planes = scratch("planes", np.uint8, (count, width, cr))
                planes[i] = np.frombuffer(raw, np.uint8).reshape(width, cr)
        return planes[:, :, :rows]


class _Files:
    """File descriptors that chunks can be read from directly, one lookup per file."""

    def __init__(self, raw: bool):
        # chunk_iter needs h5py >= 3.8 on HDF5 >= 1.12.3; os.pread is POSIX only
        self.enabled = raw and hasattr(h5py.h5d.DatasetID, "chunk_iter") and hasattr(os, "pread")
        self._fds: dict[int, int | None] = {}
        self._where: dict[ColumnReader, np.ndarray] = {}  # located through HDF5 (readers hash by identity)
        self._distrusted: set[ColumnReader] = set()

    def where(self, col: ColumnReader) -> np.ndarray:
        """(file offset, compressed size, Adler-32 or -1) of each chunk of ``col`` as int64
        [chunks, 3] (``trace._chunkindex``); -1 where a chunk is not stored plainly (other filters,
        byte order) or not at all (width 0). From the trace's chunk index when it has one, else located
        once per dataset with ``chunk_iter``."""
        known = self._where.get(col)
        if known is not None:
            return known
        if col.where is not None and col not in self._distrusted:
            return col.where
        cr = col.chunk_rows
        where = _chunkindex.locate(col.open_dataset, col.descriptors[:, 2], cr,
                                   accept=lambda dsid, width: _plain_layout(dsid, width, cr))
        self._where[col] = where
        return where

    def distrust(self, col: ColumnReader) -> None:
        """Locate ``col``'s chunks through HDF5 from now on: its index did not match the file."""
        if col.where is not None:
            self._distrusted.add(col)

    def fd(self, col: ColumnReader) -> int | None:
        if not self.enabled:
            return None
        fid = col.fileno
        if fid not in self._fds:
            f = col.file
            fd = None
            if f.driver == "sec2" and not f.userblock_size:
                try:
                    fd = int(f.id.get_vfd_handle())
                except (TypeError, ValueError, RuntimeError):
                    fd = None
            self._fds[fid] = fd
        return self._fds[fid]


_MAX_RUN = 16  # chunks decoded as one block: bounds each worker's scratch to a few MB


def _plan(job: NumericJob, files: _Files) -> list[tuple]:
    """Work items for the chunks a job needs: (source or None, first chunk, chunk count,
    encoding, scale, rows to decode per chunk, rows to skip, target [count, rows - skip],
    anchors [count, 2] or None).
    Consecutive whole chunks of one encoding form one item and decode as a 2-D block."""
    col = job.col
    cr = col.chunk_rows
    desc = col.descriptors.tolist()
    fd = files.fd(col)
    sources: dict[int, _ChunkSource] = {}
    items = []

    def add(c0: int, count: int, s: int, e: int) -> None:
        enc, scale, width = desc[c0]
        src = None
        if width:
            src = sources.get(width)
            if src is None:
                src = sources[width] = _ChunkSource(col, width, fd, None if fd is None else files.where(col))
        a = c0 * cr + s - job.lo
        out = job.out[a:a + (count - 1) * cr + e - s]
        anchors = None if col.anchors is None else col.anchors[c0:c0 + count]
        items.append((src, c0, count, enc, scale, e, s, out.reshape(count, e - s), anchors))

    run = None  # [first chunk, count] of whole chunks with one encoding
    for c in range(job.lo // cr, (job.hi - 1) // cr + 1):
        a = c * cr
        s, e = max(a, job.lo) - a, min(a + cr, job.hi) - a
        if s == 0 and e == cr:
            if run is not None and run[1] < _MAX_RUN and desc[c] == desc[run[0]] and run[0] + run[1] == c:
                run[1] += 1
                continue
            if run is not None:
                add(run[0], run[1], 0, cr)
            run = [c, 1]
            continue
        if run is not None:
            add(run[0], run[1], 0, cr)
            run = None
        add(c, 1, s, e)
    if run is not None:
        add(run[0], run[1], 0, cr)
    return items


def _run(item) -> None:
    src, c0, count, enc, scale, e, s, out, anchors = item
    stored = (count, e) if src is None else src.stored(c0, count, e)
    decode_into(stored, enc, scale, out, s, anchors)


def _run_batch(batch: list) -> None:
    for item in batch:
        _run(item)


def _compiled_spec(job: NumericJob, files: _Files) -> tuple | None:
    """(file descriptor, arguments of one column for ``_cdecode.decode_columns``), or None
    when the column is not in a plain file that chunks can be read from directly."""
    col, out = job.col, job.out
    fd = files.fd(col)
    if fd is None or not out.flags.c_contiguous or out.dtype not in (np.float64, np.int64):
        return None
    anchors = col.anchors
    if anchors is not None and (anchors.dtype != np.int64 or not anchors.flags.c_contiguous):
        return None
    return fd, (col.descriptors, files.where(col), anchors, col.chunk_rows, job.lo, job.hi, out,
                out.dtype == np.float64)


def _decode_columns(fd: int, specs: list, jobs: list) -> list:
    """Decode a batch of columns in C; returns the jobs it could not (for the NumPy path)."""
    return [jobs[k] for k in _cdecode.decode_columns_v2(fd, specs)]


def decode_numeric(jobs: list[NumericJob], *, threads: bool = True, raw: bool = True, compiled: bool = True) -> None:
    """Fill every job's ``out``: numbers as float64, NaN for None, absent and str rows.
    Damage (HDF5's own checksums failing, a chunk that does not decode) is a TraceCorruptError.

    ``raw=False`` reads every chunk through h5py's filter pipeline (the reference path);
    ``compiled=False`` decodes with the NumPy kernels even when ``_cdecode`` is built.
    With ``threads``, batches of ~64 chunks go to a small pool as soon as they are
    planned (one task per chunk costs more in executor overhead than it saves).
    """
    try:
        _decode_numeric(jobs, threads, raw, compiled)
    except TelemrecError:
        raise
    except LOW_LEVEL as exc:
        raise corrupt(next((j.col for j in jobs if not isinstance(j.col, Prefilled)), None), "decoding columns",
                      exc) from exc


def _decode_numeric(jobs: list[NumericJob], threads: bool, raw: bool, compiled: bool) -> None:
    pool = ThreadPoolExecutor(_WORKERS) if threads and _WORKERS > 1 else None
    futures = []
    batch, size = [], 0
    files = _Files(raw)
    use_c = compiled and _cdecode is not None and files.enabled
    columns: dict[int, tuple[list, list, int]] = {}  # fd -> (specs, jobs, chunks) of the next C batch

    def submit(fn, *args):
        futures.append(pool.submit(fn, *args) if pool else fn(*args))

    try:
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
            spec = _compiled_spec(job, files) if use_c else None
            if spec is not None:
                specs, cjobs, chunks = columns.setdefault(spec[0], ([], [], 0))
                specs.append(spec[1])
                cjobs.append(job)
                chunks += (job.hi - 1) // job.col.chunk_rows - job.lo // job.col.chunk_rows + 1
                columns[spec[0]] = (specs, cjobs, chunks)
                if chunks >= 64:
                    submit(_decode_columns, spec[0], specs, cjobs)
                    del columns[spec[0]]
                continue
            for item in _plan(job, files):
                batch.append(item)
                size += item[2]
            if size >= 64:
                submit(_run_batch, batch)
                batch, size = [], 0
        for fd, (specs, cjobs, _) in columns.items():
            submit(_decode_columns, fd, specs, cjobs)
        if batch:
            _run_batch(batch)
        # columns C could not read directly (other filters, damage) go through h5py, which reports damage
        retry = [job for f in futures for job in ((f.result() if isinstance(f, Future) else f) or ())]
        for job in retry:
            files.distrust(job.col)
        _run_batch([item for job in retry for item in _plan(job, files)])
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    for job in jobs:
        if job.kinds is not None and not isinstance(job.col, Prefilled):
            _finish_kinds(job, job.kinds)

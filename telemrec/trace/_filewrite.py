"""Writing a format 3 trace file from a journal's state (docs/format.md, section 3).

The file holds three datasets: ``/manifest`` and ``/catalog`` (JSON text, each with
its CRC-32 in a root attribute) and ``/streams`` (contiguous bytes: every column
stream of every segment, table after table, then the index arrays). Streams are
copied from the journal as the recorder encoded them: the fold costs what copying
the file costs, plus the tail a crashed recorder left unsealed.
"""

from __future__ import annotations

import json
import os
import zlib

import h5py
import numpy as np

from telemrec._version import __version__
from telemrec.errors import TraceCorruptError, TraceWriteError
from telemrec.trace import _catalog as C
from telemrec.trace._version import FORMAT_NAME
from telemrec.trace.journal import unlink_quietly

FORMAT_VERSION = 3
LIBVER = ("v110", "v110")
SPEC = "telemrec trace format 3, specified in docs/format.md of telemrec"
CONTENTS = ("/manifest: JSON, what was recorded where and how; /catalog: JSON, sources, tables, columns, "
            "entities and where the index is; /streams: zlib streams of encoded columns (see the spec); "
            "`telemrec export --format hdf5` writes a plain HDF5 copy")
_COPY_BUFFER = 8 << 20


def _index_bytes(array: np.ndarray) -> bytes:
    """An index array as stored: int64 little-endian, byte-shuffled, deflated."""
    a = np.ascontiguousarray(array, "<i8")
    return zlib.compress(np.ascontiguousarray(a.view(np.uint8).reshape(-1, 8).T).tobytes(), 6)


def load_index_array(data: bytes, rows: int, columns: int, what: str) -> np.ndarray:
    try:
        raw = zlib.decompress(data)
    except zlib.error as exc:
        raise TraceCorruptError(f"the {what} index does not inflate ({exc})") from None
    if len(raw) != rows * columns * 8:
        raise TraceCorruptError(f"the {what} index holds {len(raw)} bytes, not {rows} x {columns} int64")
    planes = np.frombuffer(raw, np.uint8).reshape(8, -1)
    return np.ascontiguousarray(planes.T).view("<i8").reshape(rows, columns).astype(np.int64)


def write_trace(out: str, state, manifest: dict, *, exclusive: bool = False) -> None:
    """Write the trace of ``state`` (``_fold.JournalState``) to ``out`` atomically (``exclusive``:
    never replacing a file that appeared at ``out`` meanwhile). Segments whose streams are not in
    memory are copied from the journal ``state.path``.

    HDF5 writes only the file's structure (a few kB; ``/streams`` allocated, not filled); the
    streams are then copied with plain writes into space reserved first. So a full disk or a file
    size limit is an ordinary, typed error before anything is half-written, never a failure
    inside HDF5 (which cannot be relied on to close cleanly after one)."""
    from telemrec.trace._store import durable_rename

    plan = _Plan(state, manifest)
    tmp = f"{out}.tmp-{os.getpid()}"
    _check_room(out, plan.size)
    try:
        h5 = h5py.File(tmp, "w", libver=LIBVER)
    except OSError as exc:
        raise TraceWriteError(f"cannot write {tmp}: {exc.strerror or exc}", path=out) from exc
    try:
        try:
            offset = plan.write_structure(h5)
        finally:
            h5.close()
        plan.copy_streams(tmp, offset, out)
        durable_rename(tmp, out, exclusive=exclusive)
    except BaseException:
        unlink_quietly(tmp)
        raise


def _check_room(out: str, size: int) -> None:
    """Refuse, before writing anything, a trace the disk or the process's file size limit cannot hold."""
    import resource

    need = size + (1 << 20)
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(out)))
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if free is not None and free < need:
        raise TraceWriteError(f"not enough space to write {out}: {need / 1e6:.1f} MB needed, "
                              f"{free / 1e6:.1f} MB free", path=out, errno=28)
    if limit != resource.RLIM_INFINITY and limit < need:
        raise TraceWriteError(f"cannot write {out}: it needs {need / 1e6:.1f} MB, and this process may write "
                              f"files of {limit / 1e6:.1f} MB at most (ulimit -f)",
                              "Raise the file size limit, or open the trace where it may be written.", path=out, errno=27)


class _Plan:
    """Where every stream and index array goes in ``/streams``, and the texts; computed before any write."""

    def __init__(self, state, manifest: dict):
        self.state = state
        seg_rows, run_rows, stream_rows, run_kinds = [], [], [], []
        self.copies: list = []
        kinds_at = pos = 0
        for table in sorted(state.segments):
            for seg in state.segments[table]:
                stream0 = len(stream_rows)
                run_rows.extend(zip(seg.entities.tolist(), seg.counts.tolist()))
                for i, row in enumerate(seg.streams):
                    row = row.copy()
                    source = seg.data[i] if seg.data is not None else (
                        int(row[C.ST_OFFSET]), int(row[C.ST_SIZE]), int(row[C.ST_CRC]))
                    row[C.ST_OFFSET] = pos
                    pos += int(row[C.ST_SIZE])
                    row[C.ST_RUNKINDS] = -1
                    if seg.run_kinds and i in seg.run_kinds:
                        row[C.ST_RUNKINDS] = kinds_at
                        run_kinds.append(seg.run_kinds[i])
                        kinds_at += len(seg.run_kinds[i])
                    stream_rows.append(row)
                    self.copies.append(source)
                seg_rows.append([table, seg.row_lo, seg.row_hi, len(run_rows) - len(seg.entities), len(seg.entities),
                                 stream0, len(seg.streams), seg.seq_lo, seg.seq_hi, seg.wall_lo, seg.wall_hi,
                                 seg.values])
        arrays = {"segments": np.array(seg_rows, np.int64).reshape(-1, C.SEG_COLUMNS),
                  "runs": np.array(run_rows, np.int64).reshape(-1, C.RUN_COLUMNS),
                  "streams": np.array(stream_rows, np.int64).reshape(-1, C.STREAM_COLUMNS),
                  "run_kinds": (np.concatenate(run_kinds) if run_kinds else np.zeros(0, np.int64)).reshape(-1, 1)}
        index = {}
        for name, array in arrays.items():
            data = _index_bytes(array)
            index[name] = [pos, len(data), zlib.crc32(data), int(array.shape[0])]
            pos += len(data)
            self.copies.append(data)
        self.streams_size = pos
        catalog = dict(state.catalog.to_json(), layout=1, index=index, streams_size=pos)
        manifest = dict(manifest, format=FORMAT_NAME, format_version=FORMAT_VERSION)
        # ASCII JSON: any string (a lone surrogate included) survives HDF5's UTF-8 strings
        self.manifest_text = json.dumps(manifest, sort_keys=True, allow_nan=False)
        self.catalog_text = json.dumps(catalog, separators=(",", ":"), ensure_ascii=True)
        self.size = pos + len(self.manifest_text) + len(self.catalog_text) + (64 << 10)

    def write_structure(self, h5: h5py.File) -> int | None:
        """Everything HDF5 writes: the datasets (``/streams`` allocated, not filled) and attributes;
        returns where ``/streams`` starts in the file."""
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.CONTIGUOUS)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        space = h5py.h5s.create_simple((self.streams_size,))
        blob = h5py.h5d.create(h5.id, b"streams", h5py.h5t.STD_U8LE, space, dcpl=dcpl)
        offset = blob.get_offset() if self.streams_size else None
        # fixed-length strings only: variable-length ones live in HDF5's global heap, the one piece of
        # HDF5 metadata without a checksum (damage there made HDF5 loop forever when fuzzed)
        _text_dataset(h5, "manifest", self.manifest_text)
        _text_dataset(h5, "catalog", self.catalog_text)
        attrs = h5.attrs
        attrs["format"] = np.bytes_(FORMAT_NAME)
        attrs["format_version"] = FORMAT_VERSION
        attrs["telemrec_version"] = np.bytes_(__version__)
        attrs["spec"] = np.bytes_(SPEC)
        attrs["contents"] = np.bytes_(CONTENTS)
        attrs["manifest_crc32"] = np.uint32(zlib.crc32(self.manifest_text.encode("utf-8")))
        attrs["catalog_crc32"] = np.uint32(zlib.crc32(self.catalog_text.encode("utf-8")))
        return offset

    def copy_streams(self, tmp: str, offset: int | None, out: str) -> None:
        """Reserve the space of ``/streams`` and fill it: journal ranges (checked against their CRC-32)
        and bytes held in memory."""
        if offset is None:
            return
        fd = os.open(tmp, os.O_WRONLY)
        journal = os.open(self.state.path, os.O_RDONLY) if self.state.path is not None else -1
        try:
            try:
                os.posix_fallocate(fd, offset, self.streams_size)
            except OSError as exc:
                if exc.errno not in (95, 22):  # EOPNOTSUPP, EINVAL: a file system that cannot reserve
                    raise
            _copy(fd, offset, self.copies, journal)
        except OSError as exc:
            raise TraceWriteError(f"writing {out} failed: {exc.strerror or exc}", path=out, errno=exc.errno) from exc
        finally:
            os.close(fd)
            if journal >= 0:
                os.close(journal)


def _text_dataset(h5: h5py.File, name: str, text: str) -> None:
    """A scalar fixed-length UTF-8 string dataset (h5dump and HDFView show it as text)."""
    data = text.encode("utf-8") or b" "
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(data))
    tid.set_cset(h5py.h5t.CSET_UTF8)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dset = h5py.h5d.create(h5.id, name.encode(), tid, h5py.h5s.create(h5py.h5s.SCALAR), dcpl=dcpl)
    dset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.frombuffer(data, dtype=f"S{len(data)}"), mtype=tid)


def _copy(fd: int, offset: int, copies: list, journal: int) -> None:
    buffer: list[bytes] = []
    buffered = 0
    at = offset
    for source in copies:
        if isinstance(source, tuple):
            where, size, crc = source
            data = os.pread(journal, size, where)
            if len(data) != size or zlib.crc32(data) != crc:
                raise TraceCorruptError(f"a journal stream at byte {where} fails its CRC-32",
                                        "The journal is damaged; `telemrec check` says where.")
        else:
            data = source
        buffer.append(data)
        buffered += len(data)
        if buffered >= _COPY_BUFFER:
            _pwrite_all(fd, b"".join(buffer), at)
            at += buffered
            buffer, buffered = [], 0
    if buffered:
        _pwrite_all(fd, b"".join(buffer), at)


def _pwrite_all(fd: int, data: bytes, at: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, at)
        view, at = view[n:], at + n

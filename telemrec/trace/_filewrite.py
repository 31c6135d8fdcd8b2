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
    memory are copied from the journal ``state.path``."""
    from telemrec.trace._store import durable_rename

    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        h5 = h5py.File(tmp, "w", libver=LIBVER)
    except OSError as exc:
        raise TraceWriteError(f"cannot write {tmp}: {exc.strerror or exc}", path=out) from exc
    try:
        if state.path is None:
            _write(h5, state, manifest, -1)
        else:
            with open(state.path, "rb") as journal:
                _write(h5, state, manifest, journal.fileno())
        h5.close()
    except BaseException:
        h5.close()
        _unlink(tmp)
        raise
    try:
        durable_rename(tmp, out, exclusive=exclusive)
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write(h5: h5py.File, state, manifest: dict, fd: int) -> None:
    seg_rows, run_rows, stream_rows, copies, run_kinds = [], [], [], [], []
    kinds_at = 0
    pos = 0
    for table in sorted(state.segments):
        for seg in state.segments[table]:
            stream0 = len(stream_rows)
            run_rows.extend(zip(seg.entities.tolist(), seg.counts.tolist()))
            for i, row in enumerate(seg.streams):
                row = row.copy()
                source = seg.data[i] if seg.data is not None else (int(row[C.ST_OFFSET]), int(row[C.ST_SIZE]), int(row[C.ST_CRC]))
                row[C.ST_OFFSET] = pos
                pos += int(row[C.ST_SIZE])
                row[C.ST_RUNKINDS] = -1
                if seg.run_kinds and i in seg.run_kinds:
                    row[C.ST_RUNKINDS] = kinds_at
                    run_kinds.append(seg.run_kinds[i])
                    kinds_at += len(seg.run_kinds[i])
                stream_rows.append(row)
                copies.append(source)
            seg_rows.append([table, seg.row_lo, seg.row_hi, len(run_rows) - len(seg.entities), len(seg.entities),
                             stream0, len(seg.streams), seg.seq_lo, seg.seq_hi, seg.wall_lo, seg.wall_hi, seg.values])
    arrays = {"segments": np.array(seg_rows, np.int64).reshape(-1, C.SEG_COLUMNS),
              "runs": np.array(run_rows, np.int64).reshape(-1, C.RUN_COLUMNS),
              "streams": np.array(stream_rows, np.int64).reshape(-1, C.STREAM_COLUMNS),
              "run_kinds": (np.concatenate(run_kinds) if run_kinds else np.zeros(0, np.int64)).reshape(-1, 1)}
    index = {}
    for name, array in arrays.items():
        data = _index_bytes(array)
        index[name] = [pos, len(data), zlib.crc32(data), int(array.shape[0])]
        pos += len(data)
        copies.append(data)
    blob = h5.create_dataset("streams", shape=(pos,), dtype=np.uint8)
    _copy(blob, copies, fd)
    catalog = dict(state.catalog.to_json(), layout=1, index=index, streams_size=pos)
    manifest = dict(manifest, format=FORMAT_NAME, format_version=FORMAT_VERSION)
    manifest_text = json.dumps(manifest, sort_keys=True, allow_nan=False)  # ASCII: any string (a lone surrogate) survives HDF5
    catalog_text = json.dumps(catalog, separators=(",", ":"), ensure_ascii=True)
    string = h5py.string_dtype("utf-8")
    h5.create_dataset("manifest", data=manifest_text, dtype=string)
    h5.create_dataset("catalog", data=catalog_text, dtype=string)
    attrs = h5.attrs
    attrs["format"] = FORMAT_NAME
    attrs["format_version"] = FORMAT_VERSION
    attrs["telemrec_version"] = __version__
    attrs["spec"] = SPEC
    attrs["contents"] = CONTENTS
    attrs["manifest_crc32"] = np.uint32(zlib.crc32(manifest_text.encode("utf-8", "surrogatepass")))
    attrs["catalog_crc32"] = np.uint32(zlib.crc32(catalog_text.encode("utf-8")))


def _copy(blob: h5py.Dataset, copies: list, fd: int) -> None:
    """Fill the streams dataset: journal ranges (checked against their CRC-32) and bytes held in memory."""
    buffer: list[bytes] = []
    buffered = start = 0
    at = 0
    for source in copies:
        if isinstance(source, tuple):
            offset, size, crc = source
            data = os.pread(fd, size, offset)
            if len(data) != size or zlib.crc32(data) != crc:
                raise TraceCorruptError(f"a journal stream at byte {offset} fails its CRC-32",
                                        "The journal is damaged; `telemrec check` says where.")
        else:
            data = source
        buffer.append(data)
        buffered += len(data)
        at += len(data)
        if buffered >= _COPY_BUFFER:
            blob[start:at] = np.frombuffer(b"".join(buffer), np.uint8)
            buffer, buffered, start = [], 0, at
    if buffered:
        blob[start:at] = np.frombuffer(b"".join(buffer), np.uint8)

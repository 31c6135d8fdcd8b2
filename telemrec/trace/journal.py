"""The recording journal: the crash-safe half of the trace format (docs/format.md, "Journal").

While ``telemrec record`` runs, data goes to ``PATH.journal``: a header line, then
frames ``MAGIC | u32 length | u32 crc32 | zlib(JSON)``, each appended, flushed and
fsynced as a whole. A frame torn by a crash fails its length or CRC check and is
treated as never written, exactly like below's store. On a clean stop, and on the
next open after a crash, the journal is folded into the HDF5 trace ``PATH``
(written to a temporary name, fsynced, renamed), and only then removed.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

from telemrec.errors import TraceCorruptError, TraceWriteError
from telemrec.record import RawRecord
from telemrec.trace._version import JOURNAL_FORMAT_VERSION

HEADER = b"TELEMREC-JOURNAL %d\n" % JOURNAL_FORMAT_VERSION
FRAME_MAGIC = b"\xf0TRF"
_FRAME_HEAD = struct.Struct("<4sII")
MAX_FRAME = 1 << 30
JOURNAL_SUFFIX = ".journal"

_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=True, separators=(",", ":"))


def journal_path(trace_path: str) -> str:
    return trace_path + JOURNAL_SUFFIX


def _encode_fields(fields) -> dict:
    # JSON has one NaN; the journal must keep every NaN's bits (sign and payload), so NaNs travel as
    # {"f64": <bits>}. No field value is ever a dict, so the marker cannot be confused with data.
    out = dict(fields)
    for key, value in out.items():
        if value != value:
            out[key] = {"f64": struct.unpack("<q", struct.pack("<d", value))[0]}
    return out


def _decode_fields(fields: dict) -> dict:
    for key, value in fields.items():
        if type(value) is dict:
            fields[key] = struct.unpack("<d", struct.pack("<q", value["f64"]))[0]
    return fields


def encode_records(records: list[RawRecord]) -> list:
    return [[r.mono_ns, r.wall_ns, r.source, r.source_version, r.entity, _encode_fields(r.fields), r.error]
            for r in records]


def decode_record(row: list) -> RawRecord:
    mono, wall, source, version, entity, fields, error = row
    return RawRecord(mono, wall, entity, _decode_fields(fields), source, version, error)


class JournalWriter:
    """Appends frames to a journal. Holds an exclusive lock so readers know a recorder is alive."""

    def __init__(self, path: str, first_frame: dict[str, Any]):
        """Create the journal with its header and first frame, atomically: the journal either
        does not exist yet or starts with a complete first frame."""
        self.path = path
        if os.path.exists(path):
            if is_locked(path):
                raise TraceWriteError(f"{path} is being written by a running `telemrec record`",
                                      "Choose another -o path, or stop that recorder first.", path=path)
            raise TraceWriteError(f"{path} is left over from a recording that did not stop cleanly",
                                  f"Run `telemrec check {path[: -len(JOURNAL_SUFFIX)]}` to recover it into the trace, "
                                  "or choose another -o path.", path=path)
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise TraceWriteError(f"cannot create {path}: {exc.strerror}",
                                  "Check that the output directory exists and is writable.", path=path) from exc
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file: BinaryIO = os.fdopen(fd, "wb", buffering=0)
        self.bytes_written = 0
        try:
            self._write(HEADER)
            self.append(first_frame)
            self.sync()
            os.link(tmp, path)  # fails instead of clobbering a journal that appeared meanwhile
        except FileExistsError:
            self._file.close()
            os.unlink(tmp)
            raise TraceWriteError(f"{path} already exists", "Choose another -o path.", path=path) from None
        except BaseException:
            self._file.close()
            os.unlink(tmp)
            raise
        os.unlink(tmp)
        _fsync_dir(path)

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                n = self._file.write(view)
                view = view[n:]
        except OSError as exc:
            raise TraceWriteError(f"writing {self.path} failed: {exc.strerror}", path=self.path,
                                  errno=exc.errno) from exc
        self.bytes_written += len(data)

    def append(self, obj: dict[str, Any]) -> int:
        payload = zlib.compress(_encoder.encode(obj).encode("utf-8"), 3)
        self._write(_FRAME_HEAD.pack(FRAME_MAGIC, len(payload), zlib.crc32(payload)) + payload)
        return len(payload) + _FRAME_HEAD.size

    def sync(self) -> None:
        try:
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise TraceWriteError(f"fsync of {self.path} failed: {exc.strerror}", path=self.path) from exc

    def close(self) -> None:
        if not self._file.closed:
            try:
                self.sync()
            finally:
                self._file.close()


@dataclass
class JournalScan:
    frames: list[dict] = field(default_factory=list)
    valid_bytes: int = 0
    torn_bytes: int = 0
    torn_reason: str = ""


def is_locked(path: str) -> bool:
    """True while a live recorder holds the journal."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def scan_journal(path: str) -> JournalScan:
    scan = JournalScan()
    scan.frames = list(_scan(path, scan))
    return scan


def _scan(path: str, scan: JournalScan) -> Iterator[dict]:
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise TraceCorruptError(f"journal {path} not found", path=path) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(len(HEADER))
        if not head.startswith(b"TELEMREC-JOURNAL "):
            raise TraceCorruptError(f"{path} is not a telemrec journal", path=path)
        if head != HEADER:
            from telemrec.errors import UnsupportedFormatVersionError
            raise UnsupportedFormatVersionError(
                f"{path}: journal version {head.decode(errors='replace').strip()} is not {HEADER.decode().strip()}",
                "Recover it with the telemrec version that recorded it.", path=path)
        pos = len(HEADER)
        scan.valid_bytes = pos
        while pos < size:
            head = f.read(_FRAME_HEAD.size)
            if len(head) < _FRAME_HEAD.size:
                scan.torn_reason = "truncated frame header"
                break
            magic, length, crc = _FRAME_HEAD.unpack(head)
            if magic != FRAME_MAGIC or length > MAX_FRAME:
                scan.torn_reason = "bad frame header"
                break
            payload = f.read(length)
            if len(payload) < length:
                scan.torn_reason = "truncated frame"
                break
            if zlib.crc32(payload) != crc:
                scan.torn_reason = "frame checksum mismatch"
                break
            try:
                obj = json.loads(zlib.decompress(payload))
            except (zlib.error, ValueError):
                scan.torn_reason = "undecodable frame"
                break
            pos += _FRAME_HEAD.size + length
            scan.valid_bytes = pos
            yield obj
        scan.torn_bytes = size - scan.valid_bytes


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

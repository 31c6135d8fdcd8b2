"""The recording journal: the crash-safe half of the trace format (docs/format.md, section 2).

While ``telemrec record`` runs, data goes to ``PATH.journal``: a header line, then
frames ``MAGIC | u32 length | u32 crc32 | u32 ordinal | payload``, each appended whole
and fsynced at every flush. A frame torn by a crash fails its length or CRC check and
is treated as never written, exactly like below's store. The ordinal (version 3) numbers
the frames from 0, so a frame missing from the middle or repeated is seen, not read
past: frames hold no other order that would show it. Frames carry
either JSON (the manifest, catalog additions, reader updates, the end) or a
*segment*: rows of one table already encoded and compressed, column by column,
so the stop copies them into the trace file instead of encoding the recording again.

Version 2 journals are version 3 without ordinals; version 1 journals (telemrec with
trace format 2) held records as JSON. Both are still read (``scan``, ``scan_v1``) so a
crashed recording of an older telemrec is recovered.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterable, Iterator

from telemrec.errors import TraceCorruptError, TraceWriteError, UnsupportedFormatVersionError
from telemrec.record import RawRecord
from telemrec.trace._version import JOURNAL_FORMAT_VERSION

HEADER = b"TELEMREC-JOURNAL %d\n" % JOURNAL_FORMAT_VERSION
HEADER_V2 = b"TELEMREC-JOURNAL 2\n"
HEADER_V1 = b"TELEMREC-JOURNAL 1\n"
_HEADER_PREFIX = b"TELEMREC-JOURNAL "
FRAME_MAGIC = b"\xf0TRF"
_FRAME_HEAD = struct.Struct("<4sII")      # versions 1 and 2: magic, length, CRC-32
_ORDINAL = struct.Struct("<I")              # version 3: then the frame's ordinal, covered by the CRC
_SLOT = struct.Struct("<QII")  # version 3, after the header line: the latest checkpoint (offset, ordinal, CRC-32)
_SEGMENT_HEAD = struct.Struct("<I")
JSON_FRAME, SEGMENT_FRAME = 0x4A, 0x53  # b"J", b"S"
MAX_FRAME = 1 << 30
JOURNAL_SUFFIX = ".journal"

_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def journal_path(trace_path: str) -> str:
    return trace_path + JOURNAL_SUFFIX


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
        self.frames = 0
        self.last_frame = (0, -1)  # (offset, ordinal) of the frame appended last
        try:
            self._write(HEADER + _SLOT.pack(0, 0, 0))
            self.append_json(first_frame)
            os.fsync(self._file.fileno())
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

    def _write(self, data) -> None:
        try:
            view = memoryview(data)
            while view:
                n = self._file.write(view)
                view = view[n:]
        except OSError as exc:
            raise TraceWriteError(f"writing {self.path} failed: {exc.strerror}", path=self.path,
                                  errno=exc.errno) from exc
        self.bytes_written += len(data)

    def append_json(self, obj: dict[str, Any]) -> int:
        payload = bytes([JSON_FRAME]) + zlib.compress(_encoder.encode(obj).encode("utf-8"), 3)
        return self._frame([payload])

    def append_segment(self, header: dict[str, Any] | bytes, streams: list[bytes]) -> int:
        """A segment frame (``header`` a dict, or its JSON text); returns the file offset of its first
        stream byte."""
        head = header if isinstance(header, bytes) else _encoder.encode(header).encode("utf-8")
        parts = [bytes([SEGMENT_FRAME]) + _SEGMENT_HEAD.pack(len(head)) + head, *streams]
        start = self.bytes_written + FRAME_HEAD_SIZE + len(parts[0])
        self._frame(parts)
        return start

    def _frame(self, parts: list[bytes]) -> int:
        data = frame_bytes(parts, self.frames)
        self.last_frame = (self.bytes_written, self.frames)
        self._write(data)
        self.frames += 1
        return len(data)

    def set_checkpoint(self, offset: int, ordinal: int) -> None:
        """Point the header's slot at a checkpoint frame already written (and synced): a live reader
        starts there. The slot is a hint: one torn or stale costs a reader a longer scan, nothing else."""
        head = struct.pack("<QI", offset, ordinal)
        try:
            os.pwrite(self._file.fileno(), _SLOT.pack(offset, ordinal, zlib.crc32(head)), len(HEADER))
        except OSError as exc:
            raise TraceWriteError(f"writing {self.path} failed: {exc.strerror}", path=self.path,
                                  errno=exc.errno) from exc

    def sync(self) -> None:
        """Make what was appended durable; fail (typed) if the journal was removed or replaced since
        it was created: whatever is written to a journal nobody can find is lost."""
        try:
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise TraceWriteError(f"fsync of {self.path} failed: {exc.strerror}", path=self.path) from exc
        self.check_present()

    def check_present(self) -> None:
        mine = os.fstat(self._file.fileno())
        try:
            there = os.stat(self.path)
        except OSError:
            there = None
        if mine.st_nlink == 0 or there is None or (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
            gone = not os.path.isdir(os.path.dirname(os.path.abspath(self.path)))
            raise TraceWriteError(
                f"{self.path} was {'removed with its directory' if gone else 'removed or replaced'} while recording",
                "Nothing may delete a recording's output directory or journal; the recorder saves what it holds "
                "where it can and says where.", path=self.path, vanished=True)

    @property
    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        if not self._file.closed:
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise TraceWriteError(f"fsync of {self.path} failed: {exc.strerror}", path=self.path) from exc
            finally:
                self._file.close()


FRAME_HEAD_SIZE = _FRAME_HEAD.size + _ORDINAL.size


def frame_bytes(parts: list[bytes], ordinal: int) -> bytes:
    """One version 3 frame holding the concatenated ``parts``, numbered ``ordinal``."""
    number = _ORDINAL.pack(ordinal)
    crc = zlib.crc32(number)
    for p in parts:
        crc = zlib.crc32(p, crc)
    return b"".join([_FRAME_HEAD.pack(FRAME_MAGIC, sum(map(len, parts)), crc), number, *parts])


@dataclass
class Frame:
    offset: int       # of the frame's magic in the file
    kind: int         # JSON_FRAME or SEGMENT_FRAME
    obj: dict         # the JSON object, or the segment's header
    body: int = 0     # segment frames: file offset of the first stream byte
    ordinal: int = -1  # version 3: its number


FIRST_FRAME_V3 = len(HEADER) + _SLOT.size


def read_slot(path: str) -> tuple[int, int] | None:
    """The checkpoint a version 3 journal's header points at: (offset, ordinal), or None."""
    with _open(path) as f:
        data = f.read(FIRST_FRAME_V3)
    if len(data) != FIRST_FRAME_V3 or data[:len(HEADER)] != HEADER:
        return None
    offset, ordinal, crc = _SLOT.unpack_from(data, len(HEADER))
    if not offset or zlib.crc32(data[len(HEADER):len(HEADER) + 12]) != crc:
        return None
    return offset, ordinal


def read_frames_at(path: str, refs: Iterable[tuple[int, int]], *, verify: bool) -> Iterator[tuple[Frame | None, int]]:
    """For each (offset, ordinal) of ``refs``: the version 3 frame with that number there and the
    offset after it, or (None, 0) when it is not there whole; the journal opened once for all."""
    with _open(path) as f:
        size = os.fstat(f.fileno()).st_size
        for offset, ordinal in refs:
            if not FIRST_FRAME_V3 <= offset < size:
                yield None, 0
                continue
            f.seek(offset)
            frame, _ = _read_frame(f, offset, size, verify, ordinal)
            yield frame, (f.tell() if frame is not None else 0)


@dataclass
class ScanResult:
    version: int = JOURNAL_FORMAT_VERSION
    size: int = 0
    valid_bytes: int = 0
    torn_bytes: int = 0
    torn_reason: str = ""
    ordinal: int = 0  # version 3: the number of the frame at valid_bytes


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


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on an open journal without waiting; False while a recorder (or a
    process recovering it) holds it. Closing ``fd`` releases it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise TraceCorruptError(f"journal {path} not found", path=path) from None


def journal_version(path: str) -> int:
    """1, 2 or 3, from the header line; TraceCorruptError / UnsupportedFormatVersionError otherwise."""
    with _open(path) as f:
        head = f.read(len(HEADER))
    if not head.startswith(_HEADER_PREFIX):
        raise TraceCorruptError(f"{path} is not a telemrec journal", path=path)
    if head == HEADER:
        return JOURNAL_FORMAT_VERSION
    if head == HEADER_V2:
        return 2
    if head == HEADER_V1:
        return 1
    raise UnsupportedFormatVersionError(
        f"{path}: journal version {head.decode(errors='replace').strip()} is not one this telemrec reads",
        "Recover it with the telemrec version that recorded it.", path=path)


def scan(path: str, result: ScanResult, *, verify: bool = True,
         start: tuple[int, int] | None = None) -> Iterator[Frame]:
    """The frames of a version 2 or 3 journal, in order, up to the first that fails its checks.

    ``verify``: check every frame's CRC-32 (recovery). Without it (a live recorder's journal)
    a segment frame's streams are not read here; each stream's own CRC-32 is checked when it
    is read. Version 3 frames must be numbered 0, 1, 2, ...: a gap or a repeat ends the
    journal there, as a torn frame does. ``start``: (offset, ordinal) of the frame to begin at
    (a version 3 journal read on from a checkpoint).
    """
    with _open(path) as f:
        size = result.size = os.fstat(f.fileno()).st_size
        head = f.read(len(HEADER))
        if head not in (HEADER, HEADER_V2):
            raise TraceCorruptError(f"{path} is not a version 2 or {JOURNAL_FORMAT_VERSION} telemrec journal",
                                    path=path)
        result.version = 3 if head == HEADER else 2
        ordinal = 0 if result.version == 3 else None
        pos = len(HEADER) if result.version == 2 else FIRST_FRAME_V3
        if start is not None and result.version == 3:
            pos, ordinal = start
        f.seek(pos)
        result.valid_bytes = pos
        while pos < size:
            frame, reason = _read_frame(f, pos, size, verify, ordinal)
            if frame is None:
                result.torn_reason = reason
                break
            pos = f.tell()
            result.valid_bytes = pos
            if ordinal is not None:
                ordinal += 1
            yield frame
        result.torn_bytes = size - result.valid_bytes


def _read_frame(f: BinaryIO, pos: int, size: int, verify: bool, ordinal: int | None) -> tuple[Frame | None, str]:
    head_size = _FRAME_HEAD.size if ordinal is None else FRAME_HEAD_SIZE
    head = f.read(head_size)
    if len(head) < head_size:
        return None, "truncated frame header"
    magic, length, crc = _FRAME_HEAD.unpack_from(head)
    if magic != FRAME_MAGIC or not 0 < length <= MAX_FRAME:
        return None, "bad frame header"
    end = pos + head_size + length
    if end > size:
        return None, "truncated frame"
    crc0 = 0
    if ordinal is not None:
        (found,) = _ORDINAL.unpack_from(head, _FRAME_HEAD.size)
        if found != ordinal:
            return None, (f"frame {ordinal} is missing (the frame there is numbered {found}): frames were removed, "
                          "repeated or reordered")
        crc0 = zlib.crc32(head[_FRAME_HEAD.size:])
    body = pos + head_size
    kind = f.read(1)[0]
    if kind == SEGMENT_FRAME and not verify:
        raw = f.read(_SEGMENT_HEAD.size)
        (hlen,) = _SEGMENT_HEAD.unpack(raw) if len(raw) == _SEGMENT_HEAD.size else (length,)
        if 1 + _SEGMENT_HEAD.size + hlen > length:
            return None, "bad segment header"
        header = _json(f.read(hlen))
        f.seek(end)
        if not isinstance(header, dict):
            return None, "undecodable frame"
        return Frame(pos, kind, header, body + 1 + _SEGMENT_HEAD.size + hlen, _no(ordinal)), ""
    payload = bytes([kind]) + f.read(length - 1)
    if zlib.crc32(payload, crc0) != crc:
        return None, "frame checksum mismatch"
    if kind == JSON_FRAME:
        try:
            obj = _json(zlib.decompress(payload[1:]))
        except zlib.error:
            obj = None
        if not isinstance(obj, dict):
            return None, "undecodable frame"
        return Frame(pos, kind, obj, 0, _no(ordinal)), ""
    if kind == SEGMENT_FRAME and length >= 1 + _SEGMENT_HEAD.size:
        (hlen,) = _SEGMENT_HEAD.unpack_from(payload, 1)
        header = _json(payload[1 + _SEGMENT_HEAD.size:1 + _SEGMENT_HEAD.size + hlen]) \
            if 1 + _SEGMENT_HEAD.size + hlen <= length else None
        if isinstance(header, dict):
            return Frame(pos, kind, header, body + 1 + _SEGMENT_HEAD.size + hlen, _no(ordinal)), ""
    return None, "undecodable frame"


def _no(ordinal: int | None) -> int:
    return -1 if ordinal is None else ordinal


def _json(data: bytes):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


# -- version 1 (telemrec with trace format 2): JSON records, folded by re-writing them ----------------

def _decode_fields(fields: dict) -> dict:
    for key, value in fields.items():
        if type(value) is dict:
            fields[key] = struct.unpack("<d", struct.pack("<q", value["f64"]))[0]
    return fields


def decode_record_v1(row: list) -> RawRecord:
    mono, wall, source, version, entity, fields, error = row
    return RawRecord(mono, wall, entity, _decode_fields(fields), source, version, error)


def scan_v1(path: str, result: ScanResult) -> Iterator[dict]:
    """The JSON objects of a version 1 journal, up to the first frame that fails its checks."""
    result.version = 1
    with _open(path) as f:
        size = result.size = os.fstat(f.fileno()).st_size
        if f.read(len(HEADER_V1)) != HEADER_V1:
            raise TraceCorruptError(f"{path} is not a version 1 telemrec journal", path=path)
        pos = result.valid_bytes = len(HEADER_V1)
        while pos < size:
            head = f.read(_FRAME_HEAD.size)
            if len(head) < _FRAME_HEAD.size:
                result.torn_reason = "truncated frame header"
                break
            magic, length, crc = _FRAME_HEAD.unpack(head)
            if magic != FRAME_MAGIC or length > MAX_FRAME:
                result.torn_reason = "bad frame header"
                break
            payload = f.read(length)
            if len(payload) < length:
                result.torn_reason = "truncated frame"
                break
            if zlib.crc32(payload) != crc:
                result.torn_reason = "frame checksum mismatch"
                break
            try:
                obj = json.loads(zlib.decompress(payload))
            except (zlib.error, ValueError):
                result.torn_reason = "undecodable frame"
                break
            pos += _FRAME_HEAD.size + length
            result.valid_bytes = pos
            yield obj
        result.torn_bytes = size - result.valid_bytes


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Reading and parsing the per-process files of procfs exactly as psutil 7 interprets them.

Each parser names the psutil code it mirrors; ``tests/readers/test_procfs_collector.py``
holds them to psutil on live processes.
"""

from __future__ import annotations

import os
import re
import sys

__all__ = ["CLOCK_TICKS", "PAGE_SIZE", "STATUS_NAMES", "cmdline_argv", "decode", "io_counters", "read_file",
           "smaps_rollup_uss", "smaps_uss", "split_stat", "status_ctx_uid", "status_ppid_uid"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_ENCODING = sys.getfilesystemencoding()
_ENCODING_ERRS = sys.getfilesystemencodeerrors()

# psutil._pslinux.PROC_STATUSES, keyed by the state letter of /proc/<pid>/stat
STATUS_NAMES = {b"R": "running", b"S": "sleeping", b"D": "disk-sleep", b"T": "stopped", b"t": "tracing-stop",
                b"Z": "zombie", b"X": "dead", b"x": "dead", b"K": "wake-kill", b"W": "waking", b"I": "idle",
                b"P": "parked"}

# /proc/<pid>/stat after the ")" that closes the name: indexes of the fields used (proc(5) number - 3)
STATE, PPID, UTIME, STIME, CUTIME, CSTIME, NUM_THREADS, STARTTIME, BLKIO_TICKS = 0, 1, 11, 12, 13, 14, 17, 19, 39

_IO_KEYS = (b"syscr", b"syscw", b"read_bytes", b"write_bytes", b"rchar", b"wchar")
_SMAPS_PRIVATE = re.compile(rb"\nPrivate.*:\s+(\d+)")


def decode(data: bytes) -> str:
    """psutil._common.decode: the filesystem encoding, undecodable bytes kept as surrogates."""
    return data.decode(_ENCODING, _ENCODING_ERRS)


def read_file(path: str, size: int = 4096) -> bytes:
    """The whole file, opened and closed again."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_fd(fd, size)
    finally:
        os.close(fd)


def read_fd(fd: int, size: int = 4096) -> bytes:
    """The whole content of a procfs file from its start: procfs generates it anew on each read
    at offset 0, so a kept descriptor gives the current value without open() and close()."""
    data = os.pread(fd, size, 0)
    if len(data) < size:  # procfs files return short only at their end
        return data
    chunks = [data]
    offset = len(data)
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def split_stat(data: bytes) -> tuple[bytes, list[bytes]]:
    """The name and the fields after it (psutil's _parse_stat_file: the name lies between the
    first "(" and the last ")", and may hold spaces and parentheses)."""
    rpar = data.rfind(b")")
    return data[data.find(b"(") + 1:rpar], data[rpar + 2:].split()


def status_ppid_uid(status: bytes) -> tuple[int, int]:
    """PPid and real Uid from the text of /proc/<pid>/status."""
    values = []
    for key in (b"\nPPid:", b"\nUid:"):
        start = status.index(key) + len(key)
        values.append(int(status[start:status.index(b"\n", start)].split()[0]))
    return values[0], values[1]


def status_ctx_uid(status: bytes) -> tuple[int, int, int]:
    """Voluntary and involuntary context switches and the real uid (psutil's num_ctx_switches
    and uids().real); ValueError when a line is missing."""
    out = []
    for key in (b"\nvoluntary_ctxt_switches:", b"\nnonvoluntary_ctxt_switches:", b"\nUid:"):
        start = status.find(key)
        if start < 0:
            raise ValueError(f"no {key[1:-1].decode()} line in /proc/<pid>/status")
        start += len(key)
        end = status.find(b"\n", start)
        out.append(int(status[start:end if end >= 0 else len(status)].split()[0]))
    return out[0], out[1], out[2]


def io_counters(data: bytes) -> tuple[int, ...]:
    """psutil's io_counters: (read_count, write_count, read_bytes, write_bytes, read_chars,
    write_chars); RuntimeError for an empty file and ValueError for a missing line, as psutil."""
    values = {}
    for line in data.split(b"\n"):
        name, sep, value = line.strip().partition(b": ")
        if sep:
            values[name] = int(value)
    if not values:
        raise RuntimeError("io file was empty")
    try:
        return tuple(values[key] for key in _IO_KEYS)
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]!r} field was not found in the io file") from None


def cmdline_argv(data: bytes) -> list[str]:
    """psutil's cmdline(): text as open_text() reads it (universal newlines), split on NUL, or on
    spaces for processes that rewrote their command line (setproctitle)."""
    text = decode(data)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    sep = "\x00" if text.endswith("\x00") else " "
    if text.endswith(sep):
        text = text[:-1]
    argv = text.split(sep)
    if sep == "\x00" and len(argv) == 1 and " " in text:
        argv = text.split(" ")
    return argv


def smaps_rollup_uss(data: bytes) -> int:
    """psutil's _parse_smaps_rollup: the Private_* lines, kB to bytes."""
    return sum(int(line.split()[1]) * 1024 for line in data.split(b"\n") if line.startswith(b"Private_"))


def smaps_uss(data: bytes) -> int:
    """psutil's _parse_smaps (its fallback where smaps_rollup refuses a live process)."""
    return sum(map(int, _SMAPS_PRIVATE.findall(data.strip()))) * 1024

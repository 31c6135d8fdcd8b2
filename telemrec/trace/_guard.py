"""A bounded first look at the HDF5 metadata of format 1 and 2 traces.

Formats 1 and 2 keep every entity and field name as a variable-length string attribute:
those live in HDF5's global heap, which has no checksum, and damage there can make HDF5
loop forever inside a read (fuzzing found it: zeroed bytes, then `telemrec info` spinning
at 100 % CPU). A thread stuck in C cannot be interrupted, so before a format 1 or 2 file
is used, a forked child reads every object's metadata (groups, attributes, dataset
headers), reporting each object it is done with; if it stalls on one object (no healthy
read takes seconds) or dies, the file is damaged and is reported as such instead of
hanging the caller. A large healthy file is never cut short by its size alone. Format 3 keeps no variable-length string (its
metadata is all checksummed), so it needs no such look.
"""

from __future__ import annotations

import os
import select
import signal
import time
import warnings

from telemrec.errors import TraceCorruptError

_LOOKED: set[tuple] = set()  # files (device, inode, size, mtime) already looked at by this process
STALL_S = 3.0  # one object's metadata not read in this long: HDF5 is looping (healthy reads take microseconds)


def look_first(path: str, timeout: float | None = None, stall: float = STALL_S) -> None:
    """Read every object's metadata of ``path`` in a child process; TraceCorruptError if it stalls,
    runs past ``timeout`` in all, or dies."""
    if not hasattr(os, "fork"):
        return
    try:
        st = os.stat(path)
    except OSError:
        return  # the caller's open reports it
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _LOOKED:
        return
    limit = timeout if timeout is not None else 60.0 + st.st_size / 1e6
    progress_r, progress_w = os.pipe()
    pid = _fork()
    if pid == 0:  # the child: walk, then leave without running the parent's exit handlers
        code = 3
        try:
            os.close(progress_r)
            _walk(path, lambda: os.write(progress_w, b"."))
            code = 0
        finally:
            os._exit(code)
    os.close(progress_w)
    try:
        status = _watch(pid, progress_r, stall, limit)
    finally:
        os.close(progress_r)
    if status is None:
        raise TraceCorruptError(f"{path}: reading its HDF5 metadata does not finish (stuck for {stall:.0f} s on one "
                                "object): the file is damaged", "Restore it from a copy; `telemrec check` says the same.",
                                path=path)
    if os.WIFSIGNALED(status):
        raise TraceCorruptError(f"{path}: reading its HDF5 metadata crashed the HDF5 library "
                                f"(signal {os.WTERMSIG(status)}): the file is damaged", path=path)
    if os.WEXITSTATUS(status) == 0:
        _LOOKED.add(key)
    # another failure is left to the caller's own reads, which report it as TraceCorruptError


def _watch(pid: int, progress: int, stall: float, limit: float):
    """The child's wait status, or None once it stalled (or ran past ``limit``) and was killed."""
    start = last = time.monotonic()
    while True:
        ready, _, _ = select.select([progress], [], [], 0.05)
        if ready and os.read(progress, 65536):
            last = time.monotonic()
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        now = time.monotonic()
        if now - last > stall or now - start > limit:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None


def _fork() -> int:
    import h5py

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12 warns about forking with threads
        with h5py._objects.phil:  # h5py's lock, held across the fork so the child may use HDF5
            return os.fork()


def _walk(path: str, done=lambda: None) -> None:
    """Every object reachable by name, as the readers reach them (``group[name]``), its attributes
    and its small string datasets; an object that fails is passed over, not the end of the walk
    (h5py's ``visititems`` stops at the first failure, and would leave the objects after it to
    hang the reader)."""
    import h5py

    def look(obj) -> None:
        done()
        for key in _keys(obj.attrs):
            _quietly(lambda: obj.attrs[key])
        if isinstance(obj, h5py.Dataset):
            obj.shape, obj.dtype, obj.chunks
            if obj.dtype.kind == "O" and obj.size <= 1:
                obj[()]

    def walk(group, depth: int) -> None:
        for key in _keys(group):
            obj = _quietly(lambda: group[key])
            if obj is None:
                continue
            _quietly(lambda: look(obj))
            if isinstance(obj, h5py.Group) and depth < 32:
                walk(obj, depth + 1)

    with h5py.File(path, "r") as h5:
        _quietly(lambda: look(h5))
        walk(h5, 0)


def _keys(container) -> list:
    """The names in a group or attribute set, as many as can be listed."""
    names = []
    try:
        for name in container:
            names.append(name)
    except Exception:  # a damaged link table: the names before the damage are still looked at
        pass
    return names


def _quietly(read):
    try:
        return read()
    except Exception:  # damage the readers report themselves, typed; the walk looks for hangs
        return None

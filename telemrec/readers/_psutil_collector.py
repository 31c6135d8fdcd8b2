"""The psutil reader's portable process collector: psutil's Process objects, the reference
that ``_procfs_collector`` matches field by field (``-O collector=psutil``).

Membership is found as the procfs collector finds it (the target's descendants through
the ``children`` files, the user's processes by real uid, the job's by environment), with
psutil's walk where the kernel has no ``children`` files. The reader sets
``psutil.PROCFS_PATH`` to the procfs root around each tick.
"""

from __future__ import annotations

import os
from typing import Any

from telemrec.readers._processes import PROCESS_TUPLES, PROCESS_SCALARS, ProcessReading, Vanished, cmdline_field
from telemrec.readers._procfs import read_file, status_ppid_uid

__all__ = ["PsutilCollector"]


class PsutilCollector:
    """One psutil.Process per member, kept between ticks while its pid stays a member
    (psutil's constructor costs two file reads); psutil's own create_time check tells a
    reused pid from the process it replaced."""

    def __init__(self, ps: Any, root: str, *, redact: bool = True):
        self._ps = ps
        self._root = root
        self._redact = redact
        self._cmdlines: dict[int, tuple[list[str], str]] = {}  # pid -> (argv, its field): redacted once
        self._procs: dict[int, Any] = {}
        self._kthreads: set[int] = set()
        self._children_files: bool | None = None

    def close(self) -> None:
        self._procs.clear()
        self._kthreads.clear()
        self._cmdlines.clear()

    # -- membership ----------------------------------------------------------------------
    def collect(self, target: int | None, uid: int | None, slurm_needle: bytes) -> tuple[list[ProcessReading], int]:
        members: dict[int, list[str]] = {}
        if target is not None:
            for pid in self._descendants(target):
                members[pid] = ["process"]
        if uid is not None or slurm_needle:
            self._scan(members, uid, slurm_needle)
        return self._read_members(members), len(members)

    def _descendants(self, target: int) -> list[int]:
        root = self._root
        if self._children_files is None:
            self._children_files = os.path.exists(f"{root}/{target}/task/{target}/children")
        if not self._children_files:
            try:
                return [target, *(child.pid for child in self._ps.Process(target).children(recursive=True))]
            except self._ps.NoSuchProcess:
                return []
        found, seen, i = [target], {target}, 0
        while i < len(found):
            pid = found[i]
            i += 1
            try:
                tids = os.listdir(f"{root}/{pid}/task")
            except OSError:
                if pid == target:
                    return []
                continue
            for tid in tids:
                try:
                    data = read_file(f"{root}/{pid}/task/{tid}/children")
                except OSError:  # the thread ended; its children moved to a sibling thread
                    continue
                for child in map(int, data.split()):
                    if child not in seen:
                        seen.add(child)
                        found.append(child)
        return found

    def _scan(self, members: dict[int, list[str]], uid: int | None, needle: bytes) -> None:
        root = self._root
        alive_kthreads: set[int] = set()
        for name in os.listdir(root):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in self._kthreads:
                alive_kthreads.add(pid)
                continue
            in_user = False
            if uid is not None:
                try:
                    ppid, real_uid = status_ppid_uid(read_file(f"{root}/{name}/status"))
                except (OSError, ValueError, IndexError):  # exited since listdir, or not a process dir
                    continue
                if pid == 2 or ppid == 2:
                    alive_kthreads.add(pid)
                    continue
                in_user = real_uid == uid
            in_slurm = False
            if needle:
                try:
                    in_slurm = needle in b"\0" + read_file(f"{root}/{name}/environ") + b"\0"
                except OSError:  # someone else's process: its environment is private
                    pass
            if in_user or in_slurm:
                levels = members.setdefault(pid, [])
                if in_user:
                    levels.append("user")
                if in_slurm:
                    levels.append("slurm")
        self._kthreads = alive_kthreads

    # -- reads ---------------------------------------------------------------------------
    def _read_members(self, members: dict[int, list[str]]) -> list[ProcessReading]:
        ps = self._ps
        cache: dict[int, Any] = {}
        readings = []
        for pid in sorted(members):
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = ps.Process(pid)
                fields, problems = self._read_process(proc)
            except ps.NoSuchProcess:  # exited before or while read: no record
                continue
            cache[pid] = proc
            readings.append(ProcessReading(pid, fields, problems, members[pid]))
        self._procs = cache
        if len(self._cmdlines) > len(cache):
            self._cmdlines = {pid: v for pid, v in self._cmdlines.items() if pid in cache}
        return readings

    def _read_process(self, proc: Any) -> tuple[dict[str, Any], list[str]]:
        """One process's fields; raises NoSuchProcess when it has exited."""
        fields: dict[str, Any] = {}
        problems: list[str] = []
        with proc.oneshot():
            for call, attrs in PROCESS_TUPLES:
                value = self._call(proc, call, problems)
                for attr in attrs:
                    fields[f"{call}.{attr}"] = getattr(value, attr, None)
            for call in PROCESS_SCALARS:
                fields[call] = self._call(proc, call, problems)
            argv = self._call(proc, "cmdline", problems)
            fields["cmdline"] = None if argv is None else self._cmdline(proc.pid, argv)
        return fields, problems

    def _cmdline(self, pid: int, argv: list[str]) -> str:
        last = self._cmdlines.get(pid)
        if last is not None and last[0] == argv:
            return last[1]
        text = cmdline_field(argv, self._redact)
        self._cmdlines[pid] = (argv, text)
        return text

    def uss(self, reading: ProcessReading) -> tuple[int | None, str | None]:
        problems: list[str] = []
        try:
            value = self._call(self._procs[reading.pid], "memory_full_info", problems)
        except self._ps.NoSuchProcess:
            raise Vanished(reading.pid) from None
        return getattr(value, "uss", None), (problems[0] if problems else None)

    def _call(self, proc: Any, call: str, problems: list[str]) -> Any:
        ps = self._ps
        try:
            return getattr(proc, call)()
        except (ps.AccessDenied, ps.ZombieProcess) as exc:
            problems.append(f"{call}: {type(exc).__name__}")
        except ps.NoSuchProcess:
            raise
        except Exception as exc:  # e.g. io_counters on a kernel without task I/O accounting
            problems.append(f"{call}: {type(exc).__name__}: {exc}")
        return None

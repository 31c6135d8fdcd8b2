"""The psutil reader's default process collector: procfs read directly, with the fewest
reads per process per tick, giving the fields psutil gives (``-O processes=procfs``).

Each member is read by ``_procfs_process.ProcessFiles`` (which files, and when). This
module decides who the members are.

Membership: the ``process`` level is the target and its descendants, found through the
``children`` files of the processes that may have forked since the last tick (one that has
not run cannot have), and only when the pid namespace handed out a pid since the last tick;
checked every tick against the parents named in ``stat``. The
``user`` and ``slurm`` levels scan the procfs root: each pid is classified once (its real
uid from ``status``, its environment for the job id, whether it is a kernel thread); after
that only its directory's owner is looked at (one ``stat()``), which changes with the
effective uid, e.g. when a root process becomes the user (``su``, ``sshd``). A process
that changes only its real uid while keeping a foreign effective uid is not seen to change.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass

from telemrec.readers._procfs import PPID, read_file, split_stat, status_ppid_uid
from telemrec.readers._procfs_native import native
from telemrec.readers._procfs_process import Proc, ProcessFiles
from telemrec.readers._processes import CALL_ORDER, PROCESS_FIELDS, ProcessReading, Vanished

__all__ = ["ProcfsCollector"]

_FIELD_KEYS = tuple(key for key in PROCESS_FIELDS if key != "levels")
_CALLS = tuple(call for call in CALL_ORDER if call != "memory_full_info")


@dataclass(slots=True)
class _Seen:
    """A pid's classification for the user and slurm levels, valid while its directory is the same."""

    ino: int
    owner: int
    kthread: bool
    real_uid: int
    slurm: bool


class ProcfsCollector:
    """Reads the members of the process levels from ``root`` (a procfs mount or a fake tree)."""

    def __init__(self, root: str, fd_budget: int | None = None, *, redact: bool = True,
                 compiled: bool | None = None):
        self._root = root
        self._native = native(compiled)  # compiled=False: the pure-Python hot path (tests compare both)
        self._files = ProcessFiles(root, fd_budget, redact=redact, refresh=self._native.refresh)
        self._states: dict[int, Proc] = {}
        self._seen: dict[int, _Seen] = {}
        self._memo: dict[int, ProcessReading | None] = {}
        self._quiet: dict[int, dict] = {}  # pid -> its last fields, for those that have not run since
        self._tick = 0
        self._children_files: bool | None = None
        self._last_pid_fd: int | None = None
        self._last_pid = b""
        self._last: list[tuple[int, tuple[str, ...]]] | None = None  # the last tick's members and levels
        self._foreign: list[tuple[int, _Seen]] = []  # the user level's others (not the user's, no kernel thread)

    @property
    def compiled(self) -> bool:
        """Whether the compiled hot path (_cprocfs) is in use."""
        return self._native.compiled

    @property
    def open_files(self) -> int:
        return self._files.open_files

    def close(self) -> None:
        self._last = None
        for pid in list(self._states):
            self._drop(pid)
        self._seen.clear()
        if self._last_pid_fd is not None and self._last_pid_fd >= 0:
            os.close(self._last_pid_fd)
        self._last_pid_fd = None

    # -- one tick ------------------------------------------------------------------------
    def collect(self, target: int | None, uid: int | None, slurm_needle: bytes) -> tuple[list[ProcessReading], int]:
        self._tick += 1
        self._files.next_tick()
        self._memo = {}
        states = [st for st in self._states.values() if not st.gone]
        self._quiet = {st.pid: fields for st, fields in zip(states, self._native.poll(states)) if fields is not None}
        created = self._pids_allocated()
        if not created and self._last is not None:
            readings = self._steady(uid)
            if readings is not None:
                if len(self._states) != len(readings):  # else every state was read at this tick
                    self._drop_unread()
                return readings, len(readings)
        members: dict[int, list[str]] = {}
        if target is not None:
            for pid in self._walk(target, created):
                members[pid] = ["process"]
        if uid is not None or slurm_needle:
            if created:
                self._scan(uid, slurm_needle, members)
            else:
                self._rescan(uid, members)
        readings = []
        memo = self._memo
        for pid in sorted(members):
            reading = memo[pid] if pid in memo else self._read(pid)
            if reading is None:
                self._seen.pop(pid, None)
                continue
            levels = members[pid]
            if "user" in levels:
                real = reading.fields["uids.real"]
                seen = self._seen.get(pid)
                if seen is not None and real is not None:
                    seen.real_uid = real
                if real is not None and real != uid:  # it changed its uid while being read
                    levels.remove("user")
                    if not levels:
                        continue
            reading.levels = levels
            readings.append(reading)
        self._last = [(r.pid, tuple(r.levels)) for r in readings] if len(readings) == len(members) else None
        self._foreign = [(pid, info) for pid, info in self._seen.items()
                         if uid is not None and not info.kthread and info.real_uid != uid]
        self._drop_unread()
        return readings, len(members)

    def _steady(self, uid: int | None) -> list[ProcessReading] | None:
        """The members when no pid was handed out since the last tick: the last tick's, with the
        same levels, as long as each is still there and keeps its real uid, and no other process
        changed its owner. A tree only loses members when one exits (its children are re-parented);
        it gains them only by new pids. None: something changed, and the full walk and scan decide
        (what was read here is kept for them)."""
        readings, todo = self._native.steady(self._last, self._quiet, self._states, self._memo, self._tick,
                                             ProcessReading)
        for i in todo:  # members that ran (or are not known): read, and their real uid checked
            pid, levels = self._last[i]
            reading = self._read(pid)
            if reading is None:
                return None
            real = reading.fields["uids.real"]
            if "user" in levels and real is not None and real != uid:
                return None
            reading.levels = list(levels)
            readings[i] = reading
        for pid, info in self._foreign:
            if self._recheck(pid, info, uid) is not info:
                return None
        return readings

    def _drop_unread(self) -> None:
        for pid in [pid for pid, st in self._states.items() if st.gone or st.tick != self._tick]:
            self._drop(pid)

    # -- the process level -----------------------------------------------------------------
    def _walk(self, target: int, created: bool) -> list[int]:
        if self._children_files is None:
            self._children_files = os.path.exists(f"{self._root}/{target}/task/{target}/children")
        parents = self._walk_children(target, created) if self._children_files else self._walk_stat(target)
        if target not in parents:
            return []
        by_parent: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            by_parent.setdefault(ppid, []).append(pid)
        # members are those whose parent, as stat names it this tick, is a member: a child found in a
        # stale list whose pid now names an unrelated process, or an orphan re-parented out of the
        # tree, is not one
        members, seen, i = [target], {target}, 0
        while i < len(members):
            for child in by_parent.get(members[i], ()):
                if child not in seen:
                    seen.add(child)
                    members.append(child)
            i += 1
        return members

    def _walk_children(self, target: int, created: bool) -> dict[int, int]:
        parents: dict[int, int] = {}
        queue, queued = deque([target]), {target}
        while queue:
            pid = queue.popleft()
            reading = self._read(pid)
            st = self._states.get(pid)
            if reading is not None:
                parents[pid] = reading.fields["ppid"]
                if st.children is None or (st.ran and created):
                    st.children = self._files.children(st)
            # a member that vanished leaves its last children to look for: orphans get new parents,
            # maybe a subreaper in the tree
            for child in (st.children or ()) if st is not None else ():
                if child not in queued:
                    queued.add(child)
                    queue.append(child)
        return parents

    def _walk_stat(self, target: int) -> dict[int, int]:
        """Without CONFIG_PROC_CHILDREN: every process's parent from its stat, as psutil walks."""
        children: dict[int, list[int]] = {}
        for name in os.listdir(self._root):
            if name.isdigit():
                try:
                    ppid = int(split_stat(read_file(f"{self._root}/{name}/stat"))[1][PPID])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(name))
        parents: dict[int, int] = {}
        queue, queued = deque([target]), {target}
        while queue:
            pid = queue.popleft()
            reading = self._read(pid)
            if reading is not None:
                parents[pid] = reading.fields["ppid"]
            for child in children.get(pid, ()):
                if child not in queued:
                    queued.add(child)
                    queue.append(child)
        return parents

    def _pids_allocated(self) -> bool:
        """Whether a process or thread may have been created since the last tick: the last pid
        the pid namespace gave out has moved (known only where the root is the reader's own
        procfs, and the kernel has CONFIG_CHECKPOINT_RESTORE)."""
        if self._last_pid_fd is None:
            self._last_pid_fd = -1
            try:
                if os.readlink(f"{self._root}/self") == str(os.getpid()):
                    self._last_pid_fd = os.open(f"{self._root}/sys/kernel/ns_last_pid", os.O_RDONLY)
            except OSError:
                pass
        if self._last_pid_fd < 0:
            return True
        try:
            value = os.pread(self._last_pid_fd, 32, 0)
        except OSError:
            return True
        created, self._last_pid = value != self._last_pid, value
        return created

    # -- the user and slurm levels -------------------------------------------------------
    def _scan(self, uid: int | None, needle: bytes, members: dict[int, list[str]]) -> None:
        root = self._root
        seen: dict[int, _Seen] = {}
        with os.scandir(root) as entries:
            for entry in entries:
                name = entry.name
                if not name.isdigit():
                    continue
                pid = int(name)
                try:
                    ino = entry.inode()
                except OSError:
                    continue
                info = self._seen.get(pid)
                if info is None or info.ino != ino:
                    st = self._states.get(pid)
                    if st is not None and st.ino is not None and st.ino != ino:
                        self._drop(pid)  # the pid names another process now
                        self._memo.pop(pid, None)
                    info = self._classify(pid, ino, needle)
                else:
                    info = self._recheck(pid, info, uid)
                if info is not None:
                    seen[pid] = info
                    self._join(members, pid, info, uid)
        self._seen = seen

    def _rescan(self, uid: int | None, members: dict[int, list[str]]) -> None:
        """The scan when no pid has been handed out since the last one: the same pids, so only
        the owners of those not the user's are looked at again."""
        for pid, info in list(self._seen.items()):
            info = self._recheck(pid, info, uid)
            if info is None:
                del self._seen[pid]
            else:
                self._seen[pid] = info
                self._join(members, pid, info, uid)

    def _recheck(self, pid: int, info: _Seen, uid: int | None) -> _Seen | None:
        """A known pid not the user's: classified again if its directory's owner (the effective
        uid) changed; None if it exited."""
        if uid is None or info.kthread or info.real_uid == uid:
            return info  # the user's own are checked by reading them
        try:
            owner = os.stat(f"{self._root}/{pid}").st_uid
        except OSError:
            return None
        return info if owner == info.owner else self._classify(pid, info.ino, b"", slurm=info.slurm)

    @staticmethod
    def _join(members: dict[int, list[str]], pid: int, info: _Seen, uid: int | None) -> None:
        if info.kthread:
            return
        in_user = uid is not None and info.real_uid == uid
        if in_user or info.slurm:
            levels = members.setdefault(pid, [])
            if in_user:
                levels.append("user")
            if info.slurm:
                levels.append("slurm")

    def _classify(self, pid: int, ino: int, needle: bytes, slurm: bool | None = None) -> _Seen | None:
        path = f"{self._root}/{pid}"
        try:
            owner = os.stat(path).st_uid
            ppid, real_uid = status_ppid_uid(read_file(path + "/status", 8192))
        except (OSError, ValueError, IndexError):  # exited since the scan, or not a process directory
            return None
        kthread = pid == 2 or ppid == 2  # kthreadd and its children: nobody's workload
        if slurm is None:
            slurm = False
            if needle and not kthread:
                try:
                    slurm = needle in b"\0" + read_file(path + "/environ", 65536) + b"\0"
                except OSError:  # someone else's process: its environment is private
                    pass
        return _Seen(ino, owner, kthread, real_uid, slurm)

    # -- one process -------------------------------------------------------------------------
    def _read(self, pid: int) -> ProcessReading | None:
        if pid in self._memo:
            return self._memo[pid]
        st = self._states.get(pid)
        if st is None or st.gone:
            seen = self._seen.get(pid)
            st = self._states[pid] = Proc(pid, f"{self._root}/{pid}/", seen.ino if seen else None)
        st.tick = self._tick
        fields = self._quiet.get(pid)
        if fields is not None:
            reading = self._memo[pid] = ProcessReading(pid, fields, list(st.problems), proc=st)
            return reading
        try:
            reading = self._files.read(st)
        except Vanished:
            reading = None
            self._files.release(st)
            st.gone = True
        except PermissionError:  # stat refused (hidepid=1): psutil refuses every call
            reading = ProcessReading(pid, dict.fromkeys(_FIELD_KEYS), [f"{call}: AccessDenied" for call in _CALLS])
        except (OSError, IndexError, ValueError) as exc:  # an I/O error, or a stat procfs does not write
            reading = ProcessReading(pid, dict.fromkeys(_FIELD_KEYS), [f"stat: {type(exc).__name__}: {exc}"])
        self._memo[pid] = reading
        return reading

    def uss(self, reading: ProcessReading) -> tuple[int | None, str | None]:
        return self._files.uss(self._states[reading.pid])

    def _drop(self, pid: int) -> None:
        self._quiet.pop(pid, None)
        st = self._states.pop(pid, None)
        if st is not None:
            self._files.release(st)

"""The psutil reader's default process collector: procfs read directly, with the fewest
reads per process per tick, giving the fields psutil gives (``-O collector=procfs``).

Per member and tick:

- ``stat``, always: CPU times, RSS and VMS (the same kernel counters psutil reads from
  ``statm``), parent, threads, state, name; ``create_time`` once per process.
- ``status``, ``io`` and ``cmdline`` (context switches, real uid, I/O counters, command
  line) only when the process may have changed them: they change only while the process
  runs. A process whose ``stat`` shows one thread and a state other than R, and whose
  ``schedstat`` run time has not moved since they were last read, has not run since (the
  kernel adds the run time at every switch away from the CPU), so their last values still
  hold. Anything else (several threads, R, a kernel without schedstat) reads them every tick.
- The files are opened once and kept: procfs generates a file anew on each read at offset
  0, and a kept descriptor stays bound to its process, so a pid reused by a new process
  reads as ESRCH: the old process vanished, and the new one gets fresh descriptors. Half of
  RLIMIT_NOFILE may be kept; beyond it files are opened per read and a reused pid is told
  by its start time.

Membership: the ``process`` level is the target and its descendants, found through the
``children`` files of the processes that may have forked since the last tick (one that has
not run cannot have), checked every tick against the parents named in ``stat``. The
``user`` and ``slurm`` levels scan the procfs root: each pid is classified once (its real
uid from ``status``, its environment for the job id, whether it is a kernel thread); after
that only its directory's owner is looked at (one ``stat()``), which changes with the
effective uid, e.g. when a root process becomes the user (``su``, ``sshd``). A process
that changes only its real uid while keeping a foreign effective uid is not seen to change.
"""

from __future__ import annotations

import os
import resource
from collections import deque
from dataclasses import dataclass
from typing import Any

from telemrec.readers._procfs import (
    BLKIO_TICKS, CLOCK_TICKS, CSTIME, CUTIME, NUM_THREADS, PAGE_SIZE, PPID, STARTTIME, STATE, STATUS_NAMES,
    STIME, UTIME, cmdline_argv, decode, io_counters, read_fd, read_file, smaps_rollup_uss, smaps_uss,
    split_stat, status_ctx_uid, status_ppid_uid)
from telemrec.readers._processes import PROCESS_FIELDS, ProcessReading, Vanished

__all__ = ["ProcfsCollector", "default_fd_budget"]

_GONE = (ProcessLookupError, FileNotFoundError)
# With more threads, reading each one's schedstat costs more than reading status, io and cmdline
GATE_THREADS = 8
_NO_SLOW = ((None,) * 6, None, None, None, None)
_FIELD_KEYS = tuple(key for key in PROCESS_FIELDS if key != "levels")


def _parse_io(data: bytes) -> tuple[tuple, str | None]:
    try:
        return io_counters(data), None
    except (RuntimeError, ValueError) as exc:
        return (None,) * 6, f"io_counters: {type(exc).__name__}: {exc}"


def default_fd_budget() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 65536 if soft == resource.RLIM_INFINITY else max(0, soft // 2 - 32)


class _Proc:
    """What is known of one process between ticks."""

    __slots__ = ("pid", "prefix", "ino", "fds", "start", "create_time", "stat", "comm", "split", "threads", "statm",
                 "tids", "gate", "slow", "problems", "argv", "parsed", "fields", "children", "ran", "tick", "gone")

    def __init__(self, pid: int, prefix: str, ino: int | None):
        self.pid, self.prefix, self.ino = pid, prefix, ino
        self.fds: dict[str, int] = {}
        self.start: bytes | None = None
        self.create_time: float | None = None
        self.stat = b""                   # the last stat, split
        self.comm = b""
        self.split: list[bytes] = []
        self.threads = 0
        self.statm = b""
        self.tids: list[int] | None = None   # the threads, where known to be current
        # each thread's schedstat (run time, wait, switches in) when status, io and cmdline were last
        # read; None where not known
        self.gate: list[tuple[str, bytes]] | None = None
        self.slow: tuple = _NO_SLOW       # (io tuple, voluntary, involuntary, real uid, cmdline)
        self.problems: list[str] = []
        self.argv: list[str] | None = None
        self.parsed: dict[str, tuple[bytes, Any]] = {}  # file -> (its text, what it parsed to)
        self.fields: dict[str, Any] | None = None  # built from the above; None when they changed
        self.children: list[int] | None = None
        self.ran = True
        self.tick = 0
        self.gone = False


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

    def __init__(self, root: str, fd_budget: int | None = None):
        self._root = root
        self._budget = default_fd_budget() if fd_budget is None else fd_budget
        self._open = 0
        self._states: dict[int, _Proc] = {}
        self._seen: dict[int, _Seen] = {}
        self._memo: dict[int, ProcessReading | None] = {}
        self._tick = 0
        self._btime: tuple[int, float] | None = None
        self._children_files: bool | None = None
        self._last_pid_fd: int | None = None
        self._last_pid = b""

    @property
    def open_files(self) -> int:
        return self._open

    def close(self) -> None:
        for pid in list(self._states):
            self._drop(pid)
        self._seen.clear()
        if self._last_pid_fd is not None and self._last_pid_fd >= 0:
            os.close(self._last_pid_fd)
        self._last_pid_fd = None

    # -- one tick ------------------------------------------------------------------------
    def collect(self, target: int | None, uid: int | None, slurm_needle: bytes) -> tuple[list[ProcessReading], int]:
        self._tick += 1
        self._memo = {}
        members: dict[int, list[str]] = {}
        created = self._pids_allocated()
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
        for pid in [pid for pid, st in self._states.items() if st.gone or st.tick != self._tick]:
            self._drop(pid)
        return readings, len(members)

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
                    st.children = self._children(st)
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

    def _children(self, st: _Proc) -> list[int]:
        tids = st.tids
        if tids is None:
            tids = self._list_threads(st)
        kids: list[int] = []
        for tid in tids:
            try:
                kids.extend(int(c) for c in self._get(st, f"task/{tid}/children").split())
            except OSError:  # the thread ended; its children moved to a sibling thread
                continue
        return kids

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
            st = self._states[pid] = _Proc(pid, f"{self._root}/{pid}/", seen.ino if seen else None)
        st.tick = self._tick
        try:
            reading = self._read_proc(st)
        except Vanished:
            reading = None
            self._release(st)
            st.gone = True
        except (IndexError, ValueError) as exc:  # not a stat file procfs writes (a broken fake tree)
            reading = ProcessReading(pid, dict.fromkeys(_FIELD_KEYS), [f"stat: {type(exc).__name__}: {exc}"])
        self._memo[pid] = reading
        return reading

    def _read_proc(self, st: _Proc) -> ProcessReading:
        try:
            data = self._get(st, "stat")
        except _GONE:
            raise Vanished(st.pid) from None
        if data != st.stat:  # an idle process's stat stays the same byte for byte
            comm, f = split_stat(data)
            if st.start is None:
                st.start = f[STARTTIME]
                try:
                    st.create_time = float(f[STARTTIME]) / CLOCK_TICKS + self._boot_time()
                except (OSError, RuntimeError, ValueError) as exc:
                    st.problems.append(f"create_time: {type(exc).__name__}: {exc}")
            elif f[STARTTIME] != st.start:  # read by path, and the pid names a new process
                raise Vanished(st.pid)
            st.stat, st.comm, st.split, st.fields = data, comm, f, None
            st.threads = int(f[NUM_THREADS])
        try:  # RSS from statm as psutil: stat's is the kernel's per-CPU estimate, off by dozens of pages
            statm = self._get(st, "statm", 256)
        except _GONE:
            raise Vanished(st.pid) from None
        if statm != st.statm:
            st.statm, st.fields = statm, None
        threads = st.threads
        st.ran = not self._idle(st, threads, st.split[STATE])
        if st.ran:
            self._read_slow(st, threads)
            st.fields = None
        if st.fields is None:
            st.fields = self._fields(st, threads)
        return ProcessReading(st.pid, dict(st.fields), list(st.problems))

    @staticmethod
    def _fields(st: _Proc, threads: int) -> dict[str, Any]:
        f = st.split
        vms, rss = map(int, st.statm.split()[:2])
        io, voluntary, involuntary, real_uid, cmdline = st.slow
        name = decode(st.comm)
        if len(name) >= 15 and st.argv:  # psutil's name(): the kernel keeps 15 bytes; argv[0] may say more
            extended = os.path.basename(st.argv[0])
            if extended.startswith(name):
                name = extended
        return {
            "cpu_times.user": float(f[UTIME]) / CLOCK_TICKS,
            "cpu_times.system": float(f[STIME]) / CLOCK_TICKS,
            "cpu_times.children_user": float(f[CUTIME]) / CLOCK_TICKS,
            "cpu_times.children_system": float(f[CSTIME]) / CLOCK_TICKS,
            "cpu_times.iowait": float(f[BLKIO_TICKS]) / CLOCK_TICKS if len(f) > BLKIO_TICKS else 0.0,
            "memory_info.rss": rss * PAGE_SIZE,
            "memory_info.vms": vms * PAGE_SIZE,
            "io_counters.read_count": io[0],
            "io_counters.write_count": io[1],
            "io_counters.read_bytes": io[2],
            "io_counters.write_bytes": io[3],
            "io_counters.read_chars": io[4],
            "io_counters.write_chars": io[5],
            "num_ctx_switches.voluntary": voluntary,
            "num_ctx_switches.involuntary": involuntary,
            "uids.real": real_uid,
            "num_threads": threads,
            "ppid": int(f[PPID]),
            "create_time": st.create_time,
            "name": name,
            "status": STATUS_NAMES.get(f[STATE], "?"),
            "cmdline": cmdline,
        }

    def _read_slow(self, st: _Proc, threads: int) -> None:
        """status, io and cmdline; the run time first, so that whatever the process does after
        it is sampled shows as a changed run time at the next tick."""
        self._threads(st, threads)
        problems: list[str] = []
        io: tuple = (None,) * 6
        voluntary = involuntary = real_uid = None
        status = self._file(st, "status", ("num_ctx_switches", "uids"), problems, 8192)
        if status is not None:
            try:
                voluntary, involuntary, real_uid = status_ctx_uid(status)
            except ValueError as exc:
                problems += [f"num_ctx_switches: ValueError: {exc}", f"uids: ValueError: {exc}"]
        data = self._file(st, "io", ("io_counters",), problems)
        if data is not None:
            io, problem = self._parse(st, "io", data, _parse_io)
            if problem:
                problems.append(problem)
        argv = None
        data = self._file(st, "cmdline", ("cmdline",), problems)
        if data:
            argv = self._parse(st, "cmdline", data, cmdline_argv)
        elif data is not None:  # empty: a kernel thread, or a zombie (psutil: ZombieProcess)
            if self._zombie(st):
                problems.append("cmdline: ZombieProcess")
            else:
                argv = []
        st.argv = argv
        st.slow = (io, voluntary, involuntary, real_uid, None if argv is None else " ".join(argv))
        st.problems = [p for p in st.problems if p.startswith("create_time:")] + problems

    @staticmethod
    def _parse(st: _Proc, name: str, data: bytes, parse):
        """``parse(data)``, or what it gave for the same text last time (a process that ran has
        not necessarily done I/O or changed its command line)."""
        last = st.parsed.get(name)
        if last is not None and last[0] == data:
            return last[1]
        value = parse(data)
        st.parsed[name] = (data, value)
        return value

    def uss(self, reading: ProcessReading) -> tuple[int | None, str | None]:
        """psutil's memory_full_info().uss: smaps_rollup, or smaps where the rollup refuses."""
        st = self._states[reading.pid]
        try:
            return smaps_rollup_uss(read_file(st.prefix + "smaps_rollup", 8192)), None
        except _GONE:  # psutil: also refused for some live processes; smaps then answers
            pass
        except PermissionError:
            return None, "memory_full_info: AccessDenied"
        except OSError as exc:
            return None, f"memory_full_info: {type(exc).__name__}: {exc}"
        problems: list[str] = []
        data = self._file(st, "smaps", ("memory_full_info",), problems, 1 << 20, keep=False)
        return (None, problems[0]) if data is None else (smaps_uss(data), None)

    # -- files -----------------------------------------------------------------------------
    def _get(self, st: _Proc, name: str, size: int = 4096, keep: bool = True) -> bytes:
        fd = st.fds.get(name)
        if fd is not None:
            data = os.pread(fd, size, 0)
            return data if len(data) < size else read_fd(fd, size)
        if not keep or self._open >= self._budget:
            return read_file(st.prefix + name, size)
        fd = os.open(st.prefix + name, os.O_RDONLY)
        st.fds[name] = fd
        self._open += 1
        return read_fd(fd, size)

    def _file(self, st: _Proc, name: str, calls: tuple[str, ...], problems: list[str], size: int = 4096,
              keep: bool = True) -> bytes | None:
        """A file for psutil's ``calls``, or None with their problems noted; Vanished if the process is gone."""
        try:
            return self._get(st, name, size, keep)
        except PermissionError:
            problems.extend(f"{call}: AccessDenied" for call in calls)
        except _GONE as exc:
            if self._zombie(st):
                problems.extend(f"{call}: ZombieProcess" for call in calls)
            elif isinstance(exc, FileNotFoundError):  # alive, but the kernel lacks the file
                problems.extend(f"{call}: FileNotFoundError: {exc}" for call in calls)
            else:
                raise Vanished(st.pid) from None
        except OSError as exc:
            problems.extend(f"{call}: {type(exc).__name__}: {exc}" for call in calls)
        return None

    def _zombie(self, st: _Proc) -> bool:
        """Whether the process is a zombie now; Vanished if it is gone (psutil's _raise_if_zombie)."""
        try:
            return split_stat(self._get(st, "stat"))[1][STATE] == b"Z"
        except (OSError, IndexError):
            raise Vanished(st.pid) from None

    def _idle(self, st: _Proc, threads: int, state: bytes) -> bool:
        """Whether no thread of the process has run since status, io and cmdline were last read:
        the same threads (a new one needs a running thread to create it, an ended one reads as
        ESRCH) with the same schedstat, and the main thread not running now (the kernel adds
        run time when a thread leaves the CPU and at scheduler ticks)."""
        gate = st.gate
        if state == b"R" or gate is None or len(gate) != threads:
            return False
        try:
            for name, old in gate:
                if self._get(st, name, 128) != old:
                    return False
        except OSError:
            return False
        return True

    def _threads(self, st: _Proc, threads: int) -> None:
        """The threads and their schedstat, taken before status, io and cmdline are read, so that
        what a thread does after its schedstat is taken shows as a change at the next tick. The
        last list of threads stands while as many threads still answer (a new one would make one
        more, an ended one fails to answer); else ``task/`` is listed again."""
        if threads > GATE_THREADS:
            st.tids = st.gate = None
            self._forget_threads(st, ())
            return
        if threads == 1:
            self._forget_threads(st, (st.pid,))
        tids = [st.pid] if threads == 1 else st.tids or []
        gate = self._schedstats(st, tids) if len(tids) == threads else None
        if gate is None and threads != 1:
            tids = self._list_threads(st)
            gate = self._schedstats(st, tids)
        st.tids = tids
        # "0 0 0": the kernel keeps no run times (no CONFIG_SCHED_INFO); nothing can be told
        st.gate = gate if gate and not any(data.startswith(b"0 ") for _, data in gate) else None

    def _list_threads(self, st: _Proc) -> list[int]:
        try:
            tids = sorted(map(int, os.listdir(st.prefix + "task")))
        except OSError:
            tids = []
        self._forget_threads(st, set(tids))
        return tids

    def _forget_threads(self, st: _Proc, alive) -> None:
        """Close the per-thread files of the threads not in ``alive`` (ended, or no longer watched)."""
        for name in [n for n in st.fds if n.startswith("task/") and int(n.split("/")[1]) not in alive]:
            os.close(st.fds.pop(name))
            self._open -= 1

    def _schedstats(self, st: _Proc, tids: list[int]) -> list[tuple[str, bytes]] | None:
        gate = []
        for tid in tids:
            name = f"task/{tid}/schedstat"
            try:
                data = self._get(st, name, 128)
            except OSError:
                return None
            if not data:
                return None
            gate.append((name, data))
        return gate

    def _boot_time(self) -> float:
        """psutil's boot_time(): btime of <root>/stat, read at most once a tick (it moves when the
        wall clock is stepped, and psutil reads it when it first sees a process)."""
        if self._btime is None or self._btime[0] != self._tick:
            for line in read_file(f"{self._root}/stat", 65536).split(b"\n"):
                if line.startswith(b"btime"):
                    self._btime = (self._tick, float(line.strip().split()[1]))
                    break
            else:
                raise RuntimeError(f"line 'btime' not found in {self._root}/stat")
        return self._btime[1]

    def _release(self, st: _Proc) -> None:
        for fd in st.fds.values():
            os.close(fd)
        self._open -= len(st.fds)
        st.fds.clear()

    def _drop(self, pid: int) -> None:
        st = self._states.pop(pid, None)
        if st is not None:
            self._release(st)

"""One process read from procfs with the fewest reads per tick, giving what psutil gives.

- ``stat`` and ``statm``, every tick: CPU times, state, parent, threads, name (``create_time``
  once per process); RSS and VMS (psutil's source: ``stat``'s RSS is the kernel's per-CPU
  estimate).
- ``status``, ``io`` and ``cmdline`` (context switches, real uid, I/O counters, command
  line) only when the process may have changed them: they change only while it runs. A
  process in a state other than R, with the same threads (at most ``GATE_THREADS``) and the
  same ``schedstat`` for each (the kernel adds run time whenever a thread leaves the CPU and
  at scheduler ticks), has not run since they were last read, so their last values hold.
- The files are opened once and kept: procfs generates a file anew on each read at offset
  0, and a kept descriptor stays bound to its process, so a pid reused by a new process
  reads as ESRCH: the old process vanished, and the new one gets fresh descriptors. Half of
  RLIMIT_NOFILE may be kept; beyond it files are opened per read and a reused pid is told
  by its start time.
"""

from __future__ import annotations

import os
import resource
from typing import Any

from telemrec.readers._procfs import (
    BLKIO_TICKS, CLOCK_TICKS, CSTIME, CUTIME, NUM_THREADS, PAGE_SIZE, PPID, STARTTIME, STATE, STATUS_NAMES, STIME,
    UTIME, cmdline_argv, decode, io_counters, read_fd, read_file, smaps_rollup_uss, smaps_uss, split_stat,
    status_ctx_uid)
from telemrec.readers._processes import PROCESS_FIELDS, ProcessReading, Vanished, cmdline_field

__all__ = ["FIELD_KEYS", "GATE_THREADS", "Proc", "ProcessFiles", "default_fd_budget"]

_GONE = (ProcessLookupError, FileNotFoundError)
# With more threads, reading each one's schedstat costs more than reading status, io and cmdline
GATE_THREADS = 8
_NO_SLOW = ((None,) * 6, None, None, None, None)


# the order of a record's process fields (the trace writer's fast path wants the same every tick)
FIELD_KEYS = tuple(key for key in PROCESS_FIELDS if key != "levels")
_CONSTS = (FIELD_KEYS, STATUS_NAMES, float(CLOCK_TICKS), PAGE_SIZE)


def _parse_io(data: bytes) -> tuple[tuple, str | None]:
    try:
        return io_counters(data), None
    except (RuntimeError, ValueError) as exc:
        return (None,) * 6, f"io_counters: {type(exc).__name__}: {exc}"


def default_fd_budget() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 65536 if soft == resource.RLIM_INFINITY else max(0, soft // 2 - 32)


class Proc:
    """What is known of one process between ticks."""

    __slots__ = ("pid", "prefix", "ino", "fds", "start", "create_time", "stat", "comm", "split", "threads", "statm",
                 "tids", "gate", "slow", "problems", "argv", "parsed", "fields", "children", "ran", "tick", "gone",
                 "quick", "full", "record")

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
        # (stat fd, statm fd, ((schedstat fd, its last text), ...)) while the process was idle when
        # last read and all these files are kept open: what _procfs_native.poll re-reads
        self.quick: tuple | None = None
        # (stat, statm, status, io, cmdline fds, the gate's fds) while all are kept open and the last
        # read had no problems: what the compiled refresh reads when the process ran
        self.full: tuple | None = None
        # (fields, levels joined, the record's fields): the last record's fields while the process
        # has not run, handed to the next record as they are (records(): no copy a tick)
        self.record: tuple | None = None


class ProcessFiles:
    """Reads processes under ``root``, keeping at most ``fd_budget`` files open."""

    def __init__(self, root: str, fd_budget: int | None = None, *, redact: bool = True, refresh=None):
        self._root = root
        self._refresh = refresh  # _cprocfs.refresh, or None: this module's Python path only
        self._redact = redact
        self._budget = default_fd_budget() if fd_budget is None else fd_budget
        self._open = 0
        self._tick = 0
        self._btime: tuple[int, float] | None = None

    @property
    def open_files(self) -> int:
        return self._open

    def next_tick(self) -> None:
        self._tick += 1

    def read(self, st: Proc) -> ProcessReading:
        """One process's fields at this tick; Vanished if it has exited."""
        st.quick = None
        if st.full is not None and self._refresh is not None:
            fields = self._refresh(st, _CONSTS)
            if fields is not None:  # read and parsed as below would have, in C
                self._keep(st)
                return ProcessReading(st.pid, dict(fields), [])
        st.full = None
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
        self._keep(st)
        if st.gate is not None and not st.problems and st.slow[4] is not None and "cmdline" in st.parsed:
            fds = st.fds
            try:
                st.full = (fds["stat"], fds["statm"], fds["status"], fds["io"], fds["cmdline"],
                           tuple(fds[name] for name, _ in st.gate))
            except KeyError:  # beyond the descriptor budget: read by path
                pass
        return ProcessReading(st.pid, dict(st.fields), list(st.problems))

    @staticmethod
    def _keep(st: Proc) -> None:
        """What _procfs_native.poll re-reads at the next tick, where the process is idle now."""
        if st.gate is not None and st.split[STATE] != b"R":
            fds = st.fds
            try:
                st.quick = (fds["stat"], fds["statm"], tuple((fds[name], old) for name, old in st.gate),
                            int(st.split[PPID]))
            except KeyError:  # beyond the descriptor budget: read by path
                pass

    @staticmethod
    def _fields(st: Proc, threads: int) -> dict[str, Any]:
        f = st.split
        vms, rss = map(int, st.statm.split()[:2])
        io, voluntary, involuntary, real_uid, cmdline = st.slow
        name = decode(st.comm)
        if len(name) >= 15 and st.argv:  # psutil's name(): the kernel keeps 15 bytes; argv[0] may say more
            extended = os.path.basename(st.argv[0])
            if extended.startswith(name):
                name = extended
        return dict(zip(FIELD_KEYS, (
            float(f[UTIME]) / CLOCK_TICKS, float(f[STIME]) / CLOCK_TICKS, float(f[CUTIME]) / CLOCK_TICKS,
            float(f[CSTIME]) / CLOCK_TICKS, float(f[BLKIO_TICKS]) / CLOCK_TICKS if len(f) > BLKIO_TICKS else 0.0,
            rss * PAGE_SIZE, vms * PAGE_SIZE, *io, voluntary, involuntary, real_uid, threads, int(f[PPID]),
            st.create_time, name, STATUS_NAMES.get(f[STATE], "?"), cmdline)))

    def _read_slow(self, st: Proc, threads: int) -> None:
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
        argv = cmdline = None
        data = self._file(st, "cmdline", ("cmdline",), problems)
        if data:
            argv, cmdline = self._parse(st, "cmdline", data, self._cmdline)
        elif data is not None:  # empty: a kernel thread, or a zombie (psutil: ZombieProcess)
            if self._zombie(st):
                problems.append("cmdline: ZombieProcess")
            else:
                argv, cmdline = [], ""
        st.argv = argv
        st.slow = (io, voluntary, involuntary, real_uid, cmdline)
        st.problems = [p for p in st.problems if p.startswith("create_time:")] + problems

    def _cmdline(self, data: bytes) -> tuple[list[str], str]:
        """argv (the name needs argv[0]) and the cmdline field, redacted once per command line."""
        argv = cmdline_argv(data)
        return argv, cmdline_field(argv, self._redact)

    @staticmethod
    def _parse(st: Proc, name: str, data: bytes, parse):
        """``parse(data)``, or what it gave for the same text last time (a process that ran has
        not necessarily done I/O or changed its command line)."""
        last = st.parsed.get(name)
        if last is not None and last[0] == data:
            return last[1]
        value = parse(data)
        st.parsed[name] = (data, value)
        return value

    def uss(self, st: Proc) -> tuple[int | None, str | None]:
        """psutil's memory_full_info().uss: smaps_rollup, or smaps where the rollup refuses."""
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

    def children(self, st: Proc) -> list[int]:
        """The children of all the threads."""
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

    def _get(self, st: Proc, name: str, size: int = 4096, keep: bool = True) -> bytes:
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

    def _file(self, st: Proc, name: str, calls: tuple[str, ...], problems: list[str], size: int = 4096,
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

    def _zombie(self, st: Proc) -> bool:
        """Whether the process is a zombie now; Vanished if it is gone (psutil's _raise_if_zombie)."""
        try:
            return split_stat(self._get(st, "stat"))[1][STATE] == b"Z"
        except (OSError, IndexError):
            raise Vanished(st.pid) from None

    def _idle(self, st: Proc, threads: int, state: bytes) -> bool:
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

    def _threads(self, st: Proc, threads: int) -> None:
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

    def _list_threads(self, st: Proc) -> list[int]:
        try:
            tids = sorted(map(int, os.listdir(st.prefix + "task")))
        except OSError:
            tids = []
        self._forget_threads(st, set(tids))
        return tids

    def _forget_threads(self, st: Proc, alive) -> None:
        """Close the per-thread files of the threads not in ``alive`` (ended, or no longer watched)."""
        for name in [n for n in st.fds if n.startswith("task/") and int(n.split("/")[1]) not in alive]:
            os.close(st.fds.pop(name))
            self._open -= 1

    def _schedstats(self, st: Proc, tids: list[int]) -> list[tuple[str, bytes]] | None:
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

    def release(self, st: Proc) -> None:
        """Close the process's files."""
        st.quick = st.full = None
        for fd in st.fds.values():
            os.close(fd)
        self._open -= len(st.fds)
        st.fds.clear()

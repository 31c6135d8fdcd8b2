"""``PsutilReader``: host and process telemetry through psutil, at JUmPER's four levels.

Levels (``-O levels=system,process,user,slurm``):

- ``system``: entity ``system`` (aggregate CPU times, memory, swap, CPU stats, load
  average, CPU counts, boot time), ``cpu<i>`` (the i-th entry of
  ``psutil.cpu_times(percpu=True)``, i.e. the i-th online CPU listed in
  ``/proc/stat``), ``disk:<name>`` and ``net:<nic>``.
- ``process``: the target ``pid`` and all its descendants, re-walked every tick
  through ``/proc/<pid>/task/<tid>/children`` (measured ~12 us per process plus
  ~7 us per thread, against ~2 ms for ``Process.children(recursive=True)``, which
  reads every process's stat file); kernels without ``CONFIG_PROC_CHILDREN`` fall back to psutil's walk.
- ``user``: every process whose real uid is ``uid``. Kernel threads (kthreadd
  and its children) are left out: they are nobody's workload, and on a big node
  there are thousands of them. Unlike JUmPER, the process set is not merged in;
  the ``levels`` field lets analysis form any union.
- ``slurm``: every process whose environment has ``SLURM_JOB_ID=<slurm_job>``;
  only processes whose ``environ`` the recorder may read can be found.

Every process in any of the last three becomes one ``pid:<pid>`` record whose
``levels`` field names the levels it belongs to this tick ("process user").

Values are psutil's, named ``function.attribute``; counters are recorded raw
(``nowrap=False``: what the kernel says, wraps and resets included). All records
of one tick carry the monotonic and wall-clock time taken once at the start of
the tick. ``collector`` reports this reader's own cost for the tick.

Options (Python values or the CLI's ``-O key=value`` strings): ``levels``, ``pid``,
``uid`` (number or user name; default the recorder's), ``slurm_job`` (default
``$SLURM_JOB_ID``), ``per_cpu`` (default true) and ``uss`` (default true).
USS comes from ``/proc/<pid>/smaps_rollup``, whose kernel cost grows with the
process's resident memory (measured: ~0.2 ms for a small process, 19 ms for a
1.2 GiB one); turn it off for jobs with large memory.

Per-process failures: a process that has exited (``NoSuchProcess``) before or
while it is read yields no record at all: its absence is the signal. A call
refused with ``AccessDenied`` or ``ZombieProcess`` (or failing otherwise) sets
that call's fields to None and names the call in the record's ``error``; the
other fields are kept. A failing host-wide call does the same on ``system``
(device lists that could not be read are reported there too).

The procfs root (``--source``, else the constructor's ``procfs_root``, else
``/proc``) is handed to psutil by setting
``psutil.PROCFS_PATH`` for the duration of each tick and restoring it afterwards;
psutil has no other way to take it, so two readers with different roots must
not read at the same moment from two threads. psutil.Process objects are kept
between ticks while their pid stays a member (psutil's constructor costs two
file reads); a pid recycled within one interval would keep the old
``create_time``, which needs a full wrap of ``pid_max`` within one interval.
Not everything psutil reads lives under the root: the load average and CPU
counts come from system calls, and without ``<root>/diskstats`` psutil falls
back to the host's ``/sys/block``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

from telemrec.errors import ReaderUnavailableError, UsageError
from telemrec.readers._options import bool_option, int_option, list_option, reject_unknown
from telemrec.readers.base import BaseReader
from telemrec.record import RawRecord, ReaderCaps, ReaderConfig

__all__ = ["PsutilReader"]

LEVELS = ("system", "process", "user", "slurm")
PROCESS_LEVELS = ("process", "user", "slurm")
DISK_EXCLUDE = r"^(z?ram|loop|fd)\d+$"
"""Virtual block devices left out by default, as node_exporter's diskstats collector does
(sar's and iostat's reports list real disks too): a loop device per snap or image, ramdisks."""

OPTIONS = {
    "levels": "comma-separated levels among system,process,user,slurm (default system; "
              "`record -- COMMAND` adds process)",
    "pid": "the process whose tree the process level follows (`record -- COMMAND`: the command)",
    "uid": "user (number or name) whose processes the user level reads (default: the recorder's)",
    "slurm_job": "Slurm job id whose processes the slurm level reads (default $SLURM_JOB_ID)",
    "uss": "true/false: read each process's USS from smaps_rollup (default true; costly for large processes)",
    "per_cpu": "true/false: a cpu<i> entity per CPU (default true)",
    "disk_exclude": f"regular expression of block devices left out (default {DISK_EXCLUDE}: loop, ram, zram, "
                    "floppy, as node_exporter); empty keeps every device",
}

CPU_TIMES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
VIRTUAL_MEMORY = ("total", "available", "used", "free", "active", "inactive", "buffers", "cached", "shared", "slab")
SWAP_MEMORY = ("total", "used", "free", "sin", "sout")
CPU_STATS = ("ctx_switches", "interrupts", "soft_interrupts", "syscalls")
DISK_IO = ("read_count", "write_count", "read_bytes", "write_bytes", "read_time", "write_time",
           "read_merged_count", "write_merged_count", "busy_time")
NET_IO = ("bytes_sent", "bytes_recv", "packets_sent", "packets_recv", "errin", "errout", "dropin", "dropout")
LOADAVG = ("getloadavg.1m", "getloadavg.5m", "getloadavg.15m")

# Per-process calls inside oneshot(): (psutil method, attributes kept). Scalars have no attributes.
PROCESS_CPU_TIMES = ("user", "system", "children_user", "children_system", "iowait")
PROCESS_IO = ("read_count", "write_count", "read_bytes", "write_bytes", "read_chars", "write_chars")
PROCESS_TUPLES = (
    ("cpu_times", PROCESS_CPU_TIMES),
    ("memory_info", ("rss", "vms")),
    ("io_counters", PROCESS_IO),
    ("num_ctx_switches", ("voluntary", "involuntary")),
    ("uids", ("real",)),
)
PROCESS_SCALARS = ("num_threads", "ppid", "create_time", "name", "status")
USS = "memory_full_info.uss"
COLLECTOR = ("tick.wall_seconds", "tick.cpu_seconds", "tick.processes")

def _regex_option(name: str, value: Any):
    """A compiled regular expression, or None for an empty one (nothing excluded)."""
    import re

    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"option {name}={value!r} is not a regular expression ({exc})",
                         f"Pass e.g. -O {name}='^(loop|ram)\\d+$', or -O {name}= to keep every device.") from None


def _keys(prefix: str, attrs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{prefix}.{a}" for a in attrs)


SYSTEM_FIELDS = (*_keys("cpu_times", CPU_TIMES), *_keys("virtual_memory", VIRTUAL_MEMORY),
                 *_keys("swap_memory", SWAP_MEMORY), *_keys("cpu_stats", CPU_STATS), *LOADAVG,
                 "cpu_count.logical", "cpu_count.affinity", "boot_time")
DEVICE_FIELDS = (*_keys("disk_io_counters", DISK_IO), *_keys("net_io_counters", NET_IO))
PROCESS_FIELDS = (*(k for call, attrs in PROCESS_TUPLES for k in _keys(call, attrs)), *PROCESS_SCALARS,
                  "cmdline", "levels")


def _describe() -> tuple[dict[str, str], dict[str, str], frozenset[str]]:
    """Units, descriptions and counters of every field this reader can emit."""
    units: dict[str, str] = {}
    desc: dict[str, str] = {}
    counters: set[str] = set()
    for attr in (*CPU_TIMES, "children_user", "children_system"):
        key = f"cpu_times.{attr}"
        units[key] = "seconds"
        counters.add(key)
        desc[key] = f"CPU time in {attr} mode: the host's since boot (system, cpu<i>) or the process's (pid:<n>)"
    for attr in VIRTUAL_MEMORY:
        units[f"virtual_memory.{attr}"] = "bytes"
        desc[f"virtual_memory.{attr}"] = f"psutil.virtual_memory().{attr} (/proc/meminfo)"
    for attr in SWAP_MEMORY:
        units[f"swap_memory.{attr}"] = "bytes"
        desc[f"swap_memory.{attr}"] = f"psutil.swap_memory().{attr}"
    desc["swap_memory.sin"] = "bytes swapped in since boot (/proc/vmstat pswpin)"
    desc["swap_memory.sout"] = "bytes swapped out since boot (/proc/vmstat pswpout)"
    counters.update(("swap_memory.sin", "swap_memory.sout"))
    for attr in CPU_STATS:
        desc[f"cpu_stats.{attr}"] = f"{attr.replace('_', ' ')} since boot (/proc/stat)"
        counters.add(f"cpu_stats.{attr}")
    desc["cpu_stats.syscalls"] = "system calls since boot; psutil always gives 0 on Linux"
    for key, window in zip(LOADAVG, ("1", "5", "15")):
        desc[key] = f"{window}-minute load average (runnable + uninterruptible tasks)"
    desc["cpu_count.logical"] = "logical CPUs in the system (psutil.cpu_count())"
    desc["cpu_count.affinity"] = "CPUs the recorder may run on (len(os.sched_getaffinity(0)))"
    desc["boot_time"] = "boot time, seconds since the Unix epoch (moves when the wall clock is stepped)"
    units["boot_time"] = "seconds"
    for attr in DISK_IO:
        key = f"disk_io_counters.{attr}"
        counters.add(key)
        units[key] = "milliseconds" if attr.endswith("_time") else ("bytes" if attr.endswith("_bytes") else "")
        desc[key] = f"psutil.disk_io_counters(perdisk=True)[disk].{attr} (/proc/diskstats)"
    desc["disk_io_counters.busy_time"] = "time the device had I/O in flight (/proc/diskstats io_ticks)"
    for attr in NET_IO:
        key = f"net_io_counters.{attr}"
        counters.add(key)
        units[key] = "bytes" if attr.startswith("bytes") else ""
        desc[key] = f"psutil.net_io_counters(pernic=True)[nic].{attr} (/proc/net/dev)"
    for call, attrs in PROCESS_TUPLES:
        for attr in attrs:
            desc.setdefault(f"{call}.{attr}", f"psutil.Process.{call}().{attr}")
    units.update({"memory_info.rss": "bytes", "memory_info.vms": "bytes", USS: "bytes", "create_time": "seconds"})
    desc[USS] = "unique set size: memory freed if the process exited (smaps_rollup; costly)"
    for attr in ("read_bytes", "write_bytes", "read_chars", "write_chars"):
        units[f"io_counters.{attr}"] = "bytes"
    desc["cpu_times.children_user"] = "user CPU time of the process's waited-for children"
    desc["cpu_times.children_system"] = "system CPU time of the process's waited-for children"
    desc["cpu_times.iowait"] += "; for pid:<n>, time blocked on block I/O (delay accounting)"
    counters.update(f"io_counters.{a}" for a in PROCESS_IO)
    counters.update(("num_ctx_switches.voluntary", "num_ctx_switches.involuntary"))
    desc.update({
        "num_threads": "threads of the process",
        "ppid": "parent pid",
        "create_time": "process start, seconds since the Unix epoch",
        "name": "process name (psutil.Process.name())",
        "status": "process state (running, sleeping, disk-sleep, zombie, ...)",
        "cmdline": "command line, arguments joined with single spaces",
        "levels": "space-separated levels the process belongs to this tick (process user slurm)",
        "tick.wall_seconds": "wall time this reader spent on the tick",
        "tick.cpu_seconds": "CPU time of the reading thread for the tick (time.thread_time_ns)",
        "tick.processes": "processes read this tick (including ones that vanished while read)",
    })
    units.update({"tick.wall_seconds": "seconds", "tick.cpu_seconds": "seconds"})
    units = {k: v for k, v in units.items() if v}
    return units, desc, frozenset(counters)


_UNITS, _DESCRIPTIONS, _COUNTERS = _describe()


def _read_bytes(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _status_ppid_uid(status: bytes) -> tuple[int, int]:
    """PPid and real Uid from the text of /proc/<pid>/status."""
    values = []
    for key in (b"\nPPid:", b"\nUid:"):
        start = status.index(key) + len(key)
        values.append(int(status[start:status.index(b"\n", start)].split()[0]))
    return values[0], values[1]


def _parse_levels(value: Any, has_pid: bool) -> tuple[str, ...]:
    if value is None:
        return ("system", "process") if has_pid else ("system",)
    if isinstance(value, str):  # level names are single words; spaces separate them as in the levels field
        value = value.replace(" ", ",")
    items = list_option("levels", value, example="system,process")
    unknown = [item for item in items if item not in LEVELS]
    if unknown or not items:
        raise UsageError(f"unknown or empty levels {unknown or value!r}",
                         f"Choose among {', '.join(LEVELS)}, e.g. -O levels=system,process.")
    return tuple(level for level in LEVELS if level in items)


def _parse_uid(value: Any) -> int:
    if isinstance(value, str) and not value.strip().isdigit():
        import pwd

        try:
            return pwd.getpwnam(value.strip()).pw_uid
        except KeyError:
            raise UsageError(f"no user named {value!r}", "Pass a numeric uid or an existing user name.") from None
    return int_option("uid", value, minimum=0, hint="Pass a numeric uid or a user name, e.g. -O uid=1000.")


def _cpu_model(root: str) -> str | None:
    try:
        with open(os.path.join(root, "cpuinfo"), "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    for wanted in ("model name", "cpu model", "Model", "Processor", "cpu"):
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == wanted and value.strip():
                return value.strip()
    return None


class PsutilReader(BaseReader):
    """Host and process telemetry through psutil (JUmPER's system/process/user/slurm levels)."""

    name = "psutil"
    options = OPTIONS
    description = "CPU, memory, disk, network and per-process counters through psutil"
    source_help = "procfs root (default /proc), e.g. a container's /proc mounted elsewhere"

    def __init__(self, psutil_module: Any = None, procfs_root: str | None = None) -> None:
        super().__init__()
        self._ps = psutil_module
        self._default_root = procfs_root
        self._identity: dict[str, Any] = {}
        self._procs: dict[int, Any] = {}
        self._kthreads: set[int] = set()
        self._caps: ReaderCaps | None = None

    # -- availability and metadata -------------------------------------------------
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if not sys.platform.startswith("linux"):
            return False, f"the psutil reader reads Linux procfs; this is {sys.platform}"
        try:
            import psutil  # noqa: F401
        except ImportError:
            return False, "psutil is not installed: pip install psutil"
        return True, ""

    def _module(self) -> Any:
        if self._ps is None:
            try:
                import psutil
            except ImportError as exc:
                raise ReaderUnavailableError("psutil is not installed", "pip install psutil") from exc
            self._ps = psutil
        return self._ps

    @property
    def source_version(self) -> str:
        try:
            return str(self._module().__version__)
        except ReaderUnavailableError:
            return ""

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    @property
    def caps(self) -> ReaderCaps:
        if self._caps is None:
            self._caps = self._build_caps(LEVELS, uss=True)
        return self._caps

    @staticmethod
    def _build_caps(levels: tuple[str, ...], uss: bool) -> ReaderCaps:
        fields: list[str] = list(COLLECTOR)
        if "system" in levels:
            fields += [*SYSTEM_FIELDS, *DEVICE_FIELDS]
        if any(level in levels for level in PROCESS_LEVELS):
            fields += [*PROCESS_FIELDS, *([USS] if uss else [])]
        names = frozenset(fields)
        return ReaderCaps(kind="psutil", fields=names,
                          units={k: v for k, v in _UNITS.items() if k in names},
                          descriptions={k: v for k, v in _DESCRIPTIONS.items() if k in names},
                          counters=_COUNTERS & names)

    # -- open ------------------------------------------------------------------------
    def _open(self, config: ReaderConfig) -> None:
        ps = self._module()
        options = dict(config.options)
        reject_unknown(options, OPTIONS, "psutil")
        self._root = os.path.abspath(config.source or self._default_root or "/proc")
        if not os.path.isdir(self._root):
            raise ReaderUnavailableError(f"procfs root {self._root!r} does not exist or is not a directory",
                                         "Pass --source pointing at a mounted procfs, e.g. /proc.", root=self._root)
        pid = options.get("pid")
        self._target = None if pid is None else int_option("pid", pid, minimum=0, example=1234)
        self._levels = _parse_levels(options.get("levels"), self._target is not None)
        self._uss = bool_option("uss", options.get("uss", True))
        self._per_cpu = bool_option("per_cpu", options.get("per_cpu", True))
        self._disk_exclude = _regex_option("disk_exclude", options.get("disk_exclude", DISK_EXCLUDE))
        self._check_level_options(options)
        self._uid = _parse_uid(options["uid"]) if options.get("uid") is not None else os.getuid()
        job = options.get("slurm_job")
        job = os.environ.get("SLURM_JOB_ID") if job is None else str(job).strip()
        if "slurm" in self._levels and not job:
            raise UsageError("the slurm level needs a job id, and SLURM_JOB_ID is not set",
                             "Run inside the SLURM job, or pass -O slurm_job=<job id>.")
        self._job = job or None
        self._slurm_needle = f"\0SLURM_JOB_ID={job}\0".encode() if job else b""
        self._system = "system" in self._levels
        self._scoped = tuple(level for level in self._levels if level in PROCESS_LEVELS)
        self._children_files = self._target is not None and os.path.exists(
            f"{self._root}/{self._target}/task/{self._target}/children")
        self._caps = self._build_caps(self._levels, self._uss)
        self._identity = self._read_identity(ps)

    def _check_level_options(self, options: dict[str, Any]) -> None:
        if "process" in self._levels:
            if self._target is None:
                raise UsageError("the process level needs a target pid", "Pass -O pid=<pid>.")
            if not os.path.isdir(f"{self._root}/{self._target}"):
                raise UsageError(f"no process with pid {self._target} under {self._root}",
                                 "Check the pid (it may have exited) and that --source is the right procfs.")
        for option, level in (("pid", "process"), ("uid", "user"), ("slurm_job", "slurm")):
            if options.get(option) is not None and level not in self._levels:
                raise UsageError(f"option {option} is given but the {level} level is not requested",
                                 f"Add {level} to -O levels=..., or drop -O {option}.")

    def _read_identity(self, ps: Any) -> dict[str, Any]:
        saved = ps.PROCFS_PATH
        ps.PROCFS_PATH = self._root
        try:
            try:
                memory_total = int(ps.virtual_memory().total)
            except Exception:  # a partial procfs still records; the manifest just lacks the total
                memory_total = None
            logical = ps.cpu_count(logical=True)
        finally:
            ps.PROCFS_PATH = saved
        affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return {
            "host": socket.gethostname(),
            "cpu_model": _cpu_model(self._root),
            "cpu_count_logical": logical,
            "cpu_affinity": affinity,
            "memory_total": memory_total,
            "psutil_version": str(ps.__version__),
            "procfs_root": self._root,
            "levels": list(self._levels),
            "pid": self._target,
            "uid": self._uid if "user" in self._levels else None,
            "slurm_job": self._job if "slurm" in self._levels else None,
            "uss": self._uss,
            "per_cpu": self._per_cpu,
        }

    def _close(self) -> None:
        self._procs.clear()
        self._kthreads.clear()

    # -- one tick --------------------------------------------------------------------
    def _read(self) -> list[RawRecord]:
        cpu_start = time.thread_time_ns()
        mono, wall = time.monotonic_ns(), time.time_ns()
        ps = self._ps
        records: list[RawRecord] = []
        members: dict[int, list[str]] = {}
        saved = ps.PROCFS_PATH
        ps.PROCFS_PATH = self._root
        try:
            if self._system:
                self._read_system(ps, records, mono, wall)
            if self._scoped:
                members = self._members(ps)
                self._read_processes(ps, members, records, mono, wall)
        finally:
            ps.PROCFS_PATH = saved
        cost = {"tick.wall_seconds": (time.monotonic_ns() - mono) / 1e9,
                "tick.cpu_seconds": (time.thread_time_ns() - cpu_start) / 1e9,
                "tick.processes": len(members)}
        records.append(self._record(mono, wall, "collector", cost, None))
        return records

    def _record(self, mono: int, wall: int, entity: str, fields: dict, error: str | None) -> RawRecord:
        return RawRecord(mono, wall, entity, fields, "psutil", self._identity["psutil_version"], error)

    @staticmethod
    def _call(problems: list[str], label: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # one failing call must not cost the rest of the tick
            problems.append(f"{label}: {type(exc).__name__}: {exc}")
            return None

    def _read_system(self, ps: Any, records: list[RawRecord], mono: int, wall: int) -> None:
        problems: list[str] = []
        fields: dict[str, Any] = {}
        for call, attrs in (("cpu_times", CPU_TIMES), ("virtual_memory", VIRTUAL_MEMORY),
                            ("swap_memory", SWAP_MEMORY), ("cpu_stats", CPU_STATS)):
            value = self._call(problems, call, getattr(ps, call))
            for attr in attrs:
                fields[f"{call}.{attr}"] = getattr(value, attr, None)
        load = self._call(problems, "getloadavg", ps.getloadavg) or (None, None, None)
        fields.update(zip(LOADAVG, load))
        fields["cpu_count.logical"] = self._call(problems, "cpu_count", ps.cpu_count, logical=True)
        fields["cpu_count.affinity"] = (self._call(problems, "sched_getaffinity", lambda: len(os.sched_getaffinity(0)))
                                        if hasattr(os, "sched_getaffinity") else None)
        fields["boot_time"] = self._call(problems, "boot_time", ps.boot_time)
        devices: list[RawRecord] = []
        if self._per_cpu:
            for i, times in enumerate(self._call(problems, "cpu_times(percpu=True)", ps.cpu_times, percpu=True) or ()):
                devices.append(self._record(mono, wall, f"cpu{i}",
                                            {f"cpu_times.{a}": getattr(times, a, None) for a in CPU_TIMES}, None))
        for label, fn, kwarg, prefix, attrs in (
                ("disk_io_counters", ps.disk_io_counters, "perdisk", "disk", DISK_IO),
                ("net_io_counters", ps.net_io_counters, "pernic", "net", NET_IO)):
            table = self._call(problems, label, fn, **{kwarg: True, "nowrap": False}) or {}
            for name, counters in table.items():
                if prefix == "disk" and self._disk_exclude is not None and self._disk_exclude.search(name):
                    continue
                devices.append(self._record(mono, wall, f"{prefix}:{name}",
                                            {f"{label}.{a}": getattr(counters, a, None) for a in attrs}, None))
        records.append(self._record(mono, wall, "system", fields, "; ".join(problems) or None))
        records.extend(devices)

    # -- process membership ------------------------------------------------------------
    def _members(self, ps: Any) -> dict[int, list[str]]:
        members: dict[int, list[str]] = {}
        if "process" in self._scoped:
            for pid in self._descendants(ps):
                members[pid] = ["process"]
        if "user" in self._scoped or "slurm" in self._scoped:
            self._scan(members)
        return members

    def _descendants(self, ps: Any) -> list[int]:
        target = self._target
        if not self._children_files:
            try:
                return [target, *(child.pid for child in ps.Process(target).children(recursive=True))]
            except ps.NoSuchProcess:
                return []
        root = self._root
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
                    data = _read_bytes(f"{root}/{pid}/task/{tid}/children")
                except OSError:  # the thread ended; its children moved to a sibling thread
                    continue
                for child in map(int, data.split()):
                    if child not in seen:
                        seen.add(child)
                        found.append(child)
        return found

    def _scan(self, members: dict[int, list[str]]) -> None:
        root = self._root
        want_user, want_slurm = "user" in self._scoped, "slurm" in self._scoped
        uid, needle = self._uid, self._slurm_needle
        alive_kthreads: set[int] = set()
        for name in os.listdir(root):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in self._kthreads:
                alive_kthreads.add(pid)
                continue
            in_user = False
            if want_user:
                try:
                    ppid, real_uid = _status_ppid_uid(_read_bytes(f"{root}/{name}/status"))
                except (OSError, ValueError, IndexError):  # exited since listdir, or not a process dir
                    continue
                if pid == 2 or ppid == 2:
                    alive_kthreads.add(pid)
                    continue
                in_user = real_uid == uid
            in_slurm = False
            if want_slurm:
                try:
                    in_slurm = needle in b"\0" + _read_bytes(f"{root}/{name}/environ") + b"\0"
                except OSError:  # someone else's process: its environment is private
                    pass
            if in_user or in_slurm:
                levels = members.setdefault(pid, [])
                if in_user:
                    levels.append("user")
                if in_slurm:
                    levels.append("slurm")
        self._kthreads = alive_kthreads

    # -- per-process reads -----------------------------------------------------------
    def _read_processes(self, ps: Any, members: dict[int, list[str]], records: list[RawRecord],
                        mono: int, wall: int) -> None:
        cache: dict[int, Any] = {}
        for pid in sorted(members):
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = ps.Process(pid)
                fields, problems = self._read_process(ps, proc)
            except ps.NoSuchProcess:  # exited before or while read: no record
                continue
            cache[pid] = proc
            fields["levels"] = " ".join(members[pid])
            records.append(self._record(mono, wall, f"pid:{pid}", fields, "; ".join(problems) or None))
        self._procs = cache

    def _read_process(self, ps: Any, proc: Any) -> tuple[dict[str, Any], list[str]]:
        """One process's fields; raises NoSuchProcess when it has exited."""
        fields: dict[str, Any] = {}
        problems: list[str] = []
        with proc.oneshot():
            for call, attrs in PROCESS_TUPLES:
                value = self._process_call(ps, proc, call, problems)
                for attr in attrs:
                    fields[f"{call}.{attr}"] = getattr(value, attr, None)
            for call in PROCESS_SCALARS:
                fields[call] = self._process_call(ps, proc, call, problems)
            argv = self._process_call(ps, proc, "cmdline", problems)
            fields["cmdline"] = None if argv is None else " ".join(argv)
            if self._uss:
                fields[USS] = getattr(self._process_call(ps, proc, "memory_full_info", problems), "uss", None)
        return fields, problems

    @staticmethod
    def _process_call(ps: Any, proc: Any, call: str, problems: list[str]) -> Any:
        try:
            return getattr(proc, call)()
        except (ps.AccessDenied, ps.ZombieProcess) as exc:
            problems.append(f"{call}: {type(exc).__name__}")
        except ps.NoSuchProcess:
            raise
        except Exception as exc:  # e.g. io_counters on a kernel without task I/O accounting
            problems.append(f"{call}: {type(exc).__name__}: {exc}")
        return None

"""``PsutilReader``: host and process telemetry through psutil, at JUmPER's four levels.

Levels (``-O levels=system,process,user,slurm``):

- ``system``: entity ``system`` (aggregate CPU times, memory, swap, CPU stats, load
  average, CPU counts, boot time), ``cpu<i>`` (the i-th entry of
  ``psutil.cpu_times(percpu=True)``, i.e. the i-th online CPU listed in
  ``/proc/stat``), ``disk:<name>`` and ``net:<nic>``.
- ``process``: the target ``pid`` and all its descendants, found every tick through
  ``/proc/<pid>/task/<tid>/children`` (~2 ms for ``Process.children(recursive=True)``,
  which reads every process's stat file, against tens of us); kernels without
  ``CONFIG_PROC_CHILDREN`` fall back to the parent named in every process's stat.
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
``$SLURM_JOB_ID``), ``per_cpu`` (default true), ``uss`` (true, false or
``every-tick``; default true), ``uss_budget`` (default 0.0002), ``processes``
(``procfs``, the default, or ``psutil``) and ``cmdline`` (true, false or
``unredacted``; default true).

Command lines: each process's ``cmdline`` has the values of secrets masked
(``--password ***``; the rules of ``telemrec.redaction``, docs/recording.md);
``cmdline=false`` records no command lines at all, ``cmdline=unredacted`` records
them as the kernel gives them.

The members of the process levels are read by one of two collectors giving the same
fields and values: ``procfs`` (``_procfs_collector``: procfs read directly, few reads
per process per tick, files kept open) or ``psutil`` (``_psutil_collector``: psutil's
Process objects; the portable reference, several times the cost).

USS comes from ``/proc/<pid>/smaps_rollup``, whose kernel cost grows with the
process's resident memory (measured: ~18 us per MiB, 19 ms for a 1.2 GiB process).
By default each process's USS is re-read in turn, the longest-unread first, while
these reads stay within ``uss_budget`` of one CPU (0.0002: 0.2 ms per second), so on a
tick where it is not read the field is absent from the record (not None).
``uss=every-tick`` reads it for every process every tick, whatever it costs.

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
not read at the same moment from two threads.
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
from telemrec.readers._options import (bool_option, choice_option, int_option, list_option,
                                       positive_float_option, reject_unknown)
from telemrec.readers._processes import (PROCESS_FIELDS, PROCESS_IO, PROCESS_TUPLES, USS, ProcessCollector,
                                         UssBudget, Vanished)
from telemrec.readers._procfs_native import native
from telemrec.readers._psutil_system import (CPU_STATS, CPU_TIMES, DEVICE_FIELDS, DISK_IO, LOADAVG, NET_IO,
                                             SWAP_MEMORY, SYSTEM_FIELDS, VIRTUAL_MEMORY, SystemLevel)
from telemrec.redaction import MASK
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
    "uss": "true/false/every-tick: read each process's USS from smaps_rollup, in turn within uss_budget "
           "(default true), every process every tick (costly for large processes), or never",
    "uss_budget": "share of one CPU the USS reads may take on average (default 0.0002: 0.2 ms per second)",
    "per_cpu": "true/false: a cpu<i> entity per CPU (default true)",
    "disk_exclude": f"regular expression of block devices left out (default {DISK_EXCLUDE}: loop, ram, zram, "
                    "floppy, as node_exporter); empty keeps every device",
    "processes": "procfs/psutil: how the process levels are read (default procfs; psutil is the portable reference)",
    "cmdline": "true/false/unredacted: record each process's command line with the values of secrets "
               "(--password X, TOKEN=X, user:X@ in URLs) masked (default true), not at all, or as it is",
}
COLLECTORS = ("procfs", "psutil")
DEFAULT_USS_BUDGET = 0.0002

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


def _parse_uss(options: dict[str, Any]) -> tuple[bool, float | None]:
    """(whether USS is read, the share of one CPU its reads may take, None for every tick)."""
    value = options.get("uss", True)
    budget = options.get("uss_budget")
    every_tick = isinstance(value, str) and value.strip().lower() == "every-tick"
    try:
        enabled = every_tick or bool_option("uss", value)
    except UsageError:
        raise UsageError(f"option uss={value!r} is not true, false or every-tick",
                         "Pass -O uss=true (read in turn within uss_budget), -O uss=every-tick or -O uss=false.") \
            from None
    if budget is not None and (every_tick or not enabled):
        raise UsageError(f"uss_budget is given but uss={value}",
                         "Drop -O uss_budget, or pass -O uss=true with it.")
    if budget is None:
        return enabled, None if every_tick else DEFAULT_USS_BUDGET
    share = positive_float_option("uss_budget", budget, example=0.01)
    if share > 1:
        raise UsageError(f"option uss_budget={budget!r} is above 1 (one whole CPU)",
                         "Pass a share of one CPU, e.g. -O uss_budget=0.01, or -O uss=every-tick.")
    return True, share


def parse_cmdline_option(value: Any) -> str:
    """``cmdline``'s value as one of ``telemrec.redaction.CMDLINE_MODES``: true is redacted, false dropped."""
    if isinstance(value, str) and value.strip().lower() in ("unredacted", "redacted"):
        return value.strip().lower()
    try:
        return "redacted" if bool_option("cmdline", value) else "dropped"
    except UsageError:
        raise UsageError(f"option cmdline={value!r} is not true, false or unredacted",
                         f"Pass -O cmdline=true (secrets masked as {MASK}), -O cmdline=false (no command lines) "
                         "or -O cmdline=unredacted.") from None


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
        self._collector: ProcessCollector | None = None
        self._system_level: SystemLevel | None = None
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
            self._caps = self._build_caps(LEVELS, uss=True, cmdline=True)
        return self._caps

    @staticmethod
    def _build_caps(levels: tuple[str, ...], uss: bool, cmdline: bool) -> ReaderCaps:
        fields: list[str] = list(COLLECTOR)
        if "system" in levels:
            fields += [*SYSTEM_FIELDS, *DEVICE_FIELDS]
        if any(level in levels for level in PROCESS_LEVELS):
            fields += [*(f for f in PROCESS_FIELDS if cmdline or f != "cmdline"), *([USS] if uss else [])]
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
        self._uss, self._uss_budget = _parse_uss(options)
        self._per_cpu = bool_option("per_cpu", options.get("per_cpu", True))
        self._disk_exclude = _regex_option("disk_exclude", options.get("disk_exclude", DISK_EXCLUDE))
        self._processes = choice_option("processes", options.get("processes", "procfs"), COLLECTORS)
        self._cmdline = parse_cmdline_option(options.get("cmdline", True))
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
        self._caps = self._build_caps(self._levels, self._uss, self._cmdline != "dropped")
        self._identity = self._read_identity(ps)
        if self._scoped:
            self._collector = self._make_collector(ps)
        self._uss_plan = UssBudget(self._uss_budget) if self._uss else None
        self._native = native()
        self._system_level = (SystemLevel(ps, self._root, self._per_cpu, self._disk_exclude, "psutil",
                                          self._identity["psutil_version"]) if self._system else None)

    def _make_collector(self, ps: Any) -> ProcessCollector:
        redact = self._cmdline == "redacted"
        if self._processes == "psutil":
            from telemrec.readers._psutil_collector import PsutilCollector

            return PsutilCollector(ps, self._root, redact=redact)
        from telemrec.readers._procfs_collector import ProcfsCollector

        return ProcfsCollector(self._root, redact=redact)

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
            "uss_budget": self._uss_budget if self._uss else None,
            "per_cpu": self._per_cpu,
            "processes": self._processes if self._scoped else None,
            "cmdline": self._cmdline if self._scoped else None,
        }

    def _close(self) -> None:
        if self._system_level is not None:
            self._system_level.close()
        if self._collector is not None:
            self._collector.close()

    # -- one tick --------------------------------------------------------------------
    def _read(self) -> list[RawRecord]:
        cpu_start = time.thread_time_ns()
        mono, wall = time.monotonic_ns(), time.time_ns()
        ps = self._ps
        records: list[RawRecord] = []
        members = 0
        saved = ps.PROCFS_PATH
        ps.PROCFS_PATH = self._root
        try:
            if self._system:
                self._system_level.read(records, mono, wall)
            if self._collector is not None:
                members = self._read_processes(records, mono, wall)
        finally:
            ps.PROCFS_PATH = saved
        cost = {"tick.wall_seconds": (time.monotonic_ns() - mono) / 1e9,
                "tick.cpu_seconds": (time.thread_time_ns() - cpu_start) / 1e9,
                "tick.processes": members}
        records.append(self._record(mono, wall, "collector", cost, None))
        return records

    def _record(self, mono: int, wall: int, entity: str, fields: dict, error: str | None) -> RawRecord:
        return RawRecord(mono, wall, entity, fields, "psutil", self._identity["psutil_version"], error)

    # -- processes -------------------------------------------------------------------
    def _read_processes(self, records: list[RawRecord], mono: int, wall: int) -> int:
        """The members' records; returns how many members were found (vanished ones included)."""
        scoped = self._scoped
        readings, found = self._collector.collect(
            self._target if "process" in scoped else None, self._uid if "user" in scoped else None,
            self._slurm_needle if "slurm" in scoped else b"")
        if self._uss_plan is not None:
            gone = self._read_uss(readings)
            if gone:
                readings = [r for r in readings if r.pid not in gone]
        if self._cmdline == "dropped":
            for r in readings:
                r.own_fields().pop("cmdline", None)
                r.problems = [p for p in r.problems if not p.startswith("cmdline:")]
        self._native.records(RawRecord, readings, mono, wall, "psutil", self._identity["psutil_version"], records)
        return found

    def _read_uss(self, readings: list) -> set[int]:
        """USS for the readings the budget allows; returns the pids that vanished meanwhile."""
        plan, collector = self._uss_plan, self._collector
        gone: set[int] = set()
        now = time.monotonic_ns()
        cpu0 = time.thread_time_ns()
        for reading in plan.plan(readings, now, first=self._target):
            if not plan.affordable():
                break
            try:
                value, problem = collector.uss(reading)
            except Vanished:  # exited while read: no record, as for any other field
                gone.add(reading.pid)
                continue
            cpu1 = time.thread_time_ns()
            plan.charge(reading, cpu1 - cpu0, now)  # the read and what led to it
            cpu0 = cpu1
            reading.own_fields()[USS] = value
            if problem:
                reading.problems.append(problem)
        return gone

"""What the psutil reader's two process collectors share: the fields of a ``pid:<n>``
record, the shape of one process's reading, and the budget that paces USS.

The collectors are ``_procfs_collector.ProcfsCollector`` (reads procfs directly, the
default on Linux) and ``_psutil_collector.PsutilCollector`` (psutil's Process objects,
the portable reference); both give the same fields, names, units and values.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

__all__ = ["CALL_ORDER", "PROCESS_FIELDS", "PROCESS_TUPLES", "USS", "ProcessCollector",
           "ProcessReading", "UssBudget", "Vanished", "cmdline_field"]

PROCESS_CPU_TIMES = ("user", "system", "children_user", "children_system", "iowait")
PROCESS_IO = ("read_count", "write_count", "read_bytes", "write_bytes", "read_chars", "write_chars")
# Per-process calls inside psutil's oneshot(): (psutil method, attributes kept). Scalars have no attributes.
PROCESS_TUPLES = (
    ("cpu_times", PROCESS_CPU_TIMES),
    ("memory_info", ("rss", "vms")),
    ("io_counters", PROCESS_IO),
    ("num_ctx_switches", ("voluntary", "involuntary")),
    ("uids", ("real",)),
)
PROCESS_SCALARS = ("num_threads", "ppid", "create_time", "name", "status")
USS = "memory_full_info.uss"
PROCESS_FIELDS = (*(f"{call}.{attr}" for call, attrs in PROCESS_TUPLES for attr in attrs), *PROCESS_SCALARS,
                  "cmdline", "levels")
# the order in which a record's ``error`` names the calls that failed
CALL_ORDER = (*(call for call, _ in PROCESS_TUPLES), *PROCESS_SCALARS, "cmdline", "memory_full_info")


def cmdline_field(argv: list[str], redact: bool) -> str:
    """The ``cmdline`` field of ``argv``: its words joined with single spaces, secrets masked
    unless ``redact`` is false (``telemrec.redaction``, the rules the manifest's command shares)."""
    if redact:
        from telemrec.redaction import redact_argv

        argv = redact_argv(argv).argv
    return " ".join(argv)


class Vanished(Exception):
    """The process exited (or its pid now names another process) before or while it was read."""


@dataclass(slots=True)
class ProcessReading:
    """One process at one tick: its fields (without ``levels``), the failed calls, and its levels.

    ``proc``: set where ``fields`` is not a copy but what the collector keeps of a process that has
    not run (its ``Proc``): records of successive ticks then share one dict (``records``), so it must
    not change: who changes ``fields`` takes ``own_fields()``."""

    pid: int
    fields: dict[str, Any]
    problems: list[str]
    levels: list[str] = field(default_factory=list)
    proc: Any = field(default=None, compare=False, repr=False)

    def own_fields(self) -> dict[str, Any]:
        """``fields``, copied first where they are shared (``proc``), to be changed."""
        if self.proc is not None:
            self.fields, self.proc = dict(self.fields), None
        return self.fields

    @property
    def key(self) -> tuple[int, Any]:
        """Identity across ticks: a reused pid has another create_time."""
        return self.pid, self.fields.get("create_time")

    def error(self) -> str | None:
        if not self.problems:
            return None
        order = {call: i for i, call in enumerate(CALL_ORDER)}
        return "; ".join(sorted(self.problems, key=lambda p: order.get(p.split(":", 1)[0], len(order))))


class ProcessCollector(Protocol):
    def collect(self, target: int | None, uid: int | None, slurm_needle: bytes) -> tuple[list[ProcessReading], int]:
        """This tick's members, sorted by pid, with their levels; and how many members were
        found, counting those that vanished while read (which have no reading)."""

    def uss(self, reading: ProcessReading) -> tuple[int | None, str | None]:
        """USS in bytes, or None and the problem; raises Vanished."""

    def close(self) -> None: ...


class UssBudget:
    """Which processes get their USS read this tick.

    Reading USS makes the kernel walk the process's page tables (~18 us per MiB resident,
    measured): every process every tick would cost more than everything else together.
    ``share`` is the fraction of one CPU the reads may take on average; the processes whose
    USS is oldest (never read first) go first, while the budget lasts. A read is paid after
    the fact, so one large process may overdraw the budget; the reads then pause until it is
    earned back. ``share=None`` reads every process every tick.
    """

    HORIZON_S = 2.0  # the most the budget saves up while idle, in seconds of earning

    def __init__(self, share: float | None):
        self.share = share
        self._tokens = 0.0 if share is None else share * self.HORIZON_S * 1e9
        self._last_ns: int | None = None
        # pid -> its create_time when its USS was last read, the longest unread first: kept in that
        # order as reads are charged, so a plan is one pass, not a sort with a key a process
        # (~150 us a tick for ~100 processes, cold)
        self._read: OrderedDict[int, Any] = OrderedDict()

    def plan(self, readings: Iterable[ProcessReading], now_ns: int, first: int | None = None) -> list[ProcessReading]:
        """The readings in the order their USS should be read (levels already set): oldest USS
        first; among equals the job's processes, its root (pid ``first``) before its descendants."""
        readings = list(readings)
        if self.share is None:
            return readings
        if self._last_ns is not None:
            cap = self.share * self.HORIZON_S * 1e9
            self._tokens = min(cap, self._tokens + self.share * (now_ns - self._last_ns))
        self._last_ns = now_ns
        if self._tokens <= 0:
            return []
        by_pid = {r.pid: r for r in readings}
        read = self._read
        unread = by_pid.keys() - read.keys()
        older, gone = [], []
        for pid, created in read.items():
            r = by_pid.get(pid)
            if r is None:
                gone.append(pid)
            elif r.fields.get("create_time") != created:
                unread.add(pid)  # the pid names another process now: its USS was never read
            else:
                older.append(r)
        if len(gone) > len(readings):  # forget the processes that are gone
            for pid in gone:
                del read[pid]
        never = [r for r in readings if r.pid in unread] if unread else []
        never.sort(key=lambda r: ("process" not in r.levels, r.pid != first))
        return never + older

    def affordable(self) -> bool:
        return self.share is None or self._tokens > 0

    def charge(self, reading: ProcessReading, cpu_ns: int, now_ns: int) -> None:
        self._tokens -= cpu_ns
        self._read.pop(reading.pid, None)
        self._read[reading.pid] = reading.fields.get("create_time")

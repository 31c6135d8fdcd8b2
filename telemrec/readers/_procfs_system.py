"""Host-wide procfs files read once a tick for what psutil reads from them separately,
parsed as psutil 7's ``_pslinux`` parses them, giving the same values, types and errors:

- ``ProcStat``: ``<root>/stat`` for ``cpu_times()``, ``cpu_times(percpu=True)``,
  ``cpu_stats()`` and ``boot_time()`` (psutil: four reads of a file the kernel formats
  anew for each, its ``intr`` line thousands of numbers long);
- ``Memory``: ``<root>/meminfo`` and ``<root>/vmstat`` for ``virtual_memory()`` and
  ``swap_memory()`` (psutil: meminfo twice). Where a line psutil has a fallback for is
  missing (old kernels), psutil itself answers.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from telemrec.readers._procfs import CLOCK_TICKS, read_file

__all__ = ["Memory", "ProcStat"]

CpuStats = namedtuple("CpuStats", "ctx_switches interrupts soft_interrupts syscalls")  # psutil's scpustats
VirtualMemory = namedtuple("VirtualMemory", "total available percent used free active inactive buffers cached "
                                            "shared slab")  # psutil's svmem
SwapMemory = namedtuple("SwapMemory", "total used free percent sin sout")  # psutil's sswap
_VMEM_KEYS = (b"MemTotal:", b"MemFree:", b"Buffers:", b"Cached:", b"Shmem:", b"Active:", b"Inactive:",
              b"MemAvailable:")


class ProcStat:
    """One tick's view of ``<root>/stat``; ``cpu_class`` is psutil's ``scputimes``."""

    def __init__(self, root: str, cpu_class: Any):
        self.path = f"{root}/stat"
        self._cls = cpu_class
        self._lines: list[bytes] = []
        self._error: OSError | None = None

    def load(self) -> None:
        try:
            self._lines, self._error = read_file(self.path, 65536).split(b"\n"), None
        except OSError as exc:
            self._lines, self._error = [], exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _times(self, line: bytes):
        fields = line.split()[1:len(self._cls._fields) + 1]
        return self._cls(*[float(x) / CLOCK_TICKS for x in fields])

    def cpu_times(self):
        self._check()
        return self._times(self._lines[0])

    def per_cpu_times(self) -> list:
        self._check()
        return [self._times(line) for line in self._lines[1:] if line.startswith(b"cpu")]

    def cpu_stats(self) -> CpuStats:
        self._check()
        found: dict[bytes, int] = {}
        for line in self._lines:
            for key in (b"ctxt", b"intr", b"softirq"):
                if key not in found and line.startswith(key):
                    found[key] = int(line.split(None, 2)[1])  # intr: thousands of numbers after the first
        return CpuStats(found.get(b"ctxt"), found.get(b"intr"), found.get(b"softirq"), 0)

    def boot_time(self) -> float:
        self._check()
        for line in self._lines:
            if line.startswith(b"btime"):
                return float(line.strip().split()[1])
        raise RuntimeError(f"line 'btime' not found in {self.path}")


def _percent(used: int, total: int) -> float:
    """psutil's usage_percent(used, total, round_=1)."""
    try:
        return round((float(used) / total) * 100, 1)
    except ZeroDivisionError:
        return 0.0


class Memory:
    """One tick's ``virtual_memory()`` and ``swap_memory()``; ``ps`` answers the unusual cases."""

    def __init__(self, root: str, ps: Any):
        self._root = root
        self._ps = ps
        self._mems: dict[bytes, int] | None = None
        self._vmstat: bytes | None = None

    def load(self) -> None:
        self._mems = self._vmstat = None
        try:
            mems = {}
            for line in read_file(f"{self._root}/meminfo", 16384).split(b"\n"):
                fields = line.split()
                if fields:
                    mems[fields[0]] = int(fields[1]) * 1024
            self._mems = mems
            self._vmstat = read_file(f"{self._root}/vmstat", 65536)
        except (OSError, IndexError, ValueError):
            pass  # psutil reads them again and raises or warns as it does

    def virtual_memory(self):
        mems = self._mems
        if mems is None or any(key not in mems for key in _VMEM_KEYS) or not 0 < mems[b"MemAvailable:"]:
            return self._ps.virtual_memory()
        total, free, avail = mems[b"MemTotal:"], mems[b"MemFree:"], mems[b"MemAvailable:"]
        if avail > total:
            avail = free
        return VirtualMemory(total, avail, _percent(total - avail, total), total - avail, free, mems[b"Active:"],
                             mems[b"Inactive:"], mems[b"Buffers:"], mems[b"Cached:"] + mems.get(b"SReclaimable:", 0),
                             mems[b"Shmem:"], mems.get(b"Slab:", 0))

    def swap_memory(self):
        mems, vmstat = self._mems, self._vmstat
        if mems is None or vmstat is None or b"SwapTotal:" not in mems or b"SwapFree:" not in mems:
            return self._ps.swap_memory()
        sin = sout = None
        for line in (b"\n" + vmstat).split(b"\npsw")[1:]:
            if line.startswith(b"pin") and sin is None:
                sin = int(line.split(b"\n", 1)[0].split(b" ")[1]) * 4 * 1024
            elif line.startswith(b"pout") and sout is None:
                sout = int(line.split(b"\n", 1)[0].split(b" ")[1]) * 4 * 1024
        if sin is None or sout is None:
            return self._ps.swap_memory()  # psutil warns and gives 0
        total, free = mems[b"SwapTotal:"], mems[b"SwapFree:"]
        return SwapMemory(total, total - free, free, _percent(total - free, total), sin, sout)

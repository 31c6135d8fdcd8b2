"""``<root>/stat`` read once a tick for the four things psutil reads from it separately
(``cpu_times()``, ``cpu_times(percpu=True)``, ``cpu_stats()``, ``boot_time()``: four
reads of a file the kernel formats anew for each, ~10-15 us apiece here), parsed as
psutil 7's ``_pslinux`` parses it and giving the same values, types and errors."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from telemrec.readers._procfs import CLOCK_TICKS, read_file

__all__ = ["ProcStat"]

CpuStats = namedtuple("CpuStats", "ctx_switches interrupts soft_interrupts syscalls")  # psutil's scpustats


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
                    found[key] = int(line.split()[1])
        return CpuStats(found.get(b"ctxt"), found.get(b"intr"), found.get(b"softirq"), 0)

    def boot_time(self) -> float:
        self._check()
        for line in self._lines:
            if line.startswith(b"btime"):
                return float(line.strip().split()[1])
        raise RuntimeError(f"line 'btime' not found in {self.path}")

"""The psutil reader's system level: entity ``system``, then ``cpu<i>``, ``disk:<name>`` and
``net:<nic>``, read by one of two paths that give the same records (tests hold them to it):

- compiled (``_csystem.sample``, where built): every file read once (kept descriptors on
  procfs, pread at offset 0), parsed as psutil 7 parses it, the records built in C. At a
  1 Hz cadence everything is cache-cold and the cost follows the Python executed: psutil's
  calls and the record building cost ~0.8 ms a tick, the compiled path ~0.2 ms.
- Python: ``ProcStat`` and ``Memory`` (``_procfs_system``) and psutil's own calls. It also
  answers every tick the compiled path declines (a file missing or laid out as psutil has a
  special path for, a value that is not a plain decimal), so errors, warnings and fallbacks
  are psutil's own.

The compiled path stands in for psutil only where the module is psutil 7's own (not a
substitute such as a test's fake).
"""

from __future__ import annotations

import os
from typing import Any

from telemrec.readers._procfs_system import Memory, ProcStat
from telemrec.record import RawRecord

__all__ = ["SystemLevel"]

CPU_TIMES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
VIRTUAL_MEMORY = ("total", "available", "used", "free", "active", "inactive", "buffers", "cached", "shared", "slab")
SWAP_MEMORY = ("total", "used", "free", "sin", "sout")
CPU_STATS = ("ctx_switches", "interrupts", "soft_interrupts", "syscalls")
DISK_IO = ("read_count", "write_count", "read_bytes", "write_bytes", "read_time", "write_time",
           "read_merged_count", "write_merged_count", "busy_time")
NET_IO = ("bytes_sent", "bytes_recv", "packets_sent", "packets_recv", "errin", "errout", "dropin", "dropout")
LOADAVG = ("getloadavg.1m", "getloadavg.5m", "getloadavg.15m")


def _keys(prefix: str, attrs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{prefix}.{a}" for a in attrs)


SYSTEM_FIELDS = (*_keys("cpu_times", CPU_TIMES), *_keys("virtual_memory", VIRTUAL_MEMORY),
                 *_keys("swap_memory", SWAP_MEMORY), *_keys("cpu_stats", CPU_STATS), *LOADAVG,
                 "cpu_count.logical", "cpu_count.affinity", "boot_time")
CPU_FIELDS = _keys("cpu_times", CPU_TIMES)
DISK_FIELDS = _keys("disk_io_counters", DISK_IO)
NET_FIELDS = _keys("net_io_counters", NET_IO)
DEVICE_FIELDS = (*DISK_FIELDS, *NET_FIELDS)

# <root>/..., then the list glibc's sysconf(_SC_NPROCESSORS_ONLN) reads (psutil.cpu_count's source)
_FILES = ("stat", "meminfo", "vmstat", "diskstats", "net/dev")
_ONLINE = "/sys/devices/system/cpu/online"
_REPLACED = ("virtual_memory", "swap_memory", "getloadavg", "cpu_count", "disk_io_counters", "net_io_counters")


def _compiled_module(ps: Any, compiled: bool | None):
    """``_csystem`` where it may stand in for ``ps`` (None: where built; True: ImportError if not)."""
    if compiled is False:
        return None
    try:
        from telemrec.readers import _csystem
    except ImportError:
        if compiled:
            raise
        return None
    if compiled is None:
        import psutil

        own = all(getattr(ps, name, None) is getattr(psutil, name) for name in _REPLACED)
        if not own or psutil.version_info[0] != 7:
            return None
    return _csystem


class SystemLevel:
    """One reader's system level: ``read(records, mono, wall)`` appends one tick's records."""

    def __init__(self, ps: Any, root: str, per_cpu: bool, disk_exclude: Any, source: str, version: str,
                 compiled: bool | None = None) -> None:
        self._ps, self._root, self._per_cpu, self._exclude = ps, root, per_cpu, disk_exclude
        self._source, self._version = source, version
        cpu_class = type(ps.cpu_times())
        self._stat = ProcStat(root, cpu_class)
        self._memory = Memory(root, ps)
        self._c = _compiled_module(ps, compiled)
        self._fds: list[int] = []
        self._files: tuple = ()
        if self._c is not None and len(cpu_class._fields) != len(CPU_TIMES):
            self._c = None  # an old kernel's fewer columns: psutil's own tuples
        if self._c is not None:
            self._files = tuple(self._file(path) for path in (*(f"{root}/{name}" for name in _FILES), _ONLINE))
            glibc = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
            if not glibc or not isinstance(self._files[-1], int):
                self._files = (*self._files[:-1], None)  # sysconf answers, whatever it reads
        self._keys = (SYSTEM_FIELDS, CPU_FIELDS, DISK_FIELDS, NET_FIELDS)
        self._disks: dict[str, str | None] = {}
        self._nics: dict[str, str] = {}
        self.compiled_ticks = 0  # ticks the compiled path read (the rest: the Python path)

    @property
    def compiled(self) -> bool:
        return self._c is not None

    def _file(self, path: str) -> int | bytes:
        """A descriptor kept open where the kernel regenerates the file on each read at offset 0
        (procfs, sysfs); else the path, opened anew each tick as psutil does (a fake root's files)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return os.fsencode(path)  # the tick's read fails, and the Python path says why
        if self._c.regenerated(fd):
            self._fds.append(fd)
            return fd
        os.close(fd)
        return os.fsencode(path)

    def close(self) -> None:
        fds, self._fds, self._c = self._fds, [], None
        for fd in fds:
            os.close(fd)

    def _disk_entity(self, name: str) -> str | None:
        return None if self._exclude is not None and self._exclude.search(name) else f"disk:{name}"

    def read(self, records: list[RawRecord], mono: int, wall: int) -> None:
        c = self._c
        if c is not None and c.sample(self._files, self._keys, self._per_cpu, self._disks, self._disk_entity,
                                      self._nics, RawRecord, mono, wall, self._source, self._version, records):
            self.compiled_ticks += 1
            return
        self.read_py(records, mono, wall)

    # -- the Python path -------------------------------------------------------------
    def _record(self, mono: int, wall: int, entity: str, fields: dict, error: str | None) -> RawRecord:
        return RawRecord(mono, wall, entity, fields, self._source, self._version, error)

    @staticmethod
    def _call(problems: list[str], label: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # one failing call must not cost the rest of the tick
            problems.append(f"{label}: {type(exc).__name__}: {exc}")
            return None

    def read_py(self, records: list[RawRecord], mono: int, wall: int) -> None:
        ps = self._ps
        saved, ps.PROCFS_PATH = ps.PROCFS_PATH, self._root  # the reader sets it for the tick; tests need not
        try:
            self._read_py(ps, records, mono, wall)
        finally:
            ps.PROCFS_PATH = saved

    def _read_py(self, ps: Any, records: list[RawRecord], mono: int, wall: int) -> None:
        problems: list[str] = []
        fields: dict[str, Any] = {}
        stat, memory = self._stat, self._memory
        stat.load()
        memory.load()
        for call, attrs, fn in (("cpu_times", CPU_TIMES, stat.cpu_times),
                                ("virtual_memory", VIRTUAL_MEMORY, memory.virtual_memory),
                                ("swap_memory", SWAP_MEMORY, memory.swap_memory),
                                ("cpu_stats", CPU_STATS, stat.cpu_stats)):
            value = self._call(problems, call, fn)
            for attr in attrs:
                fields[f"{call}.{attr}"] = getattr(value, attr, None)
        load = self._call(problems, "getloadavg", ps.getloadavg) or (None, None, None)
        fields.update(zip(LOADAVG, load))
        fields["cpu_count.logical"] = self._call(problems, "cpu_count", ps.cpu_count, logical=True)
        fields["cpu_count.affinity"] = (self._call(problems, "sched_getaffinity", lambda: len(os.sched_getaffinity(0)))
                                        if hasattr(os, "sched_getaffinity") else None)
        fields["boot_time"] = self._call(problems, "boot_time", stat.boot_time)
        devices: list[RawRecord] = []
        if self._per_cpu:
            for i, times in enumerate(self._call(problems, "cpu_times(percpu=True)", stat.per_cpu_times) or ()):
                devices.append(self._record(mono, wall, f"cpu{i}",
                                            {f"cpu_times.{a}": getattr(times, a, None) for a in CPU_TIMES}, None))
        for label, fn, kwarg, prefix, attrs in (
                ("disk_io_counters", ps.disk_io_counters, "perdisk", "disk", DISK_IO),
                ("net_io_counters", ps.net_io_counters, "pernic", "net", NET_IO)):
            table = self._call(problems, label, fn, **{kwarg: True, "nowrap": False}) or {}
            for name, counters in table.items():
                if prefix == "disk" and self._exclude is not None and self._exclude.search(name):
                    continue
                devices.append(self._record(mono, wall, f"{prefix}:{name}",
                                            {f"{label}.{a}": getattr(counters, a, None) for a in attrs}, None))
        records.append(self._record(mono, wall, "system", fields, "; ".join(problems) or None))
        records.extend(devices)

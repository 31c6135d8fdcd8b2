"""cjm-shaped snapshots: ``SystemStats`` and ``ProcessStats`` at an instant of a trace, or live.

The dataclasses mirror ``cjm_infra_plugin_system.core`` 0.0.19 field for field
(seed-projects.md 3.1), so a cjm ``MonitorPlugin`` can return them (or their
``to_dict()``); cjm itself needs Python >= 3.12 and is not imported here. Units
are cjm's: MB = MiB (2**20 bytes, as its reference NVIDIA plugin divides),
percent 0-100. ``gpu_load_percent`` is the busiest GPU's utilisation (the
reference plugin's max); GPU memory figures are sums over the devices.

What the trace does not know stays unknown: a field whose source said N/A is
NaN, never 0 (cjm's own defaults are 0.0, which a scheduler would read as
"free"), and ``details`` says when and from where the figures are.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from telemrec.record import RawRecord

__all__ = ["LiveSampler", "ProcessStats", "Snapshot", "SystemStats", "live_snapshot", "snapshot",
           "snapshot_from_records"]

MIB = float(1 << 20)
NAN = math.nan
_GPU = re.compile(r"^gpu(\d+)$")
_GPU_PROC = re.compile(r"^gpu(\d+)/pid:(\d+)$")
_CPU_EXCLUDED = ("cpu_times.guest", "cpu_times.guest_nice")
_CPU_IDLE = ("cpu_times.idle", "cpu_times.iowait")
# (util field, used, free, total, factor to MiB) per GPU source
_GPU_FIELDS = {
    "nvml": (("utilization.gpu",), "memory.used", "memory.free", "memory.total", 1 / MIB),
    "dcgmi": (("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL_RATIO"), "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
              None, 1.0),
}


@dataclass
class SystemStats:
    """cjm's ``SystemStats``."""

    cpu_percent: float = 0.0
    memory_used_mb: float = 0.0
    memory_total_mb: float = 0.0
    memory_available_mb: float = 0.0
    gpu_type: str = "None"
    gpu_free_memory_mb: float = 0.0
    gpu_total_memory_mb: float = 0.0
    gpu_used_memory_mb: float = 0.0
    gpu_load_percent: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ProcessStats:
    """cjm's ``ProcessStats``."""

    pid: int = 0
    gpu_index: int = -1
    gpu_memory_mb: float = 0.0
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Snapshot:
    """What ``MonitorPlugin.get_system_status()`` and ``list_processes()`` return, plus when."""

    system: SystemStats
    processes: list[ProcessStats]
    wall_ns: int | None


def _num(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else NAN


def _cpu_percent(prev: RawRecord | None, last: RawRecord | None) -> float:
    """psutil.cpu_percent() between two records of the ``system`` entity."""
    if prev is None or last is None:
        return NAN
    total = busy = 0.0
    seen = False
    for name, value in last.fields.items():
        if not name.startswith("cpu_times.") or name in _CPU_EXCLUDED:
            continue
        before = prev.fields.get(name)
        if not isinstance(value, (int, float)) or not isinstance(before, (int, float)):
            continue
        delta = value - before
        seen = True
        total += delta
        if name not in _CPU_IDLE:
            busy += delta
    if not seen or total <= 0 or busy < 0:
        return NAN
    return min(max(busy / total * 100.0, 0.0), 100.0)


def snapshot_from_records(records: Iterable[RawRecord], *, gpus: list[dict] | None = None,
                          units: dict[str, dict[str, str]] | None = None, origin: str = "") -> Snapshot:
    """A snapshot from the records of the last ticks (the latest record of each entity counts)."""
    last: dict[tuple[str, str], RawRecord] = {}
    prev: dict[tuple[str, str], RawRecord] = {}
    for rec in sorted(records, key=lambda r: r.wall_ns):
        key = (rec.source, rec.entity)
        if key in last:
            prev[key] = last[key]
        last[key] = rec
    system = last.get(("psutil", "system"))
    stats = SystemStats(cpu_percent=_cpu_percent(prev.get(("psutil", "system")), system))
    if system is not None:
        f = system.fields
        stats.memory_total_mb = _num(f.get("virtual_memory.total")) / MIB
        stats.memory_used_mb = _num(f.get("virtual_memory.used")) / MIB
        stats.memory_available_mb = _num(f.get("virtual_memory.available")) / MIB
    else:
        stats.memory_total_mb = stats.memory_used_mb = stats.memory_available_mb = NAN
    devices, gpu_records = _gpus(last, gpus or [], units or {})
    if devices:
        stats.gpu_type = "NVIDIA"
        stats.gpu_used_memory_mb = _sum(d["memory_used_mb"] for d in devices)
        stats.gpu_free_memory_mb = _sum(d["memory_free_mb"] for d in devices)
        stats.gpu_total_memory_mb = _sum(d["memory_total_mb"] for d in devices)
        loads = [d["utilization_percent"] for d in devices]
        stats.gpu_load_percent = NAN if any(math.isnan(x) for x in loads) else max(loads)
    processes = _processes(last, gpu_records)
    newest = max((r.wall_ns for r in last.values()), default=None)
    stats.details = {"gpus": devices, "wall_ns": newest, "source": origin,
                     "time": None if newest is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(newest / 1e9))
                     + f".{newest % 10**9:09d}Z"}
    return Snapshot(stats, processes, newest)


def _sum(values) -> float:
    values = list(values)
    return NAN if not values or any(math.isnan(v) for v in values) else float(sum(values))


def _gpus(last: dict, gpus: list[dict], units: dict) -> tuple[list[dict], dict[int, RawRecord]]:
    by_index = {int(g.get("index", i)): g for i, g in enumerate(gpus)}
    devices, records = [], {}
    source = next((s for s in ("nvml", "dcgmi") if any(k[0] == s and _GPU.match(k[1]) for k in last)), None)
    if source is None:
        return devices, records
    util_names, used_f, free_f, total_f, factor = _GPU_FIELDS[source]
    for (src, entity), rec in sorted(last.items(), key=lambda kv: kv[0]):
        m = _GPU.match(entity)
        if src != source or not m:
            continue
        g = int(m.group(1))
        records[g] = rec
        f = rec.fields
        util_name = next((n for n in util_names if n in f), None)
        util = _num(f.get(util_name)) if util_name else NAN
        if util_name and units.get(src, {}).get(util_name) == "ratio":
            util *= 100.0
        used = _num(f.get(used_f)) * factor
        free = _num(f.get(free_f)) * factor
        total = _num(f.get(total_f)) * factor if total_f else NAN
        if math.isnan(total):
            listed = by_index.get(g, {}).get("memory_total_bytes")
            total = listed / MIB if listed else (used + free + _num(f.get("DCGM_FI_DEV_FB_RESERVED", 0)))
        info = by_index.get(g, {})
        devices.append({"index": g, "name": info.get("name"), "uuid": info.get("uuid"),
                        "utilization_percent": util, "memory_used_mb": used, "memory_free_mb": free,
                        "memory_total_mb": total, "temperature_c": _num(f.get("temperature.gpu",
                                                                             f.get("DCGM_FI_DEV_GPU_TEMP_CELSIUS"))),
                        "source": src})
    return devices, records


def _processes(last: dict, gpu_records: dict[int, RawRecord]) -> list[ProcessStats]:
    out = []
    for (src, entity), rec in sorted(last.items(), key=lambda kv: kv[0]):
        m = _GPU_PROC.match(entity)
        if not m:
            continue
        g, pid = int(m.group(1)), int(m.group(2))
        device = gpu_records.get(g)
        if device is not None and rec.wall_ns < device.wall_ns:
            continue      # the process was gone by the device's latest tick
        proc = last.get(("psutil", f"pid:{pid}"))
        command = ""
        if proc is not None:
            command = proc.fields.get("cmdline") or proc.fields.get("name") or ""
        out.append(ProcessStats(pid=pid, gpu_index=g, gpu_memory_mb=_num(rec.fields.get("used_gpu_memory")) / MIB,
                                command=str(command)))
    return out


def snapshot(trace, at=None) -> Snapshot:
    """The snapshot a cjm monitor would have returned at ``at`` (default: the end of the trace).

    ``trace``: a path or open Trace; ``at``: anything ``load(start=...)`` takes. Only the
    records of the last ten intervals (at least 10 s) before ``at`` are read.
    """
    from telemrec.analysis import _select

    with _select.opened(trace) as tr:
        manifest = tr.manifest
        start = (manifest.get("start") or {}).get("wall_ns")
        first, last = tr.time_span()
        at_ns = _select.to_wall_ns(at, origin_ns=start if start is not None else first, what="at", last_ns=last)
        if at_ns is None:
            at_ns = last if last is not None else 0
        interval = float(manifest.get("interval_seconds") or 1.0)
        window = int(max(10 * interval, 10.0) * 1e9)
        records = list(tr.records(start_wall_ns=at_ns - window, end_wall_ns=at_ns + 1))
        caps = _select.source_caps(manifest)
        units = {source: entry["units"] for source, entry in caps.items()}
        return snapshot_from_records(records, gpus=manifest.get("gpus") or [], units=units, origin=tr.path)


def live_snapshot(interval: float = 0.1, *, psutil_reader=None, nvml_reader=None) -> Snapshot:
    """Read the machine now through telemrec's psutil and NVML readers (NVML when available).

    CPU percent needs two readings ``interval`` seconds apart, as psutil.cpu_percent does.
    Readers can be passed in (opened or not) for tests; they are closed afterwards.
    """
    with LiveSampler(interval, psutil_reader=psutil_reader, nvml_reader=nvml_reader) as sampler:
        return sampler.snapshot()


class LiveSampler:
    """psutil and NVML readers kept open across snapshots, for a monitor that answers many calls.

    CPU percent covers the time since the previous snapshot (psutil.cpu_percent(interval=None)'s
    rule); the first snapshot waits ``interval`` seconds between two readings. NVML is used
    when ``nvml`` is true and the library finds a driver; readers can be injected for tests.
    """

    def __init__(self, interval: float = 0.1, *, psutil_reader=None, nvml_reader=None, nvml: bool = True):
        self.interval = float(interval)
        self._ps = psutil_reader
        self._nv = nvml_reader
        self._want_nvml = nvml or nvml_reader is not None
        self._prev: list[RawRecord] = []
        self._gpus: list[dict] = []
        self._opened = False

    def open(self) -> "LiveSampler":
        from telemrec.record import ReaderConfig

        if self._ps is None:
            from telemrec.readers.psutil_ import PsutilReader

            self._ps = PsutilReader()
        if self._nv is None and self._want_nvml:
            from telemrec.readers.nvml import NvmlReader

            ok, _ = NvmlReader.availability()
            self._nv = NvmlReader() if ok else None
        try:
            self._ps.open(ReaderConfig(interval=self.interval, options={"levels": "system", "per_cpu": False}))
            if self._nv is not None:
                self._nv.open(ReaderConfig(interval=self.interval, options={"processes": True}))
                self._gpus = self._nv.identity().get("gpus") or []
        except BaseException:
            self.close()
            raise
        self._opened = True
        return self

    def snapshot(self) -> Snapshot:
        if not self._opened:
            self.open()
        records = list(self._prev)
        if not records:
            records.extend(self._ps.read() or [])
            time.sleep(self.interval)
        current = list(self._ps.read() or [])
        records.extend(current)
        self._prev = current
        if self._nv is not None:
            records.extend(self._nv.read() or [])
        snap = snapshot_from_records(records, gpus=self._gpus, origin="live")
        _name_processes(snap.processes)
        return snap

    @property
    def has_gpus(self) -> bool:
        return self._nv is not None

    def close(self) -> None:
        for reader in (self._ps, self._nv):
            if reader is not None:
                reader.close()
        self._opened = False
        self._prev = []

    def __enter__(self) -> "LiveSampler":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _name_processes(processes: list[ProcessStats]) -> None:
    """Live GPU processes get their command line from psutil (the trace path has the pid records)."""
    if not processes:
        return
    import psutil

    for proc in processes:
        try:
            proc.command = " ".join(psutil.Process(proc.pid).cmdline()) or psutil.Process(proc.pid).name()
        except (psutil.Error, OSError):
            proc.command = ""

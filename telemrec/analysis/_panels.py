"""What ``telemrec plot`` draws: panels of lines, computed from a trace's records, before any
matplotlib (so tests can check the numbers and the limits the figure gets).

Each panel appears when the trace holds its data, whichever reader recorded it:

- CPU busy (%): per-core busy share from ``cpu_times`` (psutil, exactly as
  ``psutil.cpu_percent``) or ``node_cpu_seconds_total`` (node_exporter); the mean over
  cores and the band between the least and the most busy core.
- memory (GiB): total - available (psutil ``virtual_memory``, node_exporter ``node_memory_*``),
  with the total as a dashed line.
- disk I/O and network (MiB/s): whole disks (partitions and loop/ram devices left out) and
  network interfaces other than ``lo``, summed.
- the command's CPU (% of one core, as psrecord: a process with 4 busy threads is at 400 %)
  and memory (RSS): the sum over the processes psutil's ``process`` level followed.
- GPU busy (%), GPU memory (GiB) and GPU power (W) from nvml, dcgmi, or dcgm-exporter
  through the prometheus reader: a line per GPU up to four; with more, their mean and the
  band between the lowest and the highest.

Every panel's y range starts at 0 and ends above its largest value (percent panels at least at
105 %), so a saturated CPU or GPU shows as a line under the frame's top, never hidden by it,
and no value is clipped.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from telemrec.analysis.frames import read_series
from telemrec.analysis.rates import counter_rate

GIB = float(1 << 30)
MIB = float(1 << 20)
PER_GPU_LINES = 4
HEADROOM = 1.05
_CPU = re.compile(r"^cpu(\d+)$")
_NODE_CPU = re.compile(r"^cpu=(\d+)$")
_GPU_NAME = {"nvml": re.compile(r"^gpu(\d+)$"), "dcgmi": re.compile(r"^gpu(\d+)$"),
             "prometheus": re.compile(r"^gpu=(\d+)(,|$)")}
_PARTITION = re.compile(r"^(p?\d+)$")
_VIRTUAL_DISK = re.compile(r"^(z?ram|loop|fd)\d+$")
# per GPU source: the fields of utilisation, memory used, the parts whose sum is the memory total,
# and power, each list in order of preference; values are scaled by their recorded unit (_TO_PLOT)
_GPU_FIELDS = {
    "nvml": (("utilization.gpu",), ("memory.used",), ("memory.total",), ("power.usage",)),
    "dcgmi": (("DCGM_FI_DEV_GPU_UTIL_RATIO", "DCGM_FI_DEV_GPU_UTIL"), ("DCGM_FI_DEV_FB_USED",),
              ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_RESERVED"),
              ("DCGM_FI_DEV_BOARD_POWER_WATTS", "DCGM_FI_DEV_POWER_USAGE")),
}
# a recorded unit -> the factor to the panel's unit (percent, GiB, W); fields without a unit use the
# source's documented one (_DEFAULT_UNIT)
_TO_PLOT = {"percent": 1.0, "ratio": 100.0, "bytes": 1 / GIB, "kibibytes": 1 / 2**20, "mebibytes": 1 / 1024,
            "megabytes": 1e6 / GIB, "milliwatts": 1e-3, "watts": 1.0}
_DEFAULT_UNIT = {"utilization.gpu": "percent", "memory.used": "bytes", "memory.total": "bytes",
                 "power.usage": "milliwatts", "DCGM_FI_DEV_GPU_UTIL": "percent", "DCGM_FI_DEV_GPU_UTIL_RATIO": "percent",
                 "DCGM_FI_DEV_FB_USED": "mebibytes", "DCGM_FI_DEV_FB_FREE": "mebibytes",
                 "DCGM_FI_DEV_FB_RESERVED": "mebibytes", "DCGM_FI_DEV_POWER_USAGE": "watts",
                 "DCGM_FI_DEV_BOARD_POWER_WATTS": "watts"}
_GPU_FIELDS["prometheus"] = _GPU_FIELDS["dcgmi"]


@dataclass
class Line:
    label: str
    wall_ns: np.ndarray
    values: np.ndarray
    band: tuple[np.ndarray, np.ndarray] | None = None  # (low, high) around the line
    dashed: bool = False


@dataclass
class Panel:
    key: str
    ylabel: str
    lines: list[Line] = field(default_factory=list)
    percent: bool = False

    @property
    def ylim(self) -> tuple[float, float]:
        """From 0 to above the largest value drawn (lines, bands, dashed totals); percent panels
        reach at least 105 %."""
        top = 0.0
        for line in self.lines:
            for values in (line.values, *(line.band or ())):
                finite = values[np.isfinite(values)]
                if len(finite):
                    top = max(top, float(finite.max()))
        if self.percent:
            top = max(top, 100.0)
        return 0.0, (top * HEADROOM if top > 0 else 1.0)


def panels(trace) -> list[Panel]:
    """The panels ``plot_trace`` draws for an open trace, in order, those without data left out."""
    sources = set(trace.sources())
    out = []
    for build in (_cpu, _memory, _disk, _network, _command_cpu, _command_memory):
        panel = build(trace, sources)
        if panel is not None and panel.lines:
            out.append(panel)
    out.extend(_gpu_panels(trace, sources))
    return out


# -- combining entities ---------------------------------------------------------------------------

def _align(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(wall_ns, stack): the series on the union of their timestamps, NaN where one has no sample."""
    wall = np.unique(np.concatenate([w for w, _ in series])) if series else np.zeros(0, np.int64)
    stack = np.full((len(series), len(wall)), np.nan)
    for i, (w, v) in enumerate(series):
        stack[i, np.searchsorted(wall, w)] = v
    return wall, stack


def _reduce(series, how: str) -> tuple[np.ndarray, np.ndarray]:
    wall, stack = _align(series)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        if how == "sum":
            present = np.isfinite(stack).any(axis=0)
            return wall, np.where(present, np.nansum(stack, axis=0), np.nan)
        return wall, {"mean": np.nanmean, "min": np.nanmin, "max": np.nanmax}[how](stack, axis=0)


def _rate(e, name: str) -> np.ndarray | None:
    """Per-second rate of a field the panel knows to be a counter (whatever the caps say: an
    import without a manifest has none)."""
    values = e.get(name)
    return None if values is None else counter_rate(values, e.mono)


def _busy_percent(e, fields: list[str], idle: set[str]) -> np.ndarray:
    """Busy share of the rates of CPU-time counters: (total - idle) / total, in percent."""
    total = idle_sum = None
    for name in fields:
        rate = _rate(e, name)
        if rate is None:
            continue
        total = rate.copy() if total is None else total + rate
        if name in idle:
            idle_sum = rate.copy() if idle_sum is None else idle_sum + rate
    if total is None:
        return np.full(len(e.wall), np.nan)
    busy = total - (idle_sum if idle_sum is not None else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, busy / total * 100.0, np.nan)


def _spread_line(series, what: str, band: str) -> Line:
    """The mean of several series, with the band between their lowest and highest (named ``band``)."""
    wall, mean = _reduce(series, "mean")
    if len(series) == 1:
        return Line(what.rstrip("s"), wall, mean)
    _, lo = _reduce(series, "min")
    _, hi = _reduce(series, "max")
    return Line(f"mean of {len(series)} {what} (band: {band})", wall, mean, band=(lo, hi))


# -- host panels ----------------------------------------------------------------------------------

_PSUTIL_CPU = [f"cpu_times.{m}" for m in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")]
_NODE_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_NODE_CPU_FIELDS = [f'node_cpu_seconds_total{{mode="{m}"}}' for m in _NODE_MODES]


def _cpu(trace, sources) -> Panel | None:
    panel = Panel("cpu", "CPU busy (%)", percent=True)
    series = []
    if "psutil" in sources:
        ents = read_series(trace, readers="psutil", entities=["cpu*", "system"], fields=_PSUTIL_CPU)
        cores = [e for e in ents if _CPU.match(e.name)] or [e for e in ents if e.name == "system"]
        idle = {"cpu_times.idle", "cpu_times.iowait"}
        series = [(e.wall, _busy_percent(e, _PSUTIL_CPU, idle)) for e in cores]
    if not series and "prometheus" in sources:
        ents = read_series(trace, readers="prometheus", entities=["cpu=*"], fields=_NODE_CPU_FIELDS)
        idle = {'node_cpu_seconds_total{mode="idle"}', 'node_cpu_seconds_total{mode="iowait"}'}
        series = [(e.wall, _busy_percent(e, _NODE_CPU_FIELDS, idle)) for e in ents if _NODE_CPU.match(e.name)]
    if series:
        panel.lines.append(_spread_line(series, "cores", "least to most busy core"))
    return panel


def _memory(trace, sources) -> Panel | None:
    panel = Panel("memory", "memory (GiB)")
    pairs = []
    if "psutil" in sources:
        pairs = [(e, "virtual_memory.total", "virtual_memory.available")
                 for e in read_series(trace, readers="psutil", entities=["system"],
                                      fields=["virtual_memory.total", "virtual_memory.available"])]
    if not pairs and "prometheus" in sources:
        pairs = [(e, "node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes")
                 for e in read_series(trace, readers="prometheus", entities=["system"],
                                      fields=["node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes"])]
    for e, total_name, avail_name in pairs:
        total, avail = e.get(total_name), e.get(avail_name)
        if total is None or avail is None or not np.isfinite(total - avail).any():
            continue
        panel.lines.append(Line("in use (total - available)", e.wall, (total - avail) / GIB))
        peak = float(np.nanmax(total)) / GIB
        panel.lines.append(Line(f"total {peak:.0f} GiB", e.wall[[0, -1]], np.array([peak, peak]), dashed=True))
        break
    return panel


def _whole_disks(names: list[str]) -> list[str]:
    """Real whole disks: partitions (sda1 of sda, nvme0n1p1) and virtual devices (loop, ram) left out."""
    names = [n for n in names if not _VIRTUAL_DISK.match(n)]
    return [n for n in names if not any(o != n and n.startswith(o) and _PARTITION.match(n[len(o):]) for o in names)]


def _device_rates(trace, sources, *, psutil_prefix: str, psutil_fields: tuple[str, str], node_fields: tuple[str, str],
                  keep) -> dict[str, list]:
    """Per direction, the per-device byte rates of psutil's ``prefix:<device>`` entities, else
    node_exporter's ``device=<device>`` ones; ``keep(names)`` chooses the devices."""
    for source, prefix, names in (("psutil", psutil_prefix, psutil_fields), ("prometheus", "device=", node_fields)):
        if source not in sources:
            continue
        ents = read_series(trace, readers=source, entities=[f"{prefix}*"], fields=list(names))
        by_device = {e.name[len(prefix):]: e for e in ents if e.name.startswith(prefix)}
        chosen = [by_device[n] for n in keep(sorted(by_device))]
        out = {name: [(e.wall, _rate(e, name) / MIB) for e in chosen if e.get(name) is not None] for name in names}
        if any(out.values()):
            return {label: out[name] for label, name in zip(("first", "second"), names)}
    return {}


def _disk(trace, sources) -> Panel:
    panel = Panel("disk", "disk I/O (MiB/s)")
    rates = _device_rates(trace, sources, psutil_prefix="disk:",
                          psutil_fields=("disk_io_counters.read_bytes", "disk_io_counters.write_bytes"),
                          node_fields=("node_disk_read_bytes_total", "node_disk_written_bytes_total"), keep=_whole_disks)
    for key, label in (("first", "read"), ("second", "write")):
        if rates.get(key):
            panel.lines.append(Line(label, *_reduce(rates[key], "sum")))
    return panel


def _network(trace, sources) -> Panel:
    panel = Panel("network", "network (MiB/s)")
    rates = _device_rates(trace, sources, psutil_prefix="net:",
                          psutil_fields=("net_io_counters.bytes_recv", "net_io_counters.bytes_sent"),
                          node_fields=("node_network_receive_bytes_total", "node_network_transmit_bytes_total"),
                          keep=lambda names: [n for n in names if n != "lo"])
    for key, label in (("first", "received"), ("second", "sent")):
        if rates.get(key):
            panel.lines.append(Line(label, *_reduce(rates[key], "sum")))
    return panel


def _command_processes(trace, sources, fields: list[str]) -> list:
    """The processes of psutil's ``process`` level (the command's tree), each with a mask of the
    samples where it belonged to it."""
    if "psutil" not in sources:
        return []
    ents = read_series(trace, readers="psutil", entities=["pid:*"], fields=[*fields, "levels"])
    out = []
    for e in ents:
        levels = e.get("levels")
        if levels is None:
            continue
        member = np.array([isinstance(t, str) and "process" in t.split() for t in levels], bool)
        if member.any():
            out.append((e, member))
    return out


def _command_name(trace) -> str:
    argv = ((trace.manifest.get("command") or {}).get("argv") or [])
    return argv[0].rsplit("/", 1)[-1] if argv else "the process"


def _command_cpu(trace, sources) -> Panel:
    panel = Panel("command_cpu", "command CPU (% of a core)", percent=True)
    procs = _command_processes(trace, sources, ["cpu_times.user", "cpu_times.system"])
    series = []
    for e, member in procs:
        user, system = _rate(e, "cpu_times.user"), _rate(e, "cpu_times.system")
        if user is not None and system is not None:
            series.append((e.wall[member], ((user + system) * 100.0)[member]))
    if series:
        panel.lines.append(Line(f"{_command_name(trace)} and its processes ({len(series)} seen)",
                                *_reduce(series, "sum")))
    return panel


def _command_memory(trace, sources) -> Panel:
    panel = Panel("command_memory", "command memory (GiB)")
    procs = _command_processes(trace, sources, ["memory_info.rss"])
    series = [(e.wall[member], e.get("memory_info.rss")[member]) for e, member in procs
              if e.get("memory_info.rss") is not None]
    if series:
        wall, rss = _reduce(series, "sum")
        small = not (np.nanmax(rss) >= GIB) if np.isfinite(rss).any() else True
        panel.ylabel = f"command memory ({'MiB' if small else 'GiB'})"
        panel.lines.append(Line(f"RSS of {_command_name(trace)} and its processes", wall,
                                rss / (MIB if small else GIB)))
    return panel


# -- GPU panels -----------------------------------------------------------------------------------

def _gpu_panels(trace, sources) -> list[Panel]:
    from telemrec.analysis import _select

    source = next((s for s in ("nvml", "dcgmi", "prometheus") if s in sources), None)
    if source is None:
        return []
    util_fields, mem_fields, total_parts, power_fields = _GPU_FIELDS[source]
    units = _select.caps_for(_select.source_caps(trace.manifest), source)["units"]

    def factor(name: str) -> float:
        return _TO_PLOT.get(units.get(name) or _DEFAULT_UNIT.get(name, ""), 1.0)

    pattern = _GPU_NAME[source]
    gpus = {}
    names = sorted({*util_fields, *mem_fields, *total_parts, *power_fields})
    for e in read_series(trace, readers=source, entities=["gpu*"], fields=names):
        m = pattern.match(e.name)
        if m:
            gpus[int(m.group(1))] = e
    out = []
    for key, ylabel, wanted, percent in (("gpu_util", "GPU busy (%)", util_fields, True),
                                        ("gpu_memory", "GPU memory (GiB)", mem_fields, False),
                                        ("gpu_power", "GPU power (W)", power_fields, False)):
        series = {}
        for g, e in sorted(gpus.items()):
            for name in wanted:
                values = e.get(name)
                if values is not None and np.isfinite(values).any():
                    series[g] = (e.wall, values * factor(name))
                    break
        panel = Panel(key, ylabel, _per_gpu(series), percent=percent)
        if key == "gpu_memory" and panel.lines:
            total = _gpu_total(gpus, total_parts, factor)
            if total:
                wall = np.concatenate([w for w, _ in series.values()])
                panel.lines.append(Line(f"total {total:.0f} GiB", np.array([wall.min(), wall.max()]),
                                        np.array([total, total]), dashed=True))
        if panel.lines:
            out.append(panel)
    return out


def _gpu_total(gpus: dict, parts: tuple[str, ...], factor) -> float:
    best = 0.0
    for e in gpus.values():
        found = [e.get(p) * factor(p) for p in parts if e.get(p) is not None]
        if found:
            total = np.nansum(np.vstack(found), axis=0)
            if np.isfinite(total).any():
                best = max(best, float(np.nanmax(total)))
    return best


def _per_gpu(series: dict[int, tuple[np.ndarray, np.ndarray]]) -> list[Line]:
    """A line per GPU up to four; more: their mean and the band between the lowest and the highest."""
    if not series:
        return []
    if len(series) <= PER_GPU_LINES:
        return [Line(f"GPU {g}", w, v) for g, (w, v) in sorted(series.items())]
    return [_spread_line(list(series.values()), "GPUs", "lowest to highest GPU")]

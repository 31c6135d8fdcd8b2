"""JUmPER's per-level frames, derived from a trace's raw records.

One row per psutil tick; columns, units and names as JUmPER 0.4.1 writes them
(seed-projects.md 1.3):

- ``time``: CLOCK_MONOTONIC seconds of the sample (JUmPER's perf_counter clock).
- ``cpu_util_<i>``, ``cpu_util_avg|min|max`` (percent). ``system``: per core i,
  from ``cpu<i>``'s ``cpu_times`` counters exactly as psutil.cpu_percent does it
  (busy = total - idle - iowait, guest time not counted twice). Other levels:
  sum over the level's processes of (user + system CPU seconds per second) x 100,
  divided by ``num_cpus``, in each of the ``num_cpus`` columns (JUmPER's layout).
- ``memory`` (GiB, which JUmPER calls GB): ``system``: total - available;
  other levels: the sum of the processes' RSS.
- ``io_read``, ``io_write`` (bytes/s) and ``io_read_count``, ``io_write_count``
  (ops/s): ``system`` sums the whole disks (partitions left out, as
  psutil.disk_io_counters() does); other levels sum the processes' io_counters.
- ``gpu_util_<g>`` (percent), ``gpu_band_<g>`` (percent; JUmPER writes a constant 0,
  telemrec the memory-controller utilisation: NVML ``utilization.memory``,
  DCGM ``MEM_COPY_UTIL``), ``gpu_mem_<g>`` (GiB), each with ``_avg|min|max``.
  ``system``: the device's values. Other levels, from NVML's per-process
  records ``gpu<g>/pid:<pid>``: memory is the sum over the level's processes;
  util and band are the device's, scaled by the share of the device's processes
  that belong to the level (JUmPER's rule).

A process belongs to a level at a tick when its ``levels`` field names it. Rates
come from counter differences (``telemrec.analysis.rates``): NaN at a level's or
core's first sample and across a counter reset, where JUmPER writes 0; a process
seen for the first time contributes nothing to the tick, as in JUmPER.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from telemrec.analysis import _select, _timeline
from telemrec.analysis.frames import read_series

LEVELS = ("user", "process", "system", "slurm")
PROCESS_LEVELS = ("user", "process", "slurm")
GIB = float(1 << 30)
_CPU_EXCLUDED = {"cpu_times.guest", "cpu_times.guest_nice"}      # already inside user and nice
_CPU_IDLE = {"cpu_times.idle", "cpu_times.iowait"}
_DISK = {"io_read": "disk_io_counters.read_bytes", "io_write": "disk_io_counters.write_bytes",
         "io_read_count": "disk_io_counters.read_count", "io_write_count": "disk_io_counters.write_count"}
_PROC_IO = {"io_read": "io_counters.read_bytes", "io_write": "io_counters.write_bytes",
            "io_read_count": "io_counters.read_count", "io_write_count": "io_counters.write_count"}
IO_COLUMNS = ("io_read_count", "io_write_count", "io_read", "io_write")
# (util, band, memory) per GPU source; memory with its factor to GiB
_GPU_FIELDS = {
    "nvml": (("utilization.gpu",), ("utilization.memory",), ("memory.used",), 1 / GIB),
    "dcgmi": (("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL_RATIO"), ("DCGM_FI_DEV_MEM_COPY_UTIL",),
              ("DCGM_FI_DEV_FB_USED",), 1 / 1024),
}
_GPU_ENTITY = re.compile(r"^gpu(\d+)$")
_GPU_PROC = re.compile(r"^gpu(\d+)/pid:(\d+)$")
_PARTITION = re.compile(r"^(p?\d+)$")


@dataclass
class NodeInfo:
    """JUmPER's ``NodeInfo`` (adapters/data/node.py), field for field."""

    node: str
    num_cpus: int
    num_system_cpus: int
    num_gpus: int
    gpu_memory: float
    gpu_name: str
    memory_limits: dict[str, float]
    cpu_handles: list[int] = field(default_factory=list)


@dataclass
class LevelData:
    """The per-level frames of one trace and its hardware as JUmPER's NodeInfo."""

    frames: dict[str, pd.DataFrame]
    node: NodeInfo
    wall_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # per row
    mono_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # per row


def _whole_disks(names: list[str]) -> list[str]:
    """Drop partitions (sda1 of sda, nvme0n1p1 of nvme0n1, mmcblk0p2 of mmcblk0)."""
    out = []
    for name in names:
        if not any(other != name and name.startswith(other) and _PARTITION.match(name[len(other):])
                   for other in names):
            out.append(name)
    return out


class _Rows:
    """The frame's rows: psutil ticks, keyed on the recorder's grid (or on psutil's own)."""

    def __init__(self, trace, timelines: list[tuple[np.ndarray, np.ndarray]]):
        grid = _timeline.tick_grid(trace)
        self.round = grid is None
        if grid is None:
            interval = trace.manifest.get("interval_seconds")
            firsts = [int(m[0]) for _, m in timelines if len(m)]
            step = int(round(interval * 1e9)) if interval else _median_step(timelines)
            grid = _timeline.Grid(min(firsts) if firsts else 0, max(step, 1))
        self.grid = grid
        keyed = [(self.keys(m), w, m) for w, m in timelines]
        self.keys_ = _timeline.sorted_unique(np.concatenate([k for k, _, _ in keyed])) if keyed else np.zeros(0, np.int64)
        n = len(self.keys_)
        self.wall = np.zeros(n, np.int64)
        self.mono = np.zeros(n, np.int64)
        done = np.zeros(n, bool)
        for k, w, m in keyed:
            pos = np.searchsorted(self.keys_, k)
            fresh = ~done[pos]
            self.wall[pos[fresh]] = w[fresh]
            self.mono[pos[fresh]] = m[fresh]
            done[pos] = True

    def keys(self, mono: np.ndarray) -> np.ndarray:
        offset = mono - self.grid.origin_mono_ns
        if self.round:
            return np.floor_divide(offset + self.grid.interval_ns // 2, self.grid.interval_ns)
        return np.floor_divide(offset, self.grid.interval_ns)

    def positions(self, mono: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row of each record, mask of records that fall on a row)."""
        k = self.keys(mono)
        pos = np.searchsorted(self.keys_, k)
        pos = np.minimum(pos, max(len(self.keys_) - 1, 0))
        ok = (self.keys_[pos] == k) if len(self.keys_) else np.zeros(len(k), bool)
        return pos, ok

    def __len__(self) -> int:
        return len(self.keys_)


def _median_step(timelines) -> int:
    steps = [np.median(np.diff(m)) for _, m in timelines if len(m) > 1]
    return int(min(steps)) if steps else 1_000_000_000


def _spread(rows: _Rows, ent, values: np.ndarray, fill=np.nan) -> np.ndarray:
    out = np.full(len(rows), fill, np.float64)
    pos, ok = rows.positions(ent.mono)
    out[pos[ok]] = values[ok]
    return out


class _Sum:
    """A per-row sum that knows which rows had no number at all (NaN there, not 0)."""

    def __init__(self, n: int):
        self.total = np.zeros(n)
        self.valid = np.zeros(n, bool)
        self.present = np.zeros(n, bool)

    def add(self, rows: _Rows, ent, values: np.ndarray, mask: np.ndarray | None = None) -> None:
        pos, ok = rows.positions(ent.mono)
        if mask is not None:
            ok = ok & mask
        self.present[pos[ok]] = True
        ok &= ~np.isnan(values)
        np.add.at(self.total, pos[ok], values[ok])
        self.valid[pos[ok]] = True

    def result(self, empty_is_zero: bool) -> np.ndarray:
        """Rows without any number: 0 when nothing was there to count (``empty_is_zero``), else NaN."""
        out = np.where(self.valid, self.total, np.nan)
        if empty_is_zero:
            out[~self.present] = 0.0
        return out


def _cpu_percent(ent) -> np.ndarray:
    """psutil.cpu_percent between consecutive samples, from the rates of the cpu_times fields."""
    total = None
    idle = None
    for c in ent.columns:
        if not c.field.startswith("cpu_times.") or c.field in _CPU_EXCLUDED:
            continue
        rate = ent.get(c.field)
        total = rate.copy() if total is None else total + rate
        if c.field in _CPU_IDLE:
            idle = rate.copy() if idle is None else idle + rate
    if total is None:
        return np.full(len(ent.wall), np.nan)
    busy = total - (idle if idle is not None else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(total > 0, busy / total * 100.0, np.nan)
    return np.clip(pct, 0.0, 100.0)


def _level_sets(ent) -> np.ndarray:
    text = ent.get("levels")
    if text is None:
        return np.full(len(ent.wall), "", dtype=object)
    return np.array([f" {t} " if isinstance(t, str) else "" for t in text], dtype=object)


def _gpu_fields(source: str, names: set[str]):
    spec = _GPU_FIELDS.get(source)
    if spec is None:
        return None
    util, band, mem, factor = spec
    pick = lambda options: next((n for n in options if n in names), None)  # noqa: E731
    return pick(util), pick(band), pick(mem), factor


def _per_device_columns(prefix: str, per: dict[int, np.ndarray], n: int) -> dict[str, np.ndarray]:
    cols = {f"{prefix}{g}": per[g] for g in sorted(per)}
    if per:
        stack = np.vstack([per[g] for g in sorted(per)])
        with np.errstate(invalid="ignore"), _quiet():
            cols[f"{prefix}avg"] = np.nanmean(stack, axis=0)
            cols[f"{prefix}min"] = np.nanmin(stack, axis=0)
            cols[f"{prefix}max"] = np.nanmax(stack, axis=0)
    return cols


class _quiet:
    """Silence numpy's all-NaN-slice RuntimeWarning (an all-NaN row is NaN, as intended)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def level_data(trace) -> LevelData:
    """Derive JUmPER's per-level frames from a trace (see the module docstring)."""
    manifest = trace.manifest
    host = manifest.get("host") or {}
    ps = [e for e in read_series(trace, readers="psutil", rates=True,
                                 entities=["system", "cpu*", "disk:*", "pid:*"],
                                 fields=["virtual_memory.total", "virtual_memory.available", "cpu_times.*",
                                         *_DISK.values(), *_PROC_IO.values(), "memory_info.rss", "levels"])]
    gpu_src = [s for s in ("nvml", "dcgmi") if any(src == s for src, _ in trace.entities())]
    gpus = read_series(trace, readers=gpu_src[:1], entities=["gpu*"]) if gpu_src else []
    timelines, seen = [], []
    for e in ps:
        if not any(len(w) == len(e.wall) and np.array_equal(w, e.wall) for w in seen):
            seen.append(e.wall)
            timelines.append((e.wall, e.mono))
    if not timelines:
        timelines = [(e.wall, e.mono) for e in gpus if _GPU_ENTITY.match(e.name)][:1]
    rows = _Rows(trace, timelines)
    n = len(rows)
    cpus = sorted((e for e in ps if re.fullmatch(r"cpu\d+", e.name)), key=lambda e: int(e.name[3:]))
    system_ent = next((e for e in ps if e.name == "system"), None)
    pids = [e for e in ps if e.name.startswith("pid:")]
    affinity = list(host.get("cpu_affinity") or [])
    num_system_cpus = len(cpus) or int(host.get("cpu_count_logical") or 0)
    num_cpus = len(affinity) or num_system_cpus

    device = _devices(gpus, rows, trace)
    levels_present = ["system"] if (system_ent is not None or cpus) else []
    gpu_only = not ps and device.count > 0   # no psutil: the devices' own figures, as JUmPER's system level
    if gpu_only:
        levels_present = ["system"]
    member_sets = {e.name: _level_sets(e) for e in pids}
    for level in PROCESS_LEVELS:
        if any(any(f" {level} " in s for s in sets) for sets in member_sets.values()):
            levels_present.append(level)
    frames: dict[str, pd.DataFrame] = {}
    time = rows.mono / 1e9
    for level in LEVELS:
        if level not in levels_present:
            continue
        if level == "system":
            cols = _system_columns(rows, cpus, system_ent, ps, device)
        else:
            cols = _process_columns(rows, level, pids, member_sets, num_cpus, device)
        frames[level] = _frame(time, cols, n, keep=() if gpu_only else KEPT_COLUMNS)
    total_gib = round(host.get("memory_total_bytes", 0) / GIB, 2) if host.get("memory_total_bytes") else 0.0
    if not total_gib and system_ent is not None and system_ent.get("virtual_memory.total") is not None:
        vals = system_ent.get("virtual_memory.total")
        total_gib = round(float(np.nanmax(vals)) / GIB, 2) if np.isfinite(vals).any() else 0.0
    limits = {level: total_gib for level in LEVELS if level in levels_present}
    for level, value in (manifest.get("memory_limits") or {}).items():
        if isinstance(value, (int, float)) and value > 0:
            limits[level] = round(value / GIB, 2)
    node = NodeInfo(_select.hostname(manifest, fallback=""), num_cpus, num_system_cpus, device.count,
                    device.memory_gib, device.name, limits, affinity or list(range(num_system_cpus)))
    return LevelData(frames, node, rows.wall, rows.mono)


@dataclass
class _Devices:
    count: int = 0
    memory_gib: float = 0.0
    name: str = ""
    util: dict = field(default_factory=dict)
    band: dict = field(default_factory=dict)
    mem: dict = field(default_factory=dict)
    procs: dict = field(default_factory=dict)   # gpu index -> list of (pid, entity)


def _devices(gpus: list, rows: _Rows, trace) -> _Devices:
    out = _Devices()
    totals: dict[int, float] = {}
    manifest = trace.manifest
    caps = _select.source_caps(manifest)
    for e in gpus:
        m = _GPU_ENTITY.match(e.name)
        if m:
            g = int(m.group(1))
            spec = _gpu_fields(e.source, {c.field for c in e.columns})
            if spec is None:
                continue
            util_f, band_f, mem_f, factor = spec
            units = _select.caps_for(caps, e.source)["units"]
            for table, name, scale in ((out.util, util_f, 1.0), (out.band, band_f, 1.0), (out.mem, mem_f, factor)):
                if name is None:
                    continue
                if table is not out.mem and units.get(name) == "ratio":
                    scale = 100.0
                table[g] = _spread(rows, e, e.get(name) * scale)
            total = _device_total_gib(e)
            if total is not None:
                totals[g] = total
            continue
        m = _GPU_PROC.match(e.name)
        if m:
            out.procs.setdefault(int(m.group(1)), []).append((int(m.group(2)), e))
    listed = manifest.get("gpus") or []
    indices = sorted(set(out.util) | set(out.mem) | {int(g.get("index", i)) for i, g in enumerate(listed)})
    out.count = len(indices)
    for g in indices:
        for table in (out.util, out.band, out.mem):
            table.setdefault(g, np.full(len(rows), np.nan))
    if listed:
        first = listed[0]
        out.memory_gib = round((first.get("memory_total_bytes") or 0) / GIB, 2)
        out.name = str(first.get("name") or "")
    if not out.memory_gib and totals:   # dcgmi traces list no devices: the framebuffer's own size
        out.memory_gib = round(totals[min(totals)], 2)
    return out


def _device_total_gib(ent) -> float | None:
    """A device's memory size from its records: NVML ``memory.total``, or DCGM used + free + reserved (MiB)."""
    if ent.get("memory.total") is not None:
        values = ent.get("memory.total") / GIB
    elif ent.get("DCGM_FI_DEV_FB_USED") is not None and ent.get("DCGM_FI_DEV_FB_FREE") is not None:
        reserved = ent.get("DCGM_FI_DEV_FB_RESERVED")
        values = (ent.get("DCGM_FI_DEV_FB_USED") + ent.get("DCGM_FI_DEV_FB_FREE")
                  + (0.0 if reserved is None else np.nan_to_num(reserved))) / 1024
    else:
        return None
    values = values[np.isfinite(values)]
    return float(values.max()) if len(values) else None


def _system_columns(rows: _Rows, cpus: list, system_ent, ps: list, device: _Devices) -> dict[str, np.ndarray]:
    n = len(rows)
    cols: dict[str, np.ndarray] = {}
    cols.update(_gpu_level_columns(device, None))
    disks = [e for e in ps if e.name.startswith("disk:")]
    whole = set(_whole_disks([e.name[5:] for e in disks]))
    for col in IO_COLUMNS:
        acc = _Sum(n)
        for e in disks:
            if e.name[5:] in whole and e.get(_DISK[col]) is not None:
                acc.add(rows, e, e.get(_DISK[col]))
        cols[col] = acc.result(empty_is_zero=False)
    per_core = {i: _spread(rows, e, _cpu_percent(e)) for i, e in enumerate(cpus)}
    cols.update(_per_device_columns("cpu_util_", per_core, n))
    memory = np.full(n, np.nan)
    if system_ent is not None:
        total, avail = system_ent.get("virtual_memory.total"), system_ent.get("virtual_memory.available")
        if total is not None and avail is not None:
            memory = _spread(rows, system_ent, (total - avail) / GIB)
    cols["memory"] = memory
    return cols


def _process_columns(rows: _Rows, level: str, pids: list, member_sets: dict, num_cpus: int,
                     device: _Devices) -> dict[str, np.ndarray]:
    n = len(rows)
    tag = f" {level} "
    cpu = _Sum(n)
    memory = _Sum(n)
    io = {col: _Sum(n) for col in IO_COLUMNS}
    members: dict[int, np.ndarray] = {}   # pid -> per-row membership
    for e in pids:
        inside = np.array([tag in s for s in member_sets[e.name]], bool)
        if not inside.any():
            continue
        pos, ok = rows.positions(e.mono)
        flag = np.zeros(n, bool)
        flag[pos[ok & inside]] = True
        members[int(e.name[4:])] = flag
        user, system = e.get("cpu_times.user"), e.get("cpu_times.system")
        if user is not None and system is not None:
            cpu.add(rows, e, (user + system) * 100.0, inside)
        rss = e.get("memory_info.rss")
        if rss is not None:
            memory.add(rows, e, rss / GIB, inside)
        for col, name in _PROC_IO.items():
            values = e.get(name)
            if values is not None:
                io[col].add(rows, e, values, inside)
    cols: dict[str, np.ndarray] = {}
    cols.update(_gpu_level_columns(device, (rows, members, level)))
    cols.update({col: acc.result(empty_is_zero=True) for col, acc in io.items()})
    share = cpu.result(empty_is_zero=True) / max(num_cpus, 1)
    cols.update(_per_device_columns("cpu_util_", {i: share for i in range(num_cpus)}, n))
    cols["memory"] = memory.result(empty_is_zero=True)
    return cols


def _gpu_level_columns(device: _Devices, level_ctx) -> dict[str, np.ndarray]:
    if not device.count:
        return {}
    util, band, mem = {}, {}, {}
    for g in sorted(device.util):
        if level_ctx is None:
            util[g], band[g], mem[g] = device.util[g], device.band[g], device.mem[g]
            continue
        rows, members, level = level_ctx
        n = len(rows)
        total = np.zeros(n)
        matching = np.zeros(n)
        used = np.zeros(n)
        for pid, e in device.procs.get(g, []):
            pos, ok = rows.positions(e.mono)
            p = pos[ok]
            np.add.at(total, p, 1.0)
            flag = members.get(pid)
            if flag is None:
                continue
            hit = flag[p]
            np.add.at(matching, p[hit], 1.0)
            memory = e.get("used_gpu_memory")
            if memory is not None:
                vals = memory[ok][hit]
                good = ~np.isnan(vals)
                np.add.at(used, p[hit][good], vals[good] / GIB)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(total > 0, matching / total, 0.0)
        if level == "process":
            frac = (matching > 0).astype(np.float64)
        util[g] = device.util[g] * frac
        band[g] = device.band[g] * frac
        mem[g] = used
    n = len(next(iter(util.values())))
    cols = {}
    cols.update(_per_device_columns("gpu_util_", util, n))
    cols.update(_per_device_columns("gpu_band_", band, n))
    cols.update(_per_device_columns("gpu_mem_", mem, n))
    return cols


KEPT_COLUMNS = ("cpu_util_avg", "cpu_util_min", "cpu_util_max", "memory")


def _frame(time: np.ndarray, cols: dict[str, np.ndarray], n: int, keep=KEPT_COLUMNS) -> pd.DataFrame:
    """The level's frame. A metric with no number at all (no disk recorded, no GPU record) is
    left out rather than written as NaN: JUmPER's plots draw nothing for a missing column but
    cannot lay out an all-NaN one. The four columns JUmPER's reports read stay (``keep``),
    except in a trace without psutil data, where CPU and memory were never measured."""
    data = {"time": time}
    data.update((name, values) for name, values in cols.items()
                if name in keep or not np.isnan(values).all())
    return pd.DataFrame(data, index=pd.RangeIndex(n))

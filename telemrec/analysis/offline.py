"""``OfflineMonitor``: a trace behind the surface of JUmPER's OfflinePerformanceMonitor.

JUmPER 0.4.1 (seed-projects.md 1.4-1.5) hands its visualizer and reporter a
monitor object: ``interval``, ``running`` (always False), ``start_time`` /
``stop_time`` (CLOCK_MONOTONIC seconds), ``wallclock_start_time`` /
``wallclock_stop_time`` (epoch seconds), ``is_imported`` (True),
``session_source``, no-op ``start()``/``stop()``, the hardware figures, and
``nodes`` -- a store of per-level frames with ``view(level, node=None,
slice_=None, cell_history=None)`` and ``hardware`` (node -> NodeInfo).
``OfflineMonitor.from_trace`` builds all of it from a trace's raw records
(``telemrec.analysis.levels``), without JUmPER installed; with JUmPER installed
the object can be attached to its service as is.

Several traces (one per host) become several nodes. JUmPER's own aggregate
view truncates nodes to the shortest and aligns rows by position; here
``view(level)`` of several nodes aligns them on the wall clock (the ``time``
column of every node is put on the first node's monotonic clock through the
manifests' start anchors), sums memory and I/O, averages ``*_avg`` and takes
the min of mins and max of maxes, dropping per-device columns like JUmPER.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import pandas as pd

from telemrec.analysis import _select
from telemrec.analysis.levels import LEVELS, LevelData, NodeInfo, level_data
from telemrec.errors import UsageError

__all__ = ["CellHistory", "NodeInfo", "NodeStore", "OfflineMonitor", "cell_history"]

CELL_COLUMNS = ("cell_index", "raw_cell", "start_time", "end_time", "duration", "wallclock_start_time",
                "wallclock_end_time", "cell_magics")


class CellHistory:
    """The part of JUmPER's CellHistory its views read: ``data`` and ``view()``."""

    def __init__(self, data: pd.DataFrame):
        self.data = data

    def view(self) -> pd.DataFrame:
        return self.data


class NodeStore:
    """Per-node, per-level frames with the read surface of JUmPER's NodeDataStore."""

    def __init__(self) -> None:
        self._info: dict[str, NodeInfo] = {}
        self._frames: dict[str, dict[str, pd.DataFrame]] = {}

    def register(self, info: NodeInfo, frames: dict[str, pd.DataFrame]) -> None:
        self._info[info.node] = info
        self._frames[info.node] = frames

    @property
    def hardware(self) -> dict[str, NodeInfo]:
        return self._info

    def node_names(self) -> list[str]:
        return list(self._info)

    @property
    def levels(self) -> list[str]:
        present = {level for frames in self._frames.values() for level in frames}
        return [level for level in LEVELS if level in present]

    def view(self, level: str = "process", node: str | None = None, slice_=None, cell_history=None) -> pd.DataFrame:
        if level not in LEVELS:
            raise ValueError(f"[JUmPER]: Invalid level: {level}. Available levels: {self.levels}")
        if node is not None:
            frame = self._frames.get(node, {}).get(level)
            frame = pd.DataFrame() if frame is None else frame
        elif len(self._frames) == 1:
            frame = next(iter(self._frames.values())).get(level, pd.DataFrame())
        else:
            frame = self._aggregate(level)
        if slice_ is not None:
            frame = frame.iloc[slice_[0]:slice_[1] + 1]
        frame = frame.copy()
        if cell_history is not None:
            frame = attach_cell_index(frame, cell_history.data)
        return frame

    def _aggregate(self, level: str) -> pd.DataFrame:
        frames = [f[level] for f in self._frames.values() if level in f and not f[level].empty]
        if not frames:
            return pd.DataFrame()
        if len(frames) == 1:
            return frames[0]
        keyed = [f.set_index(np.round(f["time"].to_numpy(), 0)) for f in frames]
        keyed = [f[~f.index.duplicated(keep="last")] for f in keyed]
        index = keyed[0].index
        for f in keyed[1:]:
            index = index.union(f.index)
        aligned = [f.reindex(index) for f in keyed]
        out = pd.DataFrame({"time": np.asarray(index, np.float64)})
        first = aligned[0]
        for col in first.columns:
            if col == "time" or re.fullmatch(r"(cpu_util|gpu_(util|band|mem))_\d+", col):
                continue
            stack = pd.concat([a[col] for a in aligned if col in a], axis=1, sort=False)
            if col == "memory" or col.startswith("io_"):
                values = stack.sum(axis=1, min_count=1)
            elif col.endswith("_min"):
                values = stack.min(axis=1)
            elif col.endswith("_max"):
                values = stack.max(axis=1)
            else:
                values = stack.mean(axis=1)
            out[col] = values.to_numpy()
        return out


def attach_cell_index(frame: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """JUmPER's rule: a sample belongs to the cell whose [start_time, end_time] holds its time."""
    out = frame.copy()
    out["cell_index"] = pd.array([pd.NA] * len(out), dtype="Int64")
    if "time" not in out.columns or cells is None or cells.empty:
        return out
    times = out["time"].to_numpy()
    for row in cells.itertuples(index=False):
        mask = (times >= row.start_time) & (times <= row.end_time)
        out.loc[mask, "cell_index"] = int(row.cell_index)
    return out


def cell_history(trace, data: LevelData | None = None, clock=None) -> pd.DataFrame:
    """JUmPER cells from the trace's annotations (one per annotation, in start order),
    or one cell spanning the whole recording when it has none.

    ``clock(wall_ns) -> seconds`` maps wall time to the frames' ``time`` clock
    (defaults to the trace's own monotonic clock through its start anchor).
    """
    clock = clock or mono_clock(trace)
    rows = []
    for ann in sorted(trace.annotations(), key=lambda a: (a["start_wall_ns"], a["end_wall_ns"] or 0)):
        start_wall, end_wall = ann["start_wall_ns"], ann["end_wall_ns"]
        if end_wall is None:
            end_wall = start_wall
        if ann.get("start_mono_ns") is not None and clock.native:
            start, end = ann["start_mono_ns"] / 1e9, (ann.get("end_mono_ns") or ann["start_mono_ns"]) / 1e9
        else:
            start, end = clock(start_wall), clock(end_wall)
        rows.append((str(ann.get("label") or ""), start, end, start_wall / 1e9, end_wall / 1e9))
    if not rows:
        span = _recording_span(trace, data)
        if span is not None:
            (w0, m0), (w1, m1) = span
            command = (trace.manifest.get("command") or {}).get("argv")
            label = " ".join(command) if command else f"telemrec recording {os.path.basename(trace.path)}"
            start = m0 / 1e9 if clock.native else clock(w0)
            end = m1 / 1e9 if clock.native else clock(w1)
            rows.append((label, start, end, w0 / 1e9, w1 / 1e9))
    frame = pd.DataFrame(
        [(i, label, s, e, e - s, ws, we, "[]") for i, (label, s, e, ws, we) in enumerate(rows)],
        columns=list(CELL_COLUMNS))
    return frame.astype({"cell_index": np.int64, "start_time": np.float64, "end_time": np.float64,
                         "duration": np.float64, "wallclock_start_time": np.float64,
                         "wallclock_end_time": np.float64})


def _recording_span(trace, data: LevelData | None):
    """((wall, mono) first, (wall, mono) last) of the recording."""
    if data is not None and len(data.wall_ns):
        return (int(data.wall_ns[0]), int(data.mono_ns[0])), (int(data.wall_ns[-1]), int(data.mono_ns[-1]))
    start, stop = trace.manifest.get("start"), trace.manifest.get("stop")
    if start and stop:
        return (start["wall_ns"], start["mono_ns"]), (stop["wall_ns"], stop["mono_ns"])
    return None


class _Clock:
    """wall_ns -> seconds on some node's monotonic clock, through a (wall, mono) anchor."""

    def __init__(self, wall_ns: int, mono_ns: int, native: bool):
        self.offset = mono_ns - wall_ns
        self.native = native

    def __call__(self, wall_ns) -> float:
        return (wall_ns + self.offset) / 1e9


def mono_clock(trace, native: bool = True) -> _Clock:
    start = trace.manifest.get("start") or {}
    if "wall_ns" in start and "mono_ns" in start:
        return _Clock(start["wall_ns"], start["mono_ns"], native)
    first = next(iter(trace.records()), None)
    if first is None:
        return _Clock(0, 0, native)
    return _Clock(first.wall_ns, first.mono_ns, native)


class OfflineMonitor:
    """A trace (or several, one node each) as JUmPER's OfflinePerformanceMonitor."""

    def __init__(self, nodes: NodeStore, *, interval: float, start_time, stop_time, wallclock_start_time,
                 wallclock_stop_time, cells: pd.DataFrame, source: str | None, pid=None, uid=None, slurm_job=None,
                 n_measurements: int = 0, n_missed_measurements: int = 0):
        self.nodes = nodes
        self.interval = float(interval)
        self.running = False
        self.is_imported = True
        self.session_source = source
        self.start_time = start_time
        self.stop_time = stop_time
        self.wallclock_start_time = wallclock_start_time
        self.wallclock_stop_time = wallclock_stop_time
        self.cell_history = CellHistory(cells)
        self.pid, self.uid, self.slurm_job = pid, uid, slurm_job
        self.n_measurements = n_measurements
        self.n_missed_measurements = n_missed_measurements

    @classmethod
    def from_trace(cls, path) -> "OfflineMonitor":
        """Build from one trace path or open Trace, or a list / directory / glob of them (one node per host)."""
        items = list(path) if isinstance(path, (list, tuple)) else _select.trace_paths(path) \
            if not hasattr(path, "manifest") else [path]
        if not items:
            raise UsageError(f"no trace in {path!r}", "Pass a trace file, a list of them, a directory or a glob.")
        nodes = NodeStore()
        first: _Clock | None = None
        cells = None
        starts, stops, wall_starts, wall_stops = [], [], [], []
        intervals, measured, missed = [], 0, 0
        identity: dict = {}
        for n, item in enumerate(items):
            with _select.opened(item) as trace:
                manifest = trace.manifest
                clock = mono_clock(trace) if first is None else _Clock(0, first.offset, native=False)
                data = level_data(trace)
                frames = data.frames
                if n:  # later nodes: their time column on the first node's clock
                    frames = {lv: f.assign(time=clock(data.wall_ns)) for lv, f in frames.items()}
                name = _select.hostname(manifest, fallback=f"node{n}")
                while name in nodes.hardware:
                    name = f"{name}#{n}"
                nodes.register(dataclasses.replace(data.node, node=name), frames)
                if first is None:
                    first = clock
                    cells = cell_history(trace, data, clock)
                    identity = _identity(manifest)
                t0, t1 = _span_seconds(trace, data, clock)
                starts.append(t0[0])
                stops.append(t1[0])
                wall_starts.append(t0[1])
                wall_stops.append(t1[1])
                intervals.append(_interval(manifest))
                ticks = _tick_counts(trace)
                measured += ticks[0]
                missed += ticks[1]
        source = os.fspath(items[0].path if hasattr(items[0], "path") else items[0]) if len(items) == 1 \
            else ", ".join(os.fspath(getattr(i, "path", i)) for i in items)
        return cls(nodes, interval=min(intervals), start_time=_min(starts), stop_time=_max(stops),
                   wallclock_start_time=_min(wall_starts), wallclock_stop_time=_max(wall_stops), cells=cells,
                   source=source, n_measurements=measured, n_missed_measurements=missed, **identity)

    # -- JUmPER's MonitorProtocol ------------------------------------------------------------
    def start(self, interval: float = 1.0) -> None:
        """Does nothing: an imported session cannot record (JUmPER's offline monitor keeps interval too)."""
        self.interval = interval
        self.running = False

    def stop(self) -> None:
        self.running = False

    # -- what the concrete JUmPER monitors also carry ----------------------------------------
    def _aggregate_info(self) -> NodeInfo:
        infos = list(self.nodes.hardware.values())
        levels = {lv for i in infos for lv in i.memory_limits}
        return NodeInfo("aggregate", sum(i.num_cpus for i in infos), sum(i.num_system_cpus for i in infos),
                        sum(i.num_gpus for i in infos), max((i.gpu_memory for i in infos), default=0.0),
                        next((i.gpu_name for i in infos if i.gpu_name), ""),
                        {lv: round(sum(i.memory_limits.get(lv, 0.0) for i in infos), 2) for lv in levels},
                        [h for i in infos for h in i.cpu_handles])

    @property
    def num_cpus(self) -> int:
        return self._aggregate_info().num_cpus

    @property
    def num_system_cpus(self) -> int:
        return self._aggregate_info().num_system_cpus

    @property
    def num_gpus(self) -> int:
        return self._aggregate_info().num_gpus

    @property
    def gpu_memory(self) -> float:
        return self._aggregate_info().gpu_memory

    @property
    def gpu_name(self) -> str:
        return self._aggregate_info().gpu_name

    @property
    def memory_limits(self) -> dict[str, float]:
        return self._aggregate_info().memory_limits

    @property
    def cpu_handles(self) -> list[int]:
        return self._aggregate_info().cpu_handles

    @property
    def levels(self) -> list[str]:
        return self.nodes.levels

    @property
    def data(self) -> "LevelView":
        """The per-level frames of the first node (JUmPER's single-node ``PerformanceData``)."""
        return LevelView(self.nodes, self.nodes.node_names()[0] if self.nodes.node_names() else None)

    def manifest(self) -> dict:
        """The ``monitor`` block of a JUmPER session manifest (seed-projects.md 1.6)."""
        return {
            "interval": self.interval, "start_time": self.start_time, "stop_time": self.stop_time,
            "wallclock_start_time": self.wallclock_start_time, "wallclock_stop_time": self.wallclock_stop_time,
            "num_cpus": self.num_cpus, "num_system_cpus": self.num_system_cpus, "num_gpus": self.num_gpus,
            "gpu_memory": self.gpu_memory, "gpu_name": self.gpu_name, "memory_limits": self.memory_limits,
            "cpu_handles": self.cpu_handles, "pid": self.pid, "uid": self.uid, "slurm_job": self.slurm_job,
        }

    def __repr__(self) -> str:
        return (f"<OfflineMonitor {self.session_source!r} nodes={self.nodes.node_names()} levels={self.levels} "
                f"interval={self.interval}>")


class LevelView:
    """``view(level, slice_=None, cell_history=None)`` over one node."""

    def __init__(self, nodes: NodeStore, node: str | None):
        self._nodes, self._node = nodes, node
        self.levels = nodes.levels

    def view(self, level: str = "process", slice_=None, cell_history=None) -> pd.DataFrame:
        return self._nodes.view(level, node=self._node, slice_=slice_, cell_history=cell_history)


def _span_seconds(trace, data: LevelData, clock: _Clock):
    """((start mono s, start epoch s), (stop mono s, stop epoch s)) of one recording."""
    start, stop = trace.manifest.get("start"), trace.manifest.get("stop")
    if start and clock.native:
        t0 = (start["mono_ns"] / 1e9, start["wall_ns"] / 1e9)
    elif start:
        t0 = (clock(start["wall_ns"]), start["wall_ns"] / 1e9)
    elif len(data.wall_ns):
        t0 = (clock(int(data.wall_ns[0])), data.wall_ns[0] / 1e9)
    else:
        t0 = (None, None)
    if stop and clock.native:
        t1 = (stop["mono_ns"] / 1e9, stop["wall_ns"] / 1e9)
    elif stop:
        t1 = (clock(stop["wall_ns"]), stop["wall_ns"] / 1e9)
    elif len(data.wall_ns):
        t1 = (clock(int(data.wall_ns[-1])), data.wall_ns[-1] / 1e9)
    else:
        t1 = (None, None)
    return t0, t1


def _interval(manifest: dict) -> float:
    value = manifest.get("interval_seconds")
    if value:
        return float(value)
    values = [r.get("interval_seconds") or r.get("interval") for r in manifest.get("readers") or []]
    values = [float(v) for v in values if v]
    return min(values) if values else 1.0


def _tick_counts(trace) -> tuple[int, int]:
    from telemrec.trace.v1 import TICK_MISSED

    done = missed = 0
    for label in trace.tick_labels():
        status = trace.ticks(label, columns=("status",))["status"]
        done = max(done, int((status != TICK_MISSED).sum()))
        missed = max(missed, int((status == TICK_MISSED).sum()))
    return done, missed


def _identity(manifest: dict) -> dict:
    """pid, uid and slurm_job as JUmPER's monitors carry them."""
    out = {"pid": None, "uid": None, "slurm_job": 0}
    for reader in manifest.get("readers") or []:
        ident = reader.get("identity") or {}
        if reader.get("name") == "psutil":
            out["pid"] = ident.get("pid", out["pid"])
            out["uid"] = ident.get("uid", out["uid"])
            if ident.get("slurm_job"):
                out["slurm_job"] = str(ident["slurm_job"])
    command = manifest.get("command") or {}
    if out["pid"] is None and command.get("pid") is not None:
        out["pid"] = command["pid"]
    slurm = manifest.get("slurm") or {}
    if not out["slurm_job"] and slurm.get("job_id"):
        out["slurm_job"] = str(slurm["job_id"])
    return out


def _min(values):
    values = [v for v in values if v is not None]
    return min(values) if values else None


def _max(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None

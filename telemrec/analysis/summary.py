"""``summarize(path)``: what a trace holds, in a few tables (``telemrec summary``).

- ``fields``: per source, entity and field: unit, samples, N/A count, min, mean,
  p50, p95, max. Counters are summarised as per-second rates (unit ``<unit>/s``).
- ``gpus``: per GPU: busy time (seconds with utilisation > 0), utilisation-weighted
  busy time, mean and peak utilisation, energy (the energy counter's increase,
  resets skipped; else power integrated over time) and peak memory used.
- ``memory``: peak host memory in use (total - available) and peak RSS per process.
- ``gaps``: per reader: ticks, late and missed ticks (the recorder's tick tables),
  and holes in the records' timestamps longer than 1.5 intervals.
- ``errors``: per record source: records, those that carry an error, the first and last.

Numbers are written one way throughout: thousands separated, two decimals below 100,000,
none above; small magnitudes keep three significant digits (0.000712), never 0.00.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from telemrec.analysis import _select
from telemrec.analysis.errors import error_records
from telemrec.analysis.frames import read_series
from telemrec.analysis.rates import counter_rate

__all__ = ["Summary", "summarize"]

GIB = float(1 << 30)
_GPU = re.compile(r"^gpu(\d+)$")
_UTIL = ("utilization.gpu", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL_RATIO")
_ENERGY = ("energy.total", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")          # millijoules
_POWER = {"power.usage": 1e-3, "DCGM_FI_DEV_POWER_USAGE": 1.0, "DCGM_FI_DEV_BOARD_POWER_WATTS": 1.0}  # -> W
_GPU_MEM = {"memory.used": 1 / GIB, "DCGM_FI_DEV_FB_USED": 1 / 1024}    # -> GiB


@dataclass
class Summary:
    info: dict
    fields: pd.DataFrame
    gpus: pd.DataFrame
    memory: dict
    gaps: pd.DataFrame
    processes: pd.DataFrame = field(default_factory=pd.DataFrame)
    errors: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_dict(self) -> dict:
        def records(frame: pd.DataFrame) -> list[dict]:
            return [{k: _jsonable(v) for k, v in row.items()} for row in frame.to_dict("records")]

        return {"info": {k: _jsonable(v) for k, v in self.info.items()}, "fields": records(self.fields),
                "gpus": records(self.gpus), "memory": {k: _jsonable(v) for k, v in self.memory.items()},
                "gaps": records(self.gaps), "processes": records(self.processes), "errors": records(self.errors)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_text(self, max_fields: int | None = None) -> str:
        i = self.info
        lines = [f"trace      {i['path']}",
                 f"host       {i['host']}",
                 f"span       {i['start']} .. {i['stop']}  ({_duration(i['duration_s'])})",
                 f"recording  {i['state']}; {i['entities']} entities, {i['fields']} fields, {i['records']} records",
                 ""]
        failing = self.errors[self.errors["error_records"] > 0] if not self.errors.empty else self.errors
        if not failing.empty:
            lines.append("errors (records that carry an error)")
            lines.append(_table(failing))
            lines.append("")
        if not self.gaps.empty:
            lines.append("gaps")
            lines.append(_table(self.gaps))
            lines.append("")
        if self.memory:
            m = self.memory
            lines.append(f"memory     peak in use {_fmt(m.get('peak_used_gib'))} GiB of {_fmt(m.get('total_gib'))} GiB"
                         + (f" at {m['peak_used_at']}" if m.get("peak_used_at") else ""))
            lines.append("")
        if not self.gpus.empty:
            lines.append("gpus")
            lines.append(_table(self.gpus))
            lines.append("")
        if not self.processes.empty:
            lines.append("processes (peak RSS)")
            lines.append(_table(self.processes.head(10)))
            lines.append("")
        fields = self.fields if max_fields is None else self.fields.head(max_fields)
        lines.append("fields (counters as rates)")
        lines.append(_table(fields))
        if max_fields is not None and len(self.fields) > max_fields:
            lines.append(f"... {len(self.fields) - max_fields} more rows (--all shows every field)")
        return "\n".join(lines)


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v


def _fmt(v, whole: bool = False) -> str:
    """One notation for every number: 25,900,000,000 / 4,194,304 / 1,234.50 / 0.75 / 0.000712 / 0.
    ``whole``: no decimals from 1 up (a row whose largest value has none, so its columns agree)."""
    if v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        a = abs(float(v))
        if a == 0:
            return "0"
        if a >= 1e5 or (whole and a >= 1):
            return f"{v:,.0f}"
        if a >= 0.01:
            return f"{v:,.2f}"
        digits = min(-math.floor(math.log10(a)) + 2, 12)  # three significant digits
        text = f"{v:.{digits}f}"
        return text if float(text) != 0 else f"{v:.3g}"
    return str(v)


def _table(frame: pd.DataFrame) -> str:
    """Text columns left-aligned, numbers right-aligned."""
    rows = list(frame.itertuples(index=False))
    left = [all(isinstance(r[j], str) or r[j] is None for r in rows) for j in range(len(frame.columns))]
    cells = [[str(c) for c in frame.columns]]
    for row in rows:
        whole = any(isinstance(v, (float, np.floating)) and math.isfinite(v) and abs(v) >= 1e5 for v in row)
        cells.append([_fmt(v, whole) for v in row])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    out = []
    for row in cells:
        out.append("  ".join(c.ljust(w) if left[j] else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))))
    return "\n".join("  " + line.rstrip() for line in out)


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _iso(ns) -> str | None:
    return None if ns is None else pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()


def _stats(values: np.ndarray) -> tuple:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return (len(finite), np.nan, np.nan, np.nan, np.nan, np.nan)
    p50, p95 = np.percentile(finite, [50, 95])
    return (len(finite), float(finite.min()), float(finite.mean()), float(p50), float(p95), float(finite.max()))


def trace_state(trace) -> str:
    """How the recording ended, in the words ``info`` and ``summary`` both use."""
    if trace.in_progress:
        return "recording in progress"
    if trace.closed_cleanly:
        return "closed cleanly"
    return "NOT closed cleanly (recovered after its recorder stopped)"


def summarize(path, *, readers=None, entities=None, fields=None, start=None, end=None) -> Summary:
    """Summarise one trace (see the module docstring); selection arguments as in ``load``.
    A selection that matches nothing is a UsageError, as in ``load``."""
    with _select.opened(path) as trace:
        manifest = trace.manifest
        caps = _select.source_caps(manifest)
        origin = (manifest.get("start") or {}).get("wall_ns")
        first, last = trace.time_span()
        start_ns = _select.to_wall_ns(start, origin_ns=origin if origin is not None else first, what="start",
                                      last_ns=last)
        end_ns = _select.to_wall_ns(end, origin_ns=origin if origin is not None else first, what="end", last_ns=last)
        interval = float(manifest.get("interval_seconds") or 1.0)
        rows, gpus, holes = [], [], {}
        procs = []
        memory: dict = {}
        n_records = 0
        wanted = [(s, e) for s, e in trace.entities()
                  if _select.reader_matches(manifest, s, _select.as_patterns(readers, "readers"))
                  and _select.matches(e, _select.as_patterns(entities, "entities"))]
        wanted.sort(key=lambda se: (se[0], _select.natural_key(se[1])))
        for source, name in wanted:
            for e in read_series(trace, readers=[source], entities=[name], fields=fields,
                                 start_ns=start_ns, end_ns=end_ns):
                if e.source != source or e.name != name:
                    continue
                n_records += len(e.wall)
                c = _select.caps_for(caps, source)
                for k, col in enumerate(e.columns):
                    if k not in e.values:
                        continue
                    values = e.values[k]
                    none = int(np.isnan(values).sum())
                    unit = c["units"].get(col.field, "")
                    if col.counter:
                        values = counter_rate(values, e.mono)
                        unit = f"{unit}/s" if unit else "1/s"
                    rows.append((source, name, col.field, unit, *_stats(values), none))
                _holes(holes, source, e, interval)
                if _GPU.match(name):
                    found = _gpu_row(e, c["units"])
                    if any(isinstance(v, float) and math.isfinite(v) for v in found[2:]):
                        gpus.append(found)
                if source == "psutil" and name == "system":
                    memory = _host_memory(e, manifest)
                if source == "psutil" and name.startswith("pid:"):
                    rss = e.get("memory_info.rss")
                    if rss is not None and np.isfinite(rss).any():
                        cmd = e.get("name")
                        label = next((t for t in (cmd if cmd is not None else []) if isinstance(t, str)), "")
                        procs.append((name[4:], label, float(np.nanmax(rss)) / GIB))
        selection = {"readers": readers, "entities": entities, "fields": fields}
        if not rows and any(v is not None for v in selection.values()):
            raise _select.nothing_matches([trace.path], **selection)
        frame = pd.DataFrame(rows, columns=["source", "entity", "field", "unit", "samples", "min", "mean", "p50",
                                            "p95", "max", "n/a"])
        frame = frame[["source", "entity", "field", "unit", "samples", "n/a", "min", "mean", "p50", "p95", "max"]]
        stop = manifest.get("stop") or {}
        info = {"path": trace.path, "host": _select.hostname(manifest, "?"), "format_version": trace.format_version,
                "closed_cleanly": trace.closed_cleanly, "state": trace_state(trace),
                "start": _iso(first), "stop": _iso(last),
                "duration_s": None if first is None else (last - first) / 1e9,
                "stop_reason": stop.get("reason") or manifest.get("stop_reason"),
                "entities": len(wanted), "fields": len(frame), "records": n_records,
                "interval_s": interval}
        gaps = _gaps(trace, holes, interval)
        proc_frame = pd.DataFrame(sorted(procs, key=lambda p: -p[2]), columns=["pid", "name", "peak_rss_gib"])
        gpu_frame = pd.DataFrame(gpus, columns=["gpu", "source", "busy_s", "util_weighted_s", "util_mean_pct",
                                                "util_max_pct", "energy_j", "energy_kwh", "energy_from",
                                                "peak_mem_gib"])
        errors = pd.DataFrame([e.to_dict() for e in error_records(trace).values()
                               if _select.reader_matches(manifest, e.source, _select.as_patterns(readers, "readers"))],
                              columns=["source", "records", "error_records", "first", "last"])
        return Summary(info, frame, gpu_frame, memory, gaps, proc_frame, errors)


def _dt_seconds(mono: np.ndarray, interval: float) -> np.ndarray:
    """Seconds each sample stands for: the time to the next one (the last: one interval),
    capped at 1.5 intervals so a hole does not count as busy."""
    if not len(mono):
        return np.zeros(0)
    dt = np.append(np.diff(mono) / 1e9, interval)
    return np.minimum(dt, 1.5 * interval)


def _gpu_row(e, units: dict) -> tuple:
    interval = float(np.median(np.diff(e.mono)) / 1e9) if len(e.mono) > 1 else 1.0
    dt = _dt_seconds(e.mono, interval)
    util_name = next((n for n in _UTIL if e.get(n) is not None), None)
    busy = weighted = mean = peak = np.nan
    if util_name:
        util = e.get(util_name) * (100.0 if units.get(util_name) == "ratio" else 1.0)
        ok = np.isfinite(util)
        busy = float(dt[ok & (util > 0)].sum())
        weighted = float((dt[ok] * util[ok] / 100.0).sum())
        mean, peak = (float(util[ok].mean()), float(util[ok].max())) if ok.any() else (np.nan, np.nan)
    energy, how = np.nan, None
    counter = next((n for n in _ENERGY if e.get(n) is not None), None)
    if counter is not None:
        values = e.get(counter)
        ok = np.isfinite(values)
        steps = np.diff(values[ok])
        if len(steps):
            energy, how = float(steps[steps >= 0].sum()) / 1e3, "counter"
    if how is None:
        power = next((n for n in _POWER if e.get(n) is not None), None)
        if power is not None:
            watts = e.get(power) * _POWER[power]
            ok = np.isfinite(watts)
            energy, how = float((watts[ok] * dt[ok]).sum()), "power x time"
    mem_name = next((n for n in _GPU_MEM if e.get(n) is not None), None)
    peak_mem = np.nan
    if mem_name is not None:
        used = e.get(mem_name) * _GPU_MEM[mem_name]
        peak_mem = float(np.nanmax(used)) if np.isfinite(used).any() else np.nan
    return (e.name, e.source, busy, weighted, mean, peak, energy, energy / 3.6e6 if math.isfinite(energy) else np.nan,
            how or "-", peak_mem)


def _host_memory(e, manifest: dict) -> dict:
    total, avail = e.get("virtual_memory.total"), e.get("virtual_memory.available")
    if total is None or avail is None:
        return {}
    used = total - avail
    if not np.isfinite(used).any():
        return {}
    i = int(np.nanargmax(used))
    return {"peak_used_gib": float(used[i]) / GIB, "peak_used_at": _iso(int(e.wall[i])),
            "total_gib": float(np.nanmax(total)) / GIB}


def _holes(holes: dict, source: str, e, interval: float) -> None:
    """Per source, the largest set of timestamp holes seen on any of its entities."""
    if len(e.mono) < 2:
        return
    step = np.diff(e.mono) / 1e9
    gap = step[step > 1.5 * interval]
    current = holes.get(source)
    found = (int(len(gap)), float(gap.max()) if len(gap) else 0.0, float((gap - interval).sum()) if len(gap) else 0.0)
    if current is None or found[0] > current[0]:
        holes[source] = found


def _gaps(trace, holes: dict, interval: float) -> pd.DataFrame:
    from telemrec.trace.v1 import TICK_LATE, TICK_MISSED

    rows = []
    labels = trace.tick_labels()
    by_name = {r.get("label"): r.get("name") for r in trace.manifest.get("readers") or []}
    for label in labels:
        status = trace.ticks(label, columns=("status",))["status"]
        source = by_name.get(label, label)
        h = holes.pop(source, (0, 0.0, 0.0))
        rows.append((label, int(len(status)), int((status == TICK_LATE).sum()), int((status == TICK_MISSED).sum()),
                     h[0], h[1], h[2]))
    for source, h in holes.items():
        rows.append((source, None, None, None, h[0], h[1], h[2]))
    return pd.DataFrame(rows, columns=["reader", "ticks", "late", "missed", "holes", "longest_hole_s",
                                       "missing_s"])

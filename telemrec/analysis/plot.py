"""``plot_trace(path, out)``: the one-page overview of a recording (``telemrec plot``).

Panels, each only when the trace has its data: CPU utilisation (mean over cores,
with the min-max band), host memory in use against the total, disk I/O, GPU
utilisation, GPU memory and GPU power (one line per GPU up to four GPUs; with
more, their mean and the band between the lowest and the highest). The time axis is UTC
wall time; annotations are shaded and labelled. Long recordings are binned to
about 1200 points per line (the mean of each bin, with the bin's min and max as
the band), so a 24 h trace stays readable.

Needs matplotlib (``pip install 'telemrec[plot]'``); the Agg backend is used, so
no display is needed.
"""

from __future__ import annotations

import os
import re

import numpy as np

from telemrec.analysis import _select
from telemrec.analysis.frames import read_series
from telemrec.analysis.levels import level_data
from telemrec.errors import ReaderUnavailableError, TraceWriteError, UsageError

__all__ = ["plot_trace"]

MAX_POINTS = 1200
_POWER = {"power.usage": 1e-3, "DCGM_FI_DEV_POWER_USAGE": 1.0, "DCGM_FI_DEV_BOARD_POWER_WATTS": 1.0}
_GPU = re.compile(r"^gpu(\d+)$")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ReaderUnavailableError("plotting needs matplotlib, which is not installed",
                                     "pip install 'telemrec[plot]'") from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _bin(t: np.ndarray, y: np.ndarray, n: int = MAX_POINTS):
    """(t, mean, min, max) with at most n points; NaN bins stay NaN (gaps show as gaps)."""
    if len(t) <= n:
        return t, y, y, y
    edges = np.linspace(0, len(t), n + 1).astype(int)
    starts = edges[:-1]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN bins are gaps
        mean = np.array([np.nanmean(y[a:b]) if b > a else np.nan for a, b in zip(edges[:-1], edges[1:])])
        lo = np.array([np.nanmin(y[a:b]) if b > a else np.nan for a, b in zip(edges[:-1], edges[1:])])
        hi = np.array([np.nanmax(y[a:b]) if b > a else np.nan for a, b in zip(edges[:-1], edges[1:])])
    return t[starts], mean, lo, hi


def _times(wall_ns: np.ndarray):
    return wall_ns.astype("datetime64[ns]").astype("datetime64[ms]")


def plot_trace(path, out: str | os.PathLike, *, title: str | None = None, width: float = 12.0,
               dpi: int = 110) -> str:
    """Write the overview figure of trace ``path`` to ``out`` (PNG, SVG or PDF by extension)."""
    plt = _pyplot()
    import matplotlib.dates as mdates

    out = os.fspath(out)
    with _select.opened(path) as trace:
        data = level_data(trace)
        manifest = trace.manifest
        power = _gpu_power(trace)
        annotations = trace.annotations()
        host = _select.hostname(manifest, "?")
        name = os.path.basename(trace.path)
    frame = data.frames.get("system")
    t = _times(data.wall_ns)
    panels = []
    if frame is not None and frame["cpu_util_avg"].notna().any():
        panels.append("cpu")
    if frame is not None and frame["memory"].notna().any():
        panels.append("mem")
    if frame is not None and any(c in frame for c in ("io_read", "io_write")):
        panels.append("io")
    if frame is not None and "gpu_util_avg" in frame:
        panels.append("gpu_util")
    if frame is not None and "gpu_mem_avg" in frame:
        panels.append("gpu_mem")
    if power:
        panels.append("gpu_power")
    if not panels or not len(t):
        raise UsageError(f"{name} holds nothing to plot (no psutil system or GPU records)",
                         "Record with the psutil reader (levels=system) or a GPU reader.")
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, 2.3 * len(panels) + 0.8), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for ax, panel in zip(axes, panels):
        _draw(panel, ax, t, frame, data, power)
        ax.grid(True, alpha=0.3)
        ax.margins(x=0)
        for ann in annotations:
            a = np.datetime64(int(ann["start_wall_ns"]), "ns").astype("datetime64[ms]")
            b = np.datetime64(int(ann["end_wall_ns"] or ann["start_wall_ns"]), "ns").astype("datetime64[ms]")
            ax.axvspan(a, b, color="tab:orange", alpha=0.12, lw=0)
    for ann in annotations:
        a = np.datetime64(int(ann["start_wall_ns"]), "ns").astype("datetime64[ms]")
        axes[0].annotate(str(ann.get("label") or ""), xy=(a, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(2, -2), textcoords="offset points", fontsize=7, va="top", color="tab:orange")
    locator = mdates.AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[-1].set_xlabel("time (UTC)")
    span = (data.wall_ns[-1] - data.wall_ns[0]) / 1e9
    fig.suptitle(title or f"{host}: {name}, {_span_text(data.wall_ns[0], span)}", fontsize=11)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=dpi)
    except OSError as exc:
        raise TraceWriteError(f"cannot write {out}: {exc}", path=out) from exc
    finally:
        plt.close(fig)
    return out


def _span_text(first_ns: int, seconds: float) -> str:
    start = np.datetime64(int(first_ns), "ns").astype("datetime64[s]")
    s = int(round(seconds))
    length = f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"
    return f"{str(start).replace('T', ' ')} UTC, {length}"


def _line(ax, t, y, label=None, color=None, lw=1.2, band=False):
    tb, mean, lo, hi = _bin(t, y)
    (line,) = ax.plot(tb, mean, lw=lw, label=label, color=color)
    if band and len(tb) < len(t):
        ax.fill_between(tb, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    return line


def _draw(panel, ax, t, frame, data, power) -> None:
    if panel == "cpu":
        tb, mean, _, _ = _bin(t, frame["cpu_util_avg"].to_numpy())
        _, _, lo, _ = _bin(t, frame["cpu_util_min"].to_numpy())
        _, _, _, hi = _bin(t, frame["cpu_util_max"].to_numpy())
        ax.fill_between(tb, lo, hi, color="tab:blue", alpha=0.15, lw=0, label="min-max over cores")
        ax.plot(tb, mean, color="tab:blue", lw=1.3, label=f"mean of {data.node.num_system_cpus} cores")
        ax.set_ylim(0, 100)
        ax.set_ylabel("CPU busy (%)")
        ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    elif panel == "mem":
        _line(ax, t, frame["memory"].to_numpy(), label="in use (total - available)", color="tab:green", band=True)
        total = data.node.memory_limits.get("system")
        if total:
            ax.axhline(total, color="tab:green", ls="--", lw=0.8, label=f"total {total:.0f} GiB")
            ax.set_ylim(0, total * 1.05)
        ax.set_ylabel("memory (GiB)")
        ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    elif panel == "io":
        for col, label, color in (("io_read", "read", "tab:blue"), ("io_write", "write", "tab:red")):
            if col in frame:
                _line(ax, t, frame[col].to_numpy() / 2**20, label=label, color=color)
        ax.set_ylabel("disk I/O (MiB/s)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    elif panel in ("gpu_util", "gpu_mem"):
        prefix = "gpu_util_" if panel == "gpu_util" else "gpu_mem_"
        cols = sorted((c for c in frame if re.fullmatch(prefix + r"\d+", c)), key=lambda c: int(c.rsplit("_", 1)[1]))
        _per_gpu(ax, t, {int(c.rsplit("_", 1)[1]): frame[c].to_numpy() for c in cols})
        if panel == "gpu_util":
            ax.set_ylim(0, 100)
            ax.set_ylabel("GPU busy (%)")
        else:
            if data.node.gpu_memory:
                ax.set_ylim(0, data.node.gpu_memory * 1.05)
            ax.set_ylabel("GPU memory (GiB)")
    elif panel == "gpu_power":
        first = next(iter(power.values()))[0]
        same = all(len(w) == len(first) and np.array_equal(w, first) for w, _ in power.values())
        if same:
            _per_gpu(ax, _times(first), {g: watts for g, (_, watts) in power.items()})
        else:
            for (g, (wall, watts)), color in zip(sorted(power.items()), _colors(len(power))):
                _line(ax, _times(wall), watts, label=f"GPU {g}", color=color, lw=0.9)
            ax.legend(loc="upper left", fontsize=7, ncol=min(len(power), 8), framealpha=0.8)
        ax.set_ylabel("GPU power (W)")
        ax.set_ylim(bottom=0)


PER_GPU_LINES = 4


def _per_gpu(ax, t, series: dict[int, np.ndarray]) -> None:
    """Up to four GPUs: one line each. More: their mean, and the band between the lowest and highest GPU."""
    if len(series) <= PER_GPU_LINES:
        for (g, y), color in zip(sorted(series.items()), _colors(len(series))):
            _line(ax, t, y, label=f"GPU {g}", color=color, lw=1.0)
    else:
        import warnings

        stack = np.vstack([series[g] for g in sorted(series)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, lo, hi = np.nanmean(stack, axis=0), np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)
        tb, m, _, _ = _bin(t, mean)
        _, _, l, _ = _bin(t, lo)
        _, _, _, h = _bin(t, hi)
        ax.fill_between(tb, l, h, color="tab:purple", alpha=0.18, lw=0, label=f"min-max over {len(series)} GPUs")
        ax.plot(tb, m, color="tab:purple", lw=1.2, label=f"mean of {len(series)} GPUs")
    ax.legend(loc="upper left", fontsize=7, ncol=min(len(series), 8), framealpha=0.8)


def _colors(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def _gpu_power(trace) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    sources = [s for s in ("nvml", "dcgmi") if s in trace.sources()]
    if not sources:
        return {}
    out = {}
    for e in read_series(trace, readers=sources[:1], entities=["gpu*"], fields=list(_POWER)):
        m = _GPU.match(e.name)
        if not m:
            continue
        for name, factor in _POWER.items():
            values = e.get(name)
            if values is not None:
                out[int(m.group(1))] = (e.wall, values * factor)
                break
    return out

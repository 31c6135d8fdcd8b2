"""``plot_trace(path, out)``: the one-page overview of a recording (``telemrec plot``).

The panels and their numbers come from ``telemrec.analysis._panels`` (CPU, memory, disk,
network, the command's CPU and memory, GPU busy, memory and power; each only when the trace
has its data). The time axis is UTC wall time; annotations are shaded and labelled. Long
recordings are binned to about 1200 points per line (the mean of each bin, with the bin's
min and max as the band), so a 24 h trace stays readable.

Needs matplotlib (``pip install 'telemrec[plot]'``); the Agg backend is used, so
no display is needed.
"""

from __future__ import annotations

import os

import numpy as np

from telemrec.analysis import _select
from telemrec.analysis._panels import Panel, panels
from telemrec.errors import ReaderUnavailableError, TraceWriteError, UsageError

__all__ = ["figure", "plot_trace"]

MAX_POINTS = 1200


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


def figure(path, *, title: str | None = None, width: float = 12.0):
    """The overview figure of trace ``path`` (a matplotlib Figure; the caller closes it)."""
    plt = _pyplot()
    import matplotlib.dates as mdates

    with _select.opened(path) as trace:
        drawn = panels(trace)
        annotations = trace.annotations()
        host = _select.hostname(trace.manifest, "?")
        name = os.path.basename(trace.path)
    walls = [line.wall_ns for p in drawn for line in p.lines if len(line.wall_ns) and not line.dashed]
    if not walls:
        raise UsageError(f"{name} holds nothing to plot (no CPU, memory, disk, network, process or GPU data)",
                         "Record with the psutil reader, a GPU reader (nvml, dcgmi) or node_exporter/dcgm-exporter "
                         "through the prometheus reader.")
    first = min(int(w.min()) for w in walls)
    last = max(int(w.max()) for w in walls)
    height = 2.1 * len(drawn) + 0.8
    fig, axes = plt.subplots(len(drawn), 1, figsize=(width, height), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for ax, panel in zip(axes, drawn):
        _draw(ax, panel)
        for ann in annotations:
            a = np.datetime64(int(ann["start_wall_ns"]), "ns").astype("datetime64[ms]")
            b = np.datetime64(int(ann["end_wall_ns"] or ann["start_wall_ns"]), "ns").astype("datetime64[ms]")
            ax.axvspan(a, b, color="tab:orange", alpha=0.12, lw=0)
    for ann in annotations:
        a = np.datetime64(int(ann["start_wall_ns"]), "ns").astype("datetime64[ms]")
        axes[0].annotate(str(ann.get("label") or ""), xy=(a, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(2, -2), textcoords="offset points", fontsize=7, va="top", color="tab:orange")
    if last > first:
        lo, hi = _times(np.array([first, last], np.int64))
        axes[-1].set_xlim(lo, hi)
    locator = mdates.AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[-1].set_xlabel("time (UTC)")
    fig.suptitle(title or f"{host}: {name}, {_span_text(first, (last - first) / 1e9)}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / height))  # the title keeps its own strip
    return fig


def plot_trace(path, out: str | os.PathLike, *, title: str | None = None, width: float = 12.0,
               dpi: int = 110) -> str:
    """Write the overview figure of trace ``path`` to ``out`` (PNG, SVG or PDF by extension)."""
    out = os.fspath(out)
    fig = figure(path, title=title, width=width)
    plt = _pyplot()
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


def _draw(ax, panel: Panel) -> None:
    colors = _colors(sum(not line.dashed for line in panel.lines))
    solid = iter(colors)
    for line in panel.lines:
        t = _times(line.wall_ns)
        if line.dashed:
            ax.plot(t, line.values, ls="--", lw=0.8, color="0.35", label=line.label)
            continue
        color = next(solid)
        tb, mean, lo, hi = _bin(t, line.values)
        if line.band is not None:
            _, _, lo, _ = _bin(t, line.band[0])
            _, _, _, hi = _bin(t, line.band[1])
        if line.band is not None or len(tb) < len(t):
            ax.fill_between(tb, lo, hi, color=color, alpha=0.18, lw=0)
        ax.plot(tb, mean, lw=1.2, color=color, label=line.label)
    ax.set_ylim(*panel.ylim)
    ax.set_ylabel(panel.ylabel)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.8, ncol=min(len(panel.lines), 6))


def _colors(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(max(n, 1))]

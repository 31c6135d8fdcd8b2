"""Trace -> JUmPER 0.4.1 session (directory or .zip) that ``%import_session`` accepts.

Layout as ``SessionExporter`` writes it (seed-projects.md 1.6, 1.8): ``manifest.json``,
``perf_<level>.csv`` for the levels the trace has (``process``, ``user``, ``system``,
``slurm``; columns and units of JUmPER, plus ``cell_index``) and ``cell_history.csv``.
A .zip holds the files at its root. A trace without psutil data (GPU readers only) gets
a ``system`` level of the devices' columns (no CPU or memory columns: never measured); a
trace with neither is refused. Annotations become cells (label -> ``raw_cell``);
a trace without annotations gets one cell spanning the recording, because JUmPER
shows nothing outside cells. ``time`` and the cells' ``start_time``/``end_time``
are CLOCK_MONOTONIC seconds (JUmPER's perf_counter clock); ``wallclock_*`` are
epoch seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile

from telemrec._version import __version__
from telemrec.analysis.offline import OfflineMonitor
from telemrec.errors import TraceWriteError, UsageError

__all__ = ["export_jumper", "session_manifest"]

LEVEL_FILES = {"process": "perf_process.csv", "user": "perf_user.csv", "system": "perf_system.csv",
               "slurm": "perf_slurm.csv"}
# JUmPER 0.4.1's reporter defaults (adapters/analyzer.py)
THRESHOLDS = {"memory_ratio": 0.8, "cpu_ratio": 0.7, "gpu_util_ratio": 0.8, "gpu_memory_ratio": 0.8,
              "gpu_alloc_min_mem_gb": 0.1, "gpu_util_idle_threshold": 0.05, "gpu_alloc_min_fraction": 0.5}


def session_manifest(monitor: OfflineMonitor, schemas: dict, cell_columns: list[str], trace_manifest: dict) -> dict:
    """Every key JUmPER's exporter writes (seed-projects.md 1.6), plus ``telemrec`` provenance."""
    monitor_block = monitor.manifest()
    host = trace_manifest.get("host") or {}
    monitor_block.update({"os": "posix" if (host.get("os") or "Linux") != "Windows" else "nt",
                          "python": host.get("python") or ""})
    io_window = max(1, int(round(1.0 / monitor.interval))) if monitor.interval > 0 else 1
    return {
        "version": "1.0",
        "app": {"name": "telemrec", "version": __version__},
        "monitor": monitor_block,
        "levels": list(monitor.levels),
        "schemas": {"perf": schemas, "cell_history": cell_columns},
        "visualizer": {"default_metric_subsets": ["cpu", "mem", "io"] + (["gpu", "gpu_all"] if monitor.num_gpus else []),
                       "figsize": [5, 3], "io_window": io_window, "last_state": {}},
        "reporter": {"level": "process", "format": "text", "thresholds": dict(THRESHOLDS)},
        "time_origin": "perf_counter",
        "timezone": "UTC",
        "telemrec": {"source": monitor.session_source, "trace_format_version": trace_manifest.get("format_version"),
                     "hostnames": monitor.nodes.node_names()},
    }


def export_jumper(path, out: str | os.PathLike) -> str:
    """Write the session for trace(s) ``path`` to directory ``out`` (or a .zip); return ``out``."""
    from telemrec.analysis import _select

    out = os.fspath(out)
    monitor = OfflineMonitor.from_trace(path)
    if all(monitor.nodes.view(level).empty for level in monitor.levels):
        raise UsageError(f"{monitor.session_source} holds no psutil, nvml or dcgmi records: JUmPER would import "
                         f"its session as 'no performance data'",
                         "Export it as csv or parquet instead (`--format csv`), or record with -r psutil, nvml or "
                         "dcgmi.")
    first = path[0] if isinstance(path, (list, tuple)) else path
    first = _select.trace_paths(first)[0] if not hasattr(first, "manifest") else first
    with _select.opened(first) as trace:
        trace_manifest = trace.manifest
    is_zip = out.lower().endswith(".zip")
    parent = os.path.dirname(os.path.abspath(out))
    try:
        work = tempfile.mkdtemp(prefix=".jumper-session-", dir=parent)
    except OSError as exc:
        raise TraceWriteError(f"cannot write into {parent}: {exc.strerror}",
                              "Check that the output directory exists and is writable.", path=out) from exc
    try:
        schemas = {}
        for level in monitor.levels:
            frame = monitor.nodes.view(level, cell_history=monitor.cell_history)
            if frame.empty:
                continue
            schemas[level] = list(frame.columns)
            frame.to_csv(os.path.join(work, LEVEL_FILES.get(level, f"perf_{level}.csv")), index=False)
        cells = monitor.cell_history.data
        if not cells.empty:
            cells.to_csv(os.path.join(work, "cell_history.csv"), index=False)
        manifest = session_manifest(monitor, schemas, list(cells.columns), trace_manifest)
        with open(os.path.join(work, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, allow_nan=False)
        if is_zip:
            tmp_zip = os.path.join(work, "session.zip")
            with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name in sorted(os.listdir(work)):
                    if name != "session.zip":
                        zf.write(os.path.join(work, name), name)
            os.replace(tmp_zip, out)
        else:
            if os.path.exists(out):
                if not os.path.isdir(out) or os.listdir(out):
                    raise TraceWriteError(f"{out} already exists and is not an empty directory",
                                          "Choose a new directory, or a path ending in .zip.", path=out)
                os.rmdir(out)
            os.replace(work, out)
            work = None
    except TraceWriteError:
        raise
    except OSError as exc:
        raise TraceWriteError(f"cannot write the JUmPER session {out}: {exc}", path=out) from exc
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return out

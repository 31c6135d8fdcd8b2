"""JUmPER session export, checked with JUmPER 0.4.1's own importer, plots and report."""

import json
import os
import warnings
import zipfile

import pandas as pd
import pytest

from telemrec.analysis import OfflineMonitor, export_jumper
from telemrec.errors import TraceWriteError, UsageError

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "exported_session_thread_monitor_v0.4.1")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_directory_layout_and_manifest(node_trace, tmp_path):
    out = export_jumper(node_trace, tmp_path / "session")
    names = sorted(os.listdir(out))
    assert names == ["cell_history.csv", "manifest.json", "perf_process.csv", "perf_system.csv", "perf_user.csv"]
    manifest = read_json(os.path.join(out, "manifest.json"))
    for key in ("version", "app", "monitor", "levels", "schemas", "visualizer", "reporter", "time_origin", "timezone"):
        assert key in manifest
    mon = manifest["monitor"]
    for key in ("interval", "start_time", "stop_time", "wallclock_start_time", "wallclock_stop_time", "num_cpus",
                "num_system_cpus", "num_gpus", "gpu_memory", "gpu_name", "memory_limits", "cpu_handles", "pid",
                "uid", "slurm_job", "os", "python"):
        assert key in mon
    assert manifest["visualizer"]["io_window"] == 1
    assert "gpu" in manifest["visualizer"]["default_metric_subsets"]
    system = pd.read_csv(os.path.join(out, "perf_system.csv"))
    assert system.columns[0] == "time" and system.columns[-1] == "cell_index"
    assert manifest["schemas"]["perf"]["system"] == list(system.columns)
    cells = pd.read_csv(os.path.join(out, "cell_history.csv"))
    assert list(cells["raw_cell"]) == ["warmup", "train"]


def test_same_columns_as_a_real_jumper_export(node_trace, tmp_path):
    """Every column JUmPER's own exporter wrote (no GPU there) is in ours, and the cell history matches."""
    out = export_jumper(node_trace, tmp_path / "s")
    for name in ("perf_system.csv", "perf_process.csv", "perf_user.csv", "cell_history.csv"):
        theirs = set(pd.read_csv(os.path.join(SAMPLE, name)).columns)
        ours = set(pd.read_csv(os.path.join(out, name)).columns)
        assert theirs <= ours, (name, theirs - ours)
    theirs = read_json(os.path.join(SAMPLE, "manifest.json"))
    ours = read_json(os.path.join(out, "manifest.json"))
    assert set(theirs) <= set(ours) and set(theirs["monitor"]) <= set(ours["monitor"])


def test_zip_has_files_at_its_root(node_trace, tmp_path):
    out = export_jumper(node_trace, tmp_path / "s.zip")
    with zipfile.ZipFile(out) as zf:
        assert "manifest.json" in zf.namelist() and all("/" not in n for n in zf.namelist())
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".jumper-session-")]


def test_refuses_a_non_empty_directory(node_trace, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep")
    with pytest.raises(TraceWriteError):
        export_jumper(node_trace, tmp_path / "busy")
    assert (tmp_path / "busy" / "x").read_text() == "keep"


@pytest.fixture
def jumper_service(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    import matplotlib

    matplotlib.use("Agg", force=True)
    from jumper_extension.core.service import build_perfmonitor_service

    return build_perfmonitor_service()


@pytest.mark.parametrize("as_zip", [False, True])
def test_jumper_imports_plots_and_reports(node_trace, tmp_path, jumper_service, capsys, as_zip):
    out = export_jumper(node_trace, tmp_path / ("s.zip" if as_zip else "s"))
    service = jumper_service
    service.import_session(str(out))
    monitor = service.monitor
    assert type(monitor).__name__ == "OfflinePerformanceMonitor" and monitor.is_imported
    assert service.cell_history.data["raw_cell"].tolist() == ["warmup", "train"]
    system = monitor.nodes.view("system")
    assert len(system) == 19 and system["gpu_util_1"].dropna().eq(80.0).all()
    levels = ("system", "process", "user") if not as_zip else ("process",)
    with warnings.catch_warnings():
        # JUmPER's own figure of 12 GPU panels at its 10 x 36 inch size makes matplotlib warn about layout
        warnings.simplefilter("ignore", UserWarning)
        for level in levels:
            target = tmp_path / f"{level}.jpg"
            service.plot_performance(level=level, save_jpeg=str(target))
            assert target.stat().st_size > 10_000
    service.show_resources()
    service.reporter.print(cell_range=(0, 1), level="process")
    text = capsys.readouterr().out
    assert "GPUs: 2" in text and "NVIDIA H100 80GB HBM3" in text
    assert "CPU Util (Across 4 CPUs)" in text and "GPU Memory (GB)" in text


def test_our_monitor_drives_jumpers_visualizer(node_trace, tmp_path, jumper_service):
    """OfflineMonitor has the surface JUmPER's visualizer reads: attach it without a session file."""
    service = jumper_service
    monitor = OfflineMonitor.from_trace(node_trace)
    service.monitor = monitor
    service.cell_history.data = monitor.cell_history.data
    service.visualizer.attach(monitor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        service.plot_performance(level="system", metrics=["cpu", "mem"], save_jpeg=str(tmp_path / "direct.jpg"))
    assert (tmp_path / "direct.jpg").stat().st_size > 10_000


SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "sample_traces", "v2")


@pytest.mark.parametrize("name, gpus", [("nvml_synthetic.h5", 2), ("dcgmi_synthetic.h5", 4)])
def test_a_gpu_only_trace_exports_gpu_levels_jumper_shows(name, gpus, tmp_path, jumper_service, capsys):
    """No psutil data: a system level of the devices' columns (no CPU or memory columns, never measured)."""
    out = export_jumper(os.path.join(SAMPLES, name), tmp_path / "s")
    assert sorted(os.listdir(out)) == ["cell_history.csv", "manifest.json", "perf_system.csv"]
    system = pd.read_csv(os.path.join(out, "perf_system.csv"))
    assert not any(c.startswith(("cpu_util", "memory", "io_")) for c in system.columns)
    assert {f"gpu_util_{g}" for g in range(gpus)} <= set(system.columns) and system["gpu_util_avg"].notna().all()
    monitor = read_json(os.path.join(out, "manifest.json"))["monitor"]
    assert monitor["num_gpus"] == gpus and monitor["gpu_memory"] > 0    # dcgmi: the framebuffer's size
    service = jumper_service
    service.import_session(str(out))
    capsys.readouterr()
    service.reporter.print(cell_range=(0, 0), level="system")
    text = capsys.readouterr().out
    assert "No performance data" not in text
    util = system["gpu_util_avg"]
    assert f"GPU Util (Across {gpus} GPUs)  {util.mean():<8.2f} {util.min():<8.2f} {util.max():<8.2f}" in text
    assert "CPU Util" not in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        service.plot_performance(level="system", metrics=["gpu", "gpu_all"], save_jpeg=str(tmp_path / "gpu.jpg"))
    assert (tmp_path / "gpu.jpg").stat().st_size > 10_000


def test_a_trace_jumper_cannot_show_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no psutil, nvml or dcgmi records"):
        export_jumper(os.path.join(SAMPLES, "node_exporter.h5"), tmp_path / "s")
    assert os.listdir(tmp_path) == []

"""`telemrec plot`: which panels each kind of trace gets, and y ranges that show every value."""

from pathlib import Path

import numpy as np
import pytest

from telemrec.analysis._panels import panels
from telemrec.analysis.plot import figure, plot_trace
from telemrec.record import RawRecord
from telemrec.trace import TraceWriter, open_trace

from .conftest import T0_MONO, T0_WALL, S

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_traces" / "v2"
EXPECTED = {
    "psutil_workload": ["cpu", "memory", "disk", "network", "command_cpu", "command_memory"],
    "nvml_synthetic": ["gpu_util", "gpu_memory", "gpu_power"],
    "dcgmi_synthetic": ["gpu_util", "gpu_memory", "gpu_power"],
    "node_exporter": ["cpu", "memory", "disk", "network"],
}
LABELS = {"cpu": "CPU busy (%)", "memory": "memory (GiB)", "disk": "disk I/O (MiB/s)", "network": "network (MiB/s)",
          "command_cpu": "command CPU (% of a core)", "command_memory": "command memory (MiB)",
          "gpu_util": "GPU busy (%)", "gpu_memory": "GPU memory (GiB)", "gpu_power": "GPU power (W)"}
PERCENT = {"cpu", "command_cpu", "gpu_util"}


def _drawn(ax) -> np.ndarray:
    """Every y value the axes draws: lines and filled bands."""
    ys = [np.asarray(line.get_ydata(), float) for line in ax.lines]
    ys += [path.vertices[:, 1] for coll in ax.collections for path in coll.get_paths()]
    values = np.concatenate(ys) if ys else np.zeros(0)
    return values[np.isfinite(values)]


def _check_limits(fig):
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        drawn = _drawn(ax)
        assert lo == 0 and len(drawn), ax.get_ylabel()
        assert hi > drawn.max(), f"{ax.get_ylabel()}: {drawn.max()} not under the top {hi}"
        if "%" in ax.get_ylabel():
            assert hi >= 105


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_gets_the_panels_of_its_data_with_room_above_the_highest_value(name):
    fig = figure(SAMPLES / f"{name}.h5")
    try:
        assert [ax.get_ylabel() for ax in fig.axes] == [LABELS[k] for k in EXPECTED[name]]
        _check_limits(fig)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    with open_trace(SAMPLES / f"{name}.h5") as trace:
        for panel in panels(trace):
            for line in panel.lines:
                if panel.key in ("gpu_util", "cpu"):  # percentages of a device: recorded units honoured
                    assert np.nanmax(line.values) <= 100.0 + 1e-9, (name, panel.key)


def test_a_saturated_core_is_drawn_under_the_frame_not_on_it(node_trace):
    with open_trace(node_trace) as trace:
        cpu = next(p for p in panels(trace) if p.key == "cpu")
    (line,) = cpu.lines
    assert line.label.startswith("mean of 4 cores")
    assert np.nanmax(line.band[1]) == pytest.approx(100.0)  # cpu3 is busy all the time
    assert np.nanmean(line.values) == pytest.approx(62.5)
    assert cpu.ylim == (0.0, pytest.approx(105.0))


def _command_trace(path, busy_cores: float = 2.5) -> str:
    """A command whose two processes keep 2.5 cores busy, on a 4-core node fully busy, and 8 GPUs at 100 %."""
    writer = TraceWriter(str(path), {"readers": [], "interval_seconds": 1.0,
                                     "command": {"argv": ["/usr/bin/python3", "train.py"], "pid": 10}})
    for i in range(10):
        mono, wall = T0_MONO + i * S, T0_WALL + i * S
        recs = [RawRecord(mono, wall, f"cpu{k}", {"cpu_times.user": 100.0 + i, "cpu_times.idle": 50.0}, "psutil")
                for k in range(4)]
        recs += [RawRecord(mono, wall, "pid:10", {"cpu_times.user": i * 1.5, "cpu_times.system": i * 0.5,
                                                  "memory_info.rss": 3 << 30, "levels": "process"}, "psutil"),
                 RawRecord(mono, wall, "pid:11", {"cpu_times.user": i * (busy_cores - 2.0), "cpu_times.system": 0.0,
                                                  "memory_info.rss": 1 << 30, "levels": "process user"}, "psutil"),
                 RawRecord(mono, wall, "pid:99", {"cpu_times.user": i * 4.0, "cpu_times.system": 0.0,
                                                  "memory_info.rss": 8 << 30, "levels": "user"}, "psutil")]
        recs += [RawRecord(mono, wall, f"gpu{g}", {"utilization.gpu": 100, "memory.used": (g + 1) << 30,
                                                   "memory.total": 80 << 30, "power.usage": 700_000}, "nvml")
                 for g in range(8)]
        writer.write(recs)
    writer.close()
    return str(path)


def test_the_commands_cpu_goes_above_a_hundred_percent_unclipped(tmp_path):
    path = _command_trace(tmp_path / "cmd.h5")
    with open_trace(path) as trace:
        by_key = {p.key: p for p in panels(trace)}
    (cpu,) = by_key["command_cpu"].lines
    assert np.nanmax(cpu.values) == pytest.approx(250.0)  # pid:99 is the user's, not the command's
    assert by_key["command_cpu"].ylim[1] == pytest.approx(262.5)
    assert "python3 and its processes (2 seen)" == cpu.label
    (rss,) = by_key["command_memory"].lines
    assert np.nanmax(rss.values) == pytest.approx(4.0) and by_key["command_memory"].ylabel == "command memory (GiB)"
    assert np.nanmax(by_key["cpu"].lines[0].values) == pytest.approx(100.0)


def test_more_than_four_gpus_are_a_mean_and_a_band(tmp_path):
    path = _command_trace(tmp_path / "gpus.h5")
    with open_trace(path) as trace:
        by_key = {p.key: p for p in panels(trace)}
    (util,) = by_key["gpu_util"].lines
    assert util.label == "mean of 8 GPUs (band: lowest to highest GPU)" and np.nanmax(util.values) == 100
    memory, total = by_key["gpu_memory"].lines
    assert np.nanmax(memory.band[1]) == pytest.approx(8.0) and np.nanmin(memory.band[0]) == pytest.approx(1.0)
    assert total.dashed and total.values[0] == pytest.approx(80.0)
    assert np.nanmax(by_key["gpu_power"].lines[0].values) == pytest.approx(700.0)
    fig = figure(path)
    try:
        _check_limits(fig)
        assert [ax.get_ylabel() for ax in fig.axes] == [
            "CPU busy (%)", "command CPU (% of a core)", "command memory (GiB)", "GPU busy (%)", "GPU memory (GiB)",
            "GPU power (W)"]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_dcgm_exporter_through_the_prometheus_reader_gets_gpu_panels(tmp_path, cli):
    fixture = REPO / "tests" / "fixtures" / "prometheus" / "dcgm_exporter_8gpu.txt"
    out = tmp_path / "dcgm.h5"
    proc = cli("record", "-r", "prometheus", "-s", str(fixture), "-i", "0.2", "-d", "0.7", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    with open_trace(out) as trace:
        keys = [p.key for p in panels(trace)]
        util = next(p for p in panels(trace) if p.key == "gpu_util")
    assert keys == ["gpu_util", "gpu_memory", "gpu_power"]
    assert util.lines[0].label.startswith("mean of 8 GPUs") and np.nanmax(util.lines[0].band[1]) <= 100


def test_plot_writes_the_png_of_every_sample(tmp_path):
    for name in EXPECTED:
        out = plot_trace(SAMPLES / f"{name}.h5", tmp_path / f"{name}.png")
        assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

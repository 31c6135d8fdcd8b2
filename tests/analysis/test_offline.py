import numpy as np
import pandas as pd
import pytest

from telemrec.analysis import OfflineMonitor
from telemrec.analysis.levels import _whole_disks, level_data
from telemrec.trace import open_trace

from .conftest import BUSY, MIB, MISSED, N, RESET, T0_MONO, T0_WALL, S


def tick_of(frame: pd.DataFrame) -> np.ndarray:
    """The tick number of each row (the frames' time is monotonic seconds)."""
    return np.floor(frame["time"].to_numpy() - T0_MONO / 1e9).astype(int)


def row(frame: pd.DataFrame, tick: int) -> pd.Series:
    hit = frame[tick_of(frame) == tick]
    assert len(hit) == 1
    return hit.iloc[0]


@pytest.fixture(scope="module")
def monitor(node_trace):
    return OfflineMonitor.from_trace(node_trace)


def test_monitor_surface(monitor, node_trace):
    assert monitor.running is False and monitor.is_imported is True
    assert monitor.session_source == node_trace
    assert monitor.interval == 1.0
    assert monitor.start_time == pytest.approx(T0_MONO / 1e9)
    assert monitor.stop_time == pytest.approx((T0_MONO + N * S) / 1e9)
    assert monitor.wallclock_start_time == pytest.approx(T0_WALL / 1e9)
    assert monitor.wallclock_stop_time == pytest.approx((T0_WALL + N * S) / 1e9)
    assert (monitor.num_cpus, monitor.num_system_cpus, monitor.num_gpus) == (4, 4, 2)
    assert monitor.gpu_memory == 80.0 and monitor.gpu_name == "NVIDIA H100 80GB HBM3"
    assert monitor.memory_limits == {"user": 16.0, "process": 16.0, "system": 16.0}
    assert monitor.cpu_handles == [0, 1, 2, 3]
    assert monitor.levels == ["user", "process", "system"]
    assert (monitor.pid, monitor.uid, monitor.slurm_job) == (100, 1000, 0)
    assert (monitor.n_measurements, monitor.n_missed_measurements) == (N, 1)
    assert monitor.nodes.node_names() == ["node-a"]
    info = monitor.nodes.hardware["node-a"]
    assert info.num_gpus == 2 and info.memory_limits["system"] == 16.0
    monitor.start(0.5)
    monitor.stop()
    assert monitor.running is False
    assert monitor.data.view("system").shape == monitor.nodes.view("system").shape
    with pytest.raises(ValueError):
        monitor.nodes.view("cluster")


def test_system_level(monitor):
    f = monitor.nodes.view("system")
    assert len(f) == N - 1                                  # psutil missed one tick
    assert f.columns[0] == "time"
    first, later = row(f, 0), row(f, 3)
    assert np.isnan(first["cpu_util_0"])                    # no baseline yet: NaN, not JUmPER's 0
    for k, busy in enumerate(BUSY):
        assert later[f"cpu_util_{k}"] == pytest.approx(busy * 100)
        assert row(f, MISSED + 1)[f"cpu_util_{k}"] == pytest.approx(busy * 100)
    assert later["cpu_util_avg"] == pytest.approx(62.5)
    assert (later["cpu_util_min"], later["cpu_util_max"]) == (pytest.approx(25.0), pytest.approx(100.0))
    assert later["memory"] == pytest.approx(4.3, abs=1e-6)
    assert later["io_read"] == pytest.approx(MIB)           # sda only: sda1 is one of its partitions
    assert later["io_read_count"] == pytest.approx(10.0)
    assert later["io_write"] == pytest.approx(2 * MIB) and later["io_write_count"] == pytest.approx(20.0)
    assert np.isnan(row(f, RESET)["io_write"])
    assert (later["gpu_util_0"], later["gpu_util_1"], later["gpu_util_avg"]) == (50.0, 80.0, 65.0)
    assert later["gpu_mem_1"] == pytest.approx(4.0) and later["gpu_band_0"] == 10.0


def test_process_and_user_levels(monitor):
    proc = monitor.nodes.view("process")
    assert [c for c in proc.columns if c.startswith("cpu_util_")] == [
        "cpu_util_0", "cpu_util_1", "cpu_util_2", "cpu_util_3", "cpu_util_avg", "cpu_util_min", "cpu_util_max"]
    r = row(proc, 3)
    assert r["cpu_util_0"] == pytest.approx(15.0)            # 0.6 CPU s/s over 4 CPUs
    assert r["memory"] == pytest.approx(1.0)
    assert (r["io_read"], r["io_write"], r["io_read_count"], r["io_write_count"]) == (
        pytest.approx(1000), pytest.approx(4000), pytest.approx(3), pytest.approx(4))
    assert (r["gpu_util_0"], r["gpu_util_1"]) == (50.0, 0.0)   # pid 100 holds memory on GPU 0 only
    assert (r["gpu_mem_0"], r["gpu_mem_1"]) == (pytest.approx(1.0), 0.0)
    assert np.isnan(row(proc, 0)["cpu_util_0"])
    user = monitor.nodes.view("user")
    assert row(user, 3)["memory"] == pytest.approx(1.0)
    assert row(user, 5)["memory"] == pytest.approx(1.5)
    assert row(user, 5)["cpu_util_avg"] == pytest.approx(15.0)  # pid 200's first sample has no rate
    assert row(user, 6)["cpu_util_avg"] == pytest.approx(20.0)


def test_cells_from_annotations(monitor):
    cells = monitor.cell_history.data
    assert list(cells.columns) == ["cell_index", "raw_cell", "start_time", "end_time", "duration",
                                   "wallclock_start_time", "wallclock_end_time", "cell_magics"]
    assert list(cells["raw_cell"]) == ["warmup", "train"]
    assert cells["start_time"].iloc[1] == pytest.approx(T0_MONO / 1e9 + 5)
    assert cells["duration"].iloc[0] == pytest.approx(4.5)
    view = monitor.nodes.view("system", cell_history=monitor.cell_history)
    assert row(view, 2)["cell_index"] == 0 and row(view, 10)["cell_index"] == 1


def test_one_cell_without_annotations(node_trace_b):
    m = OfflineMonitor.from_trace(node_trace_b)
    cells = m.cell_history.data
    assert len(cells) == 1
    assert cells["raw_cell"].iloc[0] == "python train.py"
    frame = m.nodes.view("system", cell_history=m.cell_history)
    assert frame["cell_index"].eq(0).all()


def test_many_nodes_align_on_the_wall_clock(node_trace, node_trace_b):
    m = OfflineMonitor.from_trace([node_trace, node_trace_b])
    assert m.nodes.node_names() == ["node-a", "node-b"]
    assert m.num_gpus == 4 and m.memory_limits["system"] == 32.0
    agg = m.nodes.view("system")
    assert "cpu_util_0" not in agg and "gpu_util_0" not in agg      # per-device columns dropped, as JUmPER
    r = agg.iloc[3]
    assert r["memory"] == pytest.approx(2 * 4.3, abs=1e-6)
    assert r["cpu_util_avg"] == pytest.approx(62.5)
    b = m.nodes.view("system", node="node-b")
    assert b["time"].iloc[0] == pytest.approx(T0_MONO / 1e9 + 0.302, abs=1e-3)


def test_level_data_without_tick_tables_uses_its_own_grid(tmp_path):
    from .conftest import build_node_trace

    path = build_node_trace(tmp_path / "noticks.h5", ticks=False)
    with open_trace(path) as trace:
        data = level_data(trace)
    f = data.frames["system"]
    assert f["gpu_util_0"].dropna().eq(50.0).all() and len(f) == N - 1


def test_whole_disks():
    assert _whole_disks(["sda", "sda1", "sda2", "nvme0n1", "nvme0n1p1", "mmcblk0", "mmcblk0p2", "dm-0", "loop0"]) == [
        "sda", "nvme0n1", "mmcblk0", "dm-0", "loop0"]

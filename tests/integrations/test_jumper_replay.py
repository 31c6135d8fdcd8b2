"""ReplayMonitor in JUmPER 0.4.1's live slot: start_monitoring(monitor=...), emulated cells, JUmPER's
magics for the report, the plot and the resources, with the recording's own figures."""

import re
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from telemrec.analysis.levels import level_data
from telemrec.errors import UsageError
from telemrec.trace import open_trace

pytest.importorskip("jumper_extension")   # the test extra installs it; this only guards a bare install

from jumper_extension.monitor.common import MonitorProtocol  # noqa: E402

from telemrec.integrations.jumper import ReplayMonitor  # noqa: E402


@pytest.fixture
def magics(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    import matplotlib

    matplotlib.use("Agg", force=True)
    from jumper_extension.core.service import build_perfmonitor_magic_adapter

    adapter = build_perfmonitor_magic_adapter()
    yield adapter
    adapter.service.stop_monitoring()


class Result:   # what IPython hands on_post_run_cell
    error_in_exec = None
    success = True


def run_cell(magics, source, seconds):
    magics.on_pre_run_cell(source, [], False)
    time.sleep(seconds)
    magics.on_post_run_cell(Result())


def frames(path):
    with open_trace(path) as trace:
        return level_data(trace)


def report_rows(text):
    """{metric: (avg, min, max)} from JUmPER's text report."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"(CPU Util|Memory|GPU Util|GPU Memory).*?\s+(-?[\d.]+|nan)\s+(-?[\d.]+|nan)\s+(-?[\d.]+|nan)",
                     line)
        if m:
            out[m.group(1)] = tuple(float(x) for x in m.groups()[1:])
    return out


def test_jumper_runs_cells_reports_and_plots_on_a_replayed_recording(magics, sample, tmp_path, capsys):
    path = sample("psutil_workload.h5")            # real: 20 s of a workload, 0.5 s ticks, system + process
    monitor = ReplayMonitor(path, speed=25)
    assert isinstance(monitor, MonitorProtocol) and monitor.levels == ["process", "system"]
    service = magics.service
    service.start_monitoring(monitor=monitor)
    assert service.monitor is monitor and monitor.running
    run_cell(magics, "x = load()", 0.3)
    run_cell(magics, "train(x)", 0.35)
    assert monitor.wait(10) and monitor.running   # play over; JUmPER's session goes on until it stops it
    assert monitor.n_measurements == 41

    # JUmPER's store holds the recording's rows, stamped as they played on JUmPER's clock
    data = frames(path)
    for level in ("system", "process"):
        got = monitor.nodes.view(level)
        want = data.frames[level]
        assert list(got.columns) == list(want.columns) and len(got) == len(want) == 41
        np.testing.assert_array_equal(got.drop(columns="time").to_numpy(), want.drop(columns="time").to_numpy())
        np.testing.assert_allclose(got["time"] - monitor.start_time, (data.mono_ns - data.mono_ns[0]) / 1e9 / 25)

    # the report (JUmPER's %perfmonitor_perfreport) gives the recording's figures over the two cells
    capsys.readouterr()
    magics.perfmonitor_perfreport("--cell 0:1 --level system --text")
    text = capsys.readouterr().out
    cells = service.cell_history.data
    stamps = monitor.nodes.view("system")["time"]
    inside = (stamps >= cells["start_time"].iloc[0]) & (stamps <= cells["end_time"].iloc[-1])
    assert 10 <= inside.sum() < 41
    system = data.frames["system"][inside.to_numpy()]
    rows = report_rows(text)
    cpu = system["cpu_util_avg"]
    assert rows["CPU Util"] == tuple(round(v, 2) for v in (cpu.mean(), cpu.min(), cpu.max()))
    assert rows["Memory"] == tuple(round(v, 2) for v in (system["memory"].mean(), system["memory"].min(),
                                                         system["memory"].max()))
    assert "Duration: " in text and "(2 cells)" in text

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)    # matplotlib's layout warnings on JUmPER's tall figures
        for level in ("system", "process"):
            target = tmp_path / f"{level}.jpg"
            magics.perfmonitor_plot(f"--level {level} --cell 0:1 --save-jpeg {target}")
            assert target.stat().st_size > 10_000
    magics.perfmonitor_resources("")
    assert "CPUs: 2" in capsys.readouterr().out
    magics.perfmonitor_stop("")
    assert not monitor.running and monitor.stop_time > monitor.start_time


def test_a_gpu_only_recording_reports_gpu_figures(magics, sample, capsys):
    path = sample("dcgmi_synthetic.h5")            # DCGM, 4 GPUs, no psutil: the system level of the devices
    monitor = ReplayMonitor(path, speed=60, start="+10s")
    assert monitor.levels == ["system"] and monitor.num_gpus == 4 and monitor.gpu_memory > 0
    magics.service.start_monitoring(monitor=monitor)
    run_cell(magics, "step()", 0.25)
    monitor.wait(10)
    capsys.readouterr()
    magics.perfmonitor_perfreport("--cell 0:0 --level system --text")
    rows = report_rows(capsys.readouterr().out)
    assert set(rows) == {"GPU Util", "GPU Memory"} and 0 < rows["GPU Util"][0] <= 100
    data = frames(path)
    first = int(np.searchsorted(data.wall_ns, data.wall_ns[0] + 10 * 10**9))
    got = monitor.nodes.view("system")
    np.testing.assert_array_equal(got["gpu_util_avg"], data.frames["system"]["gpu_util_avg"][first:])


def test_stop_ends_play_early(sample):
    monitor = ReplayMonitor(sample("psutil_workload.h5"), speed=1)
    monitor.start()
    time.sleep(0.3)
    monitor.stop()
    fed = monitor.n_measurements
    assert 1 <= fed < 41 and monitor.finished and not monitor.running
    time.sleep(0.6)
    assert monitor.n_measurements == fed
    assert monitor.playing_wall_ns() == frames(sample("psutil_workload.h5")).wall_ns[fed - 1]


@pytest.mark.parametrize("args, words", [
    (("psutil_workload.h5",), {"speed": "max"}),
    (("node_exporter.h5",), {}),
    (("psutil_workload.h5",), {"start": "+1h"}),
])
def test_refusals_are_typed(sample, args, words):
    with pytest.raises(UsageError):
        ReplayMonitor(sample(args[0]), **words)
    with pytest.raises(UsageError, match="one trace"):
        ReplayMonitor([sample("psutil_workload.h5")] * 2)


def test_without_jumper_the_error_names_the_extra():
    code = ("import sys; sys.modules['jumper_extension'] = None\n"
            "try:\n    import telemrec.integrations.jumper\n"
            "except ImportError as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("IntegrationUnavailableError") and "pip install 'telemrec[jumper]'" in out


def test_in_ipython_with_jumpers_own_magics(sample, monkeypatch, capsys):
    """The notebook path of docs/integrations.md: %load_ext, the service behind it, real cells and magics."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext jumper_extension")
    try:
        start = shell.run_cell(
            "from jumper_extension.ipython import extension\n"
            "from telemrec.integrations.jumper import ReplayMonitor\n"
            f"monitor = ReplayMonitor({sample('psutil_workload.h5')!r}, speed=25)\n"
            "extension._perfmonitor_magics.magic_adapter.service.start_monitoring(monitor=monitor)")
        assert start.success, start.error_in_exec
        shell.run_cell("import time; time.sleep(0.3)")
        shell.run_cell("time.sleep(0.3); monitor.wait(10)")
        capsys.readouterr()
        shell.run_cell("%perfmonitor_perfreport --cell 1:2 --level process --text")
        text = capsys.readouterr().out
        assert "(2 cells)" in text and set(report_rows(text)) == {"CPU Util", "Memory"}
    finally:
        shell.run_cell("%perfmonitor_stop")
        shell.run_cell("%unload_ext jumper_extension")

"""The analysis commands end to end, and everything on a real psutil recording of this machine."""

import json
import os
import zipfile

import pandas as pd
import pytest

from telemrec.analysis import OfflineMonitor, export_jumper, load, summarize


def test_summary_plot_export_commands(cli, node_trace, tmp_path):
    proc = cli("summary", node_trace, "-e", "gpu*", check=True)
    assert "gpu1" in proc.stdout and "energy_j" in proc.stdout
    data = json.loads(cli("summary", node_trace, "--json", "-f", "utilization.gpu", check=True).stdout)
    assert {r["field"] for r in data["fields"]} == {"utilization.gpu"}
    png = tmp_path / "p.png"
    cli("plot", node_trace, "-o", str(png), check=True)
    assert png.stat().st_size > 20_000
    csv = tmp_path / "t.csv"
    cli("export", node_trace, "--format", "csv", "-o", str(csv), "-e", "gpu0", "--rates", "--start", "+5s", check=True)
    assert len(pd.read_csv(csv)) == 15
    tail = tmp_path / "tail.csv"
    cli("export", node_trace, "--format", "csv", "-o", str(tail), "-e", "gpu0", "--start", "-4s", check=True)
    assert len(pd.read_csv(tail)) == len(load(node_trace, entities="gpu0", start=pd.Timedelta("-4s")))
    bad = cli("summary", node_trace, "--start", "-4x")
    assert bad.returncode == 2 and "-5min back from the end" in bad.stderr
    session = tmp_path / "s.zip"
    cli("export", node_trace, "--format", "jumper", "-o", str(session), check=True)
    assert "manifest.json" in zipfile.ZipFile(session).namelist()


def test_export_to_standard_output(cli, node_trace, tmp_path):
    import io
    import subprocess
    import sys

    proc = cli("export", node_trace, "--format", "csv", "-o", "-", "-e", "gpu0", check=True)
    streamed = pd.read_csv(io.StringIO(proc.stdout))
    assert len(streamed) == len(load(node_trace, entities="gpu0")) and "gpu0" in streamed.columns[1]
    assert list(tmp_path.iterdir()) == []
    refused = cli("export", node_trace, "--format", "jumper", "-o", "-")
    assert refused.returncode == 2 and "not a stream" in refused.stderr
    # a reader that stops early (| head) ends the export quietly; the sample's long form (~750 KB)
    # is far more than a pipe buffers
    sample = os.path.join(os.path.dirname(__file__), "..", "..", "sample_traces", "v1", "psutil_workload.h5")
    pipe = subprocess.Popen([sys.executable, "-m", "telemrec", "export", sample, "--format", "csv", "--form", "long",
                             "-o", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pipe.stdout.read(10)
    pipe.stdout.close()
    with pipe.stderr:
        assert pipe.wait(timeout=60) == 0 and b"Traceback" not in pipe.stderr.read()


def test_cli_errors_are_reported_not_raised(cli, node_trace, tmp_path):
    proc = cli("export", node_trace, "--format", "xlsx", "-o", str(tmp_path / "x"))
    assert proc.returncode == 2 and "unknown export format" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("summary", str(tmp_path / "missing.h5"))
    assert proc.returncode == 2 and "no trace" in proc.stderr


def test_cli_import_leaves_pandas_and_matplotlib_alone():
    import subprocess
    import sys

    code = ("import sys, telemrec.cli.analysis, telemrec.cli; "
            "print([m for m in ('pandas', 'matplotlib', 'pyarrow', 'h5py') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert "pandas" not in out and "matplotlib" not in out and "pyarrow" not in out


@pytest.fixture(scope="module")
def real_trace(tmp_path_factory):
    """A psutil recording of this machine at 0.25 s while a ~2 s command does disk writes (it ends with the command)."""
    path = tmp_path_factory.mktemp("real") / "real.h5"
    scratch = tmp_path_factory.mktemp("scratch") / "blob"
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "telemrec", "record", "-r", "psutil", "-i", "0.25", "-q",
                           "-O", "levels=system,process,user", "-O", f"pid={os.getpid()}", "-o", str(path), "--",
                           sys.executable, "-c",
                           f"import os,time\nfor i in range(8):\n open({str(scratch)!r},'wb').write(os.urandom(1<<20)); "
                           f"os.sync(); time.sleep(0.2)"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return str(path)


def test_real_recording_loads_and_summarises(real_trace):
    df = load(real_trace, rates=True)
    assert len(df) >= 4 and df.attrs["align"] == "tick"
    busy = df[("psutil", "cpu0", "cpu_times.user")].dropna()
    assert ((busy >= 0) & (busy <= 1.5)).all()          # CPU seconds per second of one core
    s = summarize(real_trace)
    assert s.info["closed_cleanly"] and s.memory["total_gib"] > 0
    assert s.gaps.set_index("reader").loc["psutil", "ticks"] >= 4


def test_real_recording_as_jumper_levels(real_trace, tmp_path):
    m = OfflineMonitor.from_trace(real_trace)
    assert set(m.levels) >= {"system", "process"}
    system = m.nodes.view("system")
    assert system["cpu_util_avg"].dropna().between(0, 100).all()
    assert (system["memory"].dropna() > 0).all()
    process = m.nodes.view("process")
    assert (process["memory"].dropna() > 0).all()
    out = export_jumper(real_trace, tmp_path / "real-session")
    assert {"perf_system.csv", "perf_process.csv", "cell_history.csv"} <= set(os.listdir(out))


def test_cli_times_reject_empty_and_bare_signs_and_read_minus_zero_as_the_end(cli, node_trace, tmp_path):
    for bad in ("", " ", "-", "+", "--5s"):
        proc = cli("summary", node_trace, f"--start={bad}")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (bad, proc.stderr)
    last = tmp_path / "last.csv"
    cli("export", node_trace, "--format", "csv", "-o", str(last), "-e", "gpu0", "--start=-0s", check=True)
    frame = load(node_trace, entities="gpu0")
    assert pd.read_csv(last)["time"].tolist() == [frame.index[-1].isoformat().replace("T", " ")]

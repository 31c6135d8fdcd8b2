"""`telemrec replay TRACE --as dcgmi -- COMMAND`: the dcgmi it puts on PATH, read by unmodified consumers
(KempnerPulse 0.5.0's dcgm backend, telemrec's own dcgmi reader) and compared with the trace."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time

import pytest

from telemrec.emulate.dcgmi import DcgmiSettings, install
from telemrec.readers._dmon_parser import DEFAULT_FIELD_IDS, parse_capture

from .conftest import invoke, telemrec, ticks_of, trace_records


def _dcgmi(tmp_path, trace, *args, speed="max", timeout=60, **settings):
    """Run the installed replay dcgmi directly (as COMMAND would find it on PATH)."""
    launcher = install(str(tmp_path), DcgmiSettings(os.path.abspath(trace), speed=speed, **settings))
    return subprocess.run([launcher, *args], capture_output=True, text=True, timeout=timeout)


def _tick_values(ticks):
    return [{rec.entity: rec.values for rec in tick.rows} for tick in ticks]


def test_dmon_prints_the_fake_dcgmis_own_output_back(mig_capture_and_trace):
    """A trace recorded from dmon text gives the same text back, byte for byte: GPU rows
    descending, GPU-I/GPU-CI rows after their GPU, spaces where a MIG entity returns no value,
    N/A for blank values, the header again after the 15th tick."""
    capture, trace = mig_capture_and_trace
    out = telemrec("replay", trace, "--as", "dcgmi", "--speed", "max", "--", "dcgmi", "dmon", "-d", "100").stdout
    assert out == capture
    assert out.count("#Entity") == 2 and "GPU-CI 1" in out


def test_dmon_round_trips_through_the_dcgmi_reader(sample, tmp_path):
    """telemrec's dcgmi reader, recording under the replay dcgmi, writes the original records
    back field for field (values, None, absent fields, entities, order)."""
    original = sample("v2/dcgmi_synthetic")
    copy = tmp_path / "copy.h5"
    telemrec("replay", original, "--as", "dcgmi", "--speed", "max", "--",
             sys.executable, "-m", "telemrec", "record", "--reader", "dcgmi", "--interval", "0.1", "-o", str(copy))
    before, after = trace_records(original), trace_records(copy)
    assert len(after) == len(before) == 236
    assert all((a.entity, a.fields, a.error) == (b.entity, b.fields, b.error) for a, b in zip(before, after))
    assert any(v is None for rec in before for v in rec.fields.values())  # the N/A of the cold tick came back None


def test_mig_trace_round_trips_with_absent_fields(mig_capture_and_trace, tmp_path):
    _, trace = mig_capture_and_trace
    copy = tmp_path / "copy.h5"
    telemrec("replay", trace, "--as", "dcgmi", "--speed", "max", "--",
             sys.executable, "-m", "telemrec", "record", "--reader", "dcgmi", "--interval", "0.05", "-o", str(copy))
    before, after = trace_records(trace), trace_records(copy)
    assert {r.entity for r in before} == {"gpu0", "gpu1", "mig:0:0", "mig:0:0:0", "mig:0:1", "mig:0:1:1"}
    assert [(r.entity, r.fields) for r in after] == [(r.entity, r.fields) for r in before]
    gi = next(r for r in before if r.entity == "mig:0:0")
    assert "DCGM_FI_DEV_BOARD_POWER_WATTS" not in gi.fields  # printed as spaces, read back as absent


def test_dmon_follows_real_time_and_speed(sample, tmp_path):
    """Paced: a tick every -d of real time, showing the trace at start + elapsed x speed."""
    trace = sample("v2/dcgmi_synthetic")
    ticks = ticks_of(trace_records(trace, entities=["gpu0"]))
    power = [t["gpu0"].fields["DCGM_FI_DEV_BOARD_POWER_WATTS"] for t in ticks]
    launcher = install(str(tmp_path), DcgmiSettings(os.path.abspath(trace), speed="5"))
    arrivals, shown = [], []
    with subprocess.Popen([launcher, "dmon", "-e", "155", "-d", "300", "-c", "5", "-i", "0"],
                          stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            if line.startswith("GPU 0"):
                arrivals.append(time.monotonic())
                shown.append(float(line.split()[2]))
        assert proc.wait(timeout=30) == 0
    assert len(shown) == 5
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) >= 0.28, gaps                      # dmon sleeps -d after each tick
    # each tick shows a recorded value, later ones later in the trace: 0.3 s x 5 = 3 recorded ticks apart
    index = [power.index(v) for v in shown]
    steps = [b - a for a, b in zip(index, index[1:])]
    assert all(s >= 2 for s in steps), (index, gaps)
    assert all(s <= round(g * 5 / 0.5) + 1 for s, g in zip(steps, gaps)), (index, gaps)


def test_dmon_count_selection_and_nvml_mapping(sample, tmp_path):
    trace = sample("v2/nvml_synthetic")
    proc = _dcgmi(tmp_path, trace, "dmon", "-e", "155,203,252,1002", "-c", "2", "-i", "gpu:1")
    assert proc.returncode == 0, proc.stderr
    ticks, stream = parse_capture(proc.stdout, (155, 203, 252, 1002))
    assert len(ticks) == 2 and [r.label for r in ticks[0].rows] == [("GPU", 1, None)]
    first = trace_records(trace, entities=["gpu1"])[0].fields
    row = ticks[0].rows[0].values
    assert row["DCGM_FI_DEV_BOARD_POWER_WATTS"] == round(first["power.usage"] / 1000, 3)   # mW -> W
    assert row["DCGM_FI_DEV_GPU_UTIL_RATIO"] == first["utilization.gpu"]
    assert row["DCGM_FI_DEV_FB_USED"] == first["memory.used"] // 2**20                 # bytes -> MiB
    assert row["DCGM_FI_PROF_SM_UTIL_RATIO"] is None                                  # not recorded: N/A


def test_discovery_lists_the_traces_gpus(sample, tmp_path):
    out = _dcgmi(tmp_path, sample("v2/nvml_synthetic"), "discovery", "-l").stdout
    lines = out.splitlines()
    assert lines[0] == "2 GPUs found (Active)."
    assert lines[1] == "+--------+" + "-" * 70 + "+"
    assert lines[2] == "| GPU ID | Device Information" + " " * 51 + "|"
    assert lines[4] == "| 0      | Name: NVIDIA A100-SXM4-40GB" + " " * 42 + "|"
    assert lines[5].startswith("|        | PCI Bus ID: 00000000:07:00.0 ")
    assert lines[6].startswith("|        | Device UUID: GPU-9da72ddb-086e-4839-bcd3-0d1a9f22e78e ")
    assert all(len(line) == 81 for line in lines[1:12]) and lines[12] == "0 NvSwitches found."
    assert "0 NvSwitches found." in lines and "0 CPUs found." in lines
    # a dcgmi trace knows no names: stable placeholders, the same on every run
    placeholders = _dcgmi(tmp_path, sample("v2/dcgmi_synthetic"), "discovery", "-l").stdout
    assert placeholders.splitlines()[0] == "4 GPUs found (Active)." and placeholders.count("Device UUID: GPU-") == 4
    assert placeholders == _dcgmi(tmp_path, sample("v2/dcgmi_synthetic"), "discovery", "-l").stdout


def test_sigint_stops_dmon_with_the_trailer(sample, tmp_path):
    launcher = install(str(tmp_path), DcgmiSettings(os.path.abspath(sample("v2/dcgmi_synthetic")), speed="1"))
    with subprocess.Popen([launcher, "dmon", "-e", "155", "-d", "1000"], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline().startswith("#Entity")
        proc.stdout.readline()
        proc.stdout.readline()  # the first row: dmon now sleeps -d (and, like dcgmi, finishes that sleep)
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=20) == 0
    assert rest.endswith("\n\ndmon was stopped due to receiving a signal\n")


def test_replay_as_reports_bad_use_and_passes_the_exit_status(sample):
    trace = sample("v2/dcgmi_synthetic")
    assert telemrec("replay", trace, "--as", "dcgmi", "--", "sh", "-c", "exit 7", check=False).returncode == 7
    cases = [
        (("replay", trace, "--as", "dcgmi"), "needs the command to run"),
        (("replay", trace, "--as", "nvidia-smi", "--", "true"), "is not a tool"),
        (("replay", trace, "--", "true"), "without --as"),
        (("replay", trace, "--as", "dcgmi", "-o", "x.jsonl", "--", "true"), "apply to JSON lines"),
        (("replay", trace, "--as", "dcgmi", "--", "no-such-command-here"), "command not found"),
        (("replay", sample("v2/psutil_workload"), "--as", "dcgmi", "--", "true"), "holds no GPU records"),
        (("replay", trace, "--as", "dcgmi", "--start", "+1h", "--", "true"), "no record of the selection"),
    ]
    for args, message in cases:
        code, output = invoke(*args)
        assert code == 2 and message in output and "Traceback" not in output, (args, output)


# -- KempnerPulse 0.5.0, unmodified -------------------------------------------------------------------

def _kp_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _check_kp_rows(rows):
    """KempnerPulse's columns against the recorded DCGM fields of each (tick, GPU)."""
    for row, rec in rows:
        f = rec.fields
        assert float(row["power_w"]) == pytest.approx(f["DCGM_FI_DEV_BOARD_POWER_WATTS"], abs=5e-5)
        assert float(row["gpu_util_pct"]) == f["DCGM_FI_DEV_GPU_UTIL_RATIO"]
        assert float(row["mem_used_mib"]) == f["DCGM_FI_DEV_FB_USED"]
        assert float(row["gpu_temp_c"]) == f["DCGM_FI_DEV_GPU_TEMP_CELSIUS"]
        assert float(row["energy_j"]) == pytest.approx(f["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] / 1000, abs=0.051)
        if f["DCGM_FI_PROF_SM_UTIL_RATIO"] is None:
            assert row["sm_active_pct"] == ""
        else:
            assert float(row["sm_active_pct"]) == pytest.approx(100 * f["DCGM_FI_PROF_SM_UTIL_RATIO"], abs=0.006)


def test_kempnerpulse_dcgm_backend_exports_the_traces_values(sample):
    trace = sample("v2/dcgmi_synthetic")
    ticks = ticks_of(trace_records(trace))
    out = telemrec("replay", trace, "--as", "dcgmi", "--speed", "max", "--",
                   sys.executable, "-m", "kempnerpulse", "--backend", "dcgm", "--export", "all").stdout
    rows = _kp_rows(out)
    # KempnerPulse drops dmon's first tick (cold start) and never sees the last (no tick follows it)
    assert len(rows) == 4 * (len(ticks) - 2)
    assert [r["gpu_id"] for r in rows[:4]] == ["0", "1", "2", "3"]
    _check_kp_rows([(row, ticks[1 + i // 4][f"gpu{row['gpu_id']}"]) for i, row in enumerate(rows)])


def test_export_dmon_feeds_kempnerpulses_replay_backend(sample, tmp_path):
    trace = sample("v2/dcgmi_synthetic")
    out = tmp_path / "capture.txt"
    telemrec("export", trace, "--format", "dmon", "-o", str(out))
    text = out.read_text()
    ticks = ticks_of(trace_records(trace))
    parsed, _ = parse_capture(text, DEFAULT_FIELD_IDS)
    assert _tick_values(parsed) == [{e: r.fields for e, r in t.items()} for t in ticks]
    assert text.splitlines()[0].split()[1:] == ["SMCLK", "MMCLK", "MMTMP", "TMPTR", "POWER", "TOTEC", "RPCTR",
                                                "GPUTL", "MCUTL", "FBFRE", "FBUSD", "FBRSV", "NBWLT", "GRACT",
                                                "SMACT", "SMOCC", "TENSO", "DRAMA", "FP64A", "FP32A", "FP16A",
                                                "PCITX", "PCIRX"]  # KempnerPulse's field order
    kp = subprocess.run([sys.executable, "-m", "kempnerpulse", "--backend", "replay", "--source", str(out),
                         "--export", "all"], capture_output=True, text=True, timeout=120, check=True)
    rows = _kp_rows(kp.stdout)
    assert len(rows) == 4 * len(ticks)
    _check_kp_rows([(row, ticks[i // 4][f"gpu{row['gpu_id']}"]) for i, row in enumerate(rows)])


def test_export_dmon_selection_and_errors(sample, tmp_path):
    trace = sample("v2/dcgmi_synthetic")
    out = tmp_path / "two.txt"
    assert invoke("export", trace, "--format", "dmon", "-o", out, "-e", "gpu1", "-f", "DCGM_FI_DEV_FB_*",
                  "--start", "+2s", "--end", "+3s")[0] == 0
    ticks, _ = parse_capture(out.read_text())
    assert len(ticks) == 2 and {r.entity for t in ticks for r in t.rows} == {"gpu1"}
    assert set(ticks[0].rows[0].values) == {"DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_RESERVED"}
    for args, message in [(("-o", "-"), "writes a file"), (("-o", str(tmp_path / "r.txt"), "--rates"), "--rates"),
                          (("-o", str(tmp_path / "l.txt"), "--form", "long"), "--form does not apply")]:
        code, output = invoke("export", trace, "--format", "dmon", *args)
        assert code == 2 and message in output, output
    code, output = invoke("export", sample("v2/psutil_workload"), "--format", "dmon", "-o", tmp_path / "p.txt")
    assert code == 2 and "no GPU records" in output and not list(tmp_path.glob("p.txt*"))


"""Unmodified consumers under `telemrec replay TRACE --as nvml -- COMMAND`: gpustat 1.1.1, nvitop 1.7
(its --once mode and its Python API) and telemrec's own nvml reader, whose recording under the
replay library reproduces the original trace field for field (the round trip)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from .nvml_helpers import SAMPLES, recorded_at, write_nvml_trace
from telemrec.testing.fake_nvml import GIB, DeviceSpec, ProcessSpec
from telemrec.trace import open_trace

pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(
    os.path.dirname(__file__), "..", "..", "telemrec", "emulate", "libnvidia-ml.so.1")) and
    not os.environ.get("TELEMREC_REQUIRE_COMPILED"), reason="replay library not built (no C compiler)")

BIN = os.path.dirname(sys.executable)
MIB = 2**20


def replay(trace, *command, options=(), timeout=120):
    """`telemrec replay TRACE --as nvml OPTIONS -- COMMAND` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "telemrec", "replay", trace, "--as", "nvml", *options, "--",
                           *command], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def live_process():
    """A process that exists while the test runs (gpustat and nvitop look processes up with psutil)."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_gpustat_shows_the_trace(tmp_path, live_process):
    devices = [DeviceSpec(processes=(ProcessSpec(live_process, "compute", 3 * GIB),)),
               DeviceSpec(name="NVIDIA H100 80GB HBM3", memory_total=80 * GIB, power_limit=700_000,
                          unsupported={"nvmlDeviceGetMemoryInfo_v2": 13})]
    trace = write_nvml_trace(str(tmp_path / "gpustat.h5"), devices, ticks=20)
    proc = replay(trace, os.path.join(BIN, "gpustat"), "--json", options=("--speed", "1e-6", "--start", "+6.2s"))
    assert proc.returncode == 0, proc.stderr
    assert "serving 2 GPU(s) (gpu0, gpu1)" in proc.stderr
    shown = json.loads(proc.stdout)
    with open_trace(trace) as t:
        identity = t.manifest["readers"][0]["identity"]
    assert shown["driver_version"] == "550.54.15"
    assert len(shown["gpus"]) == 2
    for gpu, info in zip(shown["gpus"], identity["gpus"]):
        rec = recorded_at(trace, f"gpu{gpu['index']}", 6.2).fields
        assert (gpu["name"], gpu["uuid"]) == (info["name"], info["uuid"])
        assert gpu["temperature.gpu"] == rec["temperature.gpu"]
        assert gpu["utilization.gpu"] == rec["utilization.gpu"]
        assert gpu["power.draw"] == rec["power.usage"] // 1000
        assert gpu["enforced.power.limit"] == rec["power.limit"] // 1000
        assert gpu["memory.used"] == rec["memory.used"] // MIB  # v2 (gpu0) and v1 (gpu1, gpustat's fallback)
        assert gpu["memory.total"] == rec["memory.total"] // MIB
        assert gpu["fan.speed"] == rec["fan.speed"]
    assert [(p["pid"], p["command"], p["gpu_memory_usage"]) for p in shown["gpus"][0]["processes"]] == [
        (live_process, "sleep", 3 * 1024)]
    text = replay(trace, os.path.join(BIN, "gpustat"), "--no-color", options=("--speed", "1e-6", "--start", "+6.2s"))
    assert text.returncode == 0 and "NVIDIA A100-SXM4-40GB" in text.stdout and "NVIDIA H100 80GB HBM3" in text.stdout


NVITOP_API = '''
import json
from nvitop import Device
print(json.dumps([{
    "name": d.name(), "uuid": d.uuid(), "bus_id": d.bus_id(), "memory_used": d.memory_used(),
    "memory_total": d.memory_total(), "util": d.gpu_utilization(), "temperature": d.temperature(),
    "power": d.power_usage(), "limit": d.power_limit(), "fan": d.fan_speed(), "pstate": d.performance_state(),
    "pids": sorted(d.processes()), "mig": d.is_mig_mode_enabled(),
    "migs": [[m.uuid(), m.memory_used(), sorted(m.processes())] for m in d.mig_devices()],
    "sm_clock": d.sm_clock(), "pcie_rx": d.pcie_rx_throughput(),
} for d in Device.all()], default=str))
'''


def test_nvitop_api_and_once_mode(tmp_path, rich_trace):
    proc = replay(rich_trace, sys.executable, "-c", NVITOP_API, options=("--speed", "1e-6", "--start", "+4.2s"))
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    with open_trace(rich_trace) as t:
        identity = t.manifest["readers"][0]["identity"]
    assert [d["name"] for d in shown] == [g["name"] for g in identity["gpus"]]
    for index, (gpu, info) in enumerate(zip(shown, identity["gpus"])):
        rec = recorded_at(rich_trace, f"gpu{index}", 4.2).fields
        assert (gpu["uuid"], gpu["bus_id"]) == (info["uuid"], info["pci_bus_id"])
        assert gpu["temperature"] == rec["temperature.gpu"] and gpu["power"] == rec["power.usage"]
        assert gpu["limit"] == rec["power.limit"] and gpu["sm_clock"] == rec["clocks.sm"]
        assert gpu["pcie_rx"] == rec["pcie.rx"] and gpu["pstate"] == f"P{rec['pstate']}"
        assert gpu["util"] == ("N/A" if rec["utilization.gpu"] is None else rec["utilization.gpu"])
        assert gpu["fan"] == ("N/A" if rec["fan.speed"] is None else rec["fan.speed"])
    assert shown[0]["memory_used"] == recorded_at(rich_trace, "gpu0", 4.2).fields["memory.used"]
    assert shown[1]["memory_used"] == "N/A"  # recorded through v1: nvitop asks v2 only (docs/replay/nvml.md)
    assert shown[0]["mig"] is True and shown[1]["mig"] is False
    assert [m[0] for m in shown[0]["migs"]] == [m["uuid"] for m in identity["gpus"][0]["mig_devices"]]
    assert [m[2] for m in shown[0]["migs"]] == [[5001], [5002]]
    assert shown[0]["pids"] == [5001, 5002] and shown[1]["pids"] == [6001, 6002] and shown[2]["pids"] == []

    # nvitop 1.7.2's --once and TUI fail on a MIG device whose BAR1 size NVML does not tell (a trace does not
    # hold it; docs/replay/nvml.md), so the MIG GPU is left out here
    once = replay(rich_trace, os.path.join(BIN, "nvitop"), "--once",
                  options=("--speed", "1e-6", "--start", "+4.2s", "-e", "gpu1", "-e", "gpu2"))
    assert once.returncode == 0, once.stderr
    rec = recorded_at(rich_trace, "gpu2", 4.2).fields
    for text in ("Driver Version: 550.54.15", "CUDA Driver Version: 12.4", "H100 80GB HBM3", "L40S",
                 "00000000:47:00.0", f"{rec['temperature.gpu']}C", f"{rec['power.usage'] // 1000}W / 350W",
                 f"{rec['fan.speed']}%", f"{rec['utilization.gpu']}%", "6001", "6002"):
        assert text in once.stdout, text


def record_under_replay(trace, out, *, interval, duration, speed="5"):
    """`telemrec record -r nvml` run under `telemrec replay TRACE --as nvml`: the records it wrote."""
    proc = replay(trace, sys.executable, "-m", "telemrec", "record", "-r", "nvml", "-i", str(interval),
                  "-d", str(duration), "-o", out, options=("--speed", speed))
    assert proc.returncode == 0, proc.stderr
    with open_trace(out) as t:
        return list(t.records()), t.manifest["readers"][0]["identity"]


def reads_from(rec, samples) -> bool:
    """Whether ``rec`` is what the nvml reader reads while ``samples`` (consecutive original records of
    its entity) come into effect one after the other: its calls run in turn, so trace time may pass
    a sample boundary between two of them. Each field, in the order the reader reads them, holds the
    value of the same or a later sample than the field before; an error is that of such a sample."""
    j = 0
    for name, value in rec.fields.items():
        j = next((k for k in range(j, len(samples))
                  if name in samples[k].fields and samples[k].fields[name] == value), None)
        if j is None:
            return False
    if rec.error is not None:
        return any(s.error == rec.error for s in samples[j:])
    return set(rec.fields) == set(samples[j].fields) and samples[j].error is None


def match_in_order(replayed, original):
    """Each replayed record reads from original records of its entity (``reads_from``), at an index
    never before the previous match; returns the matched (entity, original index) pairs."""
    by_entity = {}
    for rec in original:
        by_entity.setdefault(rec.entity, []).append(rec)
    position, matched = {}, []
    for rec in replayed:
        series = by_entity[rec.entity]
        start = position.get(rec.entity, 0)
        hit = next((i for i in range(start, len(series)) if reads_from(rec, series[i:i + 2])), None)
        assert hit is not None, f"{rec} matches no original record of {rec.entity} at or after #{start}"
        position[rec.entity] = hit
        matched.append((rec.entity, hit))
    return matched


def test_round_trip_of_the_nvml_reader(tmp_path):
    """`telemrec record -r nvml` under `telemrec replay --as nvml` records the original values field for
    field: every record equals an original record, in order, and most originals come back."""
    trace = os.path.join(SAMPLES, "nvml_synthetic.h5")
    replayed, again = record_under_replay(trace, str(tmp_path / "again.h5"), interval=0.1, duration=5)
    with open_trace(trace) as t:
        original, identity = list(t.records()), t.manifest["readers"][0]["identity"]
    assert {r.entity for r in replayed if "/pid:" not in r.entity} == {r.entity for r in original if "/pid:" not in r.entity}
    matched = match_in_order(replayed, original)
    gpu0 = sorted({i for e, i in matched if e == "gpu0"})
    assert len(gpu0) >= 10 and gpu0[-1] - gpu0[0] >= 10  # 0.5 s samples at 5x, read every 0.1 s for 5 s
    for key in ("driver_version", "nvml_version", "cuda_driver_version", "gpu_count"):
        assert again[key] == identity[key]
    assert [{k: g[k] for k in ("name", "uuid", "pci_bus_id", "minor_number", "memory_total_bytes")} for g in again["gpus"]] == \
        [{k: g[k] for k in ("name", "uuid", "pci_bus_id", "minor_number", "memory_total_bytes")} for g in identity["gpus"]]


def test_round_trip_with_mig_processes_and_a_lost_gpu(tmp_path, rich_trace):
    """The same round trip, timed: each record reads from the original record in effect at the trace
    time of its own timestamp (and the next ones, while its calls run)."""
    from telemrec.emulate.nvml import prepare, run_command

    directory = tmp_path / "replay"
    directory.mkdir()
    speed = 5.0
    anchor = time.monotonic_ns() + 2 * 10**9  # trace time stays 0 until the recorder has started
    prepared = prepare(rich_trace, str(directory), speed=speed, anchor_mono_ns=anchor)
    out = str(tmp_path / "again.h5")
    status = run_command([sys.executable, "-m", "telemrec", "record", "-r", "nvml", "-i", "0.1", "-d", "5.5",
                          "-o", out], prepared.env)
    assert status == 0
    with open_trace(rich_trace) as t:
        original = list(t.records())
    origin = original[0].mono_ns
    with open_trace(out) as t:
        replayed = list(t.records())
    checked = lost = 0
    for rec in replayed:
        if "/pid:" in rec.entity:
            continue
        at = max(rec.mono_ns - anchor, 0) * speed / 1e9
        series = [r for r in original if r.entity == rec.entity]
        now = max((i for i, r in enumerate(series) if r.mono_ns - origin <= at * 1e9), default=0)
        assert reads_from(rec, series[now:now + 3]), (rec, at)  # its calls take a little trace time
        checked += 1
        lost += rec.error is not None
    assert checked > 100 and lost > 0  # gpu1 is lost from 10 s on
    assert match_in_order([r for r in replayed if "/pid:" in r.entity], [r for r in original if "/pid:" in r.entity])
    assert {r.entity for r in replayed if "/pid:" in r.entity} == {r.entity for r in original if "/pid:" in r.entity}


def test_dcgmi_trace_recorded_back_through_nvml(tmp_path):
    """A dcgmi trace replayed as NVML and recorded by the nvml reader: its values, converted."""
    trace = os.path.join(SAMPLES, "dcgmi_synthetic.h5")
    replayed, _ = record_under_replay(trace, str(tmp_path / "as_nvml.h5"), interval=0.2, duration=3, speed="3")
    with open_trace(trace) as t:
        original = [r for r in t.records() if r.entity.startswith("gpu")]
    converted = []
    for r in original:
        f = r.fields
        converted.append(type(r)(r.mono_ns, r.wall_ns, r.entity, {
            "utilization.gpu": f["DCGM_FI_DEV_GPU_UTIL_RATIO"], "utilization.memory": f["DCGM_FI_DEV_MEM_COPY_UTIL"],
            "memory.total": (f["DCGM_FI_DEV_FB_FREE"] + f["DCGM_FI_DEV_FB_USED"] + f["DCGM_FI_DEV_FB_RESERVED"]) * MIB,
            "memory.used": f["DCGM_FI_DEV_FB_USED"] * MIB, "memory.free": f["DCGM_FI_DEV_FB_FREE"] * MIB,
            "memory.reserved": f["DCGM_FI_DEV_FB_RESERVED"] * MIB, "temperature.gpu": f["DCGM_FI_DEV_GPU_TEMP_CELSIUS"],
            "power.usage": round(f["DCGM_FI_DEV_BOARD_POWER_WATTS"] * 1000), "power.limit": None,
            "energy.total": f["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"], "clocks.sm": f["DCGM_FI_DEV_SM_CLOCK"],
            "clocks.mem": f["DCGM_FI_DEV_MEM_CLOCK"], "clocks_event_reasons": None,
            "ecc.corrected.volatile": None, "ecc.uncorrected.volatile": None, "ecc.corrected.aggregate": None,
            "ecc.uncorrected.aggregate": None, "fan.speed": None, "pstate": None,
            "pcie.tx": None if f["DCGM_FI_PROF_PCIE_TX_BYTES"] is None else round(f["DCGM_FI_PROF_PCIE_TX_BYTES"] / 1024),
            "pcie.rx": None if f["DCGM_FI_PROF_PCIE_RX_BYTES"] is None else round(f["DCGM_FI_PROF_PCIE_RX_BYTES"] / 1024),
        }, r.source, r.source_version, r.error))
    assert {r.entity for r in replayed} == {"gpu0", "gpu1", "gpu2", "gpu3"}
    assert len(set(match_in_order(replayed, converted))) >= 20


def test_cli_errors_are_typed_with_hints(tmp_path, cli):
    trace = os.path.join(SAMPLES, "nvml_synthetic.h5")
    cases = [
        (["replay", trace, "--as", "nvml"], "needs the command to run"),
        (["replay", trace, "--as", "nvml", "--speed", "max", "--", "true"], "needs a speed factor"),
        (["replay", trace, "--as", "nvml", "--field", "pstate", "--", "true"], "--field does not apply"),
        (["replay", trace, "--as", "nvml", "-e", "gpu7", "--", "true"], "matches none of the GPUs"),
        (["replay", trace, "--as", "nvm", "--", "true"], "is not a tool telemrec stands in for"),
        (["replay", trace, "--", "true"], "was given without --as"),
        (["replay", os.path.join(SAMPLES, "psutil_workload.h5"), "--as", "nvml", "--", "true"], "holds no GPU records"),
        (["replay", trace, "--as", "nvml", "--", str(tmp_path / "missing")], "cannot start"),
    ]
    for args, message in cases:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "hint:" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_exit_status_entity_selection_and_loader_path(tmp_path, cli):
    trace = os.path.join(SAMPLES, "nvml_synthetic.h5")
    proc = cli("replay", trace, "--as", "nvml", "-e", "gpu1", "--", sys.executable, "-c",
               "import os, sys, pynvml as N; N.nvmlInit(); h = N.nvmlDeviceGetHandleByIndex(0);"
               "print(N.nvmlDeviceGetCount(), N.nvmlDeviceGetUUID(h), os.environ['LD_LIBRARY_PATH'].split(':')[0]);"
               "sys.exit(7)")
    assert proc.returncode == 7
    count, uuid, directory = proc.stdout.split()
    with open_trace(trace) as t:
        assert (int(count), uuid) == (1, t.manifest["readers"][0]["identity"]["gpus"][1]["uuid"])
    assert not os.path.exists(directory)  # the private directory is gone once COMMAND ends


def test_without_the_library_a_typed_error(tmp_path):
    from telemrec.emulate import nvml
    from telemrec.errors import ReplayUnavailableError

    with pytest.raises(ReplayUnavailableError, match="was not built") as info:
        nvml.library_path(str(tmp_path))
    assert "C compiler" in info.value.remediation


def test_a_c_program_linked_with_lnvidia_ml(tmp_path, cli):
    """A C program linked against libnvidia-ml.so.1 (as nvidia-smi-like tools are) loads the replay library."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    source = tmp_path / "probe.c"
    source.write_text('''#include <stdio.h>
typedef void *nvmlDevice_t;
int nvmlInit_v2(void); int nvmlDeviceGetCount_v2(unsigned *);
int nvmlDeviceGetHandleByIndex_v2(unsigned, nvmlDevice_t *); int nvmlDeviceGetPowerUsage(nvmlDevice_t, unsigned *);
int main(void) {
    unsigned n = 0, mw = 0; nvmlDevice_t h;
    if (nvmlInit_v2() || nvmlDeviceGetCount_v2(&n) || nvmlDeviceGetHandleByIndex_v2(0, &h)) return 1;
    int status = nvmlDeviceGetPowerUsage(h, &mw);
    printf("%u %d %u\\n", n, status, mw);
    return 0;
}
''')
    library = os.path.join(os.path.dirname(__file__), "..", "..", "telemrec", "emulate")
    (tmp_path / "lib").mkdir()
    os.symlink(os.path.abspath(os.path.join(library, "libnvidia-ml.so.1")), tmp_path / "lib" / "libnvidia-ml.so")
    subprocess.run([cc, str(source), "-o", str(tmp_path / "probe"), f"-L{tmp_path / 'lib'}", "-lnvidia-ml"], check=True)
    trace = os.path.join(SAMPLES, "nvml_synthetic.h5")
    proc = cli("replay", trace, "--as", "nvml", "--speed", "1e-6", "--start", "+3.2s", "--", str(tmp_path / "probe"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "0", str(recorded_at(trace, "gpu0", 3.2).fields["power.usage"])]


def test_sigterm_reaches_the_command(tmp_path):
    """SIGTERM to telemrec is passed on to COMMAND; telemrec exits as COMMAND did (128 + 15)."""
    import signal

    trace = os.path.join(SAMPLES, "nvml_synthetic.h5")
    proc = subprocess.Popen([sys.executable, "-m", "telemrec", "replay", trace, "--as", "nvml", "--", "sleep", "60"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "serving 2 GPU(s)" in proc.stderr.readline()  # said once COMMAND runs
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()

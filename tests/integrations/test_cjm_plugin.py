"""cjm's real PluginManager (cjm-plugin-system 0.0.46, cjm-infra-plugin-system 0.0.19, Python >= 3.12)
discovers, validates, loads and asks telemrec's two monitors; they answer what telemrec.snapshot says.

cjm runs in .venv-py312 (tests/integrations/cjm_host.py, each plugin in a cjm worker process
over HTTP); the expected answers are computed here, in the suite's own Python.
"""

import json
import math
import os
import subprocess

import pytest

from telemrec.analysis.snapshots import live_snapshot, snapshot
from telemrec.integrations._cjm_sources import payload
from telemrec.trace import open_trace

HOST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cjm_host.py")
S = 10**9


@pytest.fixture(scope="module")
def cjm(py312, sample, tmp_path_factory):
    work = tmp_path_factory.mktemp("cjm")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CJM_", "TELEMREC_CJM"))}
    env["CJM_DATA_DIR"] = str(work / "data")
    # the manifests as a user writes them: the CLI of the Python >= 3.12 environment
    done = subprocess.run([py312, "-m", "telemrec", "integrations", "cjm-manifest", "--trace",
                           sample("nvml_synthetic.h5")], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    done = subprocess.run([py312, HOST, str(work / "out.json"), sample("psutil_workload.h5")], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"written": written, "dir": work / "data" / "manifests",
            **json.loads((work / "out.json").read_text())}


def same(got, want, where="$"):
    """Equal after the JSON trip, floats to 1e-12 (the two Pythons may have different NumPy builds)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (where, got, want)
        for key in want:
            same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (where, got, want)
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (where, got, want)
    else:
        assert got == want, (where, got, want)


def expected(path, status):
    """What telemrec.snapshot says for the instant the monitor reports having served."""
    replay = status["details"]["replay"]
    with open_trace(path) as trace:
        return payload(snapshot(trace, at=replay["at_wall_ns"]), {"replay": replay})


def first_wall_ns(path):
    with open_trace(path) as trace:
        return trace.time_span()[0]


def test_manifests_validate_discover_and_load(cjm):
    assert sorted(os.path.basename(p) for p in cjm["written"]) == ["telemrec-live.json", "telemrec-replay.json"]
    assert all(os.path.dirname(p) == str(cjm["dir"]) for p in cjm["written"])
    assert cjm["validate"] == {name: {"errors": [], "warnings": []}
                               for name in ("telemrec-live.json", "telemrec-replay.json")}
    assert cjm["discovered"] == {
        "telemrec-live": {"category": "Infra", "interface": "cjm_infra_plugin_system.plugin_interface.MonitorPlugin",
                          "module": "telemrec.integrations.cjm", "class": "TelemrecLiveMonitor"},
        "telemrec-replay": {"category": "Infra", "interface": "cjm_infra_plugin_system.plugin_interface.MonitorPlugin",
                            "module": "telemrec.integrations.cjm", "class": "TelemrecReplayMonitor"}}
    assert cjm["loaded"] == {"replay": True, "workload": True, "live": True}
    assert cjm["drift"] == {"telemrec-live": False, "telemrec-replay": False}   # the schema hashes agree


def test_replay_answers_what_snapshot_says(cjm, sample):
    trace = sample("nvml_synthetic.h5")   # the manifest's default trace: the config names no trace
    status, processes = cjm["replay"]["status"], cjm["replay"]["processes"]
    assert cjm["replay_config"] == {"trace": trace, "speed": 0.0, "start": "+10s", "loop": False}
    assert status["details"]["replay"]["at_wall_ns"] == first_wall_ns(trace) + 10 * S
    want_status, want_processes = expected(trace, status)
    same(status, want_status)
    same(processes, want_processes)
    same(cjm["global_stats"], want_status)   # the path cjm's scheduler takes (sysmon_plugin_name)
    # a GPU-only trace: GPU figures, and None (never NaN, never 0) for what it did not measure
    assert status["gpu_type"] == "NVIDIA" and status["gpu_total_memory_mb"] == 81920.0
    assert status["cpu_percent"] is None and status["memory_available_mb"] is None
    assert [p["gpu_index"] for p in processes] == [0, 1] and all(p["gpu_memory_mb"] > 0 for p in processes)


def test_a_second_instance_plays_another_trace_while_cjm_asks(cjm, sample):
    trace = sample("psutil_workload.h5")
    first, second = cjm["workload"]
    a, b = (answer["status"]["details"]["replay"]["at_wall_ns"] for answer in (first, second))
    assert first_wall_ns(trace) + 5 * S <= a
    assert 0.5 * S <= b - a <= 30 * S    # asked 0.6 s apart at speed 1 (a busy machine answers late, never early)
    for answer in (first, second):
        status, processes = answer["status"], answer["processes"]
        want_status, want_processes = expected(trace, status)
        same(status, want_status)
        assert processes == want_processes == []
        assert 0 < status["cpu_percent"] <= 100 and status["memory_total_mb"] > status["memory_used_mb"] > 0
        assert status["gpu_type"] == "None" and status["gpu_total_memory_mb"] == 0.0   # cjm's "no GPU"


def test_live_monitor_answers_for_this_machine(cjm):
    status = cjm["live"]["status"]
    here = live_snapshot(0.05).system
    assert status["memory_total_mb"] == here.memory_total_mb
    assert status["gpu_type"] == here.gpu_type
    assert 0.0 <= status["cpu_percent"] <= 100.0 and 0 < status["memory_available_mb"] <= status["memory_total_mb"]
    assert status["details"]["source"] == "live"
    if here.gpu_type == "None":
        assert cjm["live"]["processes"] == [] and status["gpu_total_memory_mb"] == 0.0
    assert not any(isinstance(v, float) and math.isnan(v) for v in status.values())

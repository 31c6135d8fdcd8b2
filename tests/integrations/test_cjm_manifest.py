"""`telemrec integrations cjm-manifest` in the suite's own Python (cjm itself validates the files in
test_cjm_plugin.py): what it writes, where, and what it refuses."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from telemrec.integrations._cjm_sources import TRACE_ENV

CJM_HERE = sys.version_info >= (3, 12) and subprocess.run(
    [sys.executable, "-c", "import cjm_plugin_system"], capture_output=True).returncode == 0


def read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_writes_both_manifests_with_the_trace_as_the_replay_default(cli, sample, tmp_path):
    trace = sample("nvml_synthetic.h5")
    out = tmp_path / "manifests"
    done = cli("integrations", "cjm-manifest", "--no-check", "--dir", str(out), "--trace", trace)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / "telemrec-live.json"), str(out / "telemrec-replay.json")]
    replay = read(out / "telemrec-replay.json")
    assert replay["format_version"] == "2.0"
    assert replay["install"]["python_path"] == sys.executable and replay["install"]["env_vars"] == {TRACE_ENV: trace}
    code = replay["code"]
    assert (code["module"], code["class"]) == ("telemrec.integrations.cjm", "TelemrecReplayMonitor")
    assert code["interface"] == "cjm_infra_plugin_system.plugin_interface.MonitorPlugin"
    assert code["config_schema"]["properties"]["trace"]["default"] == trace
    canonical = json.dumps(code["config_schema"], sort_keys=True, separators=(",", ":")).encode()
    assert replay["drift_tracking"]["config_schema_hash"] == "sha256:" + hashlib.sha256(canonical).hexdigest()
    live = read(out / "telemrec-live.json")
    assert live["code"]["class"] == "TelemrecLiveMonitor" and live["install"]["env_vars"] == {}
    assert set(live["code"]["config_schema"]["properties"]) == {"interval", "nvml"}
    # again: telemrec's own files are rewritten, without --trace the replay needs one at load
    assert cli("integrations", "cjm-manifest", "--no-check", "--dir", str(out)).returncode == 0
    assert read(out / "telemrec-replay.json")["code"]["config_schema"]["required"] == ["trace"]


def test_default_directory_is_where_cjm_looks(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CJM_DATA_DIR"}
    run = [sys.executable, "-m", "telemrec", "integrations", "cjm-manifest", "--no-check"]
    assert subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, timeout=120).returncode == 0
    assert sorted(os.listdir(tmp_path / ".cjm" / "manifests")) == ["telemrec-live.json", "telemrec-replay.json"]
    env["CJM_DATA_DIR"] = str(tmp_path / "data")
    assert subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, timeout=120).returncode == 0
    assert sorted(os.listdir(tmp_path / "data" / "manifests")) == ["telemrec-live.json", "telemrec-replay.json"]


@pytest.mark.skipif(CJM_HERE, reason="this Python has cjm: the check passes")
def test_refuses_an_interpreter_that_cannot_run_the_monitors(cli, tmp_path):
    done = cli("integrations", "cjm-manifest", "--dir", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot run the telemrec cjm monitors" in done.stderr and "--python" in done.stderr
    assert os.listdir(tmp_path) == []


def test_refuses_to_replace_a_manifest_it_did_not_write(cli, tmp_path):
    (tmp_path / "telemrec-live.json").write_text('{"install": {"installer_version": "cjm-ctl 0.0.46"}}')
    done = cli("integrations", "cjm-manifest", "--no-check", "--dir", str(tmp_path))
    assert done.returncode == 2 and "was not written by telemrec" in done.stderr
    assert "cjm-ctl" in (tmp_path / "telemrec-live.json").read_text()


@pytest.mark.parametrize("trace, words", [("missing.h5", "missing.h5"), ("corrupt/not_hdf5.h5", "not_hdf5.h5")])
def test_refuses_a_trace_it_cannot_play(cli, tmp_path, sample, trace, words):
    path = os.path.join(os.path.dirname(sample("x")), "..", trace)
    done = cli("integrations", "cjm-manifest", "--no-check", "--dir", str(tmp_path), "--trace", path)
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr
    assert os.listdir(tmp_path) == []

"""Trace identity: the manifest's trace_id (what %u expands to), Slurm provenance, output
patterns that never collide across steps, array tasks and requeues, stable fallback ids."""

from __future__ import annotations

import re

import pytest

from telemrec.errors import UsageError
from telemrec.identity import provenance, trace_id, trace_keys
from telemrec.recorder.host import slurm_info
from telemrec.recorder.paths import expand_output_path
from telemrec.trace import open_trace

SLURM = {"SLURM_JOB_ID": "77", "SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "7", "SLURM_STEP_ID": "2",
         "SLURM_RESTART_COUNT": "1", "SLURM_NODEID": "3", "SLURMD_NODENAME": "n3"}


def test_patterns_name_job_array_task_step_requeue_node_and_a_unique_id():
    out = expand_output_path("%j-%A_%a-%s-r%r-n%n-%h-%u.h5", environ=SLURM, hostname="n3.cluster", trace_id="ab" * 16)
    assert out == "77-70_7-2-r1-n3-n3-" + "ab" * 16 + ".h5"
    batch = {"SLURM_JOB_ID": "77"}  # a batch script: no step id, no restart count yet
    assert expand_output_path("%s-r%r-%a", environ=batch) == "batch-r0-noarray"
    assert expand_output_path("%j-%s-r%r-n%n", environ={}) == "nojob-nostep-r0-n0"
    one = expand_output_path("%u-%u", environ={})
    assert re.fullmatch(r"([0-9a-f]{32})-\1", one)           # one id per expansion
    assert one != expand_output_path("%u-%u", environ={})
    with pytest.raises(UsageError, match="%u"):
        expand_output_path("%x", environ={})


def test_requeues_and_steps_get_distinct_paths():
    pattern = "run-%j-%h-%s-r%r.h5"
    runs = [dict(SLURM, SLURM_RESTART_COUNT=r, SLURM_STEP_ID=s) for r in ("0", "1") for s in ("0", "1")]
    paths = {expand_output_path(pattern, environ=env, hostname="n") for env in runs}
    assert len(paths) == 4


def test_slurm_provenance_in_the_manifest():
    info = slurm_info(SLURM)
    assert info["restart_count"] == "1" and info["array_task_id"] == "7" and info["step_id"] == "2"
    assert slurm_info({"SLURM_JOB_ID": "5"}) == {"job_id": "5", "restart_count": "0"}
    assert slurm_info({}) is None


def test_a_recording_carries_its_trace_id_and_percent_u_is_that_id(tmp_path, cli):
    proc = cli("record", "-r", "psutil", "-d", "0.3", "-i", "0.1", "-o", str(tmp_path / "run-%u.h5"),
               env={"SLURM_JOB_ID": "9", "SLURM_RESTART_COUNT": "2"})
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("run-*.h5")
    with open_trace(path) as trace:
        m = trace.manifest
    assert path.name == f"run-{m['trace_id']}.h5"
    assert re.fullmatch(r"[0-9a-f]{32}", m["trace_id"]) and trace_id(m) == m["trace_id"]
    prov = provenance(m)
    assert (prov["job_id"], prov["restart_count"], prov["trace_id_stored"]) == ("9", "2", True)
    assert prov["start_wall_ns"] == m["start"]["wall_ns"]


def test_traces_without_an_id_get_a_stable_one():
    old = {"host": {"hostname": "a"}, "start": {"wall_ns": 1, "mono_ns": 2}, "readers": [{"label": "psutil"}]}
    assert trace_id(old) == trace_id(dict(old)) and re.fullmatch(r"[0-9a-f]{32}", trace_id(old))
    assert trace_id(old) != trace_id({**old, "start": {"wall_ns": 3, "mono_ns": 2}})
    assert trace_id(old) != trace_id({**old, "host": {"hostname": "b"}})
    assert trace_id({**old, "trace_id": "NOT-AN-ID"}) == trace_id(old)
    assert provenance(old)["trace_id_stored"] is False


def test_copies_keep_their_id_but_get_their_own_key():
    assert trace_keys(["a", "b", "a", "a"]) == ["a", "b", "a#2", "a#3"]

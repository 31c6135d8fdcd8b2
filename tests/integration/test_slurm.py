"""The docs/slurm.md recipes under a real Slurm 22.05 (one node on 127.0.0.1, started and stopped here).

Every job is submitted when the cluster starts, so they run side by side (the node advertises 8
CPUs) and the slowest, the one that hits its time limit (1 minute, checked by the controller
every ~30 s), bounds the module at about 1.5 minutes. Each wait has its own bound.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import pytest

from telemrec.identity import trace_keys
from telemrec.trace import open_trace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import KILL_WAIT, SlurmCluster, missing_binaries  # noqa: E402

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(bool(missing_binaries()), reason=f"Slurm/munge not installed: {missing_binaries()}"),
              pytest.mark.skipif(os.geteuid() != 0, reason="slurmd launches jobs as their users: it runs as root")]

RECORD = f"{shlex.quote(sys.executable)} -m telemrec record -r psutil -i 0.5"


@pytest.fixture(scope="module")
def slurm():
    root = Path(tempfile.mkdtemp(prefix="telemrec-slurm-"))
    cluster = SlurmCluster(root, cpus=8)
    try:
        cluster.start()
        out = root / "traces"
        out.mkdir()
        jobs = {
            # the time limit first: it is the slowest
            "timeout": cluster.sbatch(f"#!/bin/bash\nexec {RECORD} -o {out}/limit-%j.h5 -- sleep 600\n", "--time=1"),
            "wrap": cluster.sbatch(f"#!/bin/bash\nexec {RECORD} -o {out}/wrap-%A_%a-%h-%s-r%r.h5 -- sleep 2\n",
                                   "--array=0-1"),
            "srun": cluster.sbatch(
                f"#!/bin/bash\nsrun --ntasks-per-node=1 {RECORD} -o {out}/node-%j-%n-%h-%s.h5 -- sleep 2\n"),
            "beside": cluster.sbatch(  # docs/slurm.md: recorders as their own step, stopped by a signal to it
                "#!/bin/bash\n"
                f"srun --ntasks-per-node=1 --overlap --job-name=telemrec {RECORD} -o {out}/beside-%j-%h-%s.h5 &\n"
                "srun --ntasks=1 sleep 3\n"
                "STEP=$(squeue --steps --noheader --format='%i %j' --jobs \"$SLURM_JOB_ID\" |"
                " awk '$2==\"telemrec\" {print $1}')\n"
                'scancel --signal=TERM "$STEP"\n'
                "wait\n"),
            "cancel": cluster.sbatch(f"#!/bin/bash\nexec {RECORD} -o {out}/cancel-%j.h5 -- sleep 600\n"),
            "requeue": cluster.sbatch(
                "#!/bin/bash\n"
                'if [ "${SLURM_RESTART_COUNT:-0}" = 0 ]; then T=600; else T=2; fi\n'
                f"exec {RECORD} -o {out}/requeue-%j-r%r.h5 -- sleep $T\n", "--requeue"),
        }
        cluster.out, cluster.jobs = out, jobs
        yield cluster
    finally:
        cluster.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _wait_file(path: Path, timeout: float, cluster: SlurmCluster) -> None:
    cluster._until(lambda: path.exists() or Path(f"{path}.journal").exists(), timeout, f"{path} did not appear")


def _clean(path: Path) -> dict:
    with open_trace(path) as trace:
        assert trace.closed_cleanly, trace.manifest.get("stop")
        assert trace.entities(), "the trace holds records"
        return trace.manifest


def test_sbatch_wraps_a_command_and_names_the_trace_by_job_array_task_step_and_requeue(slurm):
    job = slurm.jobs["wrap"]
    for task in ("0", "1"):
        slurm.wait_state(f"{job}_{task}", ("COMPLETED",), 60)
    host = slurm.node
    ids = set()
    for task in ("0", "1"):
        path = slurm.out / f"wrap-{job}_{task}-{host}-batch-r0.h5"
        manifest = _clean(path)
        assert manifest["command"]["exit_status"] == 0
        assert manifest["slurm"]["array_job_id"] == job and manifest["slurm"]["array_task_id"] == task
        assert manifest["slurm"]["restart_count"] == "0" and "step_id" not in manifest["slurm"]
        ids.add(manifest["trace_id"])
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)


def test_one_recorder_per_node_through_srun(slurm):
    job = slurm.jobs["srun"]
    slurm.wait_state(job, ("COMPLETED",), 60)
    path = slurm.out / f"node-{job}-0-{slurm.node}-0.h5"
    manifest = _clean(path)
    assert manifest["slurm"]["step_id"] == "0" and manifest["slurm"]["node_id"] == "0"
    assert manifest["stop"]["reason"] == "command exited" and manifest["command"]["exit_status"] == 0
    assert len(list(slurm.out.glob(f"node-{job}-*.h5"))) == 1  # one node, one recorder


def test_recorders_beside_the_workload_stop_on_a_signal_to_their_step(slurm):
    job = slurm.jobs["beside"]
    slurm.wait_state(job, ("COMPLETED",), 60)
    (path,) = slurm.out.glob(f"beside-{job}-*.h5")
    manifest = _clean(path)
    assert manifest["stop"]["reason"] == "signal SIGTERM" and manifest["slurm"]["step_id"] == path.stem.rsplit("-", 1)[1]


def test_scancel_leaves_a_clean_trace(slurm):
    job = slurm.jobs["cancel"]
    path = slurm.out / f"cancel-{job}.h5"
    _wait_file(path, 60, slurm)
    time.sleep(1.5)  # a few ticks recorded
    slurm.run("scancel", job)
    slurm.wait_state(job, ("CANCELLED",), 30)
    slurm._until(path.exists, KILL_WAIT + 10, f"{path} was not closed")
    manifest = _clean(path)
    assert manifest["stop"]["reason"] == "signal SIGTERM"
    assert manifest["command"]["exit_status"] == -15  # the command got the SIGTERM too


def test_requeue_gets_a_second_trace_that_never_collides(slurm):
    job = slurm.jobs["requeue"]
    first = slurm.out / f"requeue-{job}-r0.h5"
    _wait_file(first, 60, slurm)
    time.sleep(1.5)
    slurm.scontrol("requeue", job)
    # the rerun is held for cred_expire (set to 10 s), then records under restart count 1
    slurm.wait_state(job, ("COMPLETED",), 60)
    second = slurm.out / f"requeue-{job}-r1.h5"
    m0, m1 = _clean(first), _clean(second)
    assert m0["stop"]["reason"] == "signal SIGTERM"
    assert (m0["slurm"]["restart_count"], m1["slurm"]["restart_count"]) == ("0", "1")
    assert m0["slurm"]["job_id"] == m1["slurm"]["job_id"] == job
    assert m0["trace_id"] != m1["trace_id"]
    from telemrec.analysis import load

    frame = load([str(first), str(second)], entities="system", form="long")
    assert list(frame["trace"].cat.categories) == trace_keys([m0["trace_id"], m1["trace_id"]])
    assert frame.groupby("trace", observed=True).size().gt(0).all()  # two traces, neither merged nor dropped


def test_time_limit_ends_the_recording_within_kill_wait(slurm):
    job = slurm.jobs["timeout"]
    info = slurm.wait_state(job, ("TIMEOUT",), 150)
    path = slurm.out / f"limit-{job}.h5"
    # SIGTERM at the limit, SIGKILL KillWait seconds later: a clean trace means it closed in time
    manifest = _clean(path)
    assert manifest["stop"]["reason"] == "signal SIGTERM"
    assert manifest["command"]["exit_status"] == -15
    assert info.get("TimeLimit") == "00:01:00"
    # EndTime (local time, whole seconds) is when the limit fired: the trace was closed before SIGKILL
    fired = time.mktime(time.strptime(info["EndTime"], "%Y-%m-%dT%H:%M:%S"))
    closed = manifest["stop"]["wall_ns"] / 1e9
    assert -1 <= closed - fired <= KILL_WAIT + 1, (closed - fired)

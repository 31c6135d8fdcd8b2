"""Facts about the recording host for the manifest (no secrets: an explicit env allow-list)."""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Mapping

ENV_ALLOW_LIST = (
    "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_STEP_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
    "SLURM_NODEID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_NNODES",
    "SLURM_NTASKS", "SLURM_CPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE",
    "SLURM_CLUSTER_NAME", "SLURM_JOB_PARTITION", "SLURMD_NODENAME", "SLURM_RESTART_COUNT",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
)
"""The only environment variables a manifest may contain: traces get shared, secrets must not travel."""


def allowed_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {key: env[key] for key in ENV_ALLOW_LIST if key in env}


def slurm_info(environ: Mapping[str, str] | None = None) -> dict | None:
    """The job's provenance (a batch script has no SLURM_STEP_ID: no ``step_id``; the first run of
    a job has no SLURM_RESTART_COUNT: ``restart_count`` 0)."""
    env = os.environ if environ is None else environ
    if "SLURM_JOB_ID" not in env:
        return None
    keys = {"job_id": "SLURM_JOB_ID", "step_id": "SLURM_STEP_ID", "node_id": "SLURM_NODEID",
            "proc_id": "SLURM_PROCID", "array_job_id": "SLURM_ARRAY_JOB_ID",
            "array_task_id": "SLURM_ARRAY_TASK_ID", "node_name": "SLURMD_NODENAME",
            "nodelist": "SLURM_JOB_NODELIST", "cluster": "SLURM_CLUSTER_NAME",
            "restart_count": "SLURM_RESTART_COUNT", "job_name": "SLURM_JOB_NAME", "partition": "SLURM_JOB_PARTITION",
            "nnodes": "SLURM_NNODES", "local_id": "SLURM_LOCALID"}
    info = {name: env[var] for name, var in keys.items() if var in env}
    info.setdefault("restart_count", "0")
    return info


def _cpu_model(procfs: str = "/proc") -> str | None:
    try:
        with open(os.path.join(procfs, "cpuinfo"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return platform.processor() or None


def host_info() -> dict:
    import psutil

    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = list(range(os.cpu_count() or 0))
    uname = platform.uname()
    return {
        "hostname": socket.gethostname(),
        "os": uname.system,
        "os_release": _os_release(),
        "kernel": uname.release,
        "machine": uname.machine,
        "cpu_model": _cpu_model(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": affinity,
        "memory_total_bytes": int(psutil.virtual_memory().total),
        "boot_time_wall_ns": int(psutil.boot_time() * 1e9),
        "python": sys.version.split()[0],
    }


def _os_release() -> str | None:
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def library_versions() -> dict:
    import h5py
    import numpy

    return {"h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "numpy": numpy.__version__}

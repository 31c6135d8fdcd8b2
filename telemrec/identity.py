"""Which recording a trace is: its id and its provenance (host, Slurm job, array task, step,
requeue count, start).

A recording gets ``trace_id`` (uuid4, 32 lowercase hex) once, when it starts; the output pattern
``%u`` expands to it. Traces written before ids existed, or imported, get a stable id derived
from what their manifest says about where and when they were recorded, so every read of the same
file (and of a byte copy) gives the same id. A byte copy has the same id as its original: loads
tell files apart by their key (``trace_keys``), never by the id alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Iterable, Mapping

__all__ = ["has_trace_id", "new_trace_id", "provenance", "trace_id", "trace_keys"]

_ID = re.compile(r"^[0-9a-f]{32}$")


def new_trace_id() -> str:
    return uuid.uuid4().hex


def has_trace_id(manifest: Mapping) -> bool:
    stored = manifest.get("trace_id")
    return isinstance(stored, str) and bool(_ID.match(stored))


def trace_id(manifest: Mapping, first_wall_ns: int | None = None) -> str:
    """The manifest's ``trace_id``, or a stable id derived from its provenance and, where given,
    the wall time of its first sample (two runs whose manifests say the same still differ there)."""
    if has_trace_id(manifest):
        return manifest["trace_id"]
    host = manifest.get("host") or {}
    basis = {
        "host": host.get("hostname"), "boot": host.get("boot_time_wall_ns"),
        "start": manifest.get("start"), "slurm": manifest.get("slurm"),
        "argv": (manifest.get("command") or {}).get("argv"),
        "readers": [r.get("label") for r in manifest.get("readers") or []],
        "imported_from": manifest.get("imported_from"), "tags": manifest.get("tags"), "first": first_wall_ns,
    }
    text = json.dumps(basis, sort_keys=True, default=str).encode()
    return hashlib.blake2b(text, digest_size=16, person=b"telemrec-trace").hexdigest()


def provenance(manifest: Mapping, first_wall_ns: int | None = None) -> dict:
    """Where and when the recording ran: one flat dict (strings or None; ``start_wall_ns`` an int)."""
    host = manifest.get("host") or {}
    slurm = manifest.get("slurm") or {}
    env = manifest.get("env") or {}

    def pick(key: str, var: str) -> str | None:
        value = slurm.get(key, env.get(var))
        return None if value is None else str(value)

    return {
        "trace_id": trace_id(manifest, first_wall_ns),
        "trace_id_stored": has_trace_id(manifest),
        "host": host.get("hostname"),
        "job_id": pick("job_id", "SLURM_JOB_ID"),
        "array_job_id": pick("array_job_id", "SLURM_ARRAY_JOB_ID"),
        "array_task_id": pick("array_task_id", "SLURM_ARRAY_TASK_ID"),
        "step_id": pick("step_id", "SLURM_STEP_ID"),
        "node_id": pick("node_id", "SLURM_NODEID"),
        "restart_count": pick("restart_count", "SLURM_RESTART_COUNT"),
        "start_wall_ns": (manifest.get("start") or {}).get("wall_ns"),
    }


def trace_keys(ids: Iterable[str]) -> list[str]:
    """One key per loaded trace: its id, and for the second, third ... file with the same id (a
    copy) the id with ``#2``, ``#3``: two files are always two traces."""
    seen: dict[str, int] = {}
    out = []
    for tid in ids:
        n = seen[tid] = seen.get(tid, 0) + 1
        out.append(tid if n == 1 else f"{tid}#{n}")
    return out

"""Output path patterns: one command line that works on every node, step, array task and requeue
of a job."""

from __future__ import annotations

import os
import socket
import time

from telemrec.errors import UsageError

PATTERNS = {
    "h": "short host name",
    "j": "Slurm job id (nojob outside Slurm)",
    "A": "Slurm array job id (noarray outside an array)",
    "a": "Slurm array task id (noarray outside an array)",
    "s": "Slurm step id (batch in a batch script, nostep outside Slurm)",
    "r": "requeue count, SLURM_RESTART_COUNT (0 on the first run)",
    "n": "node index within the job, SLURM_NODEID (0 outside Slurm)",
    "u": "the recording's unique trace_id (32 hex digits)",
    "t": "UTC start time as 20261122T043015Z",
    "%": "a literal %",
}


def _step(env) -> str:
    if "SLURM_STEP_ID" in env:
        return env["SLURM_STEP_ID"]
    return "batch" if "SLURM_JOB_ID" in env else "nostep"


def expand_output_path(pattern: str, *, wall_ns: int | None = None, environ=None, hostname: str | None = None,
                       trace_id: str | None = None) -> str:
    """Expand the ``PATTERNS`` codes (``%h``, ``%j``, ``%A``, ``%a``, ``%s``, ``%r``, ``%n``, ``%u``,
    ``%t``, ``%%``); ``trace_id`` is what ``%u`` gives (the recorder passes the manifest's)."""
    env = os.environ if environ is None else environ
    host = (hostname or socket.gethostname()).split(".")[0]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime((time.time_ns() if wall_ns is None else wall_ns) / 1e9))
    values = {
        "h": lambda: host,
        "j": lambda: env.get("SLURM_JOB_ID", "nojob"),
        "A": lambda: env.get("SLURM_ARRAY_JOB_ID", "noarray"),
        "a": lambda: env.get("SLURM_ARRAY_TASK_ID", "noarray"),
        "s": lambda: _step(env),
        "r": lambda: env.get("SLURM_RESTART_COUNT", "0"),
        "n": lambda: env.get("SLURM_NODEID", "0"),
        "u": lambda: trace_id,
        "t": lambda: stamp,
        "%": lambda: "%",
    }
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        code = pattern[i + 1:i + 2]
        value = values[code]() if code in values else None
        if code == "u" and value is None:
            from telemrec.identity import new_trace_id

            value = trace_id = new_trace_id()
        if value is None:
            known = "; ".join(f"%{c} {what}" for c, what in PATTERNS.items())
            raise UsageError(f"unknown pattern %{code} in output path {pattern!r}", f"Patterns (docs/slurm.md): {known}.")
        out.append(str(value))
        i += 2
    return "".join(out)

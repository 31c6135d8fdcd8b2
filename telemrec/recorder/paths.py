"""Output path patterns: one command line that works on every node of a job."""

from __future__ import annotations

import os
import socket
import time

from telemrec.errors import UsageError


def expand_output_path(pattern: str, *, wall_ns: int | None = None, environ=None, hostname: str | None = None) -> str:
    """Expand %h (short host name), %j (Slurm job id, 'nojob' outside Slurm), %t (UTC start time
    as 20261122T043015Z) and %% (a literal %)."""
    env = os.environ if environ is None else environ
    host = (hostname or socket.gethostname()).split(".")[0]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime((time.time_ns() if wall_ns is None else wall_ns) / 1e9))
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        code = pattern[i + 1:i + 2]
        if code == "h":
            out.append(host)
        elif code == "j":
            out.append(env.get("SLURM_JOB_ID", "nojob"))
        elif code == "t":
            out.append(stamp)
        elif code == "%":
            out.append("%")
        else:
            raise UsageError(f"unknown pattern %{code} in output path {pattern!r}",
                             "Use %h (host), %j (Slurm job id), %t (start time) or %% (a literal %).")
        i += 2
    return "".join(out)

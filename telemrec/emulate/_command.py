"""Run the consumer command of ``telemrec replay --as ...`` and hand back its exit status.

The command inherits the terminal (stdin, stdout, stderr) and telemrec's process group,
so Ctrl-C reaches it directly (telemrec ignores SIGINT meanwhile rather than send a
second one); SIGTERM and SIGHUP sent to telemrec are passed on. telemrec waits for the
command, so stopping the pair stops the consumer the way it expects to be stopped. The status is
the command's, 128+N for a command killed by signal N (as a shell reports it); a command that
cannot be found or started is a ``UsageError``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Mapping, Sequence

from telemrec.errors import UsageError

__all__ = ["run_command"]

_FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def run_command(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``argv`` with ``env`` (PATH looked up in it) and return its exit status."""
    if not argv:
        raise UsageError("no command to run", "Put the command after --, e.g. "
                         "telemrec replay run.h5 --as dcgmi -- dcgmi dmon -e 155 -c 5")
    exe = shutil.which(argv[0], path=env.get("PATH")) if os.sep not in argv[0] else argv[0]
    if exe is None:
        raise UsageError(f"command not found: {argv[0]}", "Check the command after -- (it is looked up on PATH).")
    try:
        proc = subprocess.Popen([exe, *argv[1:]], env=dict(env))
    except PermissionError as exc:
        raise UsageError(f"cannot run {argv[0]}: {exc.strerror or exc}", "Make the command executable.") from exc
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]}: {exc.strerror or exc}", "Check the command after --.") from exc

    def forward(signum, frame):  # noqa: ARG001
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        status = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - status if status < 0 else status

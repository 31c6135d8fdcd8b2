"""The wrapped command of ``telemrec record -- COMMAND``: started held at a gate, released once
everything else is ready.

The process exists (so its pid can be handed to the psutil reader) but has not executed
the user's program yet: a tiny Python gate waits for ``go`` on a pipe, then ``exec``s the
command in the same process (same pid). If opening a reader or the trace fails, the gate
is killed and the command never ran; if telemrec dies first, the pipe closes and the gate
exits without running it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from typing import Sequence

from telemrec.errors import UsageError

GATE_EXIT = 125
_GATE = (
    "import os,sys\n"
    "fd=int(sys.argv[1])\n"
    "go=os.read(fd,2)\n"
    "os.close(fd)\n"
    f"if go!=b'go': os._exit({GATE_EXIT})\n"
    "try:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "except OSError as e:\n"
    "    sys.stderr.write(f'telemrec: cannot start {sys.argv[2]!r}: {e.strerror}\\n')\n"
    "    os._exit(127)\n"
)


def check_executable(argv: Sequence[str]) -> str:
    """The path the command would run, or a UsageError saying why it cannot start."""
    if not argv or not argv[0]:
        raise UsageError("the command after `--` is empty", "Write the command after `--`, e.g. -- python train.py.")
    name = argv[0]
    if os.sep in name:
        if os.path.isdir(name):
            raise UsageError(f"cannot start {name!r}: it is a directory", "Give the program to run after `--`.")
        if not os.path.exists(name):
            raise UsageError(f"cannot start {name!r}: no such file", "Check the command after `--`.")
        if not os.access(name, os.X_OK):
            raise UsageError(f"cannot start {name!r}: not executable", f"chmod +x {name}, or run it through its interpreter.")
        return name
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"cannot start {name!r}: not found on PATH", "Check the command after `--` and that it is on PATH.")
    return found


class Command:
    """The user's command, held at the gate until ``release()``."""

    def __init__(self, argv: Sequence[str]):
        self.argv = list(argv)
        check_executable(self.argv)
        read_end, self._go = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _GATE, str(read_end), *self.argv],
                                         pass_fds=(read_end,))
        except OSError as exc:
            os.close(self._go)
            raise UsageError(f"cannot start {self.argv[0]!r}: {exc.strerror}", "Check the command after `--`.") from exc
        finally:
            os.close(read_end)
        self.released = False
        self.signalled: list[int] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> None:
        """Let the command run (exec in the same process)."""
        try:
            os.write(self._go, b"go")
        finally:
            os.close(self._go)
        self.released = True

    def abort(self) -> None:
        """Kill the gate before the command ever ran."""
        if not self.released:
            os.close(self._go)
            self.released = True  # the pipe is closed: nothing more to release
        self.proc.kill()
        self.proc.wait()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` if the command still runs (safe from a signal handler: one kill(2))."""
        if self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, signum)
                self.signalled.append(signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def end(self, grace: float) -> int:
        """SIGTERM (unless it already had one), up to ``grace`` seconds to exit, then SIGKILL; the exit status."""
        if self.alive():
            if signal.SIGTERM not in self.signalled:
                self.signal(signal.SIGTERM)
            if self.wait(grace) is None:
                self.signal(signal.SIGKILL)
        return self.proc.wait()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

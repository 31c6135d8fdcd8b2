"""The wrapped command of ``telemrec record -- COMMAND``: started held at a gate, released once
everything else is ready.

The process exists (so its pid can be handed to the psutil reader) but has not executed
the user's program yet: a tiny Python gate waits for ``go`` on a pipe, then ``exec``s the
command in the same process (same pid). If opening a reader or the trace fails, the gate
is killed and the command never ran; if telemrec dies first, the pipe closes and the gate
exits without running it.

Once released, the command must not outlive telemrec: a recorder that is SIGKILLed (by hand,
by the OOM killer) can no longer stop it, and it would run on under init. A watchdog
(``_watchdog.py``), a second tiny Python process started with the gate, holds the read end of
a pipe only the recorder writes: when the recorder ends the normal way it writes ``x`` once
the command has been reaped, and the watchdog exits; when the recorder dies the pipe reads
end-of-file and the watchdog does what the recorder would have done on SIGTERM: SIGTERM to
the command, up to ``grace`` seconds to exit, then SIGKILL. It addresses the command through a pidfd the
recorder opened while the command was its unreaped child, so a reused pid is never
signalled. PR_SET_PDEATHSIG alone could send one signal only: SIGKILL would deny the
command the grace the recorder promises, SIGTERM could be ignored for good.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from typing import Sequence

from telemrec.errors import UsageError

_WATCHDOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_watchdog.py")
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
    """The user's command, held at the gate until ``release()``, watched so that it ends (SIGTERM,
    ``grace`` seconds, SIGKILL) if telemrec dies without stopping it; ``close()`` once done."""

    def __init__(self, argv: Sequence[str], grace: float):
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
        self._lock = threading.Lock()
        try:
            self._watchdog, self._alarm = _start_watchdog(self.proc.pid, grace)
        except OSError as exc:
            self.abort()
            raise UsageError(f"cannot start the watchdog of {self.argv[0]!r}: {exc.strerror}",
                             "The system is out of processes or memory; try again.") from exc

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
        self.close()

    def close(self) -> None:
        """Stand the watchdog down: the command has been reaped (or is left to the caller)."""
        with self._lock:
            alarm, self._alarm = getattr(self, "_alarm", None), None
        if alarm is None:
            return
        try:
            os.write(alarm, b"x")
        except OSError:  # the watchdog is gone already
            pass
        finally:
            os.close(alarm)
        try:
            self._watchdog.wait(5)
        except subprocess.TimeoutExpired:  # cannot happen unless stopped (SIGSTOP): leave it no work
            self._watchdog.kill()
            self._watchdog.wait()

    def alive(self) -> bool:
        return self.proc.poll() is None  # no close() here: signal handlers call this

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
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.close()
        return status

    def end(self, grace: float) -> int:
        """SIGTERM (unless it already had one), up to ``grace`` seconds to exit, then SIGKILL; the exit status."""
        if self.alive():
            if signal.SIGTERM not in self.signalled:
                self.signal(signal.SIGTERM)
            if self.wait(grace) is None:
                self.signal(signal.SIGKILL)
        return self.wait()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


def _start_watchdog(pid: int, grace: float) -> tuple[subprocess.Popen, int]:
    """The watchdog process and the write end of its pipe (see the module's docstring)."""
    try:
        pidfd = os.pidfd_open(pid)  # the gate is our unreaped child: this is the right process
    except (AttributeError, OSError):  # Python < 3.9, Linux < 5.3, another OS: the pid will do
        pidfd = -1
    read_end, alarm = os.pipe()
    try:
        fds = (read_end,) if pidfd < 0 else (read_end, pidfd)
        proc = subprocess.Popen([sys.executable, "-I", "-S", _WATCHDOG, str(read_end), str(pidfd), str(pid),
                                 repr(float(grace))], pass_fds=fds, stdin=subprocess.DEVNULL)
    except BaseException:
        os.close(alarm)
        raise
    finally:
        os.close(read_end)
        if pidfd >= 0:
            os.close(pidfd)
    return proc, alarm

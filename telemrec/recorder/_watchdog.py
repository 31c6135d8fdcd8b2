"""The watchdog of a wrapped command (see ``command.py``): run as a script by the recorder,
``python -I -S _watchdog.py FD PIDFD PID GRACE``, stdlib only.

It waits on the read end ``FD`` of a pipe that only the recorder writes. ``x`` means the
recorder has reaped the command itself: nothing to do. End-of-file means the recorder died:
SIGTERM to the command, up to ``GRACE`` seconds to exit, then SIGKILL, as the recorder
itself does on SIGTERM. ``PIDFD`` (-1 where the kernel has none) names the command beyond
doubt; ``PID`` is the fallback.
"""

import os
import select
import signal
import sys
import time


def main(args: list[str]) -> int:
    # a terminal's Ctrl-C or a job-wide SIGTERM is for the recorder and the command; this
    # process must outlive the recorder to do its work
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    fd, pidfd, pid, grace = int(args[0]), int(args[1]), int(args[2]), float(args[3])
    if os.read(fd, 1):
        return 0

    def send(sig: int) -> None:
        try:
            if pidfd >= 0:
                signal.pidfd_send_signal(pidfd, sig)
            else:
                os.kill(pid, sig)
        except OSError:  # exited already
            pass

    def gone() -> bool:
        if pidfd >= 0:  # readable once the process has exited
            return bool(select.select([pidfd], [], [], 0)[0])
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except (OSError, IndexError):
            return True

    send(signal.SIGTERM)
    end = time.monotonic() + grace
    while not gone() and time.monotonic() < end:
        time.sleep(0.02)
    if not gone():
        send(signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What ``telemrec record`` tells its user while it runs (stderr).

On a terminal: a progress line rewritten in place, warnings printed above it, and while
stopping, what is being written and how far. Piped (a Slurm log, CI): no progress line,
each warning on its own line, and a one-line summary at the end.

Warnings say what a user must know while there is still time to act: a reader whose
records carry errors (an exporter that cannot be reached), a reader that failed, and
ticks missed because reading takes longer than the interval.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

MISSED_WARN_EVERY = 60.0
"""Seconds between two missed-tick warnings of one reader (the first comes at once)."""


class Console:
    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        if tty is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.quiet = quiet
        self._lock = threading.Lock()
        self._line = False  # a progress line is on the screen
        self._warned: dict[str, tuple[int, int]] = {}  # label -> (error records, reader errors) already reported
        self._missed: dict[str, tuple[int, float]] = {}  # label -> (missed ticks reported, when)

    # -- output --------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: recording goes on
                pass

    def status(self, text: str) -> None:
        """The line rewritten in place (terminal only)."""
        if self.tty and not self.quiet:
            self._write(f"\r\033[K{text}")
            self._line = True

    def line(self, text: str) -> None:
        """A line that stays (above the progress line on a terminal)."""
        self._write(("\r\033[K" if self._line else "") + text + "\n")
        self._line = False

    def warn(self, text: str) -> None:
        self.line(f"telemrec: warning: {text}")

    def clear(self) -> None:
        if self._line:
            self._write("\r\033[K")
            self._line = False

    # -- while recording -----------------------------------------------------------------------
    def progress(self, stats, elapsed: float, bytes_written: int) -> None:
        errors = stats.error_records + stats.reader_errors
        self.status(f"recording {elapsed:8.1f}s  ticks {stats.ticks}  missed {stats.missed_ticks}  "
                    f"late {stats.late_ticks}  records {stats.records}"
                    + (f"  errors {errors}" if errors else "") + f"  {bytes_written / 1e6:.1f} MB")

    def check(self, stats, interval: float, now: float | None = None) -> None:
        """Warn about what changed since the last check: errors and missed ticks, per reader."""
        now = time.monotonic() if now is None else now
        for label, c in list(stats.readers.items()):
            seen_records, seen_failures = self._warned.get(label, (0, 0))
            if c.error_records and not seen_records:
                self.warn(f"{label}: records carry errors ({c.last_error}); the trace keeps them as error records "
                          "(`telemrec info` counts them)")
            if c.reader_errors and not seen_failures:
                self.warn(f"{label}: read failed ({c.last_error}); recording goes on")
            self._warned[label] = (max(seen_records, c.error_records), max(seen_failures, c.reader_errors))
            reported, when = self._missed.get(label, (0, -MISSED_WARN_EVERY))
            if c.missed_ticks > reported and now - when >= MISSED_WARN_EVERY:
                total = c.ticks + c.missed_ticks
                slow = (f"; its slowest read took {c.read_seconds:.3g} s" if c.read_seconds > interval else "")
                self.warn(f"{label}: {c.missed_ticks} of {total} ticks missed so far at --interval {interval:g} s"
                          f"{slow}; a longer --interval keeps every tick")
                self._missed[label] = (c.missed_ticks, now)

    @contextmanager
    def phase(self, describe: Callable[[], str], every: float = 0.25) -> Iterator[None]:
        """Show ``describe()`` and the seconds spent, refreshed, while the body runs (terminal only)."""
        if not self.tty or self.quiet:
            yield
            return
        done = threading.Event()
        start = time.monotonic()

        def refresh() -> None:
            while True:
                self.status(f"{describe()}  {time.monotonic() - start:.1f}s")
                if done.wait(every):
                    return

        thread = threading.Thread(target=refresh, name="telemrec-console", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def summary(self, text: str) -> None:
        if not self.quiet:
            self.line(text)
        else:
            self.clear()

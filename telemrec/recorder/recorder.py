"""The recorder: readers sampled on a fixed monotonic grid, written through a bounded queue.

Each reader samples in its own thread, so a slow reader cannot delay another; the
writer thread is the only one that touches the disk, so a stalled disk cannot delay
sampling. What the bounded queue cannot take is counted (``dropped_records``) and
reported, never silently lost.
"""

from __future__ import annotations

import collections
import gc
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from telemrec.errors import ReaderError, TelemrecError, TraceWriteError
from telemrec.readers.base import BaseReader
from telemrec.record import ReaderConfig
from telemrec.recorder.redact import redact_reader_info
from telemrec.trace.v1 import TICK_LATE, TICK_MISSED, TICK_OK
from telemrec.trace.writer import TraceWriter


@dataclass
class ReaderSlot:
    label: str
    reader: BaseReader
    config: ReaderConfig


@dataclass
class ReaderCounts:
    """One reader's share of the stats, for live reporting (which reader misses ticks or errs)."""

    ticks: int = 0
    missed_ticks: int = 0
    error_records: int = 0
    reader_errors: int = 0
    last_error: str = ""
    read_seconds: float = 0.0  # the longest read so far


@dataclass
class RecorderStats:
    ticks: int = 0
    late_ticks: int = 0
    missed_ticks: int = 0
    records: int = 0
    values: int = 0
    dropped_records: int = 0
    dropped_ticks: int = 0
    reader_errors: int = 0
    flushes: int = 0
    error_records: int = 0
    errors: list[str] = field(default_factory=list)
    readers: dict[str, ReaderCounts] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "late_ticks": self.late_ticks, "missed_ticks": self.missed_ticks,
                "records": self.records, "values": self.values, "dropped_records": self.dropped_records, "dropped_ticks": self.dropped_ticks,
                "reader_errors": self.reader_errors, "error_records": self.error_records, "flushes": self.flushes}


class Recorder:
    """Runs readers into a TraceWriter until stopped, the duration ends or every reader is exhausted."""

    def __init__(self, slots: list[ReaderSlot], writer: TraceWriter, *, interval: float,
                 flush_every: float = 5.0, queue_limit: int = 200_000, late_tolerance: float = 0.25):
        self.slots = slots
        self.writer = writer
        self.interval_ns = int(interval * 1e9)
        self.flush_every = flush_every
        self.late_ns = int(self.interval_ns * late_tolerance)
        self.stats = RecorderStats()
        # batches for the writer: a deque (appends and pops are atomic), bounded by hand; a Queue's
        # locks and condition cost a sampling tick ~10-20 us more CPU, cold
        self._queue: collections.deque = collections.deque()
        self._queue_limit = max(1, queue_limit)
        self._ticks: collections.deque = collections.deque()
        self._tick_limit = max(queue_limit, 100_000)
        self._stop = threading.Event()
        self._gate = _StopGate()  # what the sampling threads sleep on between ticks
        self._done = threading.Event()  # set on stop(), when every reader ended, or on a write error
        # Each wake of a thread costs the others a GIL hand-over (~0.1 ms of CPU on a busy machine), so
        # the main thread sleeps until something needs it (``nudge``), and the writer until a flush is
        # due, a stop, or enough records are queued that holding them longer would cost memory.
        self._wake = threading.Event()
        self._drain = threading.Event()
        self._queued_records = 0
        self._queued_batches = 0
        self._drain_records = 20_000
        self._drain_batches = max(1, queue_limit // 2)  # long before the queue is full and batches dropped
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._writer_thread: threading.Thread | None = None
        self._live = 0
        self.write_error: TelemrecError | None = None
        self._caps_written: dict[str, dict] = {}

    # -- control -------------------------------------------------------------------------
    def start(self) -> None:
        # a sampling thread waiting for the GIL while the writer encodes waits up to the switch
        # interval (5 ms by default) each time it comes back from a read: at 100 Hz that is half a
        # tick. A twentieth of the interval bounds it; restored by join().
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, max(1e-4, self.interval_ns / 1e9 / 20)))
        # Each tick allocates thousands of short-lived, acyclic objects (records, field dicts), freed
        # by reference counting; at the default thresholds they set off a full collection every few
        # dozen ticks, scanning every object the process holds, in whichever thread allocates: 25-30 ms
        # inside a sampling tick. What exists at start-up is frozen out of the scans, and collections
        # come a hundred times less often. Restored by join().
        self._gc = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(max(self._gc[0], 70_000), self._gc[1], max(self._gc[2], 100))
        self._t0 = time.monotonic_ns()
        self._live = len(self.slots)
        for slot in self.slots:
            self.stats.readers[slot.label] = ReaderCounts()
        for slot in self.slots:
            t = threading.Thread(target=self._sample_loop, args=(slot,), name=f"telemrec-{slot.label}", daemon=True)
            self._threads.append(t)
        self._writer_thread = threading.Thread(target=self._write_loop, name="telemrec-writer", daemon=True)
        self._writer_thread.start()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._gate.open()
        self._done.set()
        self._wake.set()

    def nudge(self) -> None:
        """Wake wait() now (a signal arrived: there is something to say or to check)."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def readers_done(self) -> bool:
        return self._live == 0

    @property
    def queued(self) -> int:
        """Batches sampled but not yet handed to the writer (what stopping still has to write)."""
        return len(self._queue)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until stop(), every reader ended, the writer failed (True), nudge() or the timeout."""
        if not self._done.is_set() and self._wake.wait(timeout):
            self._wake.clear()  # before the caller looks at the state: a later nudge is not lost
        return self._done.is_set()

    def join(self) -> None:
        """Stop sampling, then drain the queue into the writer and flush."""
        self._stop.set()
        self._gate.open()
        for t in self._threads:
            t.join(timeout=max(5.0, 3 * self.interval_ns / 1e9))
        self._queue.append(("done", None, None))
        self._drain.set()
        if getattr(self, "_switch", None) is not None:
            sys.setswitchinterval(self._switch)
            gc.set_threshold(*self._gc)
            gc.unfreeze()
        if self._writer_thread is not None:
            self._writer_thread.join()

    # -- sampling ------------------------------------------------------------------------
    def _sample_loop(self, slot: ReaderSlot) -> None:
        interval = self.interval_ns
        tick = 0
        scheduled = self._t0
        counts = self.stats.readers[slot.label]
        try:
            while not self._stop.is_set():
                start = time.monotonic_ns()
                start_wall = time.time_ns()
                cpu0 = time.thread_time_ns()
                try:
                    batch = slot.reader.read()
                except ReaderError as exc:
                    self._note_error(f"{slot.label}: {exc.message}")
                    batch = []
                    with self._lock:
                        self.stats.reader_errors += 1
                        counts.reader_errors += 1
                        counts.last_error = exc.message
                end = time.monotonic_ns()
                if batch is None:
                    return
                failed = [rec for rec in batch if rec.error]
                status = TICK_LATE if start - scheduled > self.late_ns else TICK_OK
                queued = self._enqueue(("rec", slot.label, batch))
                self._enqueue_meta(("tick", slot.label, {
                    "tick": tick, "scheduled_mono_ns": scheduled, "start_mono_ns": start, "end_mono_ns": end,
                    "start_wall_ns": start_wall, "status": status, "records": len(batch),
                    "cpu_ns": time.thread_time_ns() - cpu0}))
                with self._lock:
                    self.stats.records += queued
                    self.stats.ticks += 1
                    self.stats.late_ticks += status == TICK_LATE
                    counts.ticks += 1
                    counts.read_seconds = max(counts.read_seconds, (end - start) / 1e9)
                    if failed:
                        self.stats.error_records += len(failed)
                        counts.error_records += len(failed)
                        counts.last_error = f"{failed[-1].entity}: {failed[-1].error}"
                # the next grid point still ahead; every point skipped is a missed tick, recorded as such
                tick += 1
                scheduled += interval
                now = time.monotonic_ns()
                while scheduled + self.late_ns < now:
                    self._enqueue_meta(("tick", slot.label, {
                        "tick": tick, "scheduled_mono_ns": scheduled, "start_mono_ns": None, "end_mono_ns": None,
                        "start_wall_ns": None, "status": TICK_MISSED, "records": 0, "cpu_ns": None}))
                    with self._lock:
                        self.stats.missed_ticks += 1
                        counts.missed_ticks += 1
                    tick += 1
                    scheduled += interval
                delay = scheduled - time.monotonic_ns()
                if delay > 0 and self._gate.wait(delay / 1e9):
                    return
        except Exception as exc:  # a reader bug must not kill the recording of the others
            self._note_error(f"{slot.label}: reader stopped: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._live -= 1
                if self._live == 0:
                    self._done.set()
                    self._wake.set()

    def _enqueue(self, item) -> int:
        """Queue a batch for the writer; how many records were queued (0: the queue is full)."""
        n = len(item[2])
        if len(self._queue) >= self._queue_limit:
            with self._lock:
                self.stats.dropped_records += n
            return 0
        self._queue.append(item)
        # approximate across readers' threads: they only pace the writer
        self._queued_records += n
        self._queued_batches += 1
        if self._queued_records >= self._drain_records or self._queued_batches >= self._drain_batches:
            self._drain.set()
        return n

    def _enqueue_meta(self, item) -> None:
        # tick rows are small and must never block sampling: a separate deque, bounded, overflow counted
        if len(self._ticks) >= self._tick_limit:
            with self._lock:
                self.stats.dropped_ticks += 1
            return
        self._ticks.append(item)

    def _note_error(self, message: str) -> None:
        with self._lock:
            if len(self.stats.errors) < 100:
                self.stats.errors.append(message)

    # -- writing -------------------------------------------------------------------------
    def _write_loop(self) -> None:
        _lower_priority(WRITER_NICE)
        writer = self.writer
        ticks: dict[str, list] = {}
        next_flush = time.monotonic() + self.flush_every
        done = False
        while not done:
            if self._drain.wait(max(0.01, next_flush - time.monotonic())):
                self._drain.clear()  # before draining: what is queued meanwhile is taken, or wakes it again
            self._queued_records = self._queued_batches = 0
            try:
                while True:
                    try:
                        kind, label, payload = self._queue.popleft()
                    except IndexError:
                        break
                    if kind == "rec":
                        before = writer.values  # the writer counts them as it takes them
                        writer.write(payload)
                        with self._lock:
                            self.stats.values += writer.values - before
                    elif kind == "done":
                        done = True
                if done or time.monotonic() >= next_flush:
                    self._flush(ticks)
                    next_flush = time.monotonic() + self.flush_every
            except TraceWriteError as exc:
                self.write_error = exc
                self.stop()
                return

    def _flush(self, ticks: dict[str, list]) -> None:
        while self._ticks:
            _, label, row = self._ticks.popleft()
            ticks.setdefault(label, []).append(row)
        for label, rows in ticks.items():
            self.writer.write_ticks(label, rows)
        ticks.clear()
        for slot in self.slots:
            self._write_reader_info(slot)
        self.writer.flush()
        with self._lock:
            self.stats.flushes += 1

    def _write_reader_info(self, slot: ReaderSlot) -> None:
        info = reader_info(slot)
        if self._caps_written.get(slot.label) != info:
            self.writer.write_reader(info)
            self._caps_written[slot.label] = info


class _StopGate:
    """A lock held until the recorder stops: a sampling thread sleeps between ticks acquiring it with
    a timeout. An Event's wait (a Condition: a lock allocated, queued and dropped each time) costs a
    wake ~25 us more CPU, ~1 % of a tick's work, measured on a 2-core VM."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._guard = threading.Lock()
        self._open = False

    def open(self) -> None:
        with self._guard:
            if not self._open:
                self._open = True
                self._lock.release()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True once the gate is open (at once if it is)."""
        if self._lock.acquire(True, timeout):
            self._lock.release()  # the other sampling threads pass too
            return True
        return self._open


# The writer has seconds of slack (until the next flush); a tick has a fraction of its interval.
# Where both want a CPU, the kernel runs the sampling threads first (raising a thread's nice value
# needs no privilege).
WRITER_NICE = 5


def _lower_priority(by: int) -> None:
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except (AttributeError, OSError):  # not Linux (PRIO_PROCESS of a thread id), or refused
        pass


def reader_info(slot: ReaderSlot, *, redact: bool = True) -> dict:
    """The manifest's entry of a reader; with ``redact``, URL passwords and secret-named options masked
    (``redact.redact_reader_info``, which says how many)."""
    info = _reader_info(slot)
    if redact:
        redact_reader_info(info)
    return info


def _reader_info(slot: ReaderSlot) -> dict:
    reader = slot.reader
    try:
        caps = reader.caps.to_dict()
    except Exception as exc:
        caps = {"kind": reader.name, "error": str(exc)}
    try:
        identity = reader.identity()
    except Exception as exc:
        identity = {"error": str(exc)}
    return {"label": slot.label, "name": reader.name, "source": slot.config.source,
            "options": {k: _jsonable(v) for k, v in slot.config.options.items()},
            "interval_seconds": slot.config.interval, "version": reader.source_version,
            "caps": caps, "identity": identity}


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


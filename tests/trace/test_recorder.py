"""Recorder behaviour with scripted readers: fixed grid, missed ticks, stalled disk, full disk."""

import os
import threading
import time

import pytest

from telemrec.errors import TraceWriteError
from telemrec.readers.base import BaseReader
from telemrec.record import RawRecord, ReaderCaps, ReaderConfig
from telemrec.recorder.recorder import Recorder, ReaderSlot
from telemrec.trace import TraceWriter, open_trace
from telemrec.trace.importer import import_manifest
from telemrec.trace.v1 import TICK_MISSED


class CountingReader(BaseReader):
    name = "counting"
    description = "emits one counter record per tick, optionally slowly"

    def __init__(self, delay=0.0, slow_every=0, limit=None):
        super().__init__()
        self.delay, self.slow_every, self.limit, self.n = delay, slow_every, limit, 0

    @property
    def caps(self):
        return ReaderCaps("counting", frozenset({"n"}), counters=frozenset({"n"}))

    def _open(self, config):
        pass

    def _read(self):
        if self.limit is not None and self.n >= self.limit:
            return None
        self.n += 1
        if self.slow_every and self.n % self.slow_every == 0:
            time.sleep(self.delay)
        return [RawRecord(time.monotonic_ns(), time.time_ns(), "e", {"n": self.n}, "counting")]


def run(reader, path, seconds, interval=0.02, writer_cls=TraceWriter, **kw):
    reader.open(ReaderConfig(interval=interval))
    writer = writer_cls(path, import_manifest("test"))
    rec = Recorder([ReaderSlot("counting", reader, reader.config)], writer, interval=interval, **kw)
    rec.start()
    rec.wait(seconds)
    rec.join()
    return rec, writer


def test_a_slow_tick_is_recorded_as_missed_never_shifted(tmp_path):
    path = tmp_path / "t.h5"
    rec, writer = run(CountingReader(delay=0.09, slow_every=10), path, 1.5, flush_every=0.2)
    writer.close(stats=rec.stats.to_dict())
    with open_trace(path) as trace:
        ticks = trace.ticks("counting")
    sched = ticks["scheduled_mono_ns"]
    assert all(b - a == 20_000_000 for a, b in zip(sched, sched[1:])), "ticks stay on the grid"
    assert list(ticks["tick"]) == list(range(len(sched)))
    missed = int((ticks["status"] == TICK_MISSED).sum())
    assert missed >= 4 and missed == rec.stats.missed_ticks


def test_a_stalled_disk_does_not_delay_sampling_and_overflow_is_counted(tmp_path):
    gate = threading.Event()

    class StalledWriter(TraceWriter):
        def write(self, records):
            gate.wait(5)  # the disk hangs
            super().write(records)

    path = tmp_path / "t.h5"
    reader = CountingReader()
    timer = threading.Timer(1.0, gate.set)
    timer.start()
    rec, writer = run(reader, path, 1.5, writer_cls=StalledWriter, queue_limit=10, flush_every=0.1)
    writer.close(stats=rec.stats.to_dict())
    assert reader.n >= 50, "sampling went on while the writer was stuck"
    assert rec.stats.dropped_records > 0
    with open_trace(path) as trace:
        assert trace.manifest["stats"]["dropped_records"] == rec.stats.dropped_records
        kept = sum(1 for _ in trace.records())
    assert kept + rec.stats.dropped_records == reader.n


def test_a_full_disk_stops_recording_and_keeps_what_was_flushed(tmp_path):
    flushes = []

    class FillingWriter(TraceWriter):
        def flush(self):
            if len(flushes) >= 3:
                raise TraceWriteError("writing failed: No space left on device", errno=28)
            super().flush()
            flushes.append(self.records)

    path = tmp_path / "t.h5"
    rec, writer = run(CountingReader(), path, 5.0, writer_cls=FillingWriter, flush_every=0.1)
    assert rec.write_error is not None and "No space" in rec.write_error.message
    writer.abandon()
    with open_trace(path) as trace:
        assert not trace.closed_cleanly
        assert sum(1 for _ in trace.records()) >= flushes[-1] > 0


def test_a_finite_reader_ends_the_recording(tmp_path):
    path = tmp_path / "t.h5"
    rec, writer = run(CountingReader(limit=7), path, 10.0)
    assert rec.readers_done
    writer.close()
    with open_trace(path) as trace:
        assert [r.fields["n"] for r in trace.records()] == list(range(1, 8))


def _nice(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])  # field 19 of stat: nice


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="per-thread nice values are a Linux feature")
def test_the_writer_yields_the_cpu_to_sampling_and_nothing_wakes_between_flushes(tmp_path):
    reader = CountingReader()
    reader.open(ReaderConfig(interval=0.01))
    writer = TraceWriter(tmp_path / "t.h5", import_manifest("test"))
    rec = Recorder([ReaderSlot("counting", reader, reader.config)], writer, interval=0.01, flush_every=60)
    rec.start()
    try:
        time.sleep(0.3)
        ids = {t.name: t.native_id for t in threading.enumerate()}
        assert _nice(ids["telemrec-writer"]) >= _nice(ids["telemrec-counting"]) + 1
        assert rec.stats.ticks > 5 and rec.stats.records >= rec.stats.ticks - 1  # counted as they are queued
        assert rec.stats.flushes == 0 and rec.queued > 5, "the writer waits for its flush, not for each batch"
    finally:
        rec.join()
    assert rec.queued == 0 and rec.stats.flushes == 1
    writer.close(stats=rec.stats.to_dict())
    with open_trace(tmp_path / "t.h5") as trace:
        assert len(list(trace.records())) == rec.stats.records


def test_a_small_queue_is_drained_before_it_fills(tmp_path):
    """The writer waits for its flush, but not until a queue of a few batches is full and drops them."""
    rec, writer = run(CountingReader(), tmp_path / "t.h5", 1.0, interval=0.005, queue_limit=8, flush_every=30)
    writer.close(stats=rec.stats.to_dict())
    assert rec.stats.ticks > 100 and rec.stats.dropped_records == 0
    with open_trace(tmp_path / "t.h5") as trace:
        assert len(list(trace.records())) == rec.stats.records == rec.stats.ticks


def test_the_stop_gate_holds_sampling_threads_until_the_stop_then_lets_every_one_through():
    from telemrec.recorder.recorder import _StopGate

    gate = _StopGate()
    t0 = time.monotonic()
    assert gate.wait(0.05) is False and time.monotonic() - t0 >= 0.04  # closed: the timeout passes
    woke: list = []
    threads = [threading.Thread(target=lambda: woke.append(gate.wait(30))) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    gate.open()
    gate.open()  # stop() and join() both open it
    for t in threads:
        t.join(5)
    assert woke == [True, True, True] and time.monotonic() - t0 < 2
    assert gate.wait(30) is True  # open: at once

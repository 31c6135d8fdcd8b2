"""Replay: exact records, selection, loops, rebasing, pacing, damaged and future traces, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from itertools import islice

import h5py
import numpy as np
import pytest

from telemrec.errors import ReplayError, SourceError, UsageError
from telemrec.jsonl import iter_records as jsonl_records
from telemrec.jsonl import loads_record
from telemrec.readers import get_reader
from telemrec.readers.replay import Pacer, Replay, ReplayReader, iter_replay, parse_speed, parse_time
from telemrec.record import RawRecord, ReaderConfig, records_identical
from telemrec.testing import ReaderConformance
from telemrec.trace import CURRENT_FORMAT_VERSION, TraceWriter, open_trace
from telemrec.trace._iterate import iter_batches, iter_records
from telemrec.trace.importer import import_manifest

T0_MONO = 5_000_000_000
T0_WALL = 1_772_409_600_000_000_000  # 2026-03-02T00:00:00Z
STEP = 100_000_000  # 10 Hz
EDGE = [None, float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 0, 2**63 - 1, -(2**63), "", "héllo ✓", 1.5]


def manifest(readers=()):
    m = import_manifest("tests/test_replay.py")
    m["readers"] = list(readers)
    m["host"] = {"hostname": "node-a"}
    return m


def write_trace(path, records, *, readers=(), chunk_rows=None):
    """Write through TraceWriter; with ``chunk_rows`` fold the journal with that chunk size."""
    w = TraceWriter(path, manifest(readers), chunk_rows=chunk_rows)
    w.write(records)
    w.close()
    return str(path)


def ticks(n, entities=("gpu0", "gpu1"), source="nvml", step=STEP, fields=None):
    """n instants; each entity one record per instant, all sharing the instant's timestamps."""
    out = []
    for i in range(n):
        for j, ent in enumerate(entities):
            values = fields(i, j) if fields else {"util": round(i * 0.1 + j, 1), "mem": i * 1024 + j, "name": "H100"}
            out.append(RawRecord(T0_MONO + i * step, T0_WALL + i * step + 7, ent, values, source, "12.0"))
    return out


def assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert records_identical(a, b), (a, b)


def drain(reader):
    batches = []
    while True:
        batch = reader.read()
        if batch is None:
            return batches
        batches.append(batch)


class FakeClock:
    """A monotonic clock that only moves when slept on (or told to)."""

    def __init__(self, start=1_000_000_000_000):
        self.now = start
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += int(round(seconds * 1e9))


@pytest.fixture
def trace10(tmp_path):
    return write_trace(tmp_path / "t.h5", ticks(10))


# -- the reader protocol ------------------------------------------------------------------------

READERS = [{"label": "nvml", "name": "nvml", "interval_seconds": 0.1, "version": "12.0",
            "identity": {"driver": "550.54"},
            "caps": {"kind": "nvml", "fields": ["util", "mem", "name", "power"],
                     "units": {"util": "percent", "mem": "bytes", "power": "milliwatts"},
                     "descriptions": {"util": "GPU utilization"}, "counters": ["energy"], "dynamic_fields": False}},
           {"label": "psutil", "name": "psutil", "caps": {"kind": "psutil", "fields": ["user"],
                                                          "units": {"user": "seconds"}, "counters": ["user"]}}]


class TestReplayReaderConformance(ReaderConformance):
    @pytest.fixture(autouse=True)
    def _trace(self, tmp_path):
        recs = ticks(20) + [RawRecord(T0_MONO + 20 * STEP, T0_WALL + 20 * STEP, "system", {"user": 12.5},
                                      "psutil", "7.2", "partial read")]
        self.path = write_trace(tmp_path / "conformance.h5", recs, readers=READERS)

    def make_reader(self):
        return ReplayReader()

    def make_config(self):
        return ReaderConfig(source=self.path, interval=0.01)

    def make_failing_config(self):
        return ReaderConfig(source=self.path + ".missing", interval=0.01)


def test_registry_knows_the_replay_reader():
    assert get_reader("replay") is ReplayReader


def test_reads_return_every_record_exactly_with_instants_whole(tmp_path):
    recs = []
    for i in range(60):
        fields = {"edge": EDGE[i % len(EDGE)], "count": i * 7}
        if i % 5 == 0:
            del fields["count"]  # a field vanishing and coming back
        if i % 7 == 0:
            fields["late"] = "x" if i % 2 else i  # appears, and changes type
        recs.append(RawRecord(T0_MONO + (i // 3) * STEP, T0_WALL + (i // 3) * STEP, f"e{i % 3}", fields,
                              "src" if i % 4 else "other", f"v{i // 30}", None if i % 9 else "boom"))
    path = write_trace(tmp_path / "t.h5", recs)
    reader = ReplayReader()
    reader.open(ReaderConfig(source=path))
    try:
        batches = drain(reader)
        assert reader.read() is None
    finally:
        reader.close()
    assert_same([r for b in batches for r in b], recs)
    for a, b in zip(batches, batches[1:]):
        assert a[-1].mono_ns != b[0].mono_ns


def test_fast_reads_cut_batches_at_instant_boundaries(tmp_path):
    # 3 x 6000 records > one merge step: the iterator's batches end mid-instant
    recs = ticks(6000, entities=("a", "b", "c"), step=1_000_000,
                 fields=lambda i, j: {"v": i * 3 + j})
    path = write_trace(tmp_path / "t.h5", recs)
    reader = ReplayReader()
    reader.open(ReaderConfig(source=path))
    try:
        batches = drain(reader)
    finally:
        reader.close()
    assert len(batches) > 1
    assert_same([r for b in batches for r in b], recs)
    for a, b in zip(batches, batches[1:]):
        assert a[-1].mono_ns != b[0].mono_ns


def test_iter_replay_and_stream_match_the_recording(tmp_path, trace10):
    expected = ticks(10)
    assert_same(list(iter_replay(trace10)), expected)
    reader = ReplayReader()
    reader.open(ReaderConfig(source=trace10, options={"speed": "max"}))
    try:
        assert_same(list(reader.stream()), expected)
    finally:
        reader.close()


def test_caps_and_identity_come_from_the_manifest(tmp_path):
    recs = ticks(3) + [RawRecord(T0_MONO, T0_WALL, "system", {"user": 1.0, "extra": 2}, "psutil")]
    path = write_trace(tmp_path / "t.h5", recs, readers=READERS)
    reader = ReplayReader()
    reader.open(ReaderConfig(source=path, options={"readers": "nvml"}))
    try:
        caps = reader.caps
        identity = reader.identity()
        assert reader.source_version == f"telemrec-trace v{CURRENT_FORMAT_VERSION}"
    finally:
        reader.close()
    assert caps.kind == "nvml"
    assert caps.fields == {"util", "mem", "name", "power"}
    assert caps.units == {"util": "percent", "mem": "bytes", "power": "milliwatts"}
    assert caps.counters == frozenset()  # "energy" is not a field the selection holds
    assert identity["host"] == {"hostname": "node-a"}
    assert identity["readers"] == [{"label": "nvml", "name": "nvml", "version": "12.0",
                                    "identity": {"driver": "550.54"}}]
    assert identity["trace"] == os.path.abspath(path)
    json.dumps(identity)
    reader = ReplayReader()
    reader.open(ReaderConfig(source=path, options={"fields": "user,extra"}))
    try:
        caps = reader.caps
    finally:
        reader.close()
    # a field the manifest never declared is still declared: records never carry undeclared fields
    assert caps.kind == "psutil" and caps.fields == {"user", "extra"} and caps.counters == {"user"}


# -- selection ------------------------------------------------------------------------------------

def test_time_window_relative_absolute_and_from_the_end(trace10):
    expected = [r for r in ticks(10) if T0_WALL + 2 * STEP <= r.wall_ns < T0_WALL + 5 * STEP]
    got = list(iter_replay(trace10, start="+0.2s", end="+500ms"))
    assert_same(got, expected)
    iso = list(iter_replay(trace10, start="2026-03-02T00:00:00.200000007Z", end="2026-03-02T00:00:00.500000007Z"))
    assert_same(iso, expected)
    last = list(iter_replay(trace10, start="-0.1s"))
    assert_same(last, ticks(10)[-4:])


def test_window_drops_rows_a_wall_clock_step_put_outside_it(tmp_path):
    walls = [0, 1, 2, 50, 3, 4]  # NTP stepped the clock forward once, then back
    recs = [RawRecord(T0_MONO + i, T0_WALL + w * STEP, "e", {"i": i}, "s") for i, w in enumerate(walls)]
    path = write_trace(tmp_path / "t.h5", recs)
    got = list(iter_replay(path, start=T0_WALL + STEP, end=T0_WALL + 10 * STEP))
    assert [r.fields["i"] for r in got] == [1, 2, 4, 5]


def test_sources_entities_and_fields_select(tmp_path):
    recs = ticks(4, entities=("gpu0", "gpu1", "cpu0"))
    recs.append(RawRecord(T0_MONO + 5 * STEP, T0_WALL + 5 * STEP, "gpu0", {"mem": 1}, "nvml"))
    recs.append(RawRecord(T0_MONO + 6 * STEP, T0_WALL + 6 * STEP, "gpu0", {"mem": 2}, "nvml", "", "lost"))
    recs.append(RawRecord(T0_MONO + 6 * STEP, T0_WALL + 6 * STEP, "sys", {"load": 1.5}, "psutil"))
    path = write_trace(tmp_path / "t.h5", recs)
    assert [r.source for r in iter_replay(path, readers=["psutil"])] == ["psutil"]
    got = list(iter_replay(path, entities=["gpu*"]))
    assert_same(got, [r for r in recs if r.entity.startswith("gpu")])
    got = list(iter_replay(path, entities="gpu1,cpu0", fields=["util"]))
    assert_same(got, [RawRecord(r.mono_ns, r.wall_ns, r.entity, {"util": r.fields["util"]}, r.source,
                                r.source_version, r.error) for r in recs if r.entity in ("gpu1", "cpu0")])
    # gpu0's record without util is skipped; the one reporting an error is kept
    got = list(iter_replay(path, entities=["gpu0"], fields=["u*"]))
    assert [r.error for r in got] == [None] * 4 + ["lost"]
    assert got[-1].fields == {}


@pytest.mark.parametrize("kwargs, error", [
    ({"entities": ["gpu9"]}, ReplayError),
    ({"entities": ["gpu0"], "fields": ["nope*"]}, ReplayError),
    ({"readers": ["dcgmi"]}, ReplayError),
    ({"start": "+1h"}, ReplayError),
    ({"start": "+0.5s", "end": "+0.2s"}, UsageError),
    ({"start": "yesterday"}, UsageError),
    ({"start": "+5 parsecs"}, UsageError),
    ({"speed": "warp"}, UsageError),
    ({"speed": 0}, UsageError),
    ({"speed": "-2"}, UsageError),
    ({"loop": "0"}, UsageError),
    ({"loop": "twice"}, UsageError),
    ({"rebase_now": "perhaps"}, UsageError),
])
def test_selections_that_do_not_fit_raise_with_a_hint(trace10, kwargs, error):
    with pytest.raises(error) as info:
        list(iter_replay(trace10, **kwargs))
    assert info.value.remediation


def test_reader_options_are_parsed_from_strings(trace10):
    reader = ReplayReader()
    reader.open(ReaderConfig(source=trace10, options={
        "speed": "max", "start": "+0.3s", "end": "+0.5s", "entities": "gpu1", "fields": "util, mem",
        "readers": "nvml", "loop": "2", "rebase_now": "false"}))
    try:
        got = [r for b in drain(reader) for r in b]
    finally:
        reader.close()
    assert [(r.entity, sorted(r.fields)) for r in got] == [("gpu1", ["mem", "util"])] * 4
    with pytest.raises(UsageError):
        ReplayReader().open(ReaderConfig(source=trace10, options={"sped": "max"}))


def test_parse_helpers():
    assert parse_speed("max") is None and parse_speed("10x") == 10.0 and parse_speed(0.5) == 0.5
    assert parse_time("+1h30m", first_wall_ns=0, last_wall_ns=0) == 5400 * 10**9
    assert parse_time("-250ms", first_wall_ns=0, last_wall_ns=10**9) == 750_000_000
    assert parse_time("1970-01-01T00:00:01.000001Z", first_wall_ns=None, last_wall_ns=None) == 1_000_001_000


# -- loops and rebasing ---------------------------------------------------------------------------

def test_loops_continue_the_timestamps(trace10):
    one = ticks(10)
    got = list(iter_replay(trace10, loop=3))
    assert len(got) == 3 * len(one)
    shift = 9 * STEP + STEP  # the pass's span plus one sampling interval
    for k in range(3):
        expected = [RawRecord(r.mono_ns + k * shift, r.wall_ns + k * shift, r.entity, r.fields, r.source,
                              r.source_version, r.error) for r in one]
        assert_same(got[k * len(one):(k + 1) * len(one)], expected)
    monos = [r.mono_ns for r in got]
    assert monos == sorted(monos)


def test_loop_forever_keeps_going(trace10):
    got = list(islice(iter_replay(trace10, loop="forever", entities=["gpu0"]), 35))
    assert len(got) == 35
    assert np.all(np.diff([r.mono_ns for r in got]) == STEP)


def test_rebase_now_stamps_the_first_record_now(trace10):
    with open_trace(trace10) as trace:
        clock, wall = FakeClock(123_000), FakeClock(1_800_000_000_000_000_000)
        replay = Replay(trace, rebase_now=True, loop=2, clock=clock, wall_clock=wall)
        got = list(replay)
    one = ticks(10)
    assert got[0].mono_ns == 123_000 and got[0].wall_ns == 1_800_000_000_000_000_000
    dm, dw = 123_000 - one[0].mono_ns, 1_800_000_000_000_000_000 - one[0].wall_ns
    assert [(r.mono_ns - dm, r.wall_ns - dw) for r in got[:20]] == [(r.mono_ns, r.wall_ns) for r in one]
    assert got[20].mono_ns - got[0].mono_ns == 10 * STEP


# -- pacing --------------------------------------------------------------------------------------

def test_pacing_sleeps_the_recorded_spacing_divided_by_speed(trace10):
    for speed, factor in ((1, 1.0), ("10", 0.1)):
        with open_trace(trace10) as trace:
            clock = FakeClock()
            replay = Replay(trace, speed=speed, clock=clock, sleep=clock.sleep)
            emitted = [(clock.now, group) for group in replay.paced()]
        assert [len(g) for _, g in emitted] == [2] * 10  # the two GPUs of one instant go out together
        starts = [t for t, _ in emitted]
        assert np.allclose(np.diff(starts), STEP * factor, atol=1)
        assert [g[0].mono_ns for _, g in emitted] == [T0_MONO + i * STEP for i in range(10)]


def test_pacer_never_waits_backwards():
    clock = FakeClock()
    pacer = Pacer(2.0, clock, clock.sleep)
    for mono in (100, 300, 200, 300, 700):
        pacer.wait(mono)
    assert clock.sleeps == pytest.approx([100e-9, 200e-9])


def test_paced_read_returns_what_has_fallen_due(trace10):
    clock = FakeClock()
    reader = ReplayReader(clock=clock, sleep=clock.sleep)
    reader.open(ReaderConfig(source=trace10, options={"speed": "1"}))
    try:
        first = reader.read()
        assert [r.mono_ns for r in first] == [T0_MONO] * 2
        assert reader.read() == []
        clock.now += 250_000_000
        assert sorted({r.mono_ns for r in reader.read()}) == [T0_MONO + STEP, T0_MONO + 2 * STEP]
        clock.now += 10**9
        assert len(reader.read()) == 14
        assert reader.read() is None
    finally:
        reader.close()


def test_stream_sleeps_until_each_instant_and_continues_where_read_stopped(trace10):
    clock = FakeClock()
    reader = ReplayReader(clock=clock, sleep=clock.sleep)
    reader.open(ReaderConfig(source=trace10, options={"speed": 2}))
    try:
        first = reader.read()
        rest = list(reader.stream())
        assert reader.read() is None
    finally:
        reader.close()
    assert_same(first + rest, ticks(10))
    assert clock.sleeps == pytest.approx([STEP / 2 / 1e9] * 9)


def test_real_time_replay_keeps_the_recorded_duration(tmp_path):
    path = write_trace(tmp_path / "t.h5", ticks(11))  # 1.0 s from first to last instant
    t0 = time.monotonic()
    seen = []
    for rec in iter_replay(path, speed=1):
        seen.append((time.monotonic() - t0, rec.mono_ns))
    elapsed = time.monotonic() - t0
    assert len(seen) == 22
    assert elapsed >= 0.99
    assert elapsed < 3.0  # generous: CI machines are busy
    for t, mono in seen:
        assert t >= (mono - T0_MONO) / 1e9 - 0.002  # never early


# -- batches ---------------------------------------------------------------------------------------

def test_batches_hold_the_same_values_as_records(tmp_path):
    recs = []
    for i in range(300):
        fields = {"f": i / 8, "i": i, "s": f"s{i // 50}"}
        if i % 3 == 0:
            fields["sometimes"] = None if i % 2 else -i
        recs.append(RawRecord(T0_MONO + i, T0_WALL + i * STEP, f"e{i % 2}", fields, "s"))
    path = write_trace(tmp_path / "t.h5", recs, chunk_rows=16)
    with open_trace(path) as trace:
        ents = {key: trace.entity(*key) for key in trace.entities()}
        batches = list(iter_batches(trace, start_wall_ns=T0_WALL + 10 * STEP, end_wall_ns=T0_WALL + 250 * STEP,
                                    batch_values=100))
        merged = [r for b in iter_records(ents, start_wall_ns=T0_WALL + 10 * STEP,
                                          end_wall_ns=T0_WALL + 250 * STEP, merge_rows=7) for r in b]
    assert_same(merged, recs[10:250])
    assert len(batches) > 4
    rebuilt = {}
    for b in batches:
        cols = {name: col.to_list(absent=KeyError) for name, col in b.columns.items()}
        for k, seq in enumerate(b.seq.tolist()):
            rebuilt[seq] = RawRecord(int(b.mono_ns[k]), int(b.wall_ns[k]), b.entity,
                                     {n: v[k] for n, v in cols.items() if v[k] is not KeyError}, b.source,
                                     b.source_version.to_list()[k], b.error.to_list()[k])
    assert_same([rebuilt[s] for s in sorted(rebuilt)], recs[10:250])


def test_merge_steps_across_chunk_boundaries_keep_value_types(tmp_path):
    # chunk 0 holds ints, chunk 1 floats, chunk 2 strings: a step spanning two chunks joins them
    values = [7, 2**62, -3, 1] + [1.5, -0.0, 2.0, 3.25] + ["a", "", "ü", "b"]
    recs = [RawRecord(T0_MONO + i, T0_WALL + i, e, {"x": v}, "s") for i, v in enumerate(values) for e in ("a", "b")]
    path = write_trace(tmp_path / "t.h5", recs, chunk_rows=4)
    with open_trace(path) as trace:
        ents = {key: trace.entity(*key) for key in trace.entities()}
        for merge_rows in (2, 6, 10, 14):
            got = [r for b in iter_records(ents, merge_rows=merge_rows) for r in b]
            assert_same(got, recs)


# -- damaged, live and future traces ---------------------------------------------------------------

def run_cli(*args, input=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "telemrec", *args], capture_output=True, text=True,
                          input=input, timeout=timeout, encoding="utf-8")


def test_newer_format_version_is_refused_naming_both_versions(trace10):
    with h5py.File(trace10, "r+") as h5:
        h5.attrs["format_version"] = 99
    proc = run_cli("replay", trace10, "--speed", "max")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "format version 99" in proc.stderr and "versions 1" in proc.stderr
    assert "hint: Upgrade telemrec" in proc.stderr
    with pytest.raises(SourceError) as info:
        ReplayReader().open(ReaderConfig(source=trace10))
    assert "99" in info.value.message and info.value.cause == "UnsupportedFormatVersionError"


def test_a_recording_cut_short_replays_up_to_its_last_flush(tmp_path):
    path = str(tmp_path / "crashed.h5")
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_replay import ticks, manifest
        from telemrec.trace import TraceWriter
        w = TraceWriter({path!r}, manifest())
        recs = ticks(30)
        w.write(recs[:40]); w.flush()
        w.write(recs[40:])          # never flushed: lost with the process
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", script], timeout=60)
    assert os.path.exists(path + ".journal") and not os.path.exists(path)
    proc = run_cli("replay", path, "--speed", "max")
    assert proc.returncode == 0, proc.stderr
    assert "not closed cleanly" in proc.stderr and "40 records" in proc.stderr
    got = list(jsonl_records(proc.stdout.splitlines()))
    assert_same(got, ticks(30)[:40])
    with open_trace(path) as trace:  # recovered once: now a plain, unclean trace
        assert not trace.closed_cleanly and not trace.recovered
    proc = run_cli("replay", path, "--speed", "max", "--entity", "gpu0")
    assert "not closed cleanly" in proc.stderr and len(proc.stdout.splitlines()) == 1 + 20


def test_a_live_recording_replays_its_flushed_records(tmp_path):
    path = str(tmp_path / "live.h5")
    w = TraceWriter(path, manifest())
    try:
        w.write(ticks(5))
        w.flush()
        proc = run_cli("replay", path, "--speed", "max")
    finally:
        w.close()
    assert proc.returncode == 0, proc.stderr
    assert "still being recorded" in proc.stderr
    assert_same(list(jsonl_records(proc.stdout.splitlines())), ticks(5))


# -- the command line ------------------------------------------------------------------------------

def test_cli_speed_max_emits_exactly_the_recorded_records(tmp_path):
    recs = []
    for i, value in enumerate(EDGE * 3):
        recs.append(RawRecord(T0_MONO + i * STEP, T0_WALL + i * STEP, f"é{i % 2}", {"v": value, "n": i},
                              "src", "1", None if i % 4 else "err ✓"))
    path = write_trace(tmp_path / "t.h5", recs)
    proc = run_cli("replay", path, "--speed", "max")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert_same(list(jsonl_records(proc.stdout.splitlines())), recs)


def test_cli_selection_flags_and_output_file(tmp_path, trace10):
    out = tmp_path / "out.jsonl"
    proc = run_cli("replay", trace10, "--speed", "max", "-o", str(out), "--start", "+0.1s", "--end", "+0.4s",
                   "--entity", "gpu1", "--field", "util", "--reader", "nvml", "--loop", "2")
    assert proc.returncode == 0, proc.stderr
    got = list(jsonl_records(out.read_text(encoding="utf-8").splitlines()))
    assert [r.fields for r in got] == [{"util": 1.1}, {"util": 1.2}, {"util": 1.3}] * 2
    assert [r.mono_ns - T0_MONO for r in got] == [k * STEP for k in (1, 2, 3, 4, 5, 6)]


def test_cli_real_time_and_rebase(tmp_path):
    path = write_trace(tmp_path / "t.h5", ticks(6))  # 0.5 s
    t0_wall = time.time_ns()
    started = time.monotonic()
    proc = run_cli("replay", path, "--rebase-now")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    got = list(jsonl_records(proc.stdout.splitlines()))
    assert len(got) == 12 and elapsed >= 0.5
    assert t0_wall <= got[0].wall_ns <= time.time_ns()
    assert [r.wall_ns - got[0].wall_ns for r in got] == [r.wall_ns - T0_WALL - 7 for r in ticks(6)]
    proc = run_cli("replay", path, "--speed", "warp")
    assert proc.returncode == 2 and "hint:" in proc.stderr


def test_cli_ctrl_c_ends_a_forever_loop_quietly(trace10):
    proc = subprocess.Popen([sys.executable, "-m", "telemrec", "replay", trace10, "--loop", "forever"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        header = proc.stdout.readline()  # the manifest, then the first instant (real time: flushed at once)
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert header.startswith('{"telemrec_manifest":')
    assert records_identical(loads_record(first), ticks(10)[0])


def test_cli_stops_quietly_when_the_reader_of_its_output_goes_away(trace10):
    proc = subprocess.Popen([sys.executable, "-m", "telemrec", "replay", trace10, "--speed", "max", "--loop", "5000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"Traceback" not in err

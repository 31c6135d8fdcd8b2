"""Trace format (v3 written, v1 and v2 read): exact round trips, encodings, time-range reads, damaged and foreign files."""

import json
import math
import os
import struct

import h5py
import numpy as np
import pytest

from telemrec.errors import TraceCorruptError, TraceNotFoundError, UnsupportedFormatVersionError
from telemrec.record import RawRecord, records_identical
from telemrec.trace import CURRENT_FORMAT_VERSION, SUPPORTED_FORMAT_VERSIONS, TraceWriter, open_trace
from telemrec.trace import _codec
from telemrec.trace.importer import import_manifest

EDGE = [None, float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 0, 2**63 - 1, -(2**63), "", "héllo ✓",
        1.5, 12.34, 1e-300, 5e-324, 1.7976931348623157e308]


def write(path, records, *, segment_rows=None, **kw):
    """``segment_rows``: seal a segment every that many records (many small segments)."""
    if segment_rows is not None:
        kw.update(frame_records=segment_rows, seal_rows=segment_rows)
    w = TraceWriter(path, import_manifest("test"), **kw)
    w.write(records)
    w.close()


def test_every_edge_value_round_trips_bit_exactly(tmp_path):
    recs = []
    for i in range(3000):
        fields = {"edge": EDGE[i % len(EDGE)], "count": i * 7, "ratio": round(i * 0.001, 3)}
        if i % 13 == 0:
            fields["sometimes"] = i
        if i % 5 == 0:
            del fields["count"]  # a field vanishing and coming back
        recs.append(RawRecord(i, 10**18 + i, f"e{i % 4}", fields, "src", f"v{i // 1000}", None if i % 9 else "boom"))
    write(tmp_path / "t.h5", recs)
    with open_trace(tmp_path / "t.h5") as trace:
        out = list(trace.records())
    assert len(out) == len(recs)
    for a, b in zip(recs, out):
        assert records_identical(a, b), (a, b)


def test_format_1_files_still_read_exactly(tmp_path):
    """V1Writer writes format 1 (no anchors, no per-chunk kinds, no chunk index): records,
    reference decoder and the fast loader agree with the same data written in the current format."""
    from telemrec.analysis import load
    from telemrec.testing import assert_frames_identical
    from telemrec.trace import v1

    recs = [RawRecord(10**9 + i, 10**18 + i * 10**9, f"e{i % 3}",
                      {"edge": EDGE[i % len(EDGE)], "count": 10**12 + i * 7, "flat": 5, "ratio": round(i * 0.001, 3),
                       **({"late": i} if i > 40 else {})}, "src")
            for i in range(300)]
    old = tmp_path / "v1.h5"
    with h5py.File(old, "w", libver=("v110", "v110")) as h5:
        writer = v1.V1Writer(h5, chunk_rows=16)
        for rec in recs:
            writer.add_record(rec)
        writer.finish(dict(import_manifest("test"), format_version=1))
    new = tmp_path / "current.h5"
    write(new, recs, segment_rows=16)
    with open_trace(old) as a, open_trace(new) as b:
        assert (a.format_version, b.format_version) == (1, CURRENT_FORMAT_VERSION)
        assert all(records_identical(x, y) for x, y in zip(recs, a.records(), strict=True))
        assert a.entity("src", "e0").column("count").anchors is None
        fa, fb = load(a), load(b)
    assert_frames_identical(fa, fb)


def test_plain_h5py_opens_the_trace(tmp_path, records_factory):
    write(tmp_path / "t.h5", records_factory(10))
    with h5py.File(tmp_path / "t.h5", "r") as h5:
        # fixed-length strings (no global heap, docs/format.md section 3): h5py reads them as bytes
        assert h5.attrs["format"] == b"telemrec-trace"
        assert int(h5.attrs["format_version"]) == CURRENT_FORMAT_VERSION
        assert b"format" in h5.attrs["spec"] and b"/manifest" in h5.attrs["contents"]
        manifest = json.loads(h5["manifest"].asstr()[()])
        assert manifest["stats"]["records"] == 20
        assert "fake" in json.loads(h5["catalog"].asstr()[()])["sources"]


@pytest.mark.parametrize("chunk_rows", [1, 3, 64])
def test_segment_boundaries_never_change_values(tmp_path, chunk_rows):
    rng = np.random.default_rng(chunk_rows)
    ints = rng.integers(-(2**62), 2**62, 500).tolist()
    floats = rng.normal(size=500).tolist()
    recs = [RawRecord(i, i, "e", {"i": ints[i], "f": floats[i], "c": i // 7, "d": round(i / 3, 2)}, "s")
            for i in range(500)]
    path = tmp_path / f"c{chunk_rows}.h5"
    write(path, recs, segment_rows=chunk_rows)
    with open_trace(path) as trace:
        assert all(records_identical(a, b) for a, b in zip(recs, trace.records(), strict=True))
        ent = trace.entity("s", "e")
        assert len(trace._reader.runs_of(ent.eid)[0]) == -(-500 // chunk_rows)


def test_encodings_are_chosen_by_content():
    n = 1000
    kinds_int = np.full(n, _codec.INT, np.uint8)
    counter = np.cumsum(np.full(n, 1000, np.int64))
    enc = _codec.encode_chunk(kinds_int, counter, np.zeros(n))
    assert enc.encoding in (_codec.INT_DELTA1, _codec.INT_DELTA2)
    assert np.count_nonzero(enc.data[2:]) == 0 or enc.encoding == _codec.INT_DELTA1
    kinds_f = np.full(n, _codec.FLOAT, np.uint8)
    power = np.round(np.linspace(50, 400, n), 3)
    enc = _codec.encode_chunk(kinds_f, np.zeros(n, np.int64), power)
    assert enc.encoding in (_codec.DEC_RAW, _codec.DEC_DELTA1, _codec.DEC_DELTA2) and enc.scale <= 3
    noise = np.random.default_rng(0).normal(size=n)
    enc = _codec.encode_chunk(kinds_f, np.zeros(n, np.int64), noise)
    assert enc.encoding == _codec.F64_XOR
    for data, kinds in ((counter, kinds_int), (power, kinds_f), (noise, kinds_f)):
        ints = data if kinds is kinds_int else np.zeros(n, np.int64)
        floats = data if kinds is kinds_f else np.zeros(n)
        for anchored in (False, True):
            e = _codec.encode_chunk(kinds, ints, floats, anchored=anchored)
            stored = e.data if e.width else np.zeros(n, np.uint8)
            di, df = _codec.decode_chunk(stored, e.encoding, e.scale, e.anchors if anchored else None)
            got = di if kinds is kinds_int else df
            assert np.array_equal(got.view(np.int64), np.asarray(data).view(np.int64))


def test_anchored_chunks_keep_their_start_out_of_the_residuals():
    """Format 2: a counter far from zero with steady increments stores nothing at all, and
    increments that vary fit one byte although the first value needs four."""
    n = 8192
    kinds = np.full(n, _codec.INT, np.uint8)
    steady = 80_256_567 + 100 * np.arange(n, dtype=np.int64)
    e = _codec.encode_chunk(kinds, steady, np.zeros(n), anchored=True)
    assert (e.encoding, e.width, e.anchors) == (_codec.INT_DELTA2, 0, (80_256_567, 100))
    v1 = _codec.encode_chunk(kinds, steady, np.zeros(n))
    assert v1.width == 4 and v1.anchors == ()
    jitter = 80_256_567 + np.cumsum(np.random.default_rng(1).integers(95, 105, n))
    e = _codec.encode_chunk(kinds, jitter, np.zeros(n), anchored=True)
    assert e.width == 1 and e.data[0] == 0
    ints, _ = _codec.decode_chunk(e.data, e.encoding, e.scale, e.anchors)
    assert np.array_equal(ints, jitter)
    one = _codec.encode_chunk(kinds[:1], steady[:1], np.zeros(1), anchored=True)
    assert np.array_equal(_codec.decode_chunk(np.zeros(1, np.uint8), one.encoding, 0, one.anchors)[0], steady[:1])


def test_negative_zero_and_nan_payloads_fall_back_to_raw_bits():
    kinds = np.full(4, _codec.FLOAT, np.uint8)
    vals = np.array([1.5, -0.0, 2.5, 3.0])
    e = _codec.encode_chunk(kinds, np.zeros(4, np.int64), vals)
    _, back = _codec.decode_chunk(e.data, e.encoding, e.scale)
    assert math.copysign(1, back[1]) == -1
    weird_nan = np.array([struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000123))[0], 1.0, 2.0, 3.0])
    e = _codec.encode_chunk(kinds, np.zeros(4, np.int64), weird_nan)
    _, back = _codec.decode_chunk(e.data, e.encoding, e.scale)
    assert back.view(np.int64)[0] == 0x7FF8000000000123


def test_time_range_selects_exact_rows(tmp_path):
    recs = [RawRecord(i, 10**18 + i * 10**9, "e", {"v": i}, "s") for i in range(20000)]
    write(tmp_path / "t.h5", recs)
    with open_trace(tmp_path / "t.h5") as trace:
        ent = trace.entity("s", "e")
        lo, hi = ent.row_range(10**18 + 12345 * 10**9, 10**18 + 12400 * 10**9)
        assert (lo, hi) == (12345, 12400)
        got = list(trace.records(start_wall_ns=10**18 + 5 * 10**9, end_wall_ns=10**18 + 8 * 10**9))
        assert [r.fields["v"] for r in got] == [5, 6, 7]
        assert ent.row_range(0, 10) == (0, 0)


def test_missing_foreign_and_damaged_files_raise_typed_errors(tmp_path, records_factory):
    with pytest.raises(TraceNotFoundError) as info:
        open_trace(tmp_path / "nope.h5")
    assert info.value.remediation
    junk = tmp_path / "junk.h5"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(TraceCorruptError):
        open_trace(junk)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = [1, 2, 3]
    with pytest.raises(TraceCorruptError, match="not a telemrec trace"):
        open_trace(foreign)
    good = tmp_path / "good.h5"
    write(good, records_factory(2000))
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(TraceCorruptError):
        open_trace(truncated)


def test_newer_format_version_names_both_versions(tmp_path, records_factory):
    path = tmp_path / "future.h5"
    write(path, records_factory(5))
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = 99
    with pytest.raises(UnsupportedFormatVersionError) as info:
        open_trace(path)
    assert "99" in str(info.value) and "1" in str(info.value)
    assert info.value.found_version == 99 and info.value.supported_versions == SUPPORTED_FORMAT_VERSIONS
    assert "upgrade" in info.value.remediation.lower()


def test_string_fields_that_never_change_cost_nothing_per_tick(tmp_path):
    base = [RawRecord(i, i, "e", {"v": i}, "s") for i in range(50000)]
    with_str = [RawRecord(i, i, "e", {"v": i, "model": "NVIDIA H100 80GB HBM3"}, "s") for i in range(50000)]
    write(tmp_path / "a.h5", base)
    write(tmp_path / "b.h5", with_str)
    extra = (tmp_path / "b.h5").stat().st_size - (tmp_path / "a.h5").stat().st_size
    assert extra < 2000, f"a constant string column cost {extra} bytes for 50000 rows"


def test_nan_sign_and_payload_survive_the_journal(tmp_path):
    odd = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000ABC))[0]
    recs = [RawRecord(1, 1, "e", {"a": odd, "b": float("nan"), "c": -float("nan")}, "s")]
    write(tmp_path / "t.h5", recs)
    with open_trace(tmp_path / "t.h5") as trace:
        (back,) = trace.records()
    assert records_identical(back, recs[0])


def test_strings_hdf5_cannot_hold_as_they_are_round_trip(tmp_path):
    odd = ["nul\x00inside", "lone \udc80 surrogate", "\x1bstarts with ESC", "\x1b", ""]
    recs = [RawRecord(i, i, f"pid:{i}\x00\udcff", {"cmdline": odd[i % len(odd)], f"f\udc80{i % 2}": i, "\x1bk": "x"},
                      "src\x00", "v\udc81", odd[i % len(odd)]) for i in range(20)]
    write(tmp_path / "t.h5", recs)
    with open_trace(tmp_path / "t.h5") as trace:
        got = list(trace.records())
    assert len(got) == 20 and all(records_identical(a, b) for a, b in zip(recs, got))
    from telemrec.jsonl import dumps_record, loads_record

    for rec in recs:
        line = dumps_record(rec)
        line.encode("utf-8")  # always writable to a UTF-8 stream
        assert records_identical(loads_record(line), rec)


def test_ticks_reads_only_the_columns_asked_for(tmp_path):
    from telemrec.errors import UsageError

    path = str(tmp_path / "t.h5")
    writer = TraceWriter(path, {"readers": [], "interval_seconds": 1.0})
    writer.write_ticks("r", [{"tick": 0, "scheduled_mono_ns": 5, "start_mono_ns": 6, "end_mono_ns": 7,
                              "start_wall_ns": 8, "cpu_ns": 9, "records": 1, "status": 0}])
    writer.close()
    with open_trace(path) as trace:
        assert list(trace.ticks("r", columns=("tick", "scheduled_mono_ns"))) == ["tick", "scheduled_mono_ns"]
        assert trace.ticks("r", columns=("status",))["status"].tolist() == [0]
        assert trace.ticks("r", columns=()) == {}
        with pytest.raises(UsageError, match="no tick column 'nope'"):
            trace.ticks("r", columns=("nope",))


def test_field_layouts_learnt_in_one_batch_or_record_by_record_agree(tmp_path):
    """Records whose field names differ (some absent, some new, orders varying) give the same trace
    whether a flush holds many of them (one C pass over every layout) or one (each layout learnt
    as it comes): same values, same absent/None, same fields per entity in first-appearance order."""
    recs = []
    for i in range(400):
        fields = {"a": i, "s": f"t{i % 3}"} if i % 3 else {"s": None, "a": -i}
        if i % 7 == 0:
            fields["uss"] = i * 4096
        if i >= 200 and i % 11 == 0:
            fields["late"] = float(i)  # a field new to the table in the middle of a flush
        recs.append(RawRecord(i, 10**18 + i, f"p{i % 5}", fields, "src", "1"))
    out = {}
    for name, batch in (("batched", len(recs)), ("single", 1)):
        w = TraceWriter(tmp_path / f"{name}.h5", import_manifest("test"))
        for at in range(0, len(recs), batch):
            w.write(recs[at:at + batch])
            w.flush()
        w.close()
        with open_trace(tmp_path / f"{name}.h5") as trace:
            out[name] = ([(r.entity, dict(r.fields)) for r in trace.records()],
                         {e: trace.fields(s, e) for s, e in trace.entities()})
    assert out["batched"] == out["single"]
    assert out["batched"][0] == [(r.entity, dict(r.fields)) for r in recs]
    assert out["batched"][1]["p0"] == ["s", "a", "uss", "late"]

"""Crash safety: torn journals recover up to the last flush; live journals read as snapshots."""

import os

import pytest

from telemrec.errors import TraceWriteError
from telemrec.record import RawRecord, records_identical
from telemrec.trace import TraceWriter, open_trace
from telemrec.trace.check import check_trace
from telemrec.trace.importer import import_manifest


def recs(n, start=0):
    return [RawRecord(i, 10**18 + i, "e", {"v": i, "f": i / 4}, "s") for i in range(start, start + n)]


def test_a_writer_that_dies_leaves_everything_flushed(tmp_path):
    path = tmp_path / "t.h5"
    w = TraceWriter(path, import_manifest("t"))
    w.write(recs(100))
    w.flush()
    w.write(recs(50, 100))  # never flushed: may be lost, must not corrupt
    w._journal._file.close()  # the process "dies": no end frame, no fold
    assert not path.exists()
    with open_trace(path) as trace:
        assert trace.recovered and not trace.closed_cleanly
        got = list(trace.records())
    assert len(got) == 100 and all(records_identical(a, b) for a, b in zip(recs(100), got))
    assert not os.path.exists(str(path) + ".journal"), "the journal is folded in on the next open"
    report = check_trace(str(path))
    assert not report.ok and any("not closed cleanly" in p for p in report.problems)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_torn_final_frame_is_discarded_not_fatal(tmp_path, damage):
    path = tmp_path / "t.h5"
    w = TraceWriter(path, import_manifest("t"))
    w.write(recs(10))
    w.flush()
    w.write(recs(10, 10))
    w.flush()
    w._journal._file.close()
    jpath = str(path) + ".journal"
    with open(jpath, "rb") as f:
        data = bytearray(f.read())
    if damage == "truncate":
        data = data[:-7]
    else:
        data[-3] ^= 0xFF
    with open(jpath, "wb") as f:
        f.write(bytes(data))
    with open_trace(path) as trace:
        got = list(trace.records())
        recovery = trace.manifest["recovery"]
    assert [r.fields["v"] for r in got] == list(range(10))
    assert recovery["journal_discarded_bytes"] > 0 and recovery["discarded_reason"]


def test_a_live_recording_reads_as_a_snapshot(tmp_path):
    path = tmp_path / "t.h5"
    w = TraceWriter(path, import_manifest("t"))
    w.write(recs(30))
    w.flush()
    with open_trace(path) as snap:
        assert snap.in_progress
        assert len(list(snap.records())) == 30
    assert os.path.exists(w.journal_path), "a snapshot must not touch a live journal"
    w.write(recs(5, 30))
    w.close()
    with open_trace(path) as trace:
        assert trace.closed_cleanly and len(list(trace.records())) == 35


def test_an_existing_trace_is_not_overwritten(tmp_path):
    path = tmp_path / "t.h5"
    TraceWriter(path, import_manifest("t")).close()
    with pytest.raises(TraceWriteError) as info:
        TraceWriter(path, import_manifest("t"))
    assert info.value.remediation


def test_a_failed_fold_keeps_the_journal(tmp_path, monkeypatch):
    path = tmp_path / "t.h5"
    w = TraceWriter(path, import_manifest("t"))
    w.write(recs(20))
    from telemrec.trace import _filewrite

    def explode(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_filewrite, "_copy", explode)
    with pytest.raises(OSError):
        w.close()
    monkeypatch.undo()
    assert os.path.exists(w.journal_path) and not path.exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p], "no half-written temporary left behind"
    with open_trace(path) as trace:
        assert len(list(trace.records())) == 20


def test_the_stop_writes_exactly_what_folding_its_journal_writes(tmp_path):
    """``close()`` writes the trace from what the writer knows instead of reading its journal back;
    the trace must be the one the journal folds into, byte for byte in its texts and data."""
    import h5py

    from telemrec.trace._fold import fold_journal

    path = tmp_path / "t.h5"
    w = TraceWriter(path, dict(import_manifest("t"), tags={"k": (1, 2)}), seal_values=300)
    w.write_reader({"label": "s", "name": "s", "caps": {"units": {"v": "bytes"}}, "extra": (1, "x")})
    for tick in range(120):  # flushes: provisional segments merged level by level, and sealed ones
        w.write(recs(3, 3 * tick) + [RawRecord(tick, 10**18 + tick, f"p{tick // 10}", {"v": tick}, "s")])
        w.write_ticks("s", [{"wall_ns": tick, "mono_ns": tick}])
        if tick % 5 == 4:
            w.flush()
    w.annotate("phase", 10**18, 10**18 + 50)
    w.write(recs(7, 999))  # a tail no flush saw
    os.link(w.journal_path, tmp_path / "copy.h5.journal")  # the same file: it gets the end frame too
    w.close(stop={"reason": "test", "wall_ns": 1, "mono_ns": 2}, stats={"ticks": 120})
    fold_journal(str(tmp_path / "copy.h5.journal"), str(tmp_path / "copy.h5"))
    with h5py.File(path, "r") as a, h5py.File(tmp_path / "copy.h5", "r") as b:
        for name in ("manifest", "catalog", "streams"):
            assert a[name][()].tobytes() == b[name][()].tobytes(), name
    with open_trace(path) as trace:
        assert trace.closed_cleanly and trace.manifest["stats"]["records"] == 120 * 4 + 7
        assert len(list(trace.records())) == 120 * 4 + 7


def test_a_live_open_starts_at_the_latest_checkpoint_and_reads_what_a_full_scan_reads(tmp_path):
    """Checkpoints list the frames a reader still needs (start, definitions, readers' latest entries,
    sealed segments, the provisional segments not merged yet); a live open reads those and the frames
    after the latest one, and gets exactly what scanning the whole journal gives."""
    from telemrec.trace import journal as J
    from telemrec.trace._fold import read_journal

    path = tmp_path / "t.h5"
    w = TraceWriter(path, import_manifest("t"), checkpoint_frames=7, seal_values=400)
    written = []
    for flush in range(60):
        batch = [RawRecord(10**9 + i, 10**18 + i, f"e{i % 3}", {"v": i, "f": i / 4} if i % 3 else {"s": f"x{i % 4}"},
                           "src", "1") for i in range(flush * 9, flush * 9 + 9)]
        w.write(batch)
        w.write_reader({"label": "r", "flush": flush})
        w.flush()
        written += batch
        if flush in (10, 33, 59):
            slot = J.read_slot(w.journal_path)
            assert slot is not None and slot[0] > 0
            live, full = read_journal(w.journal_path, verify=False), read_journal(w.journal_path, verify=True)
            layout = [(t, [(s.row_lo, s.row_hi, s.final) for s in segs]) for t, segs in sorted(live.segments.items())]
            assert layout == [(t, [(s.row_lo, s.row_hi, s.final) for s in segs]) for t, segs in sorted(full.segments.items())]
            assert live.readers == full.readers and live.readers["r"]["flush"] == flush
            with open_trace(path) as snap:
                assert snap.in_progress
                assert [(r.entity, dict(r.fields)) for r in snap.records()] == [(r.entity, dict(r.fields)) for r in written]
    w.close()


def test_a_checkpoint_slot_that_points_anywhere_else_only_costs_a_full_scan(tmp_path):
    import struct
    import zlib

    from telemrec.trace import journal as J

    path = tmp_path / "t.h5"
    w = TraceWriter(path, import_manifest("t"), checkpoint_frames=3)
    for flush in range(12):
        w.write(recs(5, flush * 5))
        w.flush()
    offset, ordinal = J.read_slot(w.journal_path)
    for bad in [(offset + 1, ordinal), (offset, ordinal + 1), (J.FIRST_FRAME_V3, 0), (1 << 40, 3)]:
        head = struct.pack("<QI", *bad)
        with open(w.journal_path, "r+b") as f:
            f.seek(len(J.HEADER))
            f.write(head + struct.pack("<I", zlib.crc32(head)))
        with open_trace(path) as snap:
            assert [r.fields["v"] for r in snap.records()] == list(range(60))
    w.close()

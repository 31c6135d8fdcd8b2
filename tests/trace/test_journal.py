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

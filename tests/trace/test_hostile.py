"""Racing, full-disk, vanished and malformed journals (issue 12): typed errors, nothing lost, no second fold."""

import json
import os
import resource
import subprocess
import sys
import textwrap
import zlib

import pytest

from telemrec.errors import TelemrecWarning, TraceWriteError
from telemrec.record import RawRecord
from telemrec.trace import TraceWriter, open_trace
from telemrec.trace import journal as J
from telemrec.trace.importer import import_manifest


def records(n, start=0):
    return [RawRecord(10**9 + i, 10**18 + i * 10**9, f"e{i % 3}", {"v": i, "x": i / 4}, "src", "1")
            for i in range(start, start + n)]


def crashed(path, n=3000):
    w = TraceWriter(path, import_manifest("t"), chunk_rows=500)
    w.write(records(n))
    w.flush()
    w.abandon()
    return n


COUNT = "import sys, telemrec; t = telemrec.open_trace(sys.argv[1]); print(sum(1 for _ in t.records())); t.close()"


def test_concurrent_readers_of_a_crashed_trace_never_fail_nor_fold_twice(tmp_path):
    for round_ in range(4):
        path = tmp_path / f"c{round_}.h5"
        n = crashed(path)
        procs = [subprocess.Popen([sys.executable, "-c", COUNT, str(path)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(5)]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * 5, [err for _, err in results]
        assert [int(out) for out, _ in results] == [n] * 5
        assert path.exists() and not os.path.exists(f"{path}.journal")
        assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
        with open_trace(path) as trace:
            assert trace.recovered is False and not trace.closed_cleanly


def test_a_reader_during_the_stop_reads_in_place(tmp_path):
    """While the writer folds (it holds the journal's lock until the trace is written), a reader
    reads the journal in place and never folds it itself."""
    path = tmp_path / "s.h5"
    w = TraceWriter(path, import_manifest("t"))
    w.write(records(5000))
    w.flush()
    from telemrec.trace import _fold

    seen = []
    original = _fold.seal_tail

    def read_during_the_fold(state):
        with open_trace(path) as trace:  # the journal is still there, locked by the writer
            seen.append((trace.in_progress, sum(1 for _ in trace.records())))
        return original(state)

    _fold.seal_tail = read_during_the_fold
    try:
        w.close()
    finally:
        _fold.seal_tail = original
    assert seen == [(True, 5000)]
    with open_trace(path) as trace:
        assert trace.closed_cleanly and sum(1 for _ in trace.records()) == 5000


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys, warnings
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    import telemrec
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = telemrec.open_trace(sys.argv[1])
        print(sum(1 for _ in t.records()), t.recovered, t.closed_cleanly)
    print(caught[0].category.__name__, caught[0].message)
""")


def test_a_crashed_trace_reads_on_a_full_disk_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "f.h5"
    n = crashed(path, 20000)
    limit = os.path.getsize(f"{path}.journal") // 3  # the trace cannot be written in full
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(path), str(limit)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    counted, warning = proc.stdout.splitlines()
    assert counted == f"{n} True False"
    assert warning.startswith(TelemrecWarning.__name__) and "in memory" in warning
    assert sorted(os.listdir(tmp_path)) == ["f.h5.journal"], "no half-written temporary, the journal kept"
    with open_trace(path) as trace:  # with room again, the next open recovers it
        assert trace.recovered and sum(1 for _ in trace.records()) == n
    assert resource.getrlimit(resource.RLIMIT_FSIZE)  # (the limit was the child's alone)


@pytest.mark.parametrize("what", ["journal", "directory"])
def test_a_journal_removed_while_recording_stops_the_writer_and_what_it_held_is_saved(tmp_path, what):
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / "v.h5"
    w = TraceWriter(path, import_manifest("t"))
    w.write(records(1000))
    w.flush()
    if what == "journal":
        os.unlink(w.journal_path)
    else:
        os.unlink(w.journal_path)
        folder.rmdir()
    w.write(records(500, 1000))
    with pytest.raises(TraceWriteError) as info:
        w.flush()
    assert info.value.vanished and ("removed with its directory" in str(info.value)) == (what == "directory")
    saved = w.rescue()
    assert (saved == str(path)) == (what == "journal")
    try:
        with open_trace(saved) as trace:
            assert sum(1 for _ in trace.records()) == 1500
    finally:
        if what == "directory":
            os.unlink(saved)


def _append_frame(jpath: str, obj: dict) -> int:
    """A frame whose CRC is right but whose JSON is whatever ``obj`` is; returns its offset."""
    payload = bytes([J.JSON_FRAME]) + zlib.compress(json.dumps(obj).encode())
    frames = sum(1 for _ in J.scan(jpath, J.ScanResult()))
    with open(jpath, "ab") as f:
        at = f.tell()
        f.write(J.frame_bytes([payload], frames))
    return at


@pytest.mark.parametrize("bad", [{"t": "def", "items": [["entity", "zero", "x"]]},
                                 {"t": "end", "stop": None, "command": None, "stats": {}, "clean": True,
                                  "error": None, "manifest": [1]},
                                 {"t": "reader", "reader": {"label": 3}}, {"t": "rec", "r": [[1, 2, 3]]},
                                 {"t": "start", "manifest": {}}])
def test_a_checked_frame_of_the_wrong_shape_ends_the_journal_there(tmp_path, bad):
    path = tmp_path / "m.h5"
    n = crashed(path, 700)
    at = _append_frame(f"{path}.journal", bad)
    with open_trace(path) as trace:
        assert sum(1 for _ in trace.records()) == n
        recovery = trace.manifest["recovery"]
    assert recovery["journal_valid_bytes"] == at and recovery["journal_discarded_bytes"] > 0
    assert f"frame at byte {at}" in recovery["discarded_reason"]


def test_a_recorder_whose_directory_is_removed_says_so_and_saves_what_it_recorded(tmp_path):
    import shutil
    import time

    folder = tmp_path / "job"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "telemrec", "record", "-r", "psutil", "-i", "0.1",
                             "--flush-every", "0.3", "-o", str(folder / "run.h5")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (folder / "run.h5.journal").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    shutil.rmtree(folder)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert "removed with its directory" in err and "saved in" in err
    saved = err.split("saved in ", 1)[1].split()[0].rstrip(":;,")
    try:
        with open_trace(saved) as trace:
            assert sum(1 for _ in trace.records()) > 5
    finally:
        os.unlink(saved)


def _journal_frames(jpath) -> tuple[bytes, list[int]]:
    """The journal's bytes and each whole frame's offset, then the end of the last."""
    result = J.ScanResult()
    offsets = [f.offset for f in J.scan(jpath, result)]
    with open(jpath, "rb") as f:
        return f.read(), offsets + [result.valid_bytes]


def _two_table_journal(path) -> list:
    """Four flushes of two tables (entities of two field sets), each flush a segment frame per table."""
    w = TraceWriter(path, import_manifest("t"))
    written = []
    for flush in range(4):
        batch = [RawRecord(10**9 + i, 10**18 + i * 10**9, "a" if i % 2 else "b",
                           {"v": i} if i % 2 else {"w": i, "z": -i}, "src", "1")
                 for i in range(flush * 40, flush * 40 + 40)]
        w.write(batch)
        w.flush()
        written += batch
    w.abandon()
    return written


def _read_all(path):
    with open_trace(path) as trace:
        return [(r.entity, dict(r.fields)) for r in trace.records()], trace.manifest["recovery"]


@pytest.mark.parametrize("how", ["drop", "duplicate", "swap"])
def test_a_frame_missing_repeated_or_moved_in_the_middle_of_a_journal_ends_it_there(tmp_path, how):
    """Every frame passes its CRC, and each table's rows still follow on: only the frames' numbers tell
    that one is missing (its records would otherwise vanish from the middle without a word)."""
    path = tmp_path / "m.h5"
    _two_table_journal(path)
    data, offsets = _journal_frames(f"{path}.journal")
    k = len(offsets) - 4  # a segment frame of the third flush: later frames of both tables follow it
    frame = data[offsets[k]:offsets[k + 1]]
    if how == "drop":
        mutated = data[:offsets[k]] + data[offsets[k + 1]:]
    elif how == "duplicate":
        mutated = data[:offsets[k + 1]] + frame + data[offsets[k + 1]:]
        k += 1
    else:
        mutated = data[:offsets[k]] + data[offsets[k + 1]:offsets[k + 2]] + frame + data[offsets[k + 2]:]
    (tmp_path / "m.h5.journal").write_bytes(mutated)
    (tmp_path / "cut.h5.journal").write_bytes(data[:offsets[k]])  # a crash just before that frame
    got, recovery = _read_all(path)
    expected, _ = _read_all(tmp_path / "cut.h5")
    assert got == expected and 0 < len(got) < 160
    assert recovery["journal_valid_bytes"] == offsets[k]
    assert f"frame {k} is missing" in recovery["discarded_reason"]


def test_a_version_2_journal_without_frame_numbers_is_still_read(tmp_path):
    import shutil
    root = os.path.join(os.path.dirname(__file__), "..", "..", "sample_traces", "corrupt")
    shutil.copy(os.path.join(root, "crashed_v3.h5.journal"), tmp_path / "c.h5.journal")
    assert J.journal_version(str(tmp_path / "c.h5.journal")) == 2
    got, recovery = _read_all(tmp_path / "c.h5")
    assert [f["n"] for _, f in got] == list(range(100)) and recovery["journal_discarded_bytes"] > 0

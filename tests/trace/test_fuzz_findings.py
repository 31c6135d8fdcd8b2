"""What fuzzing found, each kept as the mutant that found it (``python -m telemrec.testing.fuzz repro``
rebuilds the same bytes): every one must now be a TraceCorruptError, or read as an undamaged prefix."""

from __future__ import annotations

import os
import time

import pytest

import telemrec
from telemrec.errors import TraceCorruptError
from telemrec.testing.fuzz import apply
from telemrec.testing.fuzz._mutate import Input
from telemrec.testing.fuzz._trace import layout

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "sample_traces")


def _mutant(tmp_path, sample: str, spec: str) -> str:
    path = os.path.join(SAMPLES, sample)
    inp = Input.from_path(path)
    if inp.kind == "trace":
        inp.layout = layout(path)
        inp.version = inp.layout["version"]
    mutant = apply(spec, inp, str(tmp_path))
    assert mutant is not None and mutant.data != inp.data
    out = tmp_path / inp.file_name
    out.write_bytes(mutant.data)
    return str(out)


def _read_all(path: str) -> int:
    telemrec.load(path)
    with telemrec.open_trace(path) as trace:
        return sum(1 for _ in trace.records())


@pytest.mark.parametrize("sample,spec,message", [
    # HDF5's own metadata checksum failing inside chunk_iter, on the loader's path
    ("v1/dcgmi_synthetic.h5", "set:12000012", "decoding columns"),
    ("v2/psutil_workload.h5", "flip:12000002", "decoding columns"),
    # one of the two copies of an entity's name changed: the group attribute against its link
    ("v2/dcgmi_synthetic.h5", "rename:12000008", "one of the two copies of its name is damaged"),
    # a re-sealed catalog whose field list of one process lost a field that its runs hold values of
    ("v3/psutil_process_tree.h5", "catalog-edit:12000008", "does not have its field"),
    # a re-sealed manifest whose reader caps hold a dict where a counter name belongs
    ("v3/psutil_workload.h5", "manifest-edit:7000028", "caps.counters is not a list of strings"),
])
def test_a_damaged_trace_is_a_typed_error(tmp_path, sample, spec, message):
    path = _mutant(tmp_path, sample, spec)
    with pytest.raises(TraceCorruptError, match=message):
        _read_all(path)


def test_metadata_that_makes_hdf5_loop_is_reported_within_seconds(tmp_path):
    path = _mutant(tmp_path, "v2/node_exporter.h5", "zero@5024-8200")
    began = time.monotonic()
    with pytest.raises(TraceCorruptError, match="stuck for 3 s on one object"):
        telemrec.open_trace(path)
    assert time.monotonic() - began < 30  # 3 s without progress, whatever the file's size


def test_a_repeated_frame_of_an_old_journal_ends_it_there(tmp_path):
    original = os.path.join(SAMPLES, "corrupt", "crashed.h5.journal")
    inp = Input.from_path(original)
    mutant = apply("frame-order:12000004", inp, str(tmp_path))
    assert "duplicate" in mutant.description
    (tmp_path / "trace.h5.journal").write_bytes(mutant.data)
    with telemrec.open_trace(str(tmp_path / "trace.h5"), recover=False) as trace:
        repeated = sum(1 for _ in trace.records())
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "trace.h5.journal").write_bytes(inp.data)
    with telemrec.open_trace(str(tmp_path / "ok" / "trace.h5"), recover=False) as trace:
        whole = sum(1 for _ in trace.records())
    assert repeated == whole  # the frames before the repeated one: its records are not read twice


def test_an_object_past_one_that_fails_is_still_looked_at_first(tmp_path):
    """h5py's visititems stops at the first object that fails; the first look walks on, so an object
    after it that makes HDF5 loop is found there, not by the reader that would hang on it."""
    path = _mutant(tmp_path, "v2/node_exporter.h5", "zero-large:11000035")
    began = time.monotonic()
    with pytest.raises(TraceCorruptError, match="stuck for 3 s on one object"):
        _read_all(path)
    assert time.monotonic() - began < 30


def test_the_time_span_does_not_come_from_the_index_s_wall_ranges(tmp_path):
    """A re-sealed index whose segment wall range was zeroed: the records' instants are unchanged,
    and so is the span (it is read from the sources' time tables)."""
    path = _mutant(tmp_path, "v3/psutil_process_tree.h5", "index-edit:11000004")
    with telemrec.open_trace(os.path.join(SAMPLES, "v3/psutil_process_tree.h5")) as trace:
        expected = trace.time_span()
    with telemrec.open_trace(path) as trace:
        assert trace.time_span() == expected
        walls = [r.wall_ns for r in trace.records()]
    assert expected == (min(walls), max(walls))


def test_a_segment_whose_runs_are_out_of_entity_order_is_refused():
    """Two runs swapped in a re-sealed segment header would trade their rows' entities."""
    import numpy as np

    from telemrec.trace import _catalog as C
    from telemrec.trace._segments import Segment

    cat = C.Catalog()
    for item in (["source", "s"], ["table", "records", 0], ["entity", 0, "a"], ["entity", 0, "b"]):
        cat.apply(item)
    header = {"table": 0, "rows": [0, 3], "seq": [0, 3], "wall": [1, 3], "entities": [1, 0], "counts": [1, 2],
              "streams": [], "run_kinds": [], "values": 0, "final": True}
    with pytest.raises(TraceCorruptError, match="ascending"):
        Segment.from_header(header, 0, cat)
    header["entities"] = [0, 1]
    assert Segment.from_header(header, 0, cat).entities.tolist() == [0, 1]
    assert np.array_equal(Segment.from_header(header, 0, cat).counts, [1, 2])


def test_info_shows_a_manifest_entry_of_the_wrong_type_as_missing(tmp_path):
    import subprocess
    import sys

    path = _mutant(tmp_path, "v3/nvml_synthetic.h5", "manifest-edit:11000021")  # gpus[0] is 7
    out = subprocess.run([sys.executable, "-m", "telemrec", "info", path], capture_output=True, text=True)
    assert out.returncode == 0 and "Traceback" not in out.stderr and "time span" in out.stdout

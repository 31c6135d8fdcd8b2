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

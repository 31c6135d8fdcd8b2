"""The chunk index (``_where``): written for every column, used by load() instead of asking
HDF5, and never trusted blindly: a file whose chunks moved (rewritten by another tool) or whose
index points at the wrong stream still loads the right values, and ``check`` reports it."""

from __future__ import annotations

import contextlib
import random
import shutil

import h5py
import numpy as np
import pytest

from telemrec.analysis import load
from telemrec.trace import _fastread
from telemrec.trace import _chunkindex, open_trace
from telemrec.testing import assert_frames_identical
from telemrec.trace.check import check_trace
from telemrec.trace.v1 import STORED_META, WHERE_SIZE

from .test_fastread import CHUNK, copy_listing_widths, write_value_trace


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("index") / "t.h5")
    write_value_trace(path, 5, 7 * CHUNK + 2)
    return path


@contextlib.contextmanager
def _editing(path: str, copy: str, name: str = "records/src/e/_where"):
    """A copy of the trace open for editing in place, with the index ``name`` as it was."""
    shutil.copy(path, copy)
    with h5py.File(copy, "r+") as f:
        yield f, f[name][()]


def _index_problems(path: str) -> list[str]:
    return [p for p in check_trace(path).problems if "chunk index" in p]


def _counting_locate(monkeypatch) -> list:
    calls = []
    original = _chunkindex.locate
    monkeypatch.setattr(_chunkindex, "locate", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def test_every_column_has_its_chunks_in_the_index(trace_path):
    with open_trace(trace_path) as trace, h5py.File(trace_path, "r") as h5:
        assert trace.format_version == 2 and trace.entity("src", "e").has_index
        ent = trace.entity("src", "e")
        names = ent.fields + ["_seq", "_tidx", "_source_version", "_error"]
        assert sum(len(ent.column(n).descriptors) for n in names) == len(h5["records/src/e/_where"])
        for name in names:
            col = ent.column(name)
            stored = col.descriptors[:, 2] > 0
            assert (col.where[stored, 0] > 0).all() and (col.where[~stored] == -1).all(), name
        assert ent.time.mono.where is not None and ent.time.wall.where is not None
    assert _index_problems(trace_path) == []


def test_load_reads_the_index_instead_of_asking_hdf5(trace_path, monkeypatch):
    calls = _counting_locate(monkeypatch)
    load(trace_path)
    with open_trace(trace_path) as trace:  # the NumPy path too
        col = trace.entity("src", "e").column("int_counter")
        _fastread.decode_numeric([_fastread.NumericJob(col, 0, col.rows, np.empty(col.rows))], compiled=False,
                                 threads=False)
    assert calls == []


def _columns(path: str, **options) -> dict[str, np.ndarray]:
    """Every field decoded by ``decode_numeric(**options)``: ``raw=False`` is h5py's own filter
    pipeline (no chunk index, no direct reads), the reference."""
    out = {}
    with open_trace(path) as trace:
        ent = trace.entity("src", "e")
        for name in ent.fields:
            col = ent.column(name)
            out[name] = np.empty(col.rows)
            _fastread.decode_numeric([_fastread.NumericJob(col, 0, col.rows, out[name])], threads=False, **options)
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name].view(np.int64), b[name].view(np.int64)), name


def _move_chunks(path: str, copy: str, *, keep_size: bool = False) -> list[str]:
    """Rewrite some datasets the way another tool would: same values, chunks and filters, new places.
    ``keep_size``: also write the new file size into the index's fingerprint, as if the edit had
    reused free space without growing the file (so only the checksums can tell)."""
    names = copy_listing_widths(path, copy, ("u1", "u8"))
    with h5py.File(copy, "r+") as f:
        for name in names:
            data, chunks = f[name][()], f[name].chunks
            del f[name]
            f.create_dataset(name, data=data, chunks=chunks, shuffle=name.endswith("u8"), compression="gzip",
                             compression_opts=6, maxshape=(None,))
        if keep_size:
            f.flush()
            f.attrs[WHERE_SIZE] = np.int64(f.id.get_filesize())
    return names


@pytest.mark.parametrize("keep_size", [False, True])
def test_chunks_that_moved_are_located_again(trace_path, tmp_path, monkeypatch, keep_size):
    moved = str(tmp_path / "moved.h5")
    assert _move_chunks(trace_path, moved, keep_size=keep_size)
    with open_trace(moved) as trace:  # a file that changed size: its index is not used at all
        assert (trace.entity("src", "e").column("int_counter").where is not None) == keep_size
    handed_back = []
    original = _fastread._decode_columns

    def spy(fd, specs, jobs):
        failed = original(fd, specs, jobs)
        handed_back.extend(failed)
        return failed

    monkeypatch.setattr(_fastread, "_decode_columns", spy)
    frame = load(moved)
    monkeypatch.undo()
    assert_frames_identical(frame, load(trace_path))
    if _fastread._cdecode is not None and keep_size:
        assert handed_back, "the stale rows should have been noticed"
    _assert_same(_columns(moved, compiled=False), _columns(trace_path, raw=False))
    assert _index_problems(moved)


def test_a_chunk_rewritten_in_place_is_not_read_from_its_old_place(trace_path, tmp_path):
    """An edit in r+ mode that makes a chunk larger: HDF5 writes it elsewhere and leaves the old
    bytes, which still match the index's checksum. The file grew, so the index is not used."""
    edited = str(tmp_path / "edited.h5")
    shutil.copy(trace_path, edited)
    rng = np.random.default_rng(3)
    with h5py.File(edited, "r+") as f:
        dset = f["records/src/e/fields/negative/u8"]
        dset[CHUNK:2 * CHUNK] = rng.integers(0, 2**63, CHUNK, dtype=np.uint64)
    for compiled in (True, False):
        _assert_same(_columns(edited, compiled=compiled), _columns(edited, raw=False))
    assert _index_problems(edited)


@pytest.mark.parametrize("replace", ["group", "compound", "strings", "no checksums"])
def test_a_malformed_index_is_ignored(trace_path, tmp_path, replace):
    broken = str(tmp_path / "broken.h5")
    with _editing(trace_path, broken) as (f, index):
        del f["records/src/e/_where"]
        if replace == "group":
            f.create_group("records/src/e/_where")
        elif replace == "compound":
            f["records/src/e/_where"] = np.zeros(3, dtype=[("a", "i8"), ("b", "f8")])
        elif replace == "strings":
            f["records/src/e/_where"] = np.full((len(index), 3), b"x")
        else:  # rows of the right shape without checksums, two places swapped: must not be trusted
            stored = np.flatnonzero((index[:, 0] >= 0) & (index[:, 1] == index[np.argmax(index[:, 1]), 1]))
            index[:, 2] = -1
            rows = np.flatnonzero(index[:, 0] >= 0)
            index[[rows[0], rows[-1]], :2] = index[[rows[-1], rows[0]], :2]
            f["records/src/e/_where"] = index
            assert len(stored)
        f.flush()
        f.attrs[WHERE_SIZE] = np.int64(f.id.get_filesize())  # as if nothing else had changed
    assert_frames_identical(load(broken), load(trace_path))
    for compiled in (True, False):
        _assert_same(_columns(broken, compiled=compiled), _columns(trace_path, raw=False))
    assert _index_problems(broken)


def test_a_malformed_time_index_is_reported(trace_path, tmp_path):
    broken = str(tmp_path / "time.h5")
    with _editing(trace_path, broken, "records/src/$time/_where") as (f, index):
        row = int(np.flatnonzero(index[:, 0] >= 0)[0])
        f["records/src/$time/_where"][row] = index[row] + [1, 0, 0]  # one byte off: a stale place
    assert any("$time" in p for p in _index_problems(broken))
    assert_frames_identical(load(broken), load(trace_path))


def test_an_index_row_pointing_at_another_stream_is_not_trusted(trace_path, tmp_path):
    """Places swapped between chunks of one width (what a stale index finds after chunks moved): each
    row points at a valid zlib stream of the right size, only its Adler-32 tells it is another
    chunk's. Both decoders must notice and read the right chunk."""
    swapped = str(tmp_path / "swapped.h5")
    with open_trace(trace_path) as trace:  # the width of each index row (directory order: fields, then meta)
        ent = trace.entity("src", "e")
        widths = np.concatenate([ent.column(n).descriptors[:, 2] for n in ent.fields + list(STORED_META)])
    with _editing(trace_path, swapped) as (f, index):
        rng = random.Random(1)
        for width in (1, 2, 4, 8):  # streams that inflate to the same size: the exact-size check cannot tell
            rows = np.flatnonzero(widths == width).tolist()
            rng.shuffle(rows)
            for a, b in zip(rows[::2], rows[1::2]):
                index[[a, b], :2] = index[[b, a], :2]  # each row keeps its own chunk's Adler-32
        f["records/src/e/_where"][...] = index
    assert_frames_identical(load(swapped), load(trace_path))
    reference = _columns(trace_path, raw=False)
    for compiled in (True, False):
        _assert_same(_columns(swapped, compiled=compiled), reference)
    assert _index_problems(swapped)


def test_an_index_of_the_wrong_shape_is_ignored(trace_path, tmp_path):
    short = str(tmp_path / "short.h5")
    with _editing(trace_path, short) as (f, index):
        del f["records/src/e/_where"]
        f["records/src/e/_where"] = index[:-1]
    with open_trace(short) as trace:
        assert trace.entity("src", "e").column("int_counter").where is None
    assert_frames_identical(load(short), load(trace_path))
    assert _index_problems(short)


def test_upgrade_writes_a_fresh_index(trace_path, tmp_path):
    from telemrec.trace.upgrade import upgrade

    moved = str(tmp_path / "moved.h5")
    _move_chunks(trace_path, moved)
    fresh = str(tmp_path / "fresh.h5")
    upgrade(moved, fresh)
    assert _index_problems(fresh) == []
    assert_frames_identical(load(fresh), load(trace_path))


def test_traces_written_before_the_index_are_located_through_hdf5(monkeypatch):
    """The frozen v2 samples predate the index: readers locate their chunks as before."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "sample_traces" / "v2" / "nvml_synthetic.h5"
    with open_trace(sample) as trace:
        assert not any(trace.entity(s, n).has_index for s, n in trace.entities())
    calls = _counting_locate(monkeypatch)
    load(sample)
    assert calls
    assert _index_problems(str(sample)) == []

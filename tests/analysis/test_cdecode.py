"""The compiled decoder (``telemrec.trace._ccodec``) gives the NumPy kernels' bits.

``decode`` is checked against ``_kernels.decode_into`` on random stored chunks of every
encoding, width, delta order, skip and anchors; ``decode_columns`` against the NumPy path
of ``decode_numeric`` on a real trace, including the columns it must hand back (a chunk
it cannot find, damaged bytes, a chunk that inflates to the wrong size).
"""

from __future__ import annotations

import os
import random
import zlib

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemrec.trace import _fastread
from telemrec.trace._fastread import NumericJob, decode_numeric
from telemrec.trace._kernels import _POW10, decode_into
from telemrec.trace import _codec, open_trace

from .test_fastread import CHUNK, copy_listing_widths, small_chunk_trace  # noqa: F401 - a fixture

_cdecode = _fastread._cdecode

if os.environ.get("TELEMREC_REQUIRE_COMPILED") and _cdecode is None:
    pytest.fail("TELEMREC_REQUIRE_COMPILED is set but telemrec.trace._ccodec was not built "
                "(see setup.py: it needs a C compiler)", pytrace=False)
pytestmark = pytest.mark.skipif(_cdecode is None, reason="the compiled decoder is not built here")

_MODES = {**dict.fromkeys(range(_codec.DEC_DELTA2 + 1), 0), _codec.F64_XOR: 1, _codec.F64_BITS: 2,
          _codec.MIXED_RAW: 2}


@st.composite
def stored_chunks(draw):
    width = draw(st.sampled_from([1, 2, 4, 8]))
    enc = draw(st.sampled_from(sorted(_MODES)))
    count = draw(st.integers(1, 3))
    rows = draw(st.integers(1, 40))
    cr = rows + draw(st.integers(0, 5))  # chunks may hold more rows than are decoded
    skip = draw(st.integers(0, rows))
    scale = draw(st.integers(0, 9)) if _codec.DEC_RAW <= enc <= _codec.DEC_DELTA2 else 0
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # small residuals (the common case) and bytes of any value (wrapping sums, large bit patterns)
    high = draw(st.sampled_from([4, 256]))
    planes = rng.integers(0, high, size=(count, width, cr), dtype=np.uint8)
    anchors = None
    if draw(st.booleans()):
        anchors = rng.integers(-(2**63), 2**63 - 1, size=(count, 2), dtype=np.int64, endpoint=True)
    floats = enc > _codec.DEC_DELTA2 or (enc >= _codec.DEC_RAW and scale) or draw(st.booleans())
    return width, enc, scale, planes, rows, skip, anchors, bool(floats)


@settings(max_examples=400, deadline=None)
@given(stored_chunks())
def test_decode_equals_the_numpy_kernels(case):
    width, enc, scale, planes, rows, skip, anchors, floats = case
    count, _, cr = planes.shape
    dtype = np.float64 if floats else np.int64
    expect = np.empty((count, rows - skip), dtype)
    with np.errstate(over="ignore"):
        decode_into(planes[:, :, :rows], enc, scale, expect, skip, anchors)
    got = np.full((count, rows - skip), -1, dtype)
    order = _codec.delta_order(enc) if enc <= _codec.DEC_DELTA2 else 0
    divisor = _POW10[scale] if _codec.DEC_RAW <= enc <= _codec.DEC_DELTA2 and scale else 0.0
    _cdecode.decode_v2(planes, width, cr, count, rows, skip, _MODES[enc], order, divisor, anchors, got, floats)
    assert np.array_equal(got.view(np.int64), expect.view(np.int64))


def test_decode_refuses_inconsistent_arguments():
    planes = np.zeros((1, 1, 8), np.uint8)
    out = np.empty(8)
    with pytest.raises(ValueError, match="out of range"):
        _cdecode.decode_v2(planes, 3, 8, 1, 8, 0, 0, 0, 0.0, None, out, True)
    with pytest.raises(ValueError, match="too small"):
        _cdecode.decode_v2(planes, 1, 8, 2, 8, 0, 0, 0, 0.0, None, out, True)
    # rows past the last chunk: the column is handed back (the NumPy path decides what it means)
    assert _cdecode.decode_columns_v2(0, [(np.zeros((1, 3), np.uint8), np.full((1, 3), -1, np.int64), None, 8, 0, 9,
                                        np.empty(9), True)]) == [0]


# -- decode_columns, through decode_numeric, on a trace ------------------------------------------

def _decode_all(path, ranges, *, compiled, threads=False):
    out = {}
    with open_trace(path) as trace:
        ent = trace.entity("src", "e")
        for name in ent.fields + ["_tidx"]:
            col = ent.column(name)
            dtype = np.int64 if name == "_tidx" else np.float64
            jobs = [NumericJob(col, lo, hi, np.empty(hi - lo, dtype)) for lo, hi in ranges]
            decode_numeric(jobs, compiled=compiled, threads=threads)
            out[name] = [job.out.view(np.int64).copy() for job in jobs]
    return out


def _ranges(n, seed=3):
    rng = random.Random(seed)
    ranges = [(0, n), (0, 1), (n - 1, n), (CHUNK - 1, CHUNK + 1), (CHUNK, 2 * CHUNK), (5, 5)]
    return ranges + [tuple(sorted(rng.sample(range(n + 1), 2))) for _ in range(25)]


@pytest.mark.parametrize("threads", [False, True])
def test_columns_equal_the_numpy_path(small_chunk_trace, threads, monkeypatch):
    path, n = small_chunk_trace
    ranges = _ranges(n)
    calls = []
    original = _cdecode.decode_columns_v2
    monkeypatch.setattr(_fastread, "_cdecode", type("Spy", (), {
        "decode_columns_v2": staticmethod(lambda fd, cols: calls.append(len(cols)) or original(fd, cols))}))
    compiled = _decode_all(path, ranges, compiled=True, threads=threads)
    assert sum(calls) > 0, "the compiled decoder was not used"
    reference = _decode_all(path, ranges, compiled=False)
    for name in reference:
        for (lo, hi), a, b in zip(ranges, compiled[name], reference[name]):
            assert np.array_equal(a, b), (name, lo, hi)


def test_columns_it_cannot_read_go_through_hdf5(small_chunk_trace, monkeypatch):
    """A chunk without a known location, one that inflates to the wrong size and one whose bytes
    are not a zlib stream: the column is handed back and decoded by the NumPy path, same bits."""
    path, n = small_chunk_trace
    handed_back = []
    original = _cdecode.decode_columns_v2

    def sabotage(fd, cols):
        cols = list(cols)
        for i, (desc, where, *rest) in enumerate(cols):
            where = where.copy()
            kind = i % 3
            stored = np.flatnonzero(where[:, 0] >= 0)
            if len(stored):
                c = stored[-1]
                if kind == 0:
                    where[c] = -1
                elif kind == 1:
                    where[c, 1] -= 1  # a truncated stream
                else:
                    where[c, 0] += 1  # not the start of the stream
            cols[i] = (desc, where, *rest)
        failed = original(fd, cols)
        handed_back.extend(failed)
        return failed

    monkeypatch.setattr(_fastread, "_cdecode", type("Saboteur", (), {"decode_columns_v2": staticmethod(sabotage)}))
    ranges = [(0, n), (3, n - 4)]
    sabotaged = _decode_all(path, ranges, compiled=True)
    assert handed_back, "no column was handed back"
    monkeypatch.undo()
    reference = _decode_all(path, ranges, compiled=False)
    for name in reference:
        for a, b in zip(sabotaged[name], reference[name]):
            assert np.array_equal(a, b), name


def test_a_chunk_of_the_wrong_size_is_not_trusted(tmp_path):
    """A valid zlib stream of another length (what an offset into the wrong chunk would find)
    fails the column instead of decoding garbage."""
    cr = 8
    blob = zlib.compress(bytes(range(cr + 1)))
    path = tmp_path / "blob"
    path.write_bytes(blob)
    out = np.full(cr, -7.0)
    with open(path, "rb") as fh:
        failed = _cdecode.decode_columns_v2(fh.fileno(), [(np.array([[0, 0, 1]], np.uint8),
                                                        np.array([[0, len(blob)]], np.int64), None, cr, 0, cr, out,
                                                        True)])
    assert failed == [0]


def test_a_repacked_trace_with_other_filters_still_loads(small_chunk_trace, tmp_path):
    """h5repack-style rewrites (here: no shuffle, gzip 1) are not read directly; values are equal."""
    path, n = small_chunk_trace
    copy = str(tmp_path / "repacked.h5")
    names = copy_listing_widths(path, copy, ("u2", "u4", "u8"))
    with h5py.File(copy, "r+") as f:
        for name in names:
            data = f[name][()]
            chunks = f[name].chunks
            del f[name]
            f.create_dataset(name, data=data, chunks=chunks, compression="gzip", compression_opts=1,
                             maxshape=(None,))
    ranges = [(0, n), (2, n - 3)]
    repacked = _decode_all(copy, ranges, compiled=True)
    reference = _decode_all(path, ranges, compiled=False)
    assert names and repacked.keys() == reference.keys()
    for name in reference:
        for a, b in zip(repacked[name], reference[name]):
            assert np.array_equal(a, b), name


# -- hostile arguments and damaged traces (an independent review's reproducers) ------------------

def _column(cr=8, lo=0, hi=8, out=None, where=None, anchors=None, chunks=1):
    desc = np.tile(np.array([[0, 0, 1]], np.uint8), (chunks, 1))
    where = np.full((chunks, 3), -1, np.int64) if where is None else where
    return (desc, where, anchors, cr, lo, hi, np.empty(max(hi - lo, 1)) if out is None else out, True)


def test_sizes_that_would_overflow_are_refused_not_trusted():
    out = np.empty(8)
    with pytest.raises(ValueError, match="too small"):
        _cdecode.decode_v2(np.zeros(64, np.uint8), 8, 1, 2**61, 1, 0, 0, 0, 0.0, None, out, True)
    with pytest.raises(ValueError, match="out of range"):
        _cdecode.decode_v2(np.zeros(64, np.uint8), 1, 2**61 + 1, 1, 1, 0, 0, 0, 0.0, None, out, True)
    # decode_columns hands such columns back instead of writing past ``out``
    assert _cdecode.decode_columns_v2(0, [_column(cr=2**62, lo=0, hi=2**61, out=out)]) == [0]
    assert _cdecode.decode_columns_v2(0, [_column(cr=2**62, lo=2**62, hi=2**62 + 1, out=out)]) == [0]
    assert _cdecode.decode_columns_v2(0, [_column(cr=2**61 + 1, lo=0, hi=1, out=out)]) == [0]


def test_misaligned_buffers_are_refused():
    out = memoryview(bytearray(8 * 8 + 1))[1:]
    with pytest.raises(ValueError, match="aligned"):
        _cdecode.decode_v2(np.zeros(8, np.uint8), 1, 8, 1, 8, 0, 0, 1, 0.0, None, out, True)
    assert _cdecode.decode_columns_v2(0, [_column(out=out)]) == [0]


def test_a_column_list_changed_while_it_is_read_is_safe():
    columns = []

    class Clears:
        def __index__(self):
            columns.clear()  # frees the caller's tuples: decode_columns must hold its own references
            return 8

    columns.extend(_column(cr=Clears()) for _ in range(4))
    assert _cdecode.decode_columns_v2(0, columns) == [0, 1, 2, 3]


def test_a_column_that_is_not_a_tuple_is_a_type_error():
    with pytest.raises(TypeError, match="tuple"):
        _cdecode.decode_columns_v2(0, [list(_column())])


def test_an_oversized_compressed_size_is_not_read(small_chunk_trace, monkeypatch):
    path, n = small_chunk_trace
    original = _cdecode.decode_columns_v2
    handed_back = []

    def inflate_sizes(fd, cols):
        cols = [(desc, np.where(where >= 0, where * [1, 1 << 40, 1], where), *rest) for desc, where, *rest in cols]
        failed = original(fd, cols)
        handed_back.extend(failed)
        return failed

    monkeypatch.setattr(_fastread, "_cdecode", type("Inflating", (), {"decode_columns_v2": staticmethod(inflate_sizes)}))
    oversized = _decode_all(path, [(0, n)], compiled=True)
    monkeypatch.undo()
    assert handed_back
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(oversized.values(), _decode_all(path, [(0, n)],
                                                                                        compiled=False).values()))


def _rewrite_directory(path: str, change) -> None:
    import json

    with h5py.File(path, "r+") as f:
        directory = json.loads(f["records/src/e/_directory"].asstr()[()])
        for meta in directory["fields"]:
            change(meta)
        del f["records/src/e/_directory"]
        f["records/src/e/_directory"] = json.dumps(directory)


def test_short_anchors_hand_the_column_back_and_the_batch_goes_on():
    out, other = np.full(16, -1.0), np.full(8, -1.0)
    short = _column(cr=8, hi=16, chunks=2, out=out, anchors=np.zeros((1, 2), np.int64))
    # width-0 chunks (all values from the anchors): no file needed
    whole = (np.array([[1, 0, 0]], np.uint8), np.full((1, 3), -1, np.int64), np.array([[5, 0]], np.int64), 8, 0, 8,
             other, True)
    assert _cdecode.decode_columns_v2(0, [short, whole]) == [0]
    assert other.tolist() == [5.0] * 8


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(chunk_rows=2**61 + 1, rows=1, chunks=m["chunks"][:1]), "chunks of 2305843009213693953 rows"),
    (lambda m: m.update(anchors=m["anchors"][:2]), "2 chunk anchors for 6 chunks"),
])
def test_chunk_metadata_that_does_not_fit_is_a_corrupt_trace(small_chunk_trace, tmp_path, change, message):
    import shutil

    from telemrec.errors import TraceCorruptError
    from telemrec.trace.check import check_trace

    path, _ = small_chunk_trace
    damaged = str(tmp_path / "damaged.h5")
    shutil.copy(path, damaged)
    _rewrite_directory(damaged, lambda m: change(m) if m["name"] == "int_counter" else None)
    with open_trace(damaged) as trace:
        with pytest.raises(TraceCorruptError, match=message):
            trace.entity("src", "e").column("int_counter")
    assert any(message in p for p in check_trace(damaged).problems)


def test_big_endian_datasets_are_not_read_directly(small_chunk_trace, tmp_path):
    """Stored big-endian with the format's own filters (another tool, another host): the fast paths
    must not take the bytes for little-endian planes."""
    path, n = small_chunk_trace
    copy = str(tmp_path / "big-endian.h5")
    names = copy_listing_widths(path, copy, ("u2", "u4", "u8"))
    with h5py.File(copy, "r+") as f:
        for name in names:
            data, chunks = f[name][()], f[name].chunks
            del f[name]
            f.create_dataset(name, data=data.astype(data.dtype.newbyteorder(">")), chunks=chunks, shuffle=True,
                             compression="gzip", maxshape=(None,))
    reference = _decode_all(path, [(0, n)], compiled=False)
    for compiled in (True, False):
        swapped = _decode_all(copy, [(0, n)], compiled=compiled)
        for name in reference:
            assert np.array_equal(swapped[name][0], reference[name][0]), (name, compiled)

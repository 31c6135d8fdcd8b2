"""The compiled stream encoder (``_ccodec.encode_many``, what the writer uses) writes exactly the
bodies and stream facts of the NumPy codec (``_streams.encode_body``, used without a compiler):
ints, decimals, floats with NaN payloads and -0.0, mixed kinds, absent rows, strings, None."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemrec.trace import _streams
from telemrec.trace._segments import FLUSH_LEVEL, PROVISIONAL_LEVEL, _ccodec, encode_piece, provisional_frame
from telemrec.trace._tables import Piece, column_of_values, gather_compiled, gather_numpy, merge_pieces, packed, packed_column
from telemrec.trace.journal import _encoder

if os.environ.get("TELEMREC_REQUIRE_COMPILED") and _ccodec is None:
    pytest.fail("TELEMREC_REQUIRE_COMPILED is set but telemrec.trace._ccodec was not built", pytrace=False)
pytestmark = pytest.mark.skipif(_ccodec is None, reason="the compiled codec is not built here")

VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.integers(-1000, 1000),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.25, 1.5, 12.75, -0.0, float("nan")]),
    st.none(), st.sampled_from(["", "busy", "ok", "é\u2603", "lone \ud800 surrogate"]))


@st.composite
def columns(draw):
    style = draw(st.sampled_from(["ints", "decimals", "mixed", "constant"]))
    n = draw(st.integers(1, 60))
    if style == "ints":
        start, step = draw(st.integers(-(2**40), 2**40)), draw(st.integers(-50, 50))
        values = [start + i * step + draw(st.integers(0, 3)) for i in range(n)]
    elif style == "decimals":
        values = [round(draw(st.floats(-1e6, 1e6)), draw(st.integers(0, 3))) for _ in range(n)]
    elif style == "constant":
        values = [draw(VALUES)] * n
    else:
        values = draw(st.lists(VALUES, min_size=n, max_size=n))
    col = column_of_values(values)
    absent = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    col.kinds[np.array(absent, bool)] = 0  # some rows absent
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), max_size=4)))) if n > 1 else []
    runs = np.diff([0, *cuts, n]).astype(np.int64)
    return col, runs


@settings(max_examples=300, deadline=None)
@given(columns(), st.sampled_from([0, 1, 6]))
def test_the_compiled_encoder_writes_the_numpy_codecs_bodies(case, level):
    col, runs = case
    strings = _streams.strings_section(col.kinds, col.strs)
    (out,) = _ccodec.encode_many([(col.kinds, packed(col), strings)], runs, level)
    if not col.kinds.any():
        assert out is None  # every row absent: no stream
        return
    stream, encoding, scale, width, raw, kinds, crc = out
    # the writer hands the str values and the encoder makes the strings section itself
    (made,) = _ccodec.encode_many([(col.kinds, packed(col), col.strs)], runs, level)
    assert made == out
    body, info = _streams.encode_body(col, runs)
    assert zlib.decompress(stream) == body
    assert (encoding, scale, width, kinds, raw) == (info.encoding, info.scale, info.width, info.kinds, info.raw_size)
    assert crc == zlib.crc32(stream)


def test_columns_that_do_not_fit_their_runs_are_refused():
    col = column_of_values([1, 2, 3])
    with pytest.raises(ValueError):
        _ccodec.encode_many([(col.kinds, packed(col), b"")], np.array([2], np.int64), 6)
    with pytest.raises(TypeError):
        _ccodec.encode_many([col.kinds], np.array([3], np.int64), 6)


def test_str_values_the_encoder_cannot_take_are_refused():
    kinds = np.array([4, 4], np.uint8)  # STR rows
    values = np.zeros(2, np.int64)
    runs = np.array([2], np.int64)
    for strs, error in ((np.array(["a", 7], object), TypeError), (np.array(["a"], object), ValueError),
                        (np.array(["a", "b"]), ValueError)):  # a non-str value; too few rows; not objects
        with pytest.raises(error):
            _ccodec.encode_many([(kinds, values, strs)], runs, 6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), VALUES, max_size=4), min_size=1, max_size=30),
       st.data())
def test_fill_table_types_rows_and_says_which_fields_each_entity_holds(rows, data):
    """What the writer's fast path takes from one C pass: each row's kinds and packed values,
    the str values by field, and which fields each entity (a run of rows) holds."""
    index = {"a": 0, "b": 1, "c": 2, "d": 3}
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(rows) - 1), max_size=5)))) if len(rows) > 1 else []
    counts = np.diff([0, *cuts, len(rows)]).tolist()
    kinds, values = np.zeros((4, len(rows)), np.uint8), np.zeros((4, len(rows)), np.int64)
    done, strs, marks, used, present = _ccodec.fill_table(rows, index, kinds, values, counts)
    assert done == len(rows)
    for f, name in enumerate("abcd"):
        col = column_of_values([row.get(name) for row in rows])
        held = np.array([name in row for row in rows])
        assert (kinds[f] == np.where(held, col.kinds, 0)).all()
        assert (values[f][held] == packed(col)[held]).all()
        texts = [row[name] if isinstance(row.get(name), str) else None for row in rows]
        assert strs.get(f) == (texts if any(t is not None for t in texts) else None)
    starts = np.cumsum([0] + counts[:-1])
    expected = np.logical_or.reduceat(kinds != 0, starts, axis=1).T
    assert marks == expected.tobytes()
    assert used == np.flatnonzero((kinds != 0).any(axis=1)).tolist()
    assert present == int(np.count_nonzero(kinds))
    assert _ccodec.fill_table(rows, {"a": 0}, np.zeros((1, len(rows)), np.uint8), np.zeros((1, len(rows)), np.int64),
                              counts)[0] <= len(rows)  # a field the index lacks stops the pass
    with pytest.raises(ValueError):
        _ccodec.fill_table(rows, index, kinds, values, [len(rows) + 1])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), columns()), min_size=1, max_size=6), st.data())
def test_a_provisional_segment_frame_is_what_the_segment_and_its_header_give(cols, data):
    """The writer journals provisional segments from one C call; the journal must hold the bytes
    the Segment path gives: the header's JSON (mixed-kind runs, all-absent and missing columns
    included) and the streams."""
    n = data.draw(st.integers(1, 40))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=5)))) if n > 1 else []
    counts = np.diff([0, *cuts, n]).astype(np.int64)
    piece = Piece(3, 10, 10 + n, np.arange(len(counts), dtype=np.int64) * 2 + 1, counts, _resized(cols, n), 100,
                  100 + n, -5, 2**62, data.draw(st.integers(0, 10**6)))
    level = data.draw(st.sampled_from([FLUSH_LEVEL, PROVISIONAL_LEVEL]))
    head, streams = provisional_frame(piece, level)
    segment, expected = encode_piece(piece, False, level)
    assert head == _encoder.encode(segment.header()).encode()
    assert b"".join(streams) == b"".join(expected)


def _resized(cols: list, n: int) -> list:
    """The drawn columns (or None) cut or repeated to n rows."""
    out = []
    for case in cols:
        if case is None:
            out.append(None)
            continue
        col = case[0]
        at = np.arange(n) % len(col)
        out.append(packed_column(col.kinds[at].copy(), packed(col)[at].copy(),
                                 None if col.strs is None else col.strs[at].copy()))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(st.one_of(st.none(), columns()), max_size=5), st.integers(1, 30),
                          st.lists(st.integers(0, 6), min_size=1, max_size=4, unique=True)), min_size=1, max_size=5))
def test_merging_pieces_in_c_gathers_what_numpy_does(drawn):
    """A merge of the writer's pieces (each entity's rows one run again) gathers every column in one C
    pass: the same kinds, values and str objects as NumPy's concatenate-and-take, whatever columns
    each piece lacks (shorter column lists, None columns)."""
    pieces, row = [], 0
    for cols, n, entities in drawn:
        entities = sorted(entities)[:n]
        counts = np.diff(np.linspace(0, n, len(entities) + 1).astype(np.int64))
        keep = counts > 0
        entities, counts = np.array(entities, np.int64)[keep], counts[keep]
        pieces.append(Piece(0, row, row + n, entities, counts, _resized(cols, n)))
        row += n
    merged = merge_pieces(pieces)
    width = max(len(p.columns) for p in pieces)
    gather = np.concatenate([np.arange(p.rows) for p in pieces]) if len(pieces) == 1 else None
    if gather is None:  # the order merge_pieces takes: by entity, then piece
        runs = [(e, i, start, c) for i, p in enumerate(pieces)
                for e, start, c in zip(p.entities.tolist(), (np.cumsum(p.counts) - p.counts).tolist(), p.counts.tolist())]
        bases = np.cumsum([0] + [p.rows for p in pieces[:-1]])
        gather = np.concatenate([np.arange(c) + bases[i] + start for e, i, start, c in sorted(runs)])
    expected, got = gather_numpy(pieces, width, gather), gather_compiled(pieces, width, gather)
    for want, have, mine in zip(expected, got, merged.columns if len(pieces) > 1 else got):
        assert (want is None) == (have is None) == (mine is None)
        if want is not None:
            for col in (have, mine):
                assert col.kinds.tolist() == want.kinds.tolist() and packed(col).tolist() == packed(want).tolist()
                assert (None if col.strs is None else list(col.strs)) == (None if want.strs is None else list(want.strs))

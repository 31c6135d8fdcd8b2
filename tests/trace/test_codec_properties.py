"""Properties of the chunk codec: anchored (format 2) and plain (format 1) chunks decode to the
input bit for bit, through the reference decoder and through load()'s kernels alike."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from telemrec.trace._kernels import decode_into
from telemrec.trace import _codec

INT64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def int_chunks(draw):
    """Constants, arithmetic sequences, counters with jitter far from zero, and random int64."""
    n = draw(st.integers(1, 300))
    shape = draw(st.sampled_from(["constant", "sequence", "counter", "random"]))
    start = draw(INT64)
    if shape == "constant":
        return np.full(n, start, np.int64)
    if shape == "sequence":
        step = draw(st.integers(-(2**20), 2**20))
        return (np.int64(start) + np.arange(n, dtype=np.int64) * np.int64(step))  # wraps like the codec
    if shape == "counter":
        steps = draw(st.lists(st.integers(0, 300), min_size=n, max_size=n))
        return np.int64(start) + np.cumsum(np.array(steps, np.int64))
    return np.array(draw(st.lists(INT64, min_size=n, max_size=n)), np.int64)


@settings(max_examples=300, deadline=None)
@given(int_chunks(), st.booleans(), st.integers(0, 5))
def test_int_chunks_round_trip(values, anchored, skip):
    with np.errstate(over="ignore"):
        n = len(values)
        kinds = np.full(n, _codec.INT, np.uint8)
        enc = _codec.encode_chunk(kinds, values, np.zeros(n), anchored=anchored)
        stored = enc.data if enc.width else np.zeros(n, np.uint8)
        anchors = np.array((tuple(enc.anchors) + (0, 0))[:2], np.int64) if anchored else None
        ints, _ = _codec.decode_chunk(stored, enc.encoding, enc.scale, anchors)
        assert np.array_equal(ints, values)
        skip = min(skip, n - 1)
        out = np.empty((1, n - skip), np.int64)
        shaped = (1, n) if enc.width == 0 else stored.reshape(1, n)
        decode_into(shaped, enc.encoding, enc.scale, out, skip, None if anchors is None else anchors.reshape(1, 2))
        assert np.array_equal(out[0], values[skip:])


@settings(max_examples=200, deadline=None)
@given(int_chunks(), st.integers(0, 4))
def test_decimal_chunks_round_trip(values, scale):
    with np.errstate(over="ignore"):
        floats = (values % (2**40)).astype(np.float64) / 10**scale  # values with at most `scale` decimals
        n = len(floats)
        kinds = np.full(n, _codec.FLOAT, np.uint8)
        enc = _codec.encode_chunk(kinds, np.zeros(n, np.int64), floats, anchored=True)
        stored = enc.data if enc.width else np.zeros(n, np.uint8)
        anchors = np.array((tuple(enc.anchors) + (0, 0))[:2], np.int64)
        _, back = _codec.decode_chunk(stored, enc.encoding, enc.scale, anchors)
        assert np.array_equal(back.view(np.int64), floats.view(np.int64))
        out = np.empty((1, n))
        decode_into((1, n) if enc.width == 0 else stored.reshape(1, n), enc.encoding, enc.scale, out, 0,
                    anchors.reshape(1, 2))
        assert np.array_equal(out[0].view(np.int64), floats.view(np.int64))

"""Lossless per-chunk encodings of one column (docs/format.md, "Column encoding").

A column is a sequence of values, each one of: absent (the record had no such
field), None, int64, float64 or str. Numbers live in one int64 array aligned with
the rows; each chunk of ``chunk_rows`` rows picks the encoding that compresses
best while staying bit-exact, and deltas restart at every chunk so a chunk
decodes on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Kinds of a single value.
ABSENT, NONE, INT, FLOAT, STR = 0, 1, 2, 3, 4
KIND_NAMES = {ABSENT: "absent", NONE: "none", INT: "int", FLOAT: "float", STR: "str"}

# Chunk encodings (first byte of a chunk's descriptor; the second is the decimal scale).
INT_RAW, INT_DELTA1, INT_DELTA2 = 0, 1, 2
DEC_RAW, DEC_DELTA1, DEC_DELTA2 = 3, 4, 5
F64_BITS, F64_XOR = 6, 7
MIXED_RAW = 8
ENCODINGS = frozenset(range(9))

_MAX_SCALE = 9
_POW10 = [10**k for k in range(_MAX_SCALE + 1)]
_EXACT_LIMIT = 2**53


def _best_delta(x: np.ndarray) -> tuple[int, np.ndarray]:
    """Pick the delta order whose residuals need the fewest significant bits."""
    best_order, best, best_cost = 0, x, None
    candidate = x
    for order in range(3):
        if order:
            candidate = candidate.copy()
            candidate[order:] = np.diff(candidate[order - 1:])
        # cost: sum of bit lengths of |residual|, a proxy for compressed size
        mag = np.abs(candidate[order:].astype(np.float64)) if len(candidate) > order else np.zeros(0)
        cost = float(np.log2(mag + 1.0).sum())
        if best_cost is None or cost < best_cost * 0.98:
            best_order, best, best_cost = order, candidate, cost
    return best_order, best


def _invert_delta(y: np.ndarray, order: int) -> np.ndarray:
    x = y.copy()
    for k in range(order, 0, -1):
        x[k - 1:] = np.cumsum(x[k - 1:], dtype=np.int64)
    return x


def _decimal_scale(values: np.ndarray) -> tuple[int, np.ndarray] | None:
    """The smallest k with values == round(values * 10**k) / 10**k bit for bit, or None."""
    if not np.all(np.isfinite(values)):
        return None
    bits = values.view(np.int64)
    for k in range(_MAX_SCALE + 1):
        scaled = np.round(values * _POW10[k])
        if np.any(np.abs(scaled) >= _EXACT_LIMIT):
            return None
        ints = scaled.astype(np.int64)
        if np.array_equal((ints / _POW10[k]).view(np.int64), bits):
            return k, ints
    return None


@dataclass
class EncodedChunk:
    data: np.ndarray  # int64, len == rows in chunk
    encoding: int
    scale: int = 0


def encode_chunk(kinds: np.ndarray, ints: np.ndarray, floats: np.ndarray) -> EncodedChunk:
    """Encode the numeric slots of one chunk.

    ``ints``/``floats`` hold the value of each row whose kind is INT/FLOAT
    (anything elsewhere). Non-numeric rows repeat the previous numeric value so
    deltas stay small.
    """
    n = len(kinds)
    is_int = kinds == INT
    is_float = kinds == FLOAT
    n_int, n_float = int(is_int.sum()), int(is_float.sum())
    if n_int and n_float:
        data = np.where(is_int, ints, floats.view(np.int64))
        return EncodedChunk(data.astype(np.int64, copy=False), MIXED_RAW)
    numeric = is_int | is_float
    if not numeric.any():
        return EncodedChunk(np.zeros(n, np.int64), INT_RAW)
    if n_float:
        vals = floats[numeric]
        dec = _decimal_scale(vals)
        if dec is not None:
            scale, packed = dec
            full = _fill_forward(numeric, packed)
            order, resid = _best_delta(full)
            return EncodedChunk(resid, DEC_RAW + order, scale)
        bits = _fill_forward(numeric, vals.view(np.int64))
        xored = bits.copy()
        xored[1:] = bits[1:] ^ bits[:-1]
        return EncodedChunk(xored, F64_XOR)
    full = _fill_forward(numeric, ints[numeric].astype(np.int64, copy=False))
    order, resid = _best_delta(full)
    return EncodedChunk(resid, INT_RAW + order)


def _fill_forward(mask: np.ndarray, packed: np.ndarray) -> np.ndarray:
    """Spread ``packed`` (one value per True in mask) over all rows, repeating the last value."""
    if mask.all():
        return packed.copy()
    idx = np.cumsum(mask) - 1
    idx[idx < 0] = 0
    return packed[idx] if len(packed) else np.zeros(len(mask), np.int64)


def decode_chunk(data: np.ndarray, encoding: int, scale: int, kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (ints, floats) arrays aligned with the chunk's rows."""
    if encoding in (INT_RAW, INT_DELTA1, INT_DELTA2):
        ints = _invert_delta(data, encoding - INT_RAW)
        return ints, ints.astype(np.float64)
    if encoding in (DEC_RAW, DEC_DELTA1, DEC_DELTA2):
        ints = _invert_delta(data, encoding - DEC_RAW)
        floats = ints / _POW10[scale]
        return ints, floats
    if encoding == F64_XOR:
        bits = np.bitwise_xor.accumulate(data)
        return bits, bits.view(np.float64)
    if encoding == F64_BITS:
        return data, data.view(np.float64)
    if encoding == MIXED_RAW:
        return data, data.view(np.float64)
    raise ValueError(f"unknown chunk encoding {encoding}")

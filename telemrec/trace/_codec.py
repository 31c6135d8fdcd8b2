"""Lossless per-chunk encodings of one column (docs/format.md, "Column encoding").

A column is a sequence of values, each one of: absent (the record had no such
field), None, int64, float64 or str. Numbers are encoded per chunk of
``chunk_rows`` rows: each chunk picks the encoding that compresses best while
staying bit-exact, deltas restart at every chunk so a chunk decodes on its own,
and integer residuals are zigzag-mapped to unsigned and stored in the narrowest
width (1, 2, 4 or 8 bytes) that holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Kinds of a single value.
ABSENT, NONE, INT, FLOAT, STR = 0, 1, 2, 3, 4
KIND_NAMES = {ABSENT: "absent", NONE: "none", INT: "int", FLOAT: "float", STR: "str"}

# Chunk encodings (first byte of a chunk's descriptor; then the decimal scale and the byte width).
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
    data: np.ndarray  # unsigned, len == rows in chunk, dtype of ``width`` bytes (empty when width is 0)
    encoding: int
    scale: int = 0
    width: int = 8
    anchors: tuple[int, ...] = ()  # anchored delta chunks: the first ``order`` residuals, stored as 0


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def zigzag(x: np.ndarray) -> np.ndarray:
    """int64 -> uint64 with small magnitudes of either sign becoming small numbers."""
    return ((x << 1) ^ (x >> 63)).view(np.uint64)


def unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.uint64, copy=False)
    return ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)


def _narrow(u: np.ndarray) -> tuple[np.ndarray, int]:
    top = int(u.max()) if len(u) else 0
    for width in (1, 2, 4):
        if top < 1 << (8 * width):
            return u.astype(_UNSIGNED[width]), width
    return u, 8


def _int_chunk(resid: np.ndarray, encoding: int, scale: int = 0, anchored: bool = False) -> EncodedChunk:
    """Zigzag and narrow integer residuals. ``anchored`` (format 2): a delta chunk's first value and
    first difference go to its anchors and are stored as 0, so one large starting value no
    longer widens every residual; a chunk whose stored values are all 0 gets width 0 (no data)."""
    anchors: tuple[int, ...] = ()
    order = delta_order(encoding)
    if anchored and order:
        anchors = tuple(int(v) for v in resid[:order])
        resid = resid.copy()
        resid[:order] = 0
    u = zigzag(resid)
    if anchored and not u.any():
        return EncodedChunk(np.zeros(0, np.uint8), encoding, scale, 0, anchors)
    data, width = _narrow(u)
    return EncodedChunk(data, encoding, scale, width, anchors)


def delta_order(encoding: int) -> int:
    """How many cumulative sums decode an integer encoding (0 for RAW and for float encodings)."""
    if encoding <= INT_DELTA2:
        return encoding - INT_RAW
    if encoding <= DEC_DELTA2:
        return encoding - DEC_RAW
    return 0


def encode_chunk(kinds: np.ndarray, ints: np.ndarray, floats: np.ndarray, *, anchored: bool = False) -> EncodedChunk:
    """Encode the numeric slots of one chunk (``anchored``: format 2, see ``_int_chunk``).

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
        return EncodedChunk(data.astype(np.int64, copy=False).view(np.uint64), MIXED_RAW)
    numeric = is_int | is_float
    if not numeric.any():
        return EncodedChunk(np.zeros(n, np.uint8), INT_RAW, 0, 0)
    if n_float:
        vals = floats[numeric]
        dec = _decimal_scale(vals)
        if dec is not None:
            scale, packed = dec
            order, resid = _best_delta(_fill_forward(numeric, packed))
            return _int_chunk(resid, DEC_RAW + order, scale, anchored)
        bits = _fill_forward(numeric, vals.view(np.int64))
        xored = bits.copy()
        xored[1:] = bits[1:] ^ bits[:-1]
        return EncodedChunk(xored.view(np.uint64), F64_XOR)
    order, resid = _best_delta(_fill_forward(numeric, ints[numeric].astype(np.int64, copy=False)))
    return _int_chunk(resid, INT_RAW + order, anchored=anchored)


def _fill_forward(mask: np.ndarray, packed: np.ndarray) -> np.ndarray:
    """Spread ``packed`` (one value per True in mask) over all rows, repeating the last value."""
    if mask.all():
        return packed.copy()
    idx = np.cumsum(mask) - 1
    idx[idx < 0] = 0
    return packed[idx] if len(packed) else np.zeros(len(mask), np.int64)


def residuals(data: np.ndarray, encoding: int, anchors=None) -> np.ndarray:
    """The int64 residuals of an integer chunk: unzigzagged stored values, the first ``order``
    replaced by the chunk's anchors when it has them (format 2)."""
    values = unzigzag(data)
    if anchors is not None:
        order = min(delta_order(encoding), len(values))
        if order:
            values = values.copy()
            values[:order] = anchors[:order]
    return values


def decode_chunk(data: np.ndarray, encoding: int, scale: int, anchors=None) -> tuple[np.ndarray, np.ndarray]:
    """Return (ints, floats) arrays aligned with the chunk's rows; ``data`` is the stored
    unsigned array of any width; ``anchors``: the chunk's anchors (format 2) or None."""
    if encoding in (INT_RAW, INT_DELTA1, INT_DELTA2):
        ints = _invert_delta(residuals(data, encoding, anchors), encoding - INT_RAW)
        return ints, ints.astype(np.float64)
    if encoding in (DEC_RAW, DEC_DELTA1, DEC_DELTA2):
        ints = _invert_delta(residuals(data, encoding, anchors), encoding - DEC_RAW)
        return ints, ints / _POW10[scale]
    bits = data.astype(np.uint64, copy=False).view(np.int64)
    if encoding == F64_XOR:
        bits = np.bitwise_xor.accumulate(bits)
        return bits, bits.view(np.float64)
    if encoding in (F64_BITS, MIXED_RAW):
        return bits, bits.view(np.float64)
    raise ValueError(f"unknown chunk encoding {encoding}")

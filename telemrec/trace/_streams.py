"""Column streams of format 3: the NumPy reference codec (docs/format.md, section 4).

A segment of a table holds the rows of many entities, entity after entity (each
entity's rows are one *run*); each column of the segment is one stream. A stream
is a zlib stream whose inflated body is::

    header    16 bytes: layout, kinds mode, kind, encoding, scale, width, anchor width, 0, rows, runs
    kinds     uint8[rows]                        only when the rows' kinds differ
    anchors   runs * order values, shuffled      delta encodings: each run's first value(s)
    numbers   rows values of ``width`` bytes, shuffled
    strings   u32 count, u32 repeat[count], u32 length[count], UTF-8   only when a row is a str

The encodings are format 2's (``_codec``: zigzagged integer residuals of order 0-2,
decimal floats scaled to integers, XOR of float bits, raw mixed), with one change:
deltas restart at every run, and a run's first ``order`` residuals are kept as its
anchors instead of in the numbers, so one entity's large first value never
widens the others'. A row that holds no number repeats the previous number of its
run (0 before the first), which keeps deltas at 0.

This module is the reference: the compiled codec (``_ccodec``) produces the same
bodies (tested); the zlib streams may differ in their bytes, never in what they inflate to.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from telemrec.errors import TraceCorruptError
from telemrec.trace._codec import (
    ABSENT, DEC_RAW, F64_BITS, F64_XOR, FLOAT, INT, INT_RAW, MIXED_RAW, NONE, STR, _POW10, _decimal_scale,
    delta_order, unzigzag, zigzag,
)
from telemrec.trace._columns import Column

__all__ = ["HEADER", "LAYOUT", "StreamInfo", "compress", "decode_body", "encode_body", "inflate", "kinds_mask",
           "read_strings_section", "strings_section"]

LAYOUT = 1
HEADER = struct.Struct("<8BII")
_WIDTHS = (1, 2, 4, 8)
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_U32 = np.dtype("<u4")
KIND_BITS = {kind: 1 << kind for kind in (ABSENT, NONE, INT, FLOAT, STR)}
_MAX_ROWS = 2**31  # a stream's rows (and a string's bytes) fit a u32 with room to spare
_ZLIB_LEVEL = 6


@dataclass(frozen=True)
class StreamInfo:
    """What the index keeps of a stream besides where it is: enough to plan a read without inflating it."""

    encoding: int
    scale: int
    width: int
    kinds: int      # bit (1 << kind) set for every kind the rows hold
    raw_size: int   # bytes of the inflated body


def kinds_mask(kinds: np.ndarray) -> int:
    mask = 0
    for kind in np.unique(kinds).tolist():
        mask |= 1 << int(kind)
    return mask


# -- encoding ----------------------------------------------------------------------------------------

def _starts(runs: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(runs[:-1])]).astype(np.int64) if len(runs) else np.zeros(0, np.int64)


def _run_index(runs: np.ndarray, n: int) -> np.ndarray:
    """The first row of each row's run."""
    return np.repeat(_starts(runs), runs) if n else np.zeros(0, np.int64)


def _fill_forward(numeric: np.ndarray, values: np.ndarray, run_start: np.ndarray) -> np.ndarray:
    """``values`` (defined where ``numeric``) with every other row holding the previous number of
    its run, 0 before the first."""
    if numeric.all():
        return values.copy()
    n = len(values)
    last = np.maximum.accumulate(np.where(numeric, np.arange(n), -1))
    out = values[np.maximum(last, 0)]
    out[last < run_start] = 0
    return out


def _delta(x: np.ndarray, restart: np.ndarray) -> np.ndarray:
    """x[i] - x[i-1], except x[i] itself where ``restart`` (wrapping int64 arithmetic)."""
    d = x.copy()
    d[1:] -= x[:-1]
    d[restart] = x[restart]
    return d


def _residuals(x: np.ndarray, order: int, starts: np.ndarray, runs: np.ndarray) -> np.ndarray:
    if order == 0:
        return x.copy()
    first = np.zeros(len(x), bool)
    first[starts] = True
    d = _delta(x, first)
    if order == 2:
        second = first.copy()
        second[starts[runs > 1] + 1] = True
        d = _delta(d, second)
    return d


def _anchor_rows(order: int, starts: np.ndarray, runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of each anchor or -1, mask of anchors that exist): ``order`` anchors per run."""
    rows = np.full((len(runs), order), -1, np.int64)
    for k in range(order):
        ok = runs > k
        rows[ok, k] = starts[ok] + k
    return rows.reshape(-1), rows.reshape(-1) >= 0


_POWERS_OF_TWO = np.array([1 << k for k in range(64)], np.uint64)


def _cost(resid: np.ndarray, skip: np.ndarray) -> int:
    """The bits the zigzagged residuals need, summed (anchors skipped): an exact integer, so the
    compiled codec, which counts the same way, makes the same choice."""
    u = zigzag(resid)
    u[skip] = 0
    return int(np.searchsorted(_POWERS_OF_TWO, u, side="right").sum())


def _best_order(x: np.ndarray, starts: np.ndarray, runs: np.ndarray) -> tuple[int, np.ndarray]:
    """The delta order (0-2) whose residuals need the fewest bits (anchors excluded); a higher
    order must save 2 % to be chosen."""
    best = None
    for order in range(3):
        resid = _residuals(x, order, starts, runs)
        skip = np.zeros(len(x), bool)
        rows, ok = _anchor_rows(order, starts, runs)
        skip[rows[ok]] = True
        cost = _cost(resid, skip)
        if best is None or cost * 50 < best[0] * 49:
            best = (cost, order, resid)
    return best[1], best[2]


def _narrow(u: np.ndarray) -> tuple[np.ndarray, int]:
    top = int(u.max()) if len(u) else 0
    if top == 0:
        return u[:0].astype(np.uint8), 0
    for width in _WIDTHS:
        if width == 8 or top < 1 << (8 * width):
            return u.astype(_UNSIGNED[width]), width
    raise AssertionError


def _shuffle(u: np.ndarray) -> bytes:
    width = u.dtype.itemsize
    if width == 1:
        return u.tobytes()
    return np.ascontiguousarray(u.astype(u.dtype.newbyteorder("<"), copy=False).view(np.uint8)
                                .reshape(-1, width).T).tobytes()


def strings_section(kinds: np.ndarray, strs) -> bytes:
    """The strings section of a body: runs of equal values of the str rows."""
    if strs is None:
        return b""
    rows = np.flatnonzero(kinds == STR)
    if not len(rows):
        return b""
    values = np.asarray(strs, dtype=object)[rows]
    if len(values) > 1:
        change = np.flatnonzero(values[1:] != values[:-1]) + 1
        firsts = np.concatenate([[0], change])
    else:
        firsts = np.zeros(1, np.int64)
    repeats = np.diff(np.concatenate([firsts, [len(values)]]))
    encoded = [values[i].encode("utf-8", "surrogatepass") for i in firsts.tolist()]
    lengths = [len(b) for b in encoded]
    return b"".join([struct.pack("<I", len(encoded)), np.asarray(repeats, _U32).tobytes(),
                     np.asarray(lengths, _U32).tobytes(), *encoded])


def encode_body(col: Column, runs: np.ndarray) -> tuple[bytes, StreamInfo]:
    """The inflated body of one column stream: ``col``'s rows, split into ``runs`` (rows per run)."""
    kinds = np.asarray(col.kinds, np.uint8)
    n = len(kinds)
    runs = np.asarray(runs, np.int64)
    if n >= _MAX_ROWS or int(runs.sum()) != n or (runs <= 0).any():
        raise ValueError(f"a stream of {n} rows cannot have runs {runs[:8].tolist()}...")
    uniform = n > 0 and bool((kinds == kinds[0]).all())
    is_int, is_float = kinds == INT, kinds == FLOAT
    numeric = is_int | is_float
    starts = _starts(runs)
    run_start = _run_index(runs, n)
    encoding, scale, order = INT_RAW, 0, 0
    stored = np.zeros(0, np.uint64)
    anchors = np.zeros(0, np.uint64)
    if is_int.any() and is_float.any():
        encoding = MIXED_RAW
        stored = np.where(is_int, col.ints, col.floats.view(np.int64)).astype(np.int64).view(np.uint64)
        stored = np.where(numeric, stored, np.uint64(0))
    elif is_float.any():
        dec = _decimal_scale(col.floats[numeric])
        if dec is not None:
            scale, packed = dec
            values = np.zeros(n, np.int64)
            values[numeric] = packed
            order, resid = _best_order(_fill_forward(numeric, values, run_start), starts, runs)
            encoding = DEC_RAW + order
        else:
            bits = _fill_forward(numeric, np.where(numeric, col.floats.view(np.int64), 0), run_start)
            first = np.zeros(n, bool)
            first[starts] = True
            xored = bits.copy()
            xored[1:] ^= bits[:-1]
            xored[first] = bits[first]
            encoding = F64_XOR
            stored = xored.view(np.uint64)
    elif is_int.any():
        values = np.where(numeric, col.ints, 0).astype(np.int64)
        order, resid = _best_order(_fill_forward(numeric, values, run_start), starts, runs)
        encoding = INT_RAW + order
    if encoding <= DEC_RAW + 2 and numeric.any():  # integer residuals
        if order:
            rows, ok = _anchor_rows(order, starts, runs)
            anchors = zigzag(np.where(ok, resid[np.maximum(rows, 0)], 0))
            resid = resid.copy()
            resid[rows[ok]] = 0
        stored = zigzag(resid)
    data, width = _narrow(stored)
    anchor_data, anchor_width = _narrow(anchors)
    header = HEADER.pack(LAYOUT, 0 if uniform else 1, int(kinds[0]) if uniform else 255, encoding, scale, width,
                         anchor_width, 0, n, len(runs))
    parts = [header]
    if not uniform:
        parts.append(kinds.tobytes())
    if anchor_width:
        parts.append(_shuffle(anchor_data))
    if width:
        parts.append(_shuffle(data))
    if (kinds == STR).any():
        parts.append(strings_section(kinds, col.strs))
    body = b"".join(parts)
    return body, StreamInfo(encoding, scale, width, kinds_mask(kinds), len(body))


def compress(body: bytes, level: int = _ZLIB_LEVEL) -> bytes:
    return zlib.compress(body, level)


# -- decoding ----------------------------------------------------------------------------------------

class _Body:
    """Bounds-checked reads through an inflated body; any overrun is damage, named."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = memoryview(data), 0, what

    def take(self, size: int) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise TraceCorruptError(f"{self.what}: the stream ends early (needs {size} bytes at {self.pos}, "
                                    f"has {len(self.data)})")
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return out

    def unshuffled(self, count: int, width: int) -> np.ndarray:
        raw = np.frombuffer(self.take(count * width), np.uint8)
        if width == 1:
            return raw.astype(np.uint64)
        return np.ascontiguousarray(raw.reshape(width, count).T).view(np.dtype(_UNSIGNED[width]).newbyteorder("<")) \
            .reshape(count).astype(np.uint64)


def inflate(stream: bytes, raw_size: int, what: str) -> bytes:
    try:
        d = zlib.decompressobj()
        body = d.decompress(stream, raw_size + 1)
        if len(body) != raw_size or not d.eof or d.unused_data:
            raise zlib.error(f"inflates to {len(body)}{'+' if not d.eof else ''} bytes, expected {raw_size}")
    except zlib.error as exc:
        raise TraceCorruptError(f"{what}: the stream does not inflate ({exc})") from None
    return body


def _segmented_cumsum(d: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at every row where ``bounds`` is True (wrapping int64)."""
    cs = np.cumsum(d, dtype=np.int64)
    if not len(d):
        return cs
    first = np.flatnonzero(bounds)
    base = np.zeros(len(first), np.int64)
    base[first > 0] = cs[first[first > 0] - 1]
    lengths = np.diff(np.concatenate([first, [len(d)]]))
    return cs - np.repeat(base, lengths)


def decode_body(body: bytes, runs: np.ndarray, what: str = "stream") -> Column:
    """The rows of a stream body (``encode_body``'s inverse), checked against ``runs``."""
    reader = _Body(body, what)
    layout, mode, kind, encoding, scale, width, anchor_width, _, n, n_runs = HEADER.unpack(reader.take(HEADER.size))
    runs = np.asarray(runs, np.int64)
    problem = None
    if layout != LAYOUT:
        problem = f"stream layout {layout} is not {LAYOUT}"
    elif n != int(runs.sum()) or n_runs != len(runs):
        problem = f"the stream has {n} rows in {n_runs} runs, the segment {int(runs.sum())} in {len(runs)}"
    elif mode not in (0, 1) or (mode == 0 and kind > STR) or encoding > MIXED_RAW or scale > 9 \
            or width not in (0, *_WIDTHS) or anchor_width not in (0, *_WIDTHS):
        problem = f"the stream header {(mode, kind, encoding, scale, width, anchor_width)} is not valid"
    if problem:
        raise TraceCorruptError(f"{what}: {problem}")
    if mode == 0:
        kinds = np.full(n, kind, np.uint8)
    else:
        kinds = np.frombuffer(reader.take(n), np.uint8).copy()
        if kinds.size and int(kinds.max()) > STR:
            raise TraceCorruptError(f"{what}: a row has kind {int(kinds.max())}")
    order = delta_order(encoding)
    starts = _starts(runs)
    anchors = reader.unshuffled(n_runs * order, anchor_width) if anchor_width else np.zeros(n_runs * order, np.uint64)
    stored = reader.unshuffled(n, width) if width else np.zeros(n, np.uint64)
    ints = np.zeros(n, np.int64)
    if encoding <= DEC_RAW + 2:
        resid = unzigzag(stored)
        if order:
            rows, ok = _anchor_rows(order, starts, runs)
            resid[rows[ok]] = unzigzag(anchors)[ok]
            first = np.zeros(n, bool)
            first[starts] = True
            if order == 2:
                second = first.copy()
                second[starts[runs > 1] + 1] = True
                resid = _segmented_cumsum(resid, second)
            resid = _segmented_cumsum(resid, first)
        ints = resid
        if encoding >= DEC_RAW:  # the floats' bits, in place: one int64 per row (``_tables.packed``)
            ints = (ints / _POW10[scale]).view(np.int64)
    elif encoding == F64_XOR:
        bits = np.bitwise_xor.accumulate(stored.view(np.int64)) if n else stored.view(np.int64)
        if n:
            base = np.zeros(len(starts), np.int64)
            base[starts > 0] = bits[starts[starts > 0] - 1]
            bits = bits ^ np.repeat(base, runs)
        ints = bits
    elif encoding in (F64_BITS, MIXED_RAW):
        ints = stored.view(np.int64)
    strs = read_strings_section(reader, kinds, what)
    return Column(kinds, ints, ints.view(np.float64), strs, packed=True)


def read_strings_section(reader: "_Body | bytes", kinds: np.ndarray, what: str) -> np.ndarray | None:
    """The str rows' values (object array, None elsewhere) from the rest of a body, which they must fill."""
    if not isinstance(reader, _Body):
        reader = _Body(reader, what)
    strs = None
    n_str = int((kinds == STR).sum())
    if n_str:
        strs = _read_strings(reader, kinds, n_str, what)
    if reader.pos != len(reader.data):
        raise TraceCorruptError(f"{what}: {len(reader.data) - reader.pos} bytes after the stream's last section")
    return strs


def _read_strings(reader: _Body, kinds: np.ndarray, n_str: int, what: str) -> np.ndarray:
    (count,) = struct.unpack("<I", reader.take(4))
    if count > n_str:
        raise TraceCorruptError(f"{what}: {count} string runs for {n_str} string rows")
    repeats = np.frombuffer(reader.take(4 * count), _U32).astype(np.int64)
    lengths = np.frombuffer(reader.take(4 * count), _U32).astype(np.int64)
    if int(repeats.sum()) != n_str or (repeats <= 0).any():
        raise TraceCorruptError(f"{what}: string runs cover {int(repeats.sum())} rows, not {n_str}")
    blob = bytes(reader.take(int(lengths.sum())))
    values, pos = [], 0
    try:
        for length in lengths.tolist():
            values.append(blob[pos:pos + length].decode("utf-8", "surrogatepass"))
            pos += length
    except UnicodeDecodeError as exc:
        raise TraceCorruptError(f"{what}: a string is not UTF-8 ({exc.reason})") from None
    out = np.full(len(kinds), None, dtype=object)
    ordered = np.empty(count, dtype=object)
    ordered[:] = values
    out[kinds == STR] = ordered[np.repeat(np.arange(count), repeats)]
    return out

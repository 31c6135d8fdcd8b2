"""Column builders (write side) and decoded columns (read side) of format v1.

On disk a column is an HDF5 group (docs/format.md, "Columns"):

- ``data``      int64[rows], chunked by ``chunk_rows``; numbers, encoded per chunk
- attribute ``chunks``: uint8[n_chunks, 2], (encoding, decimal scale) of each chunk
- ``kind``      uint8[rows], only when kinds vary; else the attribute ``kind``
- ``str_rows``  int64[runs] and ``str_values`` vlen UTF-8[runs]: run-length strings
                (attributes instead of datasets when there are at most 256 short runs)
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from telemrec.trace import _codec
from telemrec.trace._codec import ABSENT, FLOAT, INT, NONE, STR

_STR_DTYPE = h5py.string_dtype("utf-8")


def kind_of(value) -> int:
    t = type(value)
    if t is float:
        return FLOAT
    if t is int:
        return INT
    if t is str:
        return STR
    if value is None:
        return NONE
    raise TypeError(f"unsupported field value type {t.__name__}")


class ColumnBuilder:
    """Accumulates one column and writes full chunks to HDF5 as they fill."""

    __slots__ = ("group", "chunk_rows", "filters", "kinds", "ints", "floats", "pending",
                 "chunk_desc", "str_rows", "str_values", "_last_str", "rows", "_data")

    def __init__(self, group: h5py.Group, chunk_rows: int, filters: dict, leading_absent: int = 0):
        self.group = group
        self.chunk_rows = chunk_rows
        self.filters = filters
        self.kinds = bytearray()
        self.ints: list[int] = []
        self.floats: list[float] = []
        self.pending = 0
        self.chunk_desc: list[tuple[int, int]] = []
        self.str_rows: list[int] = []
        self.str_values: list[str] = []
        self._last_str: str | None = None
        self.rows = 0
        self._data: h5py.Dataset | None = None
        for _ in range(leading_absent):
            self.append_absent()

    def append_absent(self) -> None:
        self._push(ABSENT, 0, 0.0)

    def append(self, value) -> None:
        t = type(value)
        if t is float:
            self._push(FLOAT, 0, value)
        elif t is int:
            self._push(INT, value, 0.0)
        elif value is None:
            self._push(NONE, 0, 0.0)
        elif t is str:
            if value != self._last_str:
                self.str_rows.append(self.rows)
                self.str_values.append(value)
                self._last_str = value
            self._push(STR, 0, 0.0)
        else:
            raise TypeError(f"unsupported field value type {t.__name__}")

    def _push(self, kind: int, i: int, f: float) -> None:
        self.kinds.append(kind)
        self.ints.append(i)
        self.floats.append(f)
        self.rows += 1
        self.pending += 1
        if self.pending == self.chunk_rows:
            self._flush_chunk()

    def _flush_chunk(self) -> None:
        n = self.pending
        if not n:
            return
        kinds = np.frombuffer(self.kinds, np.uint8)[self.rows - n:self.rows]
        if (kinds == INT).any() or (kinds == FLOAT).any():
            enc = _codec.encode_chunk(kinds, np.array(self.ints, np.int64), np.array(self.floats, np.float64))
            start = self.rows - n
            data = self._dataset()
            if data.shape[0] < start + n:
                data.resize((start + n,))
            data[start:start + n] = enc.data
            self.chunk_desc.append((enc.encoding, enc.scale))
        else:
            self.chunk_desc.append((_codec.INT_RAW, 0))
        self.ints.clear()
        self.floats.clear()
        self.pending = 0

    def _dataset(self) -> h5py.Dataset:
        if self._data is None:
            self._data = self.group.create_dataset(
                "data", shape=(0,), maxshape=(None,), dtype=np.int64,
                chunks=(self.chunk_rows,), fillvalue=0, **self.filters)
        return self._data

    def finish(self) -> None:
        self._flush_chunk()
        g = self.group
        g.attrs["rows"] = self.rows
        g.attrs["chunk_rows"] = self.chunk_rows
        if self._data is not None and self._data.shape[0] < self.rows:
            self._data.resize((self.rows,))
        g.attrs["chunks"] = np.array(self.chunk_desc, np.uint8).reshape(-1, 2)
        kinds = np.frombuffer(self.kinds, np.uint8)
        present = np.unique(kinds)
        if len(present) == 1:
            g.attrs["kind"] = int(present[0])
        elif len(present) > 1:
            g.create_dataset("kind", data=kinds, chunks=(min(self.chunk_rows, len(kinds)),), **self.filters)
        else:
            g.attrs["kind"] = ABSENT
        if self.str_rows:
            rows = np.array(self.str_rows, np.int64)
            values = np.array(self.str_values, dtype=object)
            if len(rows) <= _ATTR_RUNS and sum(len(v) for v in self.str_values) < 16384:
                # few runs: attributes live in the object header, far cheaper than two datasets
                g.attrs["str_rows"] = rows
                g.attrs.create("str_values", values, dtype=_STR_DTYPE)
            else:
                g.create_dataset("str_rows", data=rows, **self.filters)
                g.create_dataset("str_values", data=values, dtype=_STR_DTYPE, **self.filters)


_ATTR_RUNS = 256


@dataclass
class Column:
    """A decoded slice of a column: per row a kind and the value for that kind."""

    kinds: np.ndarray   # uint8
    ints: np.ndarray    # int64, meaningful where kinds == INT
    floats: np.ndarray  # float64, meaningful where kinds == FLOAT
    strs: np.ndarray | None  # object, meaningful where kinds == STR

    def __len__(self) -> int:
        return len(self.kinds)

    def to_list(self, absent=None) -> list:
        """Python values per row; ``absent`` stands for rows where the field was missing."""
        kinds = self.kinds
        if len(kinds) and (kinds == kinds[0]).all():
            k = int(kinds[0])
            if k == FLOAT:
                return self.floats.tolist()
            if k == INT:
                return self.ints.tolist()
            if k == STR:
                return self.strs.tolist()
            return [None if k == NONE else absent] * len(kinds)
        out = [absent] * len(kinds)
        fl, il = self.floats.tolist(), self.ints.tolist()
        sl = self.strs.tolist() if self.strs is not None else None
        for i, k in enumerate(kinds.tolist()):
            if k == FLOAT:
                out[i] = fl[i]
            elif k == INT:
                out[i] = il[i]
            elif k == STR:
                out[i] = sl[i]
            elif k == NONE:
                out[i] = None
        return out

    def as_float(self) -> tuple[np.ndarray, np.ndarray]:
        """(values as float64 with NaN where not numeric, mask of rows that hold a number)."""
        numeric = (self.kinds == INT) | (self.kinds == FLOAT)
        out = np.where(self.kinds == INT, self.ints.astype(np.float64), self.floats)
        out = np.where(numeric, out, np.nan)
        return out, numeric


class ColumnReader:
    """Random access to one on-disk column."""

    def __init__(self, group: h5py.Group):
        self.group = group
        self.rows = int(group.attrs["rows"])
        self.chunk_rows = int(group.attrs["chunk_rows"])
        self._desc = np.asarray(group.attrs["chunks"], np.uint8).reshape(-1, 2)
        self._uniform = int(group.attrs["kind"]) if "kind" in group.attrs else None
        self._strs = None

    @property
    def uniform_kind(self) -> int | None:
        return self._uniform

    def _kinds(self, lo: int, hi: int) -> np.ndarray:
        if self._uniform is not None:
            return np.full(hi - lo, self._uniform, np.uint8)
        return self.group["kind"][lo:hi]

    def _str_runs(self):
        if self._strs is None:
            if "str_rows" in self.group.attrs:
                values = np.array([v.decode("utf-8") if isinstance(v, bytes) else v
                                   for v in self.group.attrs["str_values"]], dtype=object)
                self._strs = (np.asarray(self.group.attrs["str_rows"], np.int64), values)
            elif "str_rows" in self.group:
                self._strs = (self.group["str_rows"][()], self.group["str_values"].asstr()[()])
            else:
                self._strs = (np.zeros(0, np.int64), np.zeros(0, object))
        return self._strs

    def read(self, lo: int = 0, hi: int | None = None) -> Column:
        hi = self.rows if hi is None else min(hi, self.rows)
        lo = max(0, min(lo, hi))
        kinds = self._kinds(lo, hi)
        n = hi - lo
        ints = np.zeros(n, np.int64)
        floats = np.zeros(n, np.float64)
        numeric = (kinds == INT) | (kinds == FLOAT)
        if numeric.any() and "data" in self.group:
            c0, c1 = lo // self.chunk_rows, (hi - 1) // self.chunk_rows + 1
            a, b = c0 * self.chunk_rows, min(c1 * self.chunk_rows, self.rows)
            raw = self.group["data"][a:b]
            if len(raw) < b - a:  # trailing chunks never written hold the fill value
                raw = np.concatenate([raw, np.zeros(b - a - len(raw), np.int64)])
            all_kinds = kinds if (a, b) == (lo, hi) else self._kinds(a, b)
            ci_all, cf_all = np.empty(b - a, np.int64), np.empty(b - a, np.float64)
            for c in range(c0, c1):
                s, e = c * self.chunk_rows - a, min((c + 1) * self.chunk_rows, self.rows) - a
                enc, scale = int(self._desc[c, 0]), int(self._desc[c, 1])
                ci, cf = _codec.decode_chunk(raw[s:e], enc, scale, all_kinds[s:e])
                ci_all[s:e] = ci
                cf_all[s:e] = cf
            ints = ci_all[lo - a:hi - a]
            floats = cf_all[lo - a:hi - a]
        strs = None
        if (kinds == STR).any():
            rows_, values = self._str_runs()
            idx = np.arange(lo, hi)
            # value of a STR row = the last run that starts at or before it
            pos = np.searchsorted(rows_, idx, side="right") - 1
            strs = np.where(kinds == STR, values[np.clip(pos, 0, None)] if len(values) else None, None)
        return Column(kinds, ints, floats, strs)

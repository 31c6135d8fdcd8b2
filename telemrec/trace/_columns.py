"""Column builders (write side) and decoded columns (read side) of formats 1 and 2.

On disk a column is an HDF5 group (docs/format.md, "Columns"):

- ``u1``, ``u2``, ``u4``, ``u8``  unsigned [rows] of 1, 2, 4, 8 bytes, chunked by ``chunk_rows``: the
                encoded numbers; each chunk is stored in the dataset of its width only (the
                others leave that chunk unallocated), and a width absent from the column has no dataset
- attribute ``chunks``: uint8[n_chunks, 3], (encoding, decimal scale, width) of each chunk; width 0:
                every stored value is 0 and the chunk has no data
- attribute ``anchors`` (format 2, when not all 0): int64[n_chunks, 2], a delta chunk's first value
                and first difference, stored as 0 in the data
- ``kind``      uint8[rows], only when kinds vary (format 2 adds the attribute ``chunk_kinds``, each
                chunk's kind or MIXED_KINDS); else the attribute ``kind``
- ``str_rows``  int64[runs] and ``str_values`` vlen UTF-8[runs]: run-length strings
                (attributes instead of datasets when there are at most 256 short runs)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import h5py
import numpy as np

from telemrec.trace._damage import typed_reads
from telemrec.errors import TraceCorruptError
from telemrec.trace import _codec, _strings
from telemrec.trace._codec import ABSENT, FLOAT, INT, NONE, STR

# HDF5 chunks are below 4 GiB: a chunk of 8-byte values holds at most 2**29 rows; a larger
# chunk_rows in a trace is damage (and would overflow the sizes the decoders compute)
MAX_CHUNK_ROWS = 2**29

_STR_DTYPE = h5py.string_dtype("utf-8")
MIXED_KINDS = 255  # a chunk_kinds entry: the chunk's rows have different kinds


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

    __slots__ = ("group", "chunk_rows", "filters", "anchored", "kinds", "ints", "floats", "pending",
                 "chunk_desc", "chunk_anchors", "chunk_kinds", "str_rows", "str_values", "_last_str", "rows", "_data", "meta")

    def __init__(self, group: h5py.Group, chunk_rows: int, filters: dict, leading_absent: int = 0,
                 anchored: bool = False):
        self.group = group
        self.chunk_rows = chunk_rows
        self.filters = filters
        self.anchored = anchored  # format 2: delta chunks keep their first values as anchors
        self.chunk_anchors: list[tuple[int, int]] = []
        self.chunk_kinds: list[int] = []
        self.kinds = bytearray()
        self.ints: list[int] = []
        self.floats: list[float] = []
        self.pending = 0
        self.chunk_desc: list[tuple[int, int]] = []
        self.str_rows: list[int] = []
        self.str_values: list[str] = []
        self._last_str: str | None = None
        self.rows = 0
        self._data: dict[int, h5py.Dataset] = {}
        self.meta: dict = {}
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
                self.str_values.append(_strings.store(value))
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
        self.chunk_kinds.append(int(kinds[0]) if (kinds == kinds[0]).all() else MIXED_KINDS)
        anchors = (0, 0)
        if (kinds == INT).any() or (kinds == FLOAT).any():
            enc = _codec.encode_chunk(kinds, np.array(self.ints, np.int64), np.array(self.floats, np.float64),
                                      anchored=self.anchored)
            if enc.width:
                start = self.rows - n
                data = self._dataset(enc.width)
                if data.shape[0] < start + n:
                    data.resize((start + n,))
                data[start:start + n] = enc.data
            self.chunk_desc.append((enc.encoding, enc.scale, enc.width))
            anchors = (tuple(enc.anchors) + (0, 0))[:2]
        else:
            self.chunk_desc.append((_codec.INT_RAW, 0, 0))
        self.chunk_anchors.append(anchors)
        self.ints.clear()
        self.floats.clear()
        self.pending = 0

    def _dataset(self, width: int) -> h5py.Dataset:
        dset = self._data.get(width)
        if dset is None:
            dset = self._data[width] = self.group.create_dataset(
                f"u{width}", shape=(0,), maxshape=(None,), dtype=_codec._UNSIGNED[width],
                chunks=(self.chunk_rows,), fillvalue=0, **(self.filters if width > 1 else _no_shuffle(self.filters)))
        return dset

    def finish(self) -> dict:
        """Write the column's metadata; return it (for the entity's column directory)."""
        self._flush_chunk()
        g = self.group
        for dset in self._data.values():
            if dset.shape[0] < self.rows:
                dset.resize((self.rows,))
        chunks = np.array(self.chunk_desc, np.uint8).reshape(-1, 3)
        g.attrs["rows"] = self.rows
        g.attrs["chunk_rows"] = self.chunk_rows
        g.attrs["chunks"] = chunks
        anchors = None
        if self.anchored and any(a != (0, 0) for a in self.chunk_anchors):
            # all-zero anchors are left out: the zeros stored in their place decode the same
            anchors = np.array(self.chunk_anchors, np.int64).reshape(-1, 2)
            g.attrs["anchors"] = anchors
        kinds = np.frombuffer(self.kinds, np.uint8)
        present = np.unique(kinds)
        uniform = int(present[0]) if len(present) == 1 else (ABSENT if not len(present) else None)
        chunk_kinds = None
        if uniform is not None:
            g.attrs["kind"] = uniform
        else:
            g.create_dataset("kind", data=kinds, chunks=(min(self.chunk_rows, len(kinds)),), **self.filters)
            if self.anchored:  # format 2: readers read the kind dataset only for chunks of mixed kinds
                chunk_kinds = np.array(self.chunk_kinds, np.uint8)
                g.attrs["chunk_kinds"] = chunk_kinds
        str_in_attrs = None
        if self.str_rows:
            rows = np.array(self.str_rows, np.int64)
            values = np.array(self.str_values, dtype=object)
            str_in_attrs = len(rows) <= _ATTR_RUNS and sum(len(v) for v in self.str_values) < 16384
            if str_in_attrs:
                # few runs: attributes live in the object header, far cheaper than two datasets
                g.attrs["str_rows"] = rows
                g.attrs.create("str_values", values, dtype=_STR_DTYPE)
            else:
                g.create_dataset("str_rows", data=rows, **self.filters)
                g.create_dataset("str_values", data=values, dtype=_STR_DTYPE, **self.filters)
        self.meta = {"rows": self.rows, "chunk_rows": self.chunk_rows, "kind": uniform,
                     "chunks": chunks.tolist(), "str": None if str_in_attrs is None else ("attrs" if str_in_attrs else "datasets")}
        if anchors is not None:
            self.meta["anchors"] = anchors.tolist()
        if chunk_kinds is not None:
            self.meta["chunk_kinds"] = chunk_kinds.tolist()
        return self.meta


def _no_shuffle(filters: dict) -> dict:
    return {k: v for k, v in filters.items() if k != "shuffle"}


_ATTR_RUNS = 256


@dataclass
class Column:
    """A decoded slice of a column: per row a kind and the value for that kind."""

    kinds: np.ndarray   # uint8
    ints: np.ndarray    # int64, meaningful where kinds == INT
    floats: np.ndarray  # float64, meaningful where kinds == FLOAT
    strs: np.ndarray | None  # object, meaningful where kinds == STR
    packed: bool = False  # ``floats`` is a view of ``ints`` (format 3): one int64 per row holds either

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


class TimeGather:
    """A source's timestamps looked up by row, one span of rows read and kept at a time: the same
    for every format's time table, which provides ``_read_span(lo, hi) -> (a, mono, wall)``
    (rows from ``a`` covering ``lo..hi``)."""

    _cache: tuple[int, int, np.ndarray, np.ndarray] | None = None

    def gather(self, tidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(tidx):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        lo, hi = int(tidx.min()), int(tidx.max()) + 1
        cache = self._cache
        if cache is None or lo < cache[0] or hi > cache[1]:
            a, mono, wall = self._read_span(lo, hi)
            cache = self._cache = (a, a + len(mono), mono, wall)
        a = cache[0]
        return cache[2][tidx - a], cache[3][tidx - a]

    def _read_span(self, lo: int, hi: int) -> tuple[int, np.ndarray, np.ndarray]:
        # abstract: each format's time table reads its rows its own way (v1.SourceTimeReader from
        # HDF5 chunks, _v3entity.V3Time from segment streams); the mixin only caches and gathers
        raise NotImplementedError


class EntityReads:
    """Reading one entity's columns by name: the same for the entity readers of every format
    (``v1.EntityReader``, ``_v3entity.V3Entity``), which provide ``meta_column``, ``field_column``,
    ``timestamps`` and the names of their meta columns (``META_NAMES``)."""

    META_NAMES: frozenset = frozenset()

    def column(self, name: str):
        """A stored column: meta (``_seq``, ``_tidx``, ...) first, then fields."""
        return self.meta_column(name) if name in self.META_NAMES else self.field_column(name)

    def read(self, name: str, lo: int = 0, hi: int | None = None) -> "Column":
        """Rows [lo, hi) of a meta column (``_mono_ns`` and ``_wall_ns`` included) or else a field."""
        if name in ("_mono_ns", "_wall_ns"):
            mono, wall = self.timestamps(lo, hi)
            values = mono if name == "_mono_ns" else wall
            return Column(np.full(len(values), INT, np.uint8), values, values.astype(np.float64), None)
        return self.column(name).read(lo, hi)

    def read_field(self, name: str, lo: int = 0, hi: int | None = None) -> "Column":
        """Rows [lo, hi) of the field ``name``, even one named like a meta column."""
        return self.field_column(name).read(lo, hi)

    def ints(self, name: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        return self.read(name, lo, hi).ints


@typed_reads
class ColumnReader:
    """Random access to one on-disk column.

    ``meta`` (from the entity's column directory) saves reading the column's
    attributes; without it they are read from the column group.
    """

    def __init__(self, group: h5py.Group | tuple[h5py.Group, str], meta: dict | None = None):
        # (parent group, relative path): opened on first use; the fast loader reads the
        # column's datasets by path and never needs the group itself
        self._group, self._location = (None, group) if isinstance(group, tuple) else (group, None)
        if meta is None:
            attrs = self.group.attrs
            meta = {"rows": int(attrs["rows"]), "chunk_rows": int(attrs["chunk_rows"]),
                    "kind": int(attrs["kind"]) if "kind" in attrs else None,
                    "chunks": np.asarray(attrs["chunks"], np.uint8).reshape(-1, 3),
                    "anchors": attrs["anchors"] if "anchors" in attrs else None,
                    "chunk_kinds": attrs["chunk_kinds"] if "chunk_kinds" in attrs else None,
                    "str": "attrs" if "str_rows" in attrs else ("datasets" if "str_rows" in group else None)}
        self.rows = int(meta["rows"])
        self.chunk_rows = int(meta["chunk_rows"])
        self.descriptors = np.asarray(meta["chunks"], np.uint8).reshape(-1, 3)
        """(encoding, decimal scale, byte width) per chunk."""

        anchors = meta.get("anchors")
        self.anchors = None if anchors is None else np.asarray(anchors, np.int64).reshape(-1, 2)
        """Format 2: (first value, first difference) of each delta chunk, stored as 0; None in format 1."""
        chunk_kinds = meta.get("chunk_kinds")
        self.chunk_kinds = None if chunk_kinds is None else np.asarray(chunk_kinds, np.uint8)
        """Format 2, columns whose kinds vary: each chunk's kind, or MIXED_KINDS."""
        self.uniform_kind: int | None = meta["kind"]
        self.where: np.ndarray | None = meta.get("where")
        """(file offset, compressed size, Adler-32) of each chunk from the chunk index (``_chunkindex``), when the file has one."""
        self._check_shape()
        self._str_where = meta.get("str")
        self._strs = None
        self._kinds: tuple[int, int, np.ndarray] | None = None

    def _check_shape(self) -> None:
        """The chunk metadata must describe the rows: else every reader would fail later, less clearly."""
        chunks = len(self.descriptors)
        problem = None
        if not 0 < self.chunk_rows <= MAX_CHUNK_ROWS or not 0 <= self.rows <= chunks * self.chunk_rows:
            problem = f"claims {self.rows} rows in chunks of {self.chunk_rows} rows with {chunks} chunk descriptors"
        elif self.anchors is not None and len(self.anchors) != chunks:
            problem = f"has {len(self.anchors)} chunk anchors for {chunks} chunks"
        elif self.chunk_kinds is not None and len(self.chunk_kinds) != chunks:
            problem = f"has {len(self.chunk_kinds)} chunk kinds for {chunks} chunks"
        if problem:
            path = self.file.filename
            raise TraceCorruptError(f"{path}: column {self._name()} {problem}", path=path)

    def _name(self) -> str:
        return self._group.name if self._group is not None else f"{self._location[0].name}/{self._location[1]}"

    @property
    def group(self) -> h5py.Group:
        if self._group is None:
            parent, path = self._location
            self._group = h5py.Group(h5py.h5g.open(parent.id, path.encode()))
        return self._group

    @property
    def file(self) -> h5py.File:
        return (self._group if self._group is not None else self._location[0]).file

    @property
    def fileno(self) -> int:
        """HDF5's number of the file the column is in (cheaper than ``file``)."""
        return (self._group if self._group is not None else self._location[0]).id.fileno

    def open_dataset(self, name: str) -> h5py.h5d.DatasetID:
        """The low-level id of one of the column's datasets (``u1``, ``kind``, ...)."""
        if self._group is not None:
            return h5py.h5d.open(self._group.id, name.encode())
        parent, path = self._location
        return h5py.h5d.open(parent.id, f"{path}/{name}".encode())

    def kinds(self, lo: int, hi: int) -> np.ndarray:
        if self.uniform_kind is not None:
            return np.full(hi - lo, self.uniform_kind, np.uint8)
        # callers ask twice for the same range (what a column holds, then how to decode it)
        cached = self._kinds
        if cached is None or cached[0] != lo or cached[1] != hi:
            cached = self._kinds = (lo, hi, self._read_kinds(lo, hi))
            cached[2].flags.writeable = False
        return cached[2]

    def _read_kinds(self, lo: int, hi: int) -> np.ndarray:
        with self._damage(f"the kinds of rows {lo}-{hi - 1}"):
            return self._read_kinds_unchecked(lo, hi)

    def _read_kinds_unchecked(self, lo: int, hi: int) -> np.ndarray:
        if self.chunk_kinds is None:
            return self.group["kind"][lo:hi]
        out = np.empty(hi - lo, np.uint8)
        cr = self.chunk_rows
        kinds = None
        for c in range(lo // cr, (hi - 1) // cr + 1) if hi > lo else ():
            a, b = max(lo, c * cr), min(hi, (c + 1) * cr)
            kind = int(self.chunk_kinds[c])
            if kind == MIXED_KINDS:
                if kinds is None:
                    kinds = h5py.Dataset(self.open_dataset("kind"))
                kinds.read_direct(out, np.s_[a:b], np.s_[a - lo:b - lo])
            else:
                out[a - lo:b - lo] = kind
        return out

    @contextlib.contextmanager
    def _damage(self, what: str):
        """Reading the column's datasets: h5py's errors on damaged bytes become TraceCorruptError."""
        try:
            yield
        except (KeyError, OSError, ValueError) as exc:
            path = self.group.file.filename
            raise TraceCorruptError(f"{path}: {what} of column {self._name()} cannot be read ({exc})",
                                    path=path) from exc

    def _str_runs(self):
        if self._strs is None:
            with self._damage("the strings"):
                self._strs = self._read_str_runs()
        return self._strs

    def _read_str_runs(self):
        if self._str_where == "attrs":
            values = np.array([_strings.load(v) for v in self.group.attrs["str_values"]], dtype=object)
            return np.asarray(self.group.attrs["str_rows"], np.int64), values
        if self._str_where == "datasets":
            values = self.group["str_values"].asstr()[()]
            if any(v.startswith(_strings.ESC) for v in values):
                values = np.array([_strings.load(v) for v in values], dtype=object)
            return self.group["str_rows"][()], values
        return np.zeros(0, np.int64), np.zeros(0, object)

    def stored_chunk(self, c: int) -> np.ndarray:
        """The stored (encoded, unsigned) values of chunk ``c``."""
        enc, _, width = (int(v) for v in self.descriptors[c])
        a, b = c * self.chunk_rows, min((c + 1) * self.chunk_rows, self.rows)
        if width == 0:
            return np.zeros(b - a, np.uint8)
        with self._damage(f"rows {a}-{b - 1}"):
            data = self.group[f"u{width}"][a:b]
        if len(data) < b - a:  # rows never written hold the fill value
            data = np.concatenate([data, np.zeros(b - a - len(data), data.dtype)])
        return data

    def read(self, lo: int = 0, hi: int | None = None) -> Column:
        hi = self.rows if hi is None else min(hi, self.rows)
        lo = max(0, min(lo, hi))
        kinds = self.kinds(lo, hi).copy()  # the cached array is shared (read-only); the Column owns its own
        n = hi - lo
        ints = np.zeros(n, np.int64)
        floats = np.zeros(n, np.float64)
        numeric = (kinds == INT) | (kinds == FLOAT)
        if numeric.any():
            cr = self.chunk_rows
            for c in range(lo // cr, (hi - 1) // cr + 1):
                a = c * cr
                s, e = max(lo, a), min(hi, a + cr)
                enc, scale, _ = (int(v) for v in self.descriptors[c])
                anchors = None if self.anchors is None else self.anchors[c]
                ci, cf = _codec.decode_chunk(self.stored_chunk(c), enc, scale, anchors)
                ints[s - lo:e - lo] = ci[s - a:e - a]
                floats[s - lo:e - lo] = cf[s - a:e - a]
        strs = None
        if (kinds == STR).any():
            rows_, values = self._str_runs()
            idx = np.arange(lo, hi)
            # value of a STR row = the last run that starts at or before it
            pos = np.searchsorted(rows_, idx, side="right") - 1
            strs = np.where(kinds == STR, values[np.clip(pos, 0, None)] if len(values) else None, None)
        return Column(kinds, ints, floats, strs)

"""Segments of format 3: a table's rows encoded column by column (docs/format.md, section 3.2).

``encode_piece`` turns a piece (``_tables``) into streams and the header that the journal
and the trace file's index keep of it; ``Segment`` is that header with where its
streams are; ``decode_piece`` reads a segment back into a piece (recovery merges the
pieces a crashed recorder had not sealed yet).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from telemrec.errors import TraceCorruptError
from telemrec.trace import _catalog as C
from telemrec.trace import _streams
from telemrec.trace._columns import Column
from telemrec.trace._tables import Piece, packed, packed_column

try:
    from telemrec.trace import _ccodec
except ImportError:  # not built (setup.py): the NumPy codec writes and reads the same bodies
    _ccodec = None

STREAM_FIELDS = ("column", "offset", "size", "crc", "raw", "encoding", "scale", "width", "kinds", "run_kinds")
_HEADER_FIELDS = [0, 2, 3, 4, 5, 6, 7, 8]  # what a journal header keeps of a stream row


LEVEL = 6
"""Deflate level of streams (libdeflate's and zlib's scales agree roughly; the NumPy codec uses zlib)."""
PROVISIONAL_LEVEL = 1
"""Of provisional segments: the journal's, superseded by a merge or a seal within minutes, so they
are encoded for speed (a row is encoded a few times on its way to its final segment)."""
FLUSH_LEVEL = 0
"""Of the provisional segment of one flush's rows (stored, not deflated): the most numerous and
the shortest-lived, merged away within ``MERGE_FANIN`` flushes; most of their cost was deflate's
set-up per short column."""


def encode_column(col: Column, runs: np.ndarray, level: int = LEVEL) -> tuple[bytes, _streams.StreamInfo]:
    """One column of a segment as a compressed stream, with the NumPy codec (``_encoded_columns``
    uses the compiled one, which writes the same bodies)."""
    body, info = _streams.encode_body(col, runs)
    return _streams.compress(body, level), info


@dataclass
class Segment:
    """An encoded segment: its rows, runs and streams. ``streams`` is int64 [n, 9] with the
    columns of ``STREAM_FIELDS``; ``offset`` is where the stream starts in the file that holds it."""

    table: int
    row_lo: int
    row_hi: int
    seq_lo: int
    seq_hi: int
    wall_lo: int
    wall_hi: int
    entities: np.ndarray
    counts: np.ndarray
    streams: np.ndarray
    final: bool = True
    values: int = 0  # field values held (absent ones not counted)
    run_kinds: dict | None = None  # stream position -> each run's kinds, for streams whose rows' kinds differ
    data: list | None = None  # the streams' bytes when they are not in a file yet (a tail sealed by recovery)

    def kinds_of_runs(self, position: int) -> np.ndarray:
        """Each run's kinds (bit 1 << kind) in the stream at ``position``."""
        masks = (self.run_kinds or {}).get(position)
        if masks is None:
            return np.full(len(self.counts), int(self.streams[position, 8]), np.int64)
        return masks

    @property
    def rows(self) -> int:
        return self.row_hi - self.row_lo

    def header(self) -> dict:
        """What the journal keeps of it (offsets relative to the frame's first stream byte)."""
        streams = self.streams.copy()
        if len(streams):
            streams[:, 1] -= streams[0, 1]
        return {"table": self.table, "rows": [self.row_lo, self.row_hi], "seq": [self.seq_lo, self.seq_hi],
                "wall": [self.wall_lo, self.wall_hi], "entities": self.entities.tolist(),
                "counts": self.counts.tolist(), "streams": streams[:, _HEADER_FIELDS].tolist(),
                "run_kinds": [[pos, masks.tolist()] for pos, masks in (self.run_kinds or {}).items()],
                "values": self.values, "final": self.final}

    @classmethod
    def from_header(cls, header: dict, body: int, catalog: C.Catalog) -> "Segment":
        """A segment frame's header (``body``: file offset of its first stream), checked against the catalog."""
        try:
            row_lo, row_hi = (_int(v) for v in header["rows"])
            seq_lo, seq_hi = (_int(v) for v in header["seq"])
            wall_lo, wall_hi = (_int(v) for v in header["wall"])
            table = _int(header["table"])
            entities = np.array([_int(v) for v in header["entities"]], np.int64)
            counts = np.array([_int(v) for v in header["counts"]], np.int64)
            rows = [[_int(v) for v in s] for s in header["streams"]]
            run_kinds = {_int(pos): np.array([_int(v) for v in masks], np.int64) for pos, masks in header["run_kinds"]}
            final = header["final"]
            values = _int(header["values"])
            if not isinstance(final, bool) or any(len(r) != len(_HEADER_FIELDS) for r in rows) or values < 0:
                raise ValueError("malformed")
        except (KeyError, TypeError, ValueError) as exc:
            raise TraceCorruptError(f"a segment header is not valid ({exc})") from None
        streams = np.zeros((len(rows), len(STREAM_FIELDS)), np.int64)
        streams[:, 9] = -1
        if rows:
            r = np.array(rows, np.int64)
            streams[:, _HEADER_FIELDS] = r
            streams[:, 1] = body + np.concatenate([[0], np.cumsum(r[:-1, 1])])
        seg = cls(table, row_lo, row_hi, seq_lo, seq_hi, wall_lo, wall_hi, entities, counts, streams, final,
                  values, run_kinds or None)
        seg.check(catalog)
        return seg

    def check(self, catalog: C.Catalog, what: str = "a segment") -> None:
        problem = None
        if not 0 <= self.table < len(catalog.tables):
            problem = f"table {self.table} is not in the catalog"
        elif not 0 <= self.row_lo <= self.row_hi or int(self.counts.sum()) != self.rows:
            problem = f"rows {self.row_lo}-{self.row_hi} do not match its runs ({int(self.counts.sum())} rows)"
        elif len(self.entities) != len(self.counts) or (self.counts <= 0).any():
            problem = "its runs are malformed"
        elif len(self.entities) and (self.entities.min() < 0 or self.entities.max() >= len(catalog.entities)
                                     or any(catalog.entities[e].table != self.table for e in set(self.entities.tolist()))):
            problem = "a run names an entity of another table"
        elif len(self.entities) > 1 and (self.entities[1:] <= self.entities[:-1]).any():
            problem = "its runs' entities are not in ascending order"  # swapped, they would trade rows
        else:
            width = len(catalog.tables[self.table].columns)
            s = self.streams
            if len(s) and ((s[:, 0] < 0).any() or (s[:, 0] >= width).any() or len(set(s[:, 0].tolist())) != len(s)
                           or (s[:, 2] <= 0).any() or (s[:, 4] < 16).any() or (s[:, 1] < 0).any()):
                problem = "its stream list is malformed"
            elif any(not 0 <= pos < len(s) or len(masks) != len(self.counts) or (masks <= 0).any() or (masks >= 32).any()
                     for pos, masks in (self.run_kinds or {}).items()):
                problem = "its per-run kinds are malformed"
        if problem:
            raise TraceCorruptError(f"{what} of table {self.table}: {problem}")


def _int(value) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    if not -(1 << 63) <= value < 1 << 63:
        raise ValueError(f"{str(value)[:30]} is outside int64")
    return value


def _c_strings(strs):
    """A column's str values as encode_many takes them (it makes the strings section itself)."""
    if strs is None or strs.flags.c_contiguous:
        return strs
    return np.ascontiguousarray(strs)


def _encoded_columns(piece: Piece, level: int) -> list[tuple]:
    """(column number, column, stream, CRC-32, raw size, encoding, scale, width, kinds mask) of each
    column with a value in some row: in one C call when the codec is compiled (a segment of a few
    ticks has tens of short columns)."""
    present = [(c, col) for c, col in enumerate(piece.columns) if col is not None]
    if _ccodec is not None:
        done = _ccodec.encode_many([(col.kinds, packed(col), _c_strings(col.strs)) for _, col in present],
                                   piece.counts, level)
        # None: every row absent, no stream
        return [(c, col, out[0], out[6], out[4], out[1], out[2], out[3], out[5])
                for (c, col), out in zip(present, done) if out is not None]
    found = []
    for c, col in present:
        if col.kinds.any():
            stream, info = encode_column(col, piece.counts, level)
            found.append((c, col, stream, zlib.crc32(stream), info.raw_size, info.encoding, info.scale, info.width,
                          info.kinds))
    return found


def encode_piece(piece: Piece, final: bool, level: int | None = None) -> tuple[Segment, list[bytes]]:
    """The streams of a piece (columns with a value in some row), and its segment (offsets from 0)."""
    data, rows, run_kinds = [], [], {}
    offset = 0
    starts = None
    level = (LEVEL if final else PROVISIONAL_LEVEL) if level is None else level
    for c, col, stream, crc, raw, encoding, scale, width, kinds in _encoded_columns(piece, level):
        if kinds & (kinds - 1):  # rows of several kinds: say which each run holds
            if starts is None:
                starts = np.cumsum(piece.counts) - piece.counts
            run_kinds[len(rows)] = np.bitwise_or.reduceat(np.left_shift(1, col.kinds.astype(np.int64)), starts)
        data.append(stream)
        size = len(stream)
        rows.append((c, offset, size, crc, raw, encoding, scale, width, kinds, -1))
        offset += size
    streams = np.array(rows, np.int64).reshape(-1, len(STREAM_FIELDS))
    seg = Segment(piece.table, piece.row_lo, piece.row_hi, piece.seq_lo, piece.seq_hi, piece.wall_lo, piece.wall_hi,
                  piece.entities.copy(), piece.counts.copy(), streams, final, piece.values, run_kinds or None)
    return seg, data


def provisional_frame(piece: Piece, level: int = PROVISIONAL_LEVEL) -> tuple[bytes, list[bytes]] | None:
    """A provisional segment of ``piece`` as the journal keeps it: its header's JSON text and its
    streams, the bytes ``encode_piece`` and ``Segment.header()`` give (JSON as the journal encodes
    it), made in one C call (``_ccodec.segment_streams``); None where the codec is not compiled.
    A flush journals a segment per table; made here, each costs no Segment, stream table or header
    dict, which cost more than encoding its few rows."""
    if _ccodec is None:
        return None
    streams, run_kinds, data = _ccodec.segment_streams(
        [(c, col.kinds, packed(col), _c_strings(col.strs)) for c, col in enumerate(piece.columns) if col is not None],
        piece.counts, level)
    head = b'{"table":%d,"rows":[%d,%d],"seq":[%d,%d],"wall":[%d,%d],"entities":%s,"counts":%s,"streams":%s,' \
           b'"run_kinds":%s,"values":%d,"final":false}' % (
               piece.table, piece.row_lo, piece.row_hi, piece.seq_lo, piece.seq_hi, piece.wall_lo, piece.wall_hi,
               _int_list(piece.entities), _int_list(piece.counts), streams, run_kinds, piece.values)
    return head, [data]


def _int_list(values: np.ndarray) -> bytes:
    return ("[" + ",".join(map(str, values.tolist())) + "]").encode()


def read_stream(read: Callable[[int, int], bytes], row: np.ndarray, runs: np.ndarray, what: str) -> Column:
    """Read, check, inflate and decode one stream (``row`` of a stream table)."""
    offset, size, crc, raw = (int(v) for v in row[1:5])
    data = read(offset, size)
    if len(data) != size:
        raise TraceCorruptError(f"{what}: the stream ends early (only {len(data)} of {size} bytes)")
    return decode_stream(data, raw, crc, runs, what)


def decode_stream(data: bytes, raw: int, crc: int, runs: np.ndarray, what: str, as_float: bool = False) -> Column:
    """A stream's rows, its CRC-32 checked (``as_float``: ``ints`` holds float64 values, NaN where a
    row has no number)."""
    runs = np.ascontiguousarray(runs, np.int64)
    n = int(runs.sum())
    if _ccodec is not None:
        kinds = np.empty(n, np.uint8)
        values = np.empty(n, np.int64)
        starts = np.cumsum(runs) - runs
        dests = [(k, 0, int(length), values[at:at + length], kinds[at:at + length])
                 for k, (at, length) in enumerate(zip(starts.tolist(), runs.tolist()))]
        tail = call_decoder(data, raw, crc, runs, dests, as_float, what)
        strs = None if tail is None else _streams.read_strings_section(tail, kinds, what)
        return packed_column(kinds, values, strs)
    if zlib.crc32(data) != crc:
        raise TraceCorruptError(f"{what}: the stream's bytes fail their CRC-32")
    col = _streams.decode_body(_streams.inflate(data, raw, what), runs, what)
    if as_float:
        values, _ = col.as_float()
        return packed_column(col.kinds, values.view(np.int64), col.strs)
    return col


def call_decoder(data: bytes, raw: int, crc: int, runs: np.ndarray, dests: list, as_float: bool, what: str):
    """``_ccodec.decode`` with its complaints as TraceCorruptError."""
    try:
        return _ccodec.decode(data, raw, crc, runs, dests, as_float)
    except ValueError as exc:
        raise TraceCorruptError(f"{what}: {exc}") from None


def decode_piece(seg: Segment, read: Callable[[int, int], bytes], catalog: C.Catalog) -> Piece:
    width = len(catalog.tables[seg.table].columns)
    columns: list = [None] * width
    for row in seg.streams:
        columns[int(row[0])] = read_stream(read, row, seg.counts, f"table {seg.table} rows {seg.row_lo}-{seg.row_hi}")
    values = sum(int((c.kinds != 0).sum()) for c in columns[len(catalog.tables[seg.table].meta):] if c is not None)
    return Piece(seg.table, seg.row_lo, seg.row_hi, seg.entities, seg.counts, columns, seg.seq_lo, seg.seq_hi,
                 seg.wall_lo, seg.wall_hi, values)

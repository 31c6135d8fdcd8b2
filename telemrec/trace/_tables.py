"""Format 3's columns in memory: *pieces* of a table's rows, and what builds and merges them.

A piece is columnar NumPy arrays of some of a table's rows, entity after entity (each
entity's rows one run). ``_records`` makes one per table at every flush; the writer
journals them encoded (``_segments.encode_piece``) and keeps them until the table's
segment is sealed, when ``merge_pieces`` makes one piece of them, ordered by entity.

Numbers are held *packed* (``packed``): one int64 per row, an INT row's int or a FLOAT
row's bits, so a column is two arrays (kinds and values) plus strings when it has any.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from telemrec.errors import RecordError
from telemrec.trace import _catalog as C
from telemrec.trace._codec import ABSENT, FLOAT, INT, NONE, STR
from telemrec.trace._columns import Column

try:
    from telemrec.trace import _ccodec
except ImportError:  # not built (setup.py): NumPy merges the same
    _ccodec = None

_KIND_OF = {float: FLOAT, int: INT, str: STR, type(None): NONE}
_EMPTY_OBJ = np.zeros(0, object)
_STR_OR_NONE = {str, type(None)}


def absent(n: int) -> Column:
    return packed_column(np.zeros(n, np.uint8), np.zeros(n, np.int64), None)


def column_of_values(values, what: str = "a field") -> Column:
    """A ``Column`` from Python values (float, int, str, None): typed in C-level passes when
    every value has one type, value by value otherwise."""
    n = len(values)
    types = set(map(type, values))
    if len(types) == 1:
        t = next(iter(types))
        if t is float:
            return packed_column(np.full(n, FLOAT, np.uint8), np.array(values, np.float64).view(np.int64), None)
        if t is int:
            try:
                ints = np.array(values, np.int64)
            except OverflowError:
                raise RecordError(f"{what} holds an int that does not fit in int64",
                                  "Store such values as float or str.") from None
            return packed_column(np.full(n, INT, np.uint8), ints, None)
        if t is str:
            strs = np.empty(n, object)
            strs[:] = values
            return packed_column(np.full(n, STR, np.uint8), np.zeros(n, np.int64), strs)
        if t is type(None):
            return packed_column(np.full(n, NONE, np.uint8), np.zeros(n, np.int64), None)
    if types == _STR_OR_NONE:  # e.g. a table's errors: a few rows with one
        strs = np.empty(n, object)
        strs[:] = values
        kinds = np.where(np.equal(strs, None), NONE, STR).astype(np.uint8)
        return packed_column(kinds, np.zeros(n, np.int64), strs)
    bad = types - _KIND_OF.keys()
    if bad:
        raise RecordError(f"{what} has a value of type {sorted(t.__name__ for t in bad)[0]}; allowed: float, int, str, None",
                          "Convert booleans to int and numpy scalars with .item().")
    kinds = np.fromiter(map(_KIND_OF.__getitem__, map(type, values)), np.uint8, n)
    ints = np.zeros(n, np.int64)
    floats = ints.view(np.float64)
    strs = None
    obj = np.empty(n, object)
    obj[:] = values
    is_float, is_int, is_str = kinds == FLOAT, kinds == INT, kinds == STR
    if is_float.any():
        floats[is_float] = obj[is_float].astype(np.float64)
    if is_int.any():
        try:
            ints[is_int] = obj[is_int].astype(np.int64)
        except OverflowError:
            raise RecordError(f"{what} holds an int that does not fit in int64", "Store such values as float or str.") from None
    if is_str.any():
        strs = np.where(is_str, obj, None)
    return packed_column(kinds, ints, strs)


def packed(col: Column) -> np.ndarray:
    """One int64 per row: the int of an INT row, the bits of a FLOAT row's float. Columns built
    here hold their numbers this way already (``floats`` is a view of ``ints``)."""
    ints, floats = col.ints, col.floats
    if col.packed:
        return ints
    values = ints.astype(np.int64, copy=True)
    is_float = col.kinds == FLOAT
    values[is_float] = floats[is_float].view(np.int64)
    return values


def packed_column(kinds: np.ndarray, values: np.ndarray, strs) -> Column:
    return Column(kinds, values, values.view(np.float64), strs, packed=True)


def concat_columns(parts: list[Column]) -> Column:
    if len(parts) == 1:
        return parts[0]
    kinds = np.concatenate([p.kinds for p in parts])
    values = np.concatenate([packed(p) for p in parts])
    strs = None
    if any(p.strs is not None for p in parts):
        strs = np.concatenate([p.strs if p.strs is not None else np.full(len(p.kinds), None, object) for p in parts])
    return packed_column(kinds, values, strs)


def take_rows(col: Column, index: np.ndarray) -> Column:
    return packed_column(col.kinds[index], packed(col)[index], None if col.strs is None else col.strs[index])


@dataclass
class Piece:
    """Rows [row_lo, row_hi) of one table (rows numbered in the order they were written),
    columnar: entity after entity (``entities``/``counts``, one run each), a Column per column
    number (None or missing: every row absent)."""

    table: int
    row_lo: int
    row_hi: int
    entities: np.ndarray
    counts: np.ndarray
    columns: list
    seq_lo: int = 0
    seq_hi: int = 0
    wall_lo: int = C.NO_WALL
    wall_hi: int = C.NO_WALL
    values: int = 0  # present values, for the writer's sealing policy

    @property
    def rows(self) -> int:
        return self.row_hi - self.row_lo


def merge_pieces(pieces: list[Piece]) -> Piece:
    """One piece of consecutive pieces of a table, each entity's rows one run again (in row order)."""
    if len(pieces) == 1:
        return pieces[0]
    bases = np.cumsum([0] + [p.rows for p in pieces[:-1]])
    ent = np.concatenate([p.entities for p in pieces])
    counts = np.concatenate([p.counts for p in pieces])
    piece_no = np.concatenate([np.full(len(p.entities), i) for i, p in enumerate(pieces)])
    starts = np.concatenate([b + np.concatenate([[0], np.cumsum(p.counts[:-1])]).astype(np.int64)
                             for b, p in zip(bases, pieces)])
    order = np.lexsort((piece_no, ent))
    ent, counts, starts = ent[order], counts[order], starts[order]
    total = int(counts.sum())
    # the rows of each run, in the new order: starts repeated, plus 0..count-1 within each run
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    gather = np.repeat(starts, counts) + offsets
    first = np.concatenate([[True], ent[1:] != ent[:-1]])
    run_entities = ent[first]
    run_counts = np.add.reduceat(counts, np.flatnonzero(first))
    gathered = gather_compiled if _ccodec is not None else gather_numpy
    columns = gathered(pieces, max(len(p.columns) for p in pieces), gather)
    first_piece, last = pieces[0], pieces[-1]
    return Piece(first_piece.table, first_piece.row_lo, last.row_hi, run_entities.astype(np.int64),
                 run_counts.astype(np.int64), columns,
                 min(p.seq_lo for p in pieces), max(p.seq_hi for p in pieces),
                 _wall_min([p.wall_lo for p in pieces]), max(p.wall_hi for p in pieces), sum(p.values for p in pieces))


def gather_numpy(pieces: list[Piece], width: int, gather: np.ndarray) -> list:
    """The ``width`` columns of the pieces' rows, one after the other, taken at ``gather`` (None: no
    piece has the column)."""
    columns: list = []
    for c in range(width):
        parts = [p.columns[c] if c < len(p.columns) else None for p in pieces]
        if all(part is None for part in parts):
            columns.append(None)
            continue
        full = concat_columns([part if part is not None else absent(p.rows) for part, p in zip(parts, pieces)])
        columns.append(take_rows(full, gather))
    return columns


def gather_compiled(pieces: list[Piece], width: int, gather: np.ndarray) -> list:
    """``gather_numpy`` in one C pass over every column (``_ccodec.gather_columns``): a merge of tens
    of columns costs no NumPy calls per column."""
    grid = [[p.columns[c] if c < len(p.columns) else None for p in pieces] for c in range(width)]
    present = [c for c in range(width) if any(part is not None for part in grid[c])]
    n = len(gather)
    kinds = np.empty((len(present), n), np.uint8)
    values = np.empty((len(present), n), np.int64)
    strs = [np.full(n, None, object) if any(part is not None and part.strs is not None for part in grid[c]) else None
            for c in present]
    _ccodec.gather_columns([[None if part is None else (part.kinds, packed(part), part.strs) for part in grid[c]]
                            for c in present], [p.rows for p in pieces], gather, kinds, values, strs)
    columns: list = [None] * width
    for i, c in enumerate(present):
        columns[c] = packed_column(kinds[i], values[i], strs[i])
    return columns


def _wall_min(values: list[int]) -> int:
    real = [v for v in values if v != C.NO_WALL]
    return min(real) if real else C.NO_WALL


def choose_table(catalog: C.Catalog, tables: list[int], fields) -> int | None:
    """The record table (of ``tables``) an entity with these fields joins: the one sharing most of
    them, if at least half of both the entity's and the table's; None: a new table."""
    names = set(fields)
    best, best_score = None, 0.0
    for tid in tables:
        have = catalog.tables[tid].field_index
        if not names or not have:
            score = 1.0 if not names and not have else 0.0
        else:
            score = sum(1 for f in names if f in have) / max(len(names), len(have))
        if score >= 0.5 and score > best_score:
            best, best_score = tid, score
    return best


def place_blocks(into: Column | None, col: Column, spans: list[tuple[int, int]], total: int) -> Column:
    """``col``'s rows put at the (first row, rows) ``spans`` of a column of ``total`` rows (the rest
    absent, or as in ``into``)."""
    where = _positions(spans, total)
    if where is None and into is None:
        return col
    return _scatter(into, col, np.arange(total) if where is None else where, total)


def _positions(spans: list[tuple[int, int]], total: int) -> np.ndarray | None:
    """The rows (of ``total``) that ``spans`` cover, in order; None when they cover all rows in order."""
    if len(spans) == 1 and spans[0] == (0, total):
        return None
    starts = np.array([a for a, _ in spans], np.int64)
    lengths = np.array([n for _, n in spans], np.int64)
    if int(lengths.sum()) == total and (starts == np.concatenate([[0], np.cumsum(lengths[:-1])])).all():
        return None
    return np.repeat(starts - np.concatenate([[0], np.cumsum(lengths[:-1])]), lengths) + np.arange(int(lengths.sum()))


def _scatter(into: Column | None, col: Column, where: np.ndarray, total: int) -> Column:
    """``col``'s rows put at rows ``where`` of a column of ``total`` rows (absent elsewhere)."""
    if into is None:
        into = absent(total)
    values = packed(into)
    values[where] = packed(col)
    into.kinds[where] = col.kinds
    strs = into.strs
    if col.strs is not None:
        if strs is None:
            strs = np.full(total, None, object)
        strs[where] = col.strs
    return packed_column(into.kinds, values, strs)

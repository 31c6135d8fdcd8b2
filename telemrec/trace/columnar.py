"""The columnar API of traces: many columns decoded at once, whatever the format version.

Loading (``telemrec.load``), summaries, the offline monitor and exports ask for
numeric columns as jobs: rows [lo, hi) of one column of one entity into a float64
(or int64) array. ``decode_numeric`` fills them with the decoders of the format
that holds each column: ``_fastread`` for formats 1 and 2 (per-entity chunks),
``_fastread3`` for format 3 (segments shared by the entities of a table). Both
decode in C when ``telemrec.trace._ccodec`` is built, with NumPy otherwise, bit for
bit alike (tested); ``DECODER`` says which.

``decode_block`` fills 2-D blocks instead (the wide frame): a ``BlockJob`` is several
columns of one entity, each into a row of a block, so a load of many entities plans
per entity and per stream, not per column. ``text_in`` says, before anything is
decoded, whether a column's rows hold text (format 3 knows it from its index for whole
tables, whole columns and most ranges).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telemrec.trace._codec import FLOAT, INT, STR
from telemrec.trace._fastread import DECODER, NumericJob, Prefilled, empty_block
from telemrec.trace._fastread import decode_numeric as _decode_v1v2
from telemrec.trace._fastread3 import column_numbers, decode_block_v3, decode_numeric_v3, table_kinds
from telemrec.trace._v3entity import V3Column, V3Entity
from telemrec.trace.v1 import META_COLUMNS

__all__ = ["DECODER", "MIXED", "NO_TEXT", "TEXT", "BlockJob", "NumericJob", "Prefilled", "decode_block",
           "decode_numeric", "empty_block", "text_in"]

NO_TEXT, TEXT, MIXED = 0, 1, 2  # what ``text_in`` says of a column
_NUMBERS, _TEXT = (1 << INT) | (1 << FLOAT), 1 << STR
_TEXT_OF = [(MIXED if m & _NUMBERS else TEXT) if m & _TEXT else NO_TEXT for m in range(32)]  # kinds mask -> ...
_SETTLED = [not m & (m - 1) or not m & _TEXT or not m & _NUMBERS for m in range(32)]  # ... known for any range


def decode_numeric(jobs: list[NumericJob], *, threads: bool = True, raw: bool = True, compiled: bool = True) -> None:
    """Fill every job's ``out``: numbers as float64 (NaN for None, absent and str rows), or
    int64; set ``kinds`` (the uniform kind or per-row kinds), ``has_none`` and ``has_str``.

    ``raw=False`` and ``compiled=False`` choose the reference paths of formats 1 and 2.
    """
    v3 = [job for job in jobs if isinstance(job.col, V3Column) and job.hi > job.lo]
    if v3:
        decode_numeric_v3(v3, threads=threads)
    if len(v3) != len(jobs):
        _decode_v1v2([job for job in jobs if not isinstance(job.col, V3Column)], threads=threads, raw=raw,
                     compiled=compiled)


@dataclass
class BlockJob:
    """Rows [lo, hi) of the columns ``names`` (fields, or the meta columns ``_seq``, ``_tidx``,
    ``_source_version``, ``_error``) of one entity, each into row ``rows[i]`` of ``out`` (a
    C-contiguous 2-D array whose rows hold at least ``at + hi - lo`` values), from item ``at`` of
    the row on. A float64 ``out`` gets the numbers (NaN where a row holds none); an int64 one the
    ints of an integer column (``_tidx``, ``_seq``, counters)."""

    entity: object
    names: list[str]
    rows: list[int]
    lo: int
    hi: int
    out: np.ndarray
    at: int = 0


def decode_block(jobs: list[BlockJob], *, threads: bool = True, wait: bool = True):
    """Fill the rows of every job's ``out`` (see ``BlockJob``). With ``wait=False`` it may return
    while the decode threads still fill them: call the function it returns before reading them
    (the caller's own work meanwhile overlaps the decoding)."""
    for job in jobs:
        out = job.out
        if (out.ndim != 2 or out.dtype not in (np.float64, np.int64) or not out.flags.c_contiguous
                or not out.flags.writeable or len(job.rows) != len(job.names) or job.at < 0
                or job.at + job.hi - job.lo > out.shape[1]
                or (job.rows and not 0 <= min(job.rows) <= max(job.rows) < out.shape[0])):
            raise ValueError(f"decode_block: {len(job.names)} columns of rows [{job.lo}, {job.hi}) do not fit a "
                             f"{out.dtype} block of shape {out.shape} at rows {job.rows}, item {job.at}")
    v3 = [job for job in jobs if isinstance(job.entity, V3Entity)]
    finish = decode_block_v3(v3, threads=threads, wait=wait) if v3 else None
    if len(v3) != len(jobs):
        _decode_v1v2([NumericJob(_column(job.entity, name), job.lo, job.hi,
                                 job.out[row, job.at:job.at + job.hi - job.lo])
                      for job in jobs if not isinstance(job.entity, V3Entity) and job.hi > job.lo
                      for name, row in zip(job.names, job.rows)], threads=threads)
    return finish or _nothing


def _nothing() -> None:
    pass


_META = frozenset(META_COLUMNS) | {"_tidx"}


def _column(entity, name: str):
    return entity.meta_column(name) if name in _META else entity.field_column(name)


def text_in(entity, names: list[str], lo: int, hi: int) -> list[int]:
    """What rows [lo, hi) of each column ``names`` (fields or meta columns) of ``entity`` hold, for
    a loader choosing the column's type: ``NO_TEXT`` (numbers, None or nothing), ``TEXT``
    (str and None, no number) or ``MIXED`` (str and numbers). From the trace's index where it
    settles that, so a range of None rows in a text column is still ``TEXT``; else from the
    rows' kinds. Format 3 answers most columns from its index per table, without looking at the
    entity at all."""
    if isinstance(entity, V3Entity):
        columns = column_numbers(entity, names)
        if not (table_kinds(entity.reader)[entity.reader.catalog.entities[entity.eid].table][columns] & _TEXT).any():
            return [NO_TEXT] * len(names)  # no entity of the table has a str in these columns
        layout = entity.reader.entity_layout(entity.eid)
        masks = layout.kinds[columns].tolist()
        whole = lo == 0 and hi == layout.rows
    else:
        masks = []
        for name in names:
            kind = _column(entity, name).uniform_kind
            masks.append(_NUMBERS | _TEXT if kind is None else 1 << kind)  # mixed: read the rows' kinds
        whole = False
    out = []
    for name, mask in zip(names, masks):
        if whole or _SETTLED[mask]:
            out.append(_TEXT_OF[mask])
            continue
        kinds = _column(entity, name).kinds(lo, hi)
        text, numbers = bool((kinds == STR).any()), bool(((kinds == INT) | (kinds == FLOAT)).any())
        out.append((MIXED if numbers else TEXT) if text else NO_TEXT)
    return out

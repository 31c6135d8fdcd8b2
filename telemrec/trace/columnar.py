"""The columnar API of traces: many columns decoded at once, whatever the format version.

Loading (``telemrec.load``), summaries, the offline monitor and exports ask for
numeric columns as jobs: rows [lo, hi) of one column of one entity into a float64
(or int64) array. ``decode_numeric`` fills them with the decoders of the format
that holds each column: ``_fastread`` for formats 1 and 2 (per-entity chunks),
``_fastread3`` for format 3 (segments shared by the entities of a table). Both
decode in C when ``telemrec.trace._ccodec`` is built, with NumPy otherwise, bit for
bit alike (tested); ``DECODER`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telemrec.trace._codec import FLOAT, INT, STR
from telemrec.trace._fastread import DECODER, NumericJob, Prefilled, empty_block
from telemrec.trace._fastread import decode_numeric as _decode_v1v2
from telemrec.trace._fastread3 import column_number, decode_block_v3, decode_numeric_v3
from telemrec.trace._v3entity import V3Column, V3Entity
from telemrec.trace.v1 import META_COLUMNS

__all__ = ["DECODER", "BlockJob", "NumericJob", "Prefilled", "decode_block", "decode_numeric", "empty_block",
           "presence"]

_NUMBERS = (1 << INT) | (1 << FLOAT)


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
    """Rows [lo, hi) of the columns ``names`` (fields, or the meta columns ``_seq``,
    ``_source_version``, ``_error``) of one entity, each into row ``rows[i]`` of ``out`` (a
    C-contiguous 2-D float64 array whose rows hold at least hi - lo values, filled from their
    start): numbers as float64, NaN where a row holds none."""

    entity: object
    names: list[str]
    rows: list[int]
    lo: int
    hi: int
    out: np.ndarray


def decode_block(jobs: list[BlockJob], *, threads: bool = True) -> None:
    """Fill the rows of every job's ``out`` (see ``BlockJob``)."""
    v3 = [job for job in jobs if isinstance(job.entity, V3Entity)]
    if v3:
        decode_block_v3(v3, threads=threads)
    if len(v3) != len(jobs):
        _decode_v1v2([NumericJob(_column(job.entity, name), job.lo, job.hi, job.out[row, :job.hi - job.lo])
                      for job in jobs if not isinstance(job.entity, V3Entity) and job.hi > job.lo
                      for name, row in zip(job.names, job.rows)], threads=threads)


def _column(entity, name: str):
    return entity.meta_column(name) if name in META_COLUMNS else entity.field_column(name)


def presence(entity, names: list[str], lo: int, hi: int) -> list[tuple[bool, bool]]:
    """(numbers, text) for rows [lo, hi) of each column ``names`` (fields or meta columns) of
    ``entity``: whether the rows hold a number, a str. Exact where the entity's column holds both;
    otherwise it may say what the whole column holds, known from the trace's index without
    decoding (a text column stays a text column in a range of None rows)."""
    if isinstance(entity, V3Entity):
        layout = entity.reader.entity_layout(entity.eid)
        masks = layout.kinds[[column_number(entity, name) for name in names]].tolist()
        whole = lo == 0 and hi == layout.rows
    else:
        masks = [None] * len(names)
        whole = False
    out = []
    for name, mask in zip(names, masks):
        if mask is None:
            kind = _column(entity, name).uniform_kind
            mask = None if kind is None else 1 << kind
        if mask is not None and (whole or not mask & (mask - 1) or not (mask >> STR) & 1 or not mask & _NUMBERS):
            out.append((bool(mask & _NUMBERS), bool((mask >> STR) & 1)))
            continue
        kinds = _column(entity, name).kinds(lo, hi)
        out.append((bool(((kinds == INT) | (kinds == FLOAT)).any()), bool((kinds == STR).any())))
    return out

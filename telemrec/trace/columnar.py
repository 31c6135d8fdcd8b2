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

from telemrec.trace._fastread import DECODER, NumericJob, Prefilled, empty_block
from telemrec.trace._fastread import decode_numeric as _decode_v1v2
from telemrec.trace._fastread3 import decode_numeric_v3
from telemrec.trace._v3entity import V3Column

__all__ = ["DECODER", "NumericJob", "Prefilled", "decode_numeric", "empty_block"]


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

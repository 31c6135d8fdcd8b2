"""``error_records(path)``: per reader, how many records carry an error, and which.

A record whose ``error`` is set is how a reader says "no data for this entity at this
instant, and why" (an exporter that refused the connection, a GPU that fell off the
bus). A trace can hold nothing else and still be valid, so ``info``, ``summary`` and
``check`` count them per reader with this.
"""

from __future__ import annotations

from dataclasses import dataclass

from telemrec.analysis import _select

__all__ = ["ReaderErrors", "error_records", "describe"]


@dataclass(frozen=True)
class ReaderErrors:
    source: str
    records: int           # records of this source
    error_records: int     # of which carry an error
    first: str             # "<time> <entity>: <error>" of the first, "" when none
    last: str

    def to_dict(self) -> dict:
        return {"source": self.source, "records": self.records, "error_records": self.error_records,
                "first": self.first, "last": self.last}


def error_records(path) -> dict[str, ReaderErrors]:
    """Per record source of the trace (a path or an open Trace), its error records."""
    from telemrec.analysis.frames import load
    from telemrec.errors import UsageError

    with _select.opened(path) as trace:
        if not trace.entities():
            return {}
        try:
            frame = load(trace, fields="_error", form="long")
        except UsageError:  # no entity carries an error column
            return {}
    out: dict[str, ReaderErrors] = {}
    has_text = "text" in frame.columns
    for source, rows in frame.groupby("source", observed=True, sort=True):
        failed = rows[rows["text"].notna()] if has_text else rows.iloc[:0]
        first = last = ""
        if len(failed):
            first, last = (_where(failed.iloc[i]) for i in (0, -1))
        out[str(source)] = ReaderErrors(str(source), len(rows), len(failed), first, last)
    return out


def _where(row) -> str:
    return f"{row['time'].isoformat(timespec='seconds').replace('+00:00', 'Z')} {row['entity']}: {row['text']}"


def describe(errors: ReaderErrors) -> str:
    """One line: ``prometheus: 6 of 6 records carry an error (first: ...)``."""
    text = f"{errors.source}: {errors.error_records:,} of {errors.records:,} records carry an error"
    if errors.error_records:
        text += f" (first {errors.first}"
        differs = errors.last.split(" ", 1)[-1] != errors.first.split(" ", 1)[-1]
        text += f"; last {errors.last})" if differs else ")"
    return text

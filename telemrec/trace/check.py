"""`telemrec check`: is a trace valid against the spec and the manifest schema?"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from telemrec.errors import TelemrecError
from telemrec.trace import journal as _journal
from telemrec.trace._codec import ENCODINGS
from telemrec.trace.manifest import manifest_problems


@dataclass
class CheckReport:
    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_trace(path: str, *, deep: bool = True) -> CheckReport:
    from telemrec.trace._store import open_trace

    report = CheckReport(path)
    jpath = _journal.journal_path(path)
    if os.path.exists(jpath):
        if _journal.is_locked(jpath):
            report.problems.append("a recorder is still writing this trace (journal locked); checked a snapshot")
        else:
            report.notes.append("found the journal of a recorder that did not stop: folded it into the trace")
    try:
        trace = open_trace(path)
    except TelemrecError as exc:
        report.problems.append(exc.message)
        return report
    with trace:
        manifest = trace.manifest
        report.problems.extend(manifest_problems(manifest, trace.format_version))
        if not trace.closed_cleanly:
            recovery = manifest.get("recovery") or {}
            detail = ""
            if recovery:
                detail = (f" (recovered up to the last flush; {recovery.get('journal_discarded_bytes', 0)} bytes of a "
                          f"torn final frame discarded)")
            report.problems.append("the trace was not closed cleanly: the recorder was killed or crashed" + detail)
        try:
            _check_structure(trace, report, deep)
        except (KeyError, OSError, ValueError) as exc:
            report.problems.append(f"layout: {type(exc).__name__}: {exc}")
    return report


def _check_structure(trace, report: CheckReport, deep: bool) -> None:
    total = 0
    seqs = []
    for (source, name), ent in trace._reader.entities().items():
        where = f"{source}/{name}"
        total += ent.rows
        n_chunks = -(-ent.rows // ent.chunk_rows)
        ranges = ent.wall_ranges().shape[0]
        if ranges != n_chunks:
            report.problems.append(f"{where}: wall_range has {ranges} rows, expected {n_chunks}")
        for col_name in ("_seq", "_mono_ns", "_wall_ns", "_source_version", "_error", *ent.fields):
            col = ent.column(col_name)
            if col.rows != ent.rows:
                report.problems.append(f"{where}/{col_name}: {col.rows} rows, entity has {ent.rows}")
            desc = col._desc
            if len(desc) != n_chunks:
                report.problems.append(f"{where}/{col_name}: {len(desc)} chunk descriptors, expected {n_chunks}")
            bad = sorted({int(e) for e in desc[:, 0]} - ENCODINGS) if len(desc) else []
            if bad:
                report.problems.append(f"{where}/{col_name}: unknown chunk encodings {bad}")
            elif deep:
                col.read()  # decompresses and decodes every chunk: finds damaged bytes
        if deep and ent.rows:
            seqs.append(ent.ints("_seq"))
    records = (trace.manifest.get("stats") or {}).get("records")
    if records is not None and records != total:
        report.problems.append(f"manifest stats.records is {records}, the trace holds {total} records")
    if deep and seqs:
        allseq = np.sort(np.concatenate(seqs))
        if len(allseq) and not np.array_equal(allseq, np.arange(len(allseq))):
            report.problems.append("record sequence numbers are not 0..N-1 without gaps or repeats")
    report.notes.append(f"{total} records in {len(trace._reader.entities())} entities")

"""`telemrec check`: is a trace valid against the spec and the manifest schema?"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from telemrec.errors import TelemrecError
from telemrec.trace import _chunkindex
from telemrec.trace import journal as _journal
from telemrec.trace._codec import ENCODINGS
from telemrec.trace._columns import MIXED_KINDS, ColumnReader
from telemrec.trace.manifest import manifest_problems
from telemrec.trace.v1 import STORED_META, WHERE, WHERE_SIZE


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
        if not trace.closed_cleanly and not trace.in_progress:
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


def _same(a, b) -> bool:
    return (a is None) == (b is None) and (a is None or np.array_equal(a, b))


def _check_column(where: str, col, group, n_chunks: int, report: CheckReport, deep: bool, version: int) -> None:
    desc = col.descriptors
    if len(desc) != n_chunks:
        report.problems.append(f"{where}: {len(desc)} chunk descriptors, expected {n_chunks}")
    bad = sorted({int(e) for e in desc[:, 0]} - ENCODINGS) if len(desc) else []
    if bad:
        report.problems.append(f"{where}: unknown chunk encodings {bad}")
        return
    own = ColumnReader(group)  # the column's own attributes must agree with the entity's directory
    if (own.rows != col.rows or not np.array_equal(own.descriptors, desc) or own.uniform_kind != col.uniform_kind
            or not _same(own.anchors, col.anchors) or not _same(own.chunk_kinds, col.chunk_kinds)):
        report.problems.append(f"{where}: the column's attributes disagree with the entity's _directory")
    if col.anchors is not None and (version < 2 or len(col.anchors) != len(desc)):
        report.problems.append(f"{where}: chunk anchors in a format {version} trace, "
                               f"or not one pair per chunk ({len(col.anchors)} for {len(desc)} chunks)")
    if deep:
        col.read()  # decompresses and decodes every chunk: finds damaged bytes
        if col.chunk_kinds is not None and col.rows:
            stored = group["kind"][()]
            cr = col.chunk_rows
            for c, kind in enumerate(col.chunk_kinds.tolist()):
                part = stored[c * cr:(c + 1) * cr]
                if kind != MIXED_KINDS and not (part == kind).all():
                    report.problems.append(f"{where}: chunk {c} is listed as all kind {kind} but is not")


def _check_index(where: str, cols: list, report: CheckReport, fd: int) -> None:
    """A chunk index, where there is one, must say where HDF5 keeps each chunk, and with which Adler-32."""
    for col in cols:
        expected = _chunkindex.locate(col.open_dataset, col.descriptors[:, 2], col.chunk_rows)
        _chunkindex.add_checksums(expected, fd)
        if col.where is None or not np.array_equal(col.where, expected):
            report.problems.append(
                f"{where}: the chunk index (_where) is malformed or does not match where HDF5 keeps the chunks (the "
                f"file was changed or rewritten by another tool); `telemrec upgrade PATH -o NEW` writes a fresh one")
            return


def _check_structure(trace, report: CheckReport, deep: bool) -> None:
    if trace.format_version >= 3:
        from telemrec.trace._check3 import check_v3

        check_v3(trace, report, deep)
        return
    fd = None
    h5 = trace._reader.h5
    if WHERE_SIZE in h5.attrs and not trace._reader.use_index:
        report.problems.append(f"the file changed size since its chunk index was written ({h5.attrs[WHERE_SIZE]} -> "
                               f"{h5.id.get_filesize()} bytes: edited in place?); readers locate chunks through HDF5; "
                               f"`telemrec upgrade PATH -o NEW` writes a fresh index")
    elif h5.driver == "sec2":
        fd = os.open(h5.filename, os.O_RDONLY)
    try:
        _check_entities(trace, report, deep, fd)
    finally:
        if fd is not None:
            os.close(fd)


def _check_entities(trace, report: CheckReport, deep: bool, fd: int | None) -> None:
    total = 0
    seqs = []
    times = set()
    for (source, name), ent in trace._reader.entities().items():
        where = f"{source}/{name}"
        total += ent.rows
        n_chunks = -(-ent.rows // ent.chunk_rows)
        ranges = ent.wall_ranges().shape[0]
        if ranges != n_chunks:
            report.problems.append(f"{where}: wall_range has {ranges} rows, expected {n_chunks}")
        columns = [(name, ent.meta_column(name), ent.group[name]) for name in STORED_META]
        columns += [(name, ent.field_column(name), ent.field_column(name).group) for name in ent.fields]
        for col_name, col, group in columns:
            if col.rows != ent.rows:
                report.problems.append(f"{where}/{col_name}: {col.rows} rows, entity has {ent.rows}")
            _check_column(f"{where}/{col_name}", col, group, n_chunks, report, deep, trace.format_version)
        if fd is not None and ent.has_index:
            _check_index(where, [col for _, col, _ in columns], report, fd)
            if id(ent.time) not in times and WHERE in ent.time.group:
                times.add(id(ent.time))
                _check_index(f"{source}/$time", [ent.time.mono, ent.time.wall], report, fd)
        if deep and ent.rows:
            tidx = ent.meta_column("_tidx").read().ints
            if len(tidx) and (tidx.min() < 0 or tidx.max() >= ent.time.mono.rows):
                report.problems.append(f"{where}: _tidx points outside the source's time table")
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

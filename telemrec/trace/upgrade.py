"""Rewriting a trace of an older format version as the current one (upgrade only).

Readers read every older version as it is, so upgrading is never required; it
buys the current version's smaller, faster-loading chunks. The records, tick
tables, annotations and manifest are copied exactly (``records_identical`` on
every record is tested); only the manifest's ``format_version`` changes.
"""

from __future__ import annotations

import os

from telemrec.errors import TraceWriteError
from telemrec.trace import v1, v2
from telemrec.trace._store import _unlink_quietly, create_temporary, durable_rename, open_trace
from telemrec.trace._version import CURRENT_FORMAT_VERSION

__all__ = ["upgrade"]


def upgrade(src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Write trace ``src`` (any supported version) to the new file ``dst`` in the current
    version, atomically; return the version ``src`` had."""
    src, dst = os.fspath(src), os.fspath(dst)
    if os.path.exists(dst):
        raise TraceWriteError(f"{dst} already exists", "Choose another output path or remove the old file.", path=dst)
    with open_trace(src) as trace:
        version = trace.format_version
        h5, tmp = create_temporary(dst)
        try:
            _copy(trace, v2.V2Writer(h5, chunk_rows=_chunk_rows(trace)))
            h5.close()
            durable_rename(tmp, dst, exclusive=True)
        except BaseException:
            h5.close()
            _unlink_quietly(tmp)
            raise
    return version


def _chunk_rows(trace) -> int:
    for source, name in trace.entities():
        return trace.entity(source, name).chunk_rows
    return v1.DEFAULT_CHUNK_ROWS


def _copy(trace, writer: v2.V2Writer) -> None:
    assert writer.FORMAT_VERSION == CURRENT_FORMAT_VERSION
    for rec in trace.records():
        writer.add_record(rec)
    for label in trace.tick_labels():
        # the columns, not Trace.ticks' int arrays: a None in a tick table stays None
        columns = {name: col.to_list() for name, col in trace._reader.tick_columns(label).items()}
        for row in zip(*columns.values()):
            writer.add_tick(label, dict(zip(columns, row)))
    for row in trace.annotations():
        writer.add_annotation(row)
    writer.finish(dict(trace.manifest))

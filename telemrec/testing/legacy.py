"""Traces in the older formats telemrec still reads (1 and 2), for tests of their read paths.

telemrec writes only the latest format; tests of reading formats 1 and 2 (and of
upgrading them) need files of those versions with chosen records and chunk sizes.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

import h5py

from telemrec.record import RawRecord


def write_legacy_trace(path: str | os.PathLike, records: Iterable[RawRecord], *, version: int = 2,
                       chunk_rows: int = 8192, manifest: Mapping | None = None,
                       ticks: Mapping[str, list[Mapping]] | None = None) -> None:
    """Write ``records`` (and tick rows per reader label) as a trace of format ``version`` (1 or 2)."""
    from telemrec.trace import v1, v2
    from telemrec.trace.importer import import_manifest

    writer_class = {1: v1.V1Writer, 2: v2.V2Writer}[version]
    with h5py.File(path, "w", libver=("v110", "v110")) as h5:
        writer = writer_class(h5, chunk_rows=chunk_rows)
        for rec in records:
            writer.add_record(rec)
        for label, rows in (ticks or {}).items():
            for row in rows:
                writer.add_tick(label, row)
        base = dict(manifest) if manifest is not None else import_manifest("test")
        base.setdefault("stats", {})
        base["stats"] = dict(base["stats"], records=writer.seq, values=writer.values)
        writer.finish(base)

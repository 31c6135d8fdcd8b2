"""Records from elsewhere (JSON lines, another trace) into a new trace."""

from __future__ import annotations

import os
import time
from typing import Iterable, Mapping

from telemrec._version import __version__
from telemrec.record import RawRecord
from telemrec.trace._version import CURRENT_FORMAT_VERSION, FORMAT_NAME
from telemrec.trace.writer import TraceWriter


def import_manifest(source_name: str, tags: Mapping[str, str] | None = None) -> dict:
    from telemrec.recorder.host import library_versions

    return {
        "format": FORMAT_NAME, "format_version": CURRENT_FORMAT_VERSION, "telemrec_version": __version__,
        "libraries": library_versions(), "host": None, "gpus": [], "readers": [], "interval_seconds": None,
        "flush_every_seconds": None, "start": None, "stop": None, "slurm": None, "env": {}, "command": None,
        "tags": dict(tags or {}), "closed_cleanly": False, "stats": {},
        "imported_from": {"source": source_name, "imported_wall_ns": time.time_ns()},
    }


def _from_manifest(original: Mapping, source_name: str, tags: Mapping[str, str] | None) -> dict:
    """The manifest of a trace made from another one's records (``replay | import``): its host,
    readers (caps: units, counters), interval and stats are the original's."""
    manifest = dict(original)
    manifest.update({"format": FORMAT_NAME, "format_version": CURRENT_FORMAT_VERSION, "telemrec_version": __version__,
                     "closed_cleanly": False, "tags": {**(original.get("tags") or {}), **(tags or {})},
                     "imported_from": {"source": source_name, "imported_wall_ns": time.time_ns()}})
    return manifest


def import_records(records: Iterable[RawRecord], output: str, *, source_name: str,
                   tags: Mapping[str, str] | None = None, manifest: Mapping | None = None) -> int:
    """Write ``records`` into a new trace at ``output``. An invalid record aborts the import and
    removes the partial output (nothing half-imported is left behind). ``manifest``: that of the
    trace the records come from (a JSON-lines header), kept; its stats, when present, describe
    the whole original recording and are kept with the record count corrected."""
    writer = TraceWriter(output, _from_manifest(manifest, source_name, tags) if manifest is not None
                         else import_manifest(source_name, tags))
    count = 0
    first = last = None
    try:
        batch: list[RawRecord] = []
        for rec in records:
            batch.append(rec)
            if first is None:
                first = rec
            last = rec
            if len(batch) >= 10000:
                writer.write(batch)
                count += len(batch)
                batch = []
        writer.write(batch)
        count += len(batch)
    except BaseException:
        writer.abandon()
        os.unlink(writer.journal_path)
        raise
    stop = None if last is None else {"wall_ns": last.wall_ns, "mono_ns": last.mono_ns, "reason": "import"}
    start = None if first is None else {"wall_ns": first.wall_ns, "mono_ns": first.mono_ns}
    kept = (manifest or {}).get("stats") or {}
    if kept:  # the whole recording came through: its own start and stop stay
        start, stop = manifest.get("start") or start, manifest.get("stop") or stop
    writer.close(stop=stop, stats={**kept, "records": count}, clean=True, manifest_updates={"start": start})
    return count

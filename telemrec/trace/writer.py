"""``TraceWriter``: the one way telemrec writes traces (recorder, import, re-record).

Records go to the journal (crash-safe, fsynced on ``flush()``); ``close()`` folds the
journal into the HDF5 trace. A writer that is never closed leaves a journal that the
next ``open_trace`` recovers.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping

from telemrec.errors import TraceWriteError
from telemrec.record import RawRecord
from telemrec.trace import journal as _journal
from telemrec.trace._store import fold_journal
from telemrec.trace.v1 import TICK_COLUMNS


class TraceWriter:
    def __init__(self, path: str | os.PathLike, manifest: Mapping, *, frame_records: int = 20000,
                 overwrite: bool = False, chunk_rows: int | None = None):
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not overwrite:
            raise TraceWriteError(f"{self.path} already exists", "Choose another -o path or remove the old trace.",
                                  path=self.path)
        self.journal_path = _journal.journal_path(self.path)
        self._journal = _journal.JournalWriter(self.journal_path, {"t": "start", "manifest": dict(manifest)})
        self._pending: list[RawRecord] = []
        self._frame_records = frame_records
        self._chunk_rows = chunk_rows  # rows per HDF5 chunk of the folded trace (None: the format default)
        self.records = 0
        self.values = 0
        self._closed = False

    @property
    def bytes_written(self) -> int:
        return self._journal.bytes_written

    def write(self, records: Iterable[RawRecord]) -> None:
        for rec in records:
            self._pending.append(rec)
            self.values += len(rec.fields)
        if len(self._pending) >= self._frame_records:
            self._emit_records()

    def _emit_records(self) -> None:
        if self._pending:
            self._journal.append({"t": "rec", "r": _journal.encode_records(self._pending)})
            self.records += len(self._pending)
            self._pending = []

    def write_ticks(self, label: str, rows: list[Mapping[str, int]]) -> None:
        if rows:
            self._journal.append({"t": "ticks", "label": label,
                                  "rows": [[row.get(c) for c in TICK_COLUMNS] for row in rows]})

    def write_reader(self, info: Mapping) -> None:
        self._journal.append({"t": "reader", "reader": dict(info)})

    def annotate(self, label: str, start_wall_ns: int, end_wall_ns: int, start_mono_ns: int | None = None,
                 end_mono_ns: int | None = None) -> None:
        self._journal.append({"t": "ann", "row": {"label": label, "start_wall_ns": start_wall_ns,
                                                  "end_wall_ns": end_wall_ns, "start_mono_ns": start_mono_ns,
                                                  "end_mono_ns": end_mono_ns}})

    def flush(self) -> None:
        """Make everything written so far durable (survives SIGKILL and power loss)."""
        self._emit_records()
        self._journal.sync()

    def close(self, *, stop: Mapping | None = None, command: Mapping | None = None,
              stats: Mapping | None = None, clean: bool = True, error: str | None = None,
              manifest_updates: Mapping | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._emit_records()
        self._journal.append({"t": "end", "stop": dict(stop) if stop else None,
                              "command": dict(command) if command else None,
                              "stats": dict(stats or {}), "clean": clean, "error": error,
                              "manifest": dict(manifest_updates or {})})
        self._journal.close()
        if self._chunk_rows is None:
            fold_journal(self.journal_path, self.path)
        else:
            fold_journal(self.journal_path, self.path, chunk_rows=self._chunk_rows)

    def abandon(self) -> None:
        """Stop writing without folding (the journal stays for recovery)."""
        if not self._closed:
            self._closed = True
            try:
                self._emit_records()
            finally:
                self._journal.close()

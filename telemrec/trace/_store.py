"""Opening traces (any supported version, clean, crashed or still recording) and folding journals."""

from __future__ import annotations

import os
import time
from typing import Iterable, Iterator

import h5py

from telemrec.errors import TraceCorruptError, TraceError, TraceNotFoundError, TraceWriteError, UsageError
from telemrec.record import RawRecord
from telemrec.trace import journal as _journal
from telemrec.trace import v1, v2
from telemrec.trace._version import parse_format_version

LIBVER = ("v110", "v110")
"""HDF5 object-format bounds: compact groups and attributes of HDF5 1.10; readable by HDF5 >= 1.10 (docs/format.md)."""

_READERS = {1: v1.V1Reader, 2: v2.V2Reader}


def fold_journal(jpath: str, out: str | None, *, chunk_rows: int = v1.DEFAULT_CHUNK_ROWS) -> h5py.File | None:
    """Fold a journal into a trace of the current format version.

    With ``out`` the trace is written to ``out`` atomically (temporary name, fsync,
    rename) and the journal is removed afterwards; returns None. With ``out=None``
    the trace is built in memory and the open h5py.File is returned (a read-only
    view of a recording that is still running).
    """
    scan = _journal.JournalScan()
    tmp = None
    if out is None:
        h5 = h5py.File(f"telemrec-view-{id(scan)}", "w", driver="core", backing_store=False, libver=LIBVER)
    else:
        h5, tmp = create_temporary(out)
    try:
        manifest = _fold_into(h5, jpath, scan, chunk_rows)
    except BaseException:
        h5.close()
        if tmp:
            _unlink_quietly(tmp)
        raise
    if out is None:
        return h5
    h5.close()
    durable_rename(tmp, out)
    os.unlink(jpath)
    _journal._fsync_dir(out)
    return None


def _fold_into(h5: h5py.File, jpath: str, scan: _journal.JournalScan, chunk_rows: int) -> dict:
    writer = v2.V2Writer(h5, chunk_rows=chunk_rows)
    manifest: dict | None = None
    end: dict | None = None
    readers: dict[str, dict] = {}
    last_mono = last_wall = None
    for frame in _journal._scan(jpath, scan):
        kind = frame.get("t")
        if kind == "rec":
            for row in frame["r"]:
                rec = _journal.decode_record(row)
                writer.add_record(rec)
                last_mono, last_wall = rec.mono_ns, rec.wall_ns
        elif kind == "ticks":
            for row in frame["rows"]:
                writer.add_tick(frame["label"], dict(zip(v1.TICK_COLUMNS, row)))
        elif kind == "reader":
            readers[frame["reader"]["label"]] = frame["reader"]
        elif kind == "ann":
            writer.add_annotation(frame["row"])
        elif kind == "start":
            manifest = frame["manifest"]
        elif kind == "end":
            end = frame
    if manifest is None:
        raise TraceCorruptError(f"{jpath} holds no complete start frame: the recorder died before its first flush",
                                "Nothing was recorded; delete the journal and record again.", path=jpath)
    if readers:
        by_label = {r["label"]: r for r in manifest.get("readers", [])}
        by_label.update(readers)
        manifest["readers"] = list(by_label.values())
    stats = dict(manifest.get("stats") or {})
    stats.update({"records": writer.seq, "values": writer.values})
    if end is not None:
        manifest["stop"] = end.get("stop")
        if end.get("command") is not None:
            manifest["command"] = end["command"]
        stats.update(end.get("stats") or {})
        stats.update({"records": writer.seq, "values": writer.values})
        manifest["closed_cleanly"] = bool(end.get("clean", True))
        manifest.update(end.get("manifest") or {})
        if end.get("error"):
            manifest["stop_reason"] = end["error"]
    else:
        manifest["closed_cleanly"] = False
        manifest["stop"] = None if last_mono is None else {"wall_ns": last_wall, "mono_ns": last_mono,
                                                             "reason": "recorder did not stop cleanly"}
        manifest["recovery"] = {
            "recovered_wall_ns": time.time_ns(),
            "journal_valid_bytes": scan.valid_bytes,
            "journal_discarded_bytes": scan.torn_bytes,
            "discarded_reason": scan.torn_reason or None,
        }
    manifest["stats"] = stats
    writer.finish(manifest)
    return manifest


def create_temporary(out: str) -> tuple[h5py.File, str]:
    """A new HDF5 file beside ``out`` under a temporary name (renamed onto ``out`` when complete)."""
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        return h5py.File(tmp, "w", libver=LIBVER), tmp
    except OSError as exc:
        raise TraceWriteError(f"cannot write {tmp}: {exc.strerror or exc}", path=out) from exc


def durable_rename(tmp: str, out: str, *, exclusive: bool = False) -> None:
    """Make ``tmp`` durable and give it the name ``out``. ``exclusive``: fail with
    TraceWriteError, leaving ``out`` alone, if ``out`` appeared meanwhile (a hard link cannot
    replace a file; where links are not supported, check and rename)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if not exclusive:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except OSError as exc:
        if isinstance(exc, FileExistsError) or os.path.exists(out):
            raise TraceWriteError(f"{out} already exists", "Choose another output path or remove the old file.",
                                  path=out) from None
        os.replace(tmp, out)  # no hard links on this file system
    else:
        os.unlink(tmp)
    _journal._fsync_dir(out)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Trace:
    """A trace opened for reading. Use ``open_trace(path)``; close it (or use ``with``)."""

    def __init__(self, path: str, h5: h5py.File, *, in_progress: bool = False, recovered: bool = False):
        self.path = path
        self._h5 = h5
        self.format_version = parse_format_version(h5.attrs.get("format"), h5.attrs.get("format_version"), path=path)
        try:
            self._reader = _READERS[self.format_version](h5)
        except (KeyError, OSError, ValueError) as exc:
            raise TraceCorruptError(f"{path}: the trace's layout is damaged ({exc})", path=path) from exc
        self.manifest: dict = self._reader.manifest
        self.in_progress = in_progress
        """True when this is a snapshot of a recording that is still running."""
        self.recovered = recovered
        """True when this open folded the journal of a recorder that died."""

    # -- metadata ------------------------------------------------------------------------
    @property
    def closed_cleanly(self) -> bool:
        return bool(self.manifest.get("closed_cleanly"))

    def entities(self) -> list[tuple[str, str]]:
        return sorted(self._reader.entities())

    def sources(self) -> list[str]:
        return sorted({s for s, _ in self._reader.entities()})

    def entity(self, source: str, entity: str) -> v1.EntityReader:
        try:
            return self._reader.entities()[(source, entity)]
        except KeyError:
            from telemrec.errors import UsageError
            raise UsageError(f"{self.path} has no entity {entity!r} from source {source!r}",
                             "List them with `telemrec info PATH`.") from None

    def fields(self, source: str, entity: str) -> list[str]:
        return list(self.entity(source, entity).fields)

    def caps(self) -> dict[str, dict]:
        """Per record source (and per caps kind): merged units, descriptions and counters."""
        from telemrec.trace.manifest import caps_by_source

        return caps_by_source(self.manifest)

    def tick_labels(self) -> list[str]:
        return self._reader.tick_labels()

    def ticks(self, label: str, lo: int = 0, hi: int | None = None, columns=None):
        """The tick table of reader ``label`` (rows [lo, hi)): column name -> int64 array;
        ``columns``: the names to read (default all)."""
        if columns is not None:
            unknown = [c for c in columns if c not in v1.TICK_COLUMNS]
            if unknown:
                raise UsageError(f"no tick column {', '.join(map(repr, unknown))}",
                                 f"Tick columns are {', '.join(v1.TICK_COLUMNS)}.")
        return self._reader.ticks(label, lo, hi, columns)

    def annotations(self) -> list[dict]:
        return self._reader.annotations()

    def time_span(self) -> tuple[int | None, int | None]:
        """(first, last) wall_ns over all records, None when the trace is empty."""
        lo = hi = None
        for ent in self._reader.entities().values():
            if ent.rows:
                ranges = ent.wall_ranges()
                a, b = int(ranges[:, 0].min()), int(ranges[:, 1].max())
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
        return lo, hi

    # -- data ----------------------------------------------------------------------------
    def records(self, *, start_wall_ns: int | None = None, end_wall_ns: int | None = None,
                sources: Iterable[str] | None = None, entities: Iterable[str] | None = None,
                fields: Iterable[str] | None = None) -> Iterator[RawRecord]:
        """Records in recorded order, streamed entity chunk by entity chunk (constant memory)."""
        for _, rec in self.records_with_seq(start_wall_ns=start_wall_ns, end_wall_ns=end_wall_ns,
                                            sources=sources, entities=entities, fields=fields):
            yield rec

    def records_with_seq(self, *, start_wall_ns=None, end_wall_ns=None, sources=None, entities=None,
                         fields=None) -> Iterator[tuple[int, RawRecord]]:
        from telemrec.trace._iterate import iter_records_with_seq

        yield from iter_records_with_seq(self._reader.entities(), start_wall_ns=start_wall_ns,
                                         end_wall_ns=end_wall_ns, sources=sources, entity_names=entities,
                                         fields=fields)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "Trace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "recording" if self.in_progress else ("clean" if self.closed_cleanly else "unclean")
        return f"<Trace {self.path!r} v{self.format_version} {state}>"


def open_trace(path: str | os.PathLike, *, recover: bool = True) -> Trace:
    """Open a trace for reading.

    A journal left by a recorder that died is folded into the trace first (the
    trace is then marked ``closed_cleanly=False`` with a ``recovery`` entry); with
    ``recover=False``, or when the directory is read-only, it is folded in memory
    instead. A journal a live recorder still holds is read as an in-memory snapshot.
    """
    path = os.fspath(path)
    jpath = _journal.journal_path(path)
    if os.path.exists(jpath):
        if _journal.is_locked(jpath):
            return Trace(path, fold_journal(jpath, None), in_progress=True)
        if recover and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            _remove_stale_temporaries(path)
            fold_journal(jpath, path)
            return _open_file(path, recovered=True)
        return Trace(path, fold_journal(jpath, None), recovered=True)
    return _open_file(path)


def _remove_stale_temporaries(path: str) -> None:
    """Remove half-written ``PATH.tmp-PID`` / ``PATH.journal.tmp-PID`` files of dead processes."""
    import glob

    for tmp in glob.glob(glob.escape(path) + ".tmp-*") + glob.glob(glob.escape(path) + ".journal.tmp-*"):
        pid = tmp.rsplit("-", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _unlink_quietly(tmp)


def _open_file(path: str, recovered: bool = False) -> Trace:
    if not os.path.exists(path):
        raise TraceNotFoundError(f"no trace at {path}", path=path)
    if os.path.isdir(path):
        raise TraceNotFoundError(f"{path} is a directory, not a trace file", path=path)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise TraceCorruptError(f"{path} cannot be opened as HDF5 ({exc})", path=path) from exc
    try:
        return Trace(path, h5, recovered=recovered)
    except TraceError:
        h5.close()
        raise
    except (KeyError, OSError, ValueError) as exc:
        h5.close()
        raise TraceCorruptError(f"{path}: damaged trace ({exc})", path=path) from exc

"""Opening traces (any supported version; clean, crashed or still recording)."""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import h5py
import numpy as np

from telemrec.errors import TraceCorruptError, TraceError, TraceNotFoundError, TraceWriteError, UsageError
from telemrec.record import RawRecord
from telemrec.trace import journal as _journal
from telemrec.trace import v1, v2
from telemrec.trace._filewrite import LIBVER
from telemrec.trace._fold import fold_journal
from telemrec.trace._version import parse_format_version

__all__ = ["LIBVER", "Trace", "durable_rename", "fold_journal", "open_trace"]


def _reader_for(version: int, h5: h5py.File):
    if version == 3:
        from telemrec.trace.v3 import V3Reader

        return V3Reader.from_file(h5)
    return {1: v1.V1Reader, 2: v2.V2Reader}[version](h5)


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


class Trace:
    """A trace opened for reading. Use ``open_trace(path)``; close it (or use ``with``)."""

    def __init__(self, path: str, reader, format_version: int, *, h5: h5py.File | None = None,
                 in_progress: bool = False, recovered: bool = False):
        self.path = path
        self._h5 = h5
        self._reader = reader
        self.format_version = format_version
        self.manifest: dict = reader.manifest
        self.in_progress = in_progress
        """True when this is a snapshot of a recording that is still running."""
        self.recovered = recovered
        """True when this open recovered the journal of a recorder that died."""

    # -- metadata ------------------------------------------------------------------------
    @property
    def closed_cleanly(self) -> bool:
        return bool(self.manifest.get("closed_cleanly"))

    def entities(self) -> list[tuple[str, str]]:
        return sorted(self._reader.entities())

    def sources(self) -> list[str]:
        return sorted({s for s, _ in self._reader.entities()})

    def entity(self, source: str, entity: str):
        try:
            return self._reader.entities()[(source, entity)]
        except KeyError:
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
        self._check_ticks(label, columns)
        return self._reader.ticks(label, lo, hi, columns)

    def tick_columns(self, label: str, lo: int = 0, hi: int | None = None, columns=None):
        """Like ``ticks``, as decoded columns (None where a tick has no value)."""
        self._check_ticks(label, columns)
        return self._reader.tick_columns(label, lo, hi, columns)

    def _check_ticks(self, label: str, columns) -> None:
        if label not in self.tick_labels():
            raise UsageError(f"{self.path} has no tick table {label!r}",
                             f"Its tick tables: {', '.join(self.tick_labels()) or 'none'}.")
        if columns is not None:
            unknown = [c for c in columns if c not in v1.TICK_COLUMNS]
            if unknown:
                raise UsageError(f"no tick column {', '.join(map(repr, unknown))}",
                                 f"Tick columns are {', '.join(v1.TICK_COLUMNS)}.")

    def annotations(self) -> list[dict]:
        return self._reader.annotations()

    def time_span(self) -> tuple[int | None, int | None]:
        """(first, last) wall_ns over all records, None when the trace is empty."""
        from_index = getattr(self._reader, "time_span", None)  # format 3: its index says
        if from_index is not None:
            return from_index()
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
        """Records in recorded order, streamed block by block (constant memory)."""
        from itertools import chain

        from telemrec.trace._iterate import iter_records

        # chain, not a generator of our own: one Python frame less per record (a fifth of the time)
        return chain.from_iterable(iter_records(self._reader.entities(), start_wall_ns=start_wall_ns,
                                                end_wall_ns=end_wall_ns, sources=sources, entity_names=entities,
                                                fields=fields))

    def records_with_seq(self, *, start_wall_ns=None, end_wall_ns=None, sources=None, entities=None,
                         fields=None) -> Iterator[tuple[int, RawRecord]]:
        from telemrec.trace._iterate import iter_records_with_seq

        yield from iter_records_with_seq(self._reader.entities(), start_wall_ns=start_wall_ns,
                                         end_wall_ns=end_wall_ns, sources=sources, entity_names=entities,
                                         fields=fields)

    def close(self) -> None:
        close = getattr(self._reader, "close", None)
        if close is not None:
            close()
        if self._h5 is not None:
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

    A journal left by a recorder that died is folded into the trace first (the trace is
    then marked ``closed_cleanly=False`` with a ``recovery`` entry). With ``recover=False``,
    when the directory is read-only, or when the trace cannot be written (disk full), it is
    read where it is instead, in memory (``TelemrecWarning`` says why). A journal that a
    live recorder holds, or that another process is recovering, is read where it is.

    Locks (docs/format.md section 1): whoever writes a journal's trace holds an exclusive
    ``flock`` on the journal while it does: the recorder for its whole run, its stop included;
    a recovering reader while it folds. A reader that cannot take the lock reads in place.
    """
    path = os.fspath(path)
    jpath = _journal.journal_path(path)
    for _ in range(8):  # a journal folded by someone else meanwhile: look again
        if not os.path.exists(jpath):
            return _open_file(path)
        try:
            fd = os.open(jpath, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if not _journal.try_lock(fd):  # through our descriptor: it may be folded and removed meanwhile
                return _open_journal(path, jpath, in_progress=True, source=f"/proc/self/fd/{fd}")
            if os.fstat(fd).st_nlink == 0:  # folded and removed between our look and our lock
                continue
            if not recover or not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
                return _open_journal(path, jpath, in_progress=False)
            _remove_stale_temporaries(path)
            try:
                fold_journal(jpath, path)
            except (TraceWriteError, OSError) as exc:
                return _read_in_place_instead(path, jpath, exc)
            return _open_file(path, recovered=True)
        finally:
            os.close(fd)
    return _open_file(path)


def _read_in_place_instead(path: str, jpath: str, exc: BaseException) -> Trace:
    """The recovered trace could not be written (disk full, quota): read the journal in memory."""
    import warnings

    from telemrec.errors import TelemrecWarning

    reason = getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc)
    warnings.warn(f"{path}: could not write the recovered trace ({reason}); read it from {jpath} in memory. "
                  f"Free space and open it again to recover it for good.", TelemrecWarning, stacklevel=3)
    return _open_journal(path, jpath, in_progress=False)


def _open_journal(path: str, jpath: str, *, in_progress: bool, source: str | None = None) -> Trace:
    """A journal read where it is: a live recording's snapshot, or a crashed one not folded.
    ``source``: another path to the same file (an open descriptor's), read instead of ``jpath``."""
    from telemrec.trace._fold import finish_manifest, read_journal
    from telemrec.trace._legacy import read_v1_journal
    from telemrec.trace.v3 import V3Reader

    source = source or jpath
    if _journal.journal_version(source) == 1:
        state = read_v1_journal(source, name=jpath)
    else:
        state = read_journal(source, verify=not in_progress, name=jpath)
    reader = V3Reader.from_journal(state)
    if not in_progress:
        reader.manifest = finish_manifest(state)
    return Trace(path, reader, 3, in_progress=in_progress, recovered=not in_progress)


def _remove_stale_temporaries(path: str) -> None:
    """Remove half-written ``PATH.tmp-PID`` / ``PATH.journal.tmp-PID`` files of dead processes."""
    import glob

    for tmp in glob.glob(glob.escape(path) + ".tmp-*") + glob.glob(glob.escape(path) + ".journal.tmp-*"):
        pid = tmp.rsplit("-", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _journal.unlink_quietly(tmp)


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
        claimed = h5.attrs.get("format_version")  # an integer: no variable-length string read yet
        if not isinstance(claimed, (int, np.integer)) or claimed < 3:
            # formats 1 and 2 keep their strings in HDF5's unchecksummed global heap: look first, bounded
            from telemrec.trace._guard import look_first

            look_first(path)
        version = parse_format_version(h5.attrs.get("format"), claimed, path=path)
        reader = _reader_for(version, h5)
        return Trace(path, reader, version, h5=h5, recovered=recovered)
    except TraceError:
        h5.close()
        raise
    except (KeyError, OSError, ValueError, TypeError) as exc:
        h5.close()
        raise TraceCorruptError(f"{path}: damaged trace ({exc})", path=path) from exc

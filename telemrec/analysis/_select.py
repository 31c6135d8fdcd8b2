"""What to load: trace paths (one, a list, a directory, a glob), time bounds, name patterns, caps."""

from __future__ import annotations

import datetime as _dt
import glob
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Iterable, Iterator

from telemrec.errors import TraceNotFoundError, UsageError
from telemrec.trace import Trace, open_trace
from telemrec.trace.manifest import caps_by_source as source_caps  # the one merge of recorded caps

TRACE_SUFFIXES = (".h5", ".hdf5", ".trace")
_GLOB_CHARS = re.compile(r"[*?\[]")


def trace_paths(path) -> list[str]:
    """Expand ``path`` into trace files: a file, a directory (its *.h5 files), a glob, or a list of these."""
    if isinstance(path, Trace):
        return [path.path]
    if isinstance(path, (list, tuple, set)):
        out: list[str] = []
        for item in path:
            out.extend(trace_paths(item))
        return out
    text = os.fspath(path)
    if os.path.isdir(text):
        found = sorted(p for p in glob.glob(os.path.join(text, "*"))
                       if p.endswith(TRACE_SUFFIXES) and os.path.isfile(p))
        if not found:
            raise TraceNotFoundError(f"{text} holds no trace files ({', '.join(TRACE_SUFFIXES)})", path=text)
        return found
    if _GLOB_CHARS.search(text) and not os.path.exists(text):
        found = sorted(p for p in glob.glob(text) if os.path.isfile(p) and not p.endswith(".journal"))
        if not found:
            raise TraceNotFoundError(f"no trace matches {text!r}", "Check the pattern; quote it so the shell leaves it alone.",
                                     path=text)
        return found
    return [text]


def is_collection(path) -> bool:
    """True for a directory or a glob pattern (they load with a host level even when one trace matches)."""
    text = os.fspath(path)
    return os.path.isdir(text) or (bool(_GLOB_CHARS.search(text)) and not os.path.exists(text))


@contextmanager
def opened(path) -> Iterator[Trace]:
    """Yield an open Trace for a path (closed afterwards) or the caller's own Trace (left open)."""
    if isinstance(path, Trace):
        yield path
        return
    trace = open_trace(path)
    try:
        yield trace
    finally:
        trace.close()


def as_patterns(value, what: str) -> list[str] | None:
    """None, one name/pattern, or an iterable of them, as a list."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    try:
        items = list(value)
    except TypeError:
        raise UsageError(f"{what} must be a name, a glob pattern or a list of them, not {value!r}",
                         f"For example {what}=['gpu*', 'system'].") from None
    for item in items:
        if not isinstance(item, str):
            raise UsageError(f"{what} entries must be strings, got {item!r}", f"For example {what}=['gpu*', 'system'].")
    return items


def selection(readers, entities, fields) -> dict:
    """The ``readers``/``entities``/``fields`` arguments of ``load`` as lists of patterns."""
    return dict(readers=as_patterns(readers, "readers"), entities=as_patterns(entities, "entities"),
                fields=as_patterns(fields, "fields"))


def check_matched(paths: list, matched: bool, selection: dict) -> None:
    """A selection that matches nothing in any trace is a mistake, not an empty frame."""
    if not matched and any(v is not None for v in selection.values()):
        raise nothing_matches(paths, **selection)


def matches(name: str, patterns: list[str] | None) -> bool:
    return patterns is None or any(name == p or fnmatchcase(name, p) for p in patterns)


@dataclass(frozen=True)
class FromEnd:
    """A time ``offset`` back from a trace's last sample (what a negative Timedelta means; this
    form also says "-0s")."""

    offset: object  # a non-negative timedelta


def to_wall_ns(value, *, origin_ns: int | None, what: str, last_ns=None) -> int | None:
    """A time bound as int ns since the epoch (UTC).

    Accepts None, an int (ns since the epoch), a float (s since the epoch), a str,
    datetime or pandas Timestamp (naive means UTC), or a timedelta / pandas
    Timedelta: an offset from the start of the recording, or when negative, back
    from its last sample (``last_ns``: that instant, or a function returning it).
    A string ``"+10min"`` or ``"-5min"`` is such an offset, as on the command line
    (``"-0s"``: the last sample).
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_offset(value, what)
    if isinstance(value, bool):
        raise UsageError(f"{what}={value!r} is not a time", "Pass a timestamp, epoch seconds/ns, or a timedelta.")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(round(value * 1e9))
    import pandas as pd

    back = -int(pd.Timedelta(value.offset).value) if isinstance(value, FromEnd) else None
    if back is None and isinstance(value, (_dt.timedelta, pd.Timedelta)) and pd.Timedelta(value).value < 0:
        back = int(pd.Timedelta(value).value)
    if back is not None:
        last = last_ns() if callable(last_ns) else last_ns
        return None if last is None else last + back  # a trace without samples: no bound, no rows
    if isinstance(value, (_dt.timedelta, pd.Timedelta)):
        offset = int(pd.Timedelta(value).value)
        if origin_ns is None:
            raise UsageError(f"{what} is an offset but the trace has no start time", "Pass an absolute time instead.")
        return origin_ns + offset
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what}={value!r} is not a time ({exc})",
                         "Use an ISO time such as '2026-11-22T10:00:00Z', epoch seconds, or a timedelta.") from None
    if ts is pd.NaT:
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value)


def nothing_matches(paths: Iterable[str], readers, entities, fields) -> UsageError:
    """The error for a selection that matches nothing in the traces (a typo must not give an empty result)."""
    return UsageError(f"nothing in {', '.join(str(p) for p in paths)} matches "
                      f"readers={readers}, entities={entities}, fields={fields}",
                      "List what a trace holds with `telemrec info --fields PATH`; patterns are globs such as 'gpu*'.")


def parse_offset(text: str, what: str = "time"):
    """``"+10min"`` -> Timedelta after the start, ``"-5min"`` -> FromEnd; other text unchanged."""
    stripped = text.strip()
    if not stripped:
        raise UsageError(f"{what} is an empty time", "Give an ISO time, epoch seconds, +10min or -5min.")
    if stripped[0] not in "+-":
        return text
    import pandas as pd

    try:
        offset = pd.Timedelta(stripped[1:])
    except ValueError:
        offset = pd.NaT
    if offset is pd.NaT or offset < pd.Timedelta(0):
        raise UsageError(f"{what}={text!r} is not an offset",
                         "Write offsets like +90s, +10min or +2h from the start, -5min back from the end.")
    return FromEnd(offset) if stripped[0] == "-" else offset


def natural_key(name: str) -> tuple:
    """Sort key that puts cpu2 before cpu10 and pid:99 before pid:100."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def caps_for(caps: dict[str, dict], source: str) -> dict:
    return caps.get(source) or {"units": {}, "descriptions": {}, "counters": set()}


def reader_matches(manifest: dict, source: str, patterns: list[str] | None) -> bool:
    """A source is selected when a pattern names it, or names the label of a reader that wrote it."""
    if patterns is None or matches(source, patterns):
        return True
    for reader in manifest.get("readers") or []:
        if reader.get("name") == source or (reader.get("caps") or {}).get("kind") == source:
            if matches(str(reader.get("label", "")), patterns):
                return True
    return False


def hostname(manifest: dict, fallback: str) -> str:
    host = manifest.get("host") or {}
    return str(host.get("hostname") or fallback)


def iter_unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)

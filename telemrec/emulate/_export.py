"""What the file exports of ``telemrec.emulate`` share: the window of ``telemrec export``'s
--start/--end (the forms ``telemrec.load`` takes) and writing a text file all or nothing."""

from __future__ import annotations

import contextlib
from typing import Iterator, TextIO

from telemrec._atomic import atomic_path

__all__ = ["atomic_text", "source_names", "wall_window"]


def wall_window(trace, start, end) -> tuple[int | None, int | None]:
    """``start``/``end`` as ``load()`` reads them (ISO, epoch seconds, offsets) in wall ns."""
    from telemrec.analysis import _select

    origin = (trace.manifest.get("start") or {}).get("wall_ns")
    first, last = trace.time_span()
    origin = origin if origin is not None else first
    return (_select.to_wall_ns(start, origin_ns=origin, what="start", last_ns=last),
            _select.to_wall_ns(end, origin_ns=origin, what="end", last_ns=last))


def source_names(trace, patterns) -> list[str] | None:
    """``--reader`` patterns (globs over record sources and reader labels) as the trace's source names."""
    from fnmatch import fnmatchcase

    from telemrec.errors import UsageError

    if not patterns:
        return None
    labels = {r.get("label"): r.get("name") for r in trace.manifest.get("readers") or []}
    names = {s: s for s in trace.sources()}
    names.update({label: name for label, name in labels.items() if label and name in names})
    out = sorted({source for key, source in names.items() if any(fnmatchcase(key, p) for p in patterns)})
    if not out:
        raise UsageError(f"no reader matches {', '.join(patterns)} in {trace.path} "
                         f"(it has: {', '.join(sorted(names))})",
                         "Pick readers from `telemrec summary PATH`; globs such as 'nv*' work.")
    return out


@contextlib.contextmanager
def atomic_text(path: str) -> Iterator[TextIO]:
    """A UTF-8 text file with "\\n" line ends that appears at ``path`` only once complete."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        yield fh

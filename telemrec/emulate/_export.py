"""What the file exports of ``telemrec.emulate`` share: the window of ``telemrec export``'s
--start/--end (the forms ``telemrec.load`` takes) and writing a text file all or nothing."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, TextIO

from telemrec.errors import TraceWriteError

__all__ = ["atomic_text", "wall_window"]


def wall_window(trace, start, end) -> tuple[int | None, int | None]:
    """``start``/``end`` as ``load()`` reads them (ISO, epoch seconds, offsets) in wall ns."""
    from telemrec.analysis import _select

    origin = (trace.manifest.get("start") or {}).get("wall_ns")
    first, last = trace.time_span()
    origin = origin if origin is not None else first
    return (_select.to_wall_ns(start, origin_ns=origin, what="start", last_ns=last),
            _select.to_wall_ns(end, origin_ns=origin, what="end", last_ns=last))


@contextlib.contextmanager
def atomic_text(path: str) -> Iterator[TextIO]:
    """A UTF-8 text file with "\\n" line ends that appears at ``path`` only once complete."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as exc:
        raise TraceWriteError(f"cannot write {path}: {exc.strerror or exc}",
                              "Check that the output directory exists and is writable, and that the disk is not full.",
                              path=path) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

"""Output files that appear only once complete (exports): written beside the target, then renamed."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from telemrec.errors import TraceWriteError

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary name beside ``path`` to write; rename it to ``path`` when the block succeeds.

    A failed write leaves neither the temporary file nor a partial ``path``; an OSError becomes a
    ``TraceWriteError`` that says what to check."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise TraceWriteError(f"cannot write {path}: {exc.strerror or exc}",
                              "Check that the output directory exists and is writable, and that the disk is not full.",
                              path=path) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

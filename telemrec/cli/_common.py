"""Helpers shared by the command modules: error reporting, option parsing, output."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import typer

from telemrec.errors import TelemrecError, UsageError

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn telemrec errors into a clear message on stderr and exit status 2 (no traceback)."""
    try:
        yield
    except TelemrecError as exc:
        typer.echo(f"telemrec: error: {exc.message}", err=True)
        if exc.remediation:
            typer.echo(f"  hint: {exc.remediation}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    except BrokenPipeError:
        # a consumer such as `head` closed the pipe: stop quietly
        sys.stderr.close()
        raise typer.Exit(EXIT_OK) from None


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``-O key=value`` pairs into a dict (values stay strings; readers parse them)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"option {pair!r} is not KEY=VALUE", "Write reader options as -O key=value, e.g. -O pid=1234.")
        out[key.strip()] = value
    return out


def is_tty(stream=None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

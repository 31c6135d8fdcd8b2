"""Helpers shared by the command modules: error reporting, option parsing, output."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import typer
import typer.core

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


def parse_options(pairs: list[str] | None, flag: str = "-O", example: str = "pid=1234") -> dict[str, str]:
    """``-O key=value`` (or ``--tag key=value``) pairs into a dict (values stay strings; readers parse them)."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {pair!r} is not KEY=VALUE", f"Write it as {flag} key=value, e.g. {flag} {example}.")
        out[key.strip()] = value
    return out


def check_output(path: str, *, suffixes: tuple[str, ...] = ()) -> str:
    """A new output file: not empty, not existing (telemrec never overwrites data), parent directory present."""
    import os

    if not path or not path.strip():
        raise UsageError("the output path is empty", "Give a file name with -o, e.g. -o out.h5.")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory", "Give a file name inside it, e.g. -o " + os.path.join(path, "out"))
    if os.path.exists(path):
        raise UsageError(f"{path} already exists; telemrec does not overwrite files", "Remove it or choose another -o path.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"the directory {parent} does not exist", "Create it first or choose another -o path.")
    if suffixes and not path.lower().endswith(suffixes):
        raise UsageError(f"cannot tell the format of {path}", f"End the name with one of {', '.join(suffixes)}.")
    return path


def is_tty(stream=None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Argument(typer.core.TyperArgument):
    def display_type_rich(self, ctx):  # the name says it: TRACE, PATHS...
        return None


class Command(typer.core.TyperCommand):
    """A telemrec command: its help names values (``--output OUTPUT``, ``PATHS...``), not Python
    types (``<str>``, ``<list[str]>``) as typer's own help does."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, typer.core.TyperArgument):
                param.__class__ = _Argument
                param.metavar = param.metavar or param.name.upper()
            elif param.metavar is None and not getattr(param, "is_flag", False) and param.name:
                param.metavar = param.name.upper()


class LazyEpilogCommand(Command):
    """A command whose help ends with text computed only when help is shown (it may import modules
    that the command line must not import to start)."""

    epilog_text = staticmethod(lambda: "")

    @classmethod
    def using(cls, text):
        return type(cls.__name__, (cls,), {"epilog_text": staticmethod(text)})

    def format_epilog(self, ctx, formatter) -> None:
        text = self.epilog_text()
        if text:
            formatter.write_paragraph()
            formatter.write(text.rstrip("\n") + "\n")

"""`telemrec record` and `telemrec import`."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from telemrec.cli._common import Command, LazyEpilogCommand, parse_options, reported_errors
from telemrec.errors import TelemrecError


def record_command(
    ctx: typer.Context,
    output: str = typer.Option(..., "--output", "-o", metavar="PATH",
                               help="Trace path; %h host, %j job id, %a array task, %s step, %r requeue count, "
                                    "%n node index, %u unique id, %t start time (docs/slurm.md)."),
    reader: Optional[List[str]] = typer.Option(None, "--reader", "-r", metavar="NAME",
                                               help="Reader to run (repeatable; `telemrec readers`). Default: psutil."),
    source: Optional[List[str]] = typer.Option(None, "--source", "-s", metavar="SOURCE",
                                               help="Source of the reader at the same position: URL, file, procfs "
                                                    "root (repeatable)."),
    interval: float = typer.Option(1.0, "--interval", "-i", metavar="SECONDS", help="Seconds between ticks."),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", metavar="SECONDS",
                                             help="Stop recording after this many seconds (a command runs on)."),
    flush_every: float = typer.Option(5.0, "--flush-every", metavar="SECONDS", help="Seconds between durable flushes."),
    grace: Optional[float] = typer.Option(None, "--grace", metavar="SECONDS",
                                          help="After SIGTERM or Ctrl-C, record until the command exits, at most "
                                               "this long (default 15, which fits Slurm's KillWait of 30 s); then "
                                               "it is killed."),
    option: Optional[List[str]] = typer.Option(None, "--option", "-O", metavar="[READER.]KEY=VALUE",
                                               help="Reader option (repeatable; the options are listed below)."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", "-t", metavar="KEY=VALUE",
                                            help="User tag stored in the manifest (repeatable)."),
    cmdline: bool = typer.Option(True, "--cmdline/--no-cmdline",
                                 help="Keep command lines: the command's argv in the manifest and each process's "
                                      "cmdline (psutil -O cmdline). --no-cmdline keeps none."),
    redact: bool = typer.Option(True, "--redact/--no-redact",
                                help="Mask the values of secrets in command lines (--password X, TOKEN=X, "
                                     "user:X@ in URLs: docs/recording.md); --no-redact keeps them as given."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line and no final summary; warnings stay."),
) -> None:
    """Record readers into a trace; with `-- COMMAND ...` record while the command runs and exit with its status.

    Everything is checked before the command starts. SIGTERM is passed on to the command and
    recording goes on until it exits (at most --grace seconds).
    """
    from telemrec.recorder.console import Console
    from telemrec.recorder.session import DEFAULT_GRACE, RecordRequest, record, summary_line

    console = Console(quiet=quiet)
    try:
        with reported_errors():
            req = RecordRequest(
                output=output, readers=reader or ["psutil"], sources=source or [], interval=interval,
                duration=duration, flush_every=flush_every, command=list(ctx.args),
                grace=DEFAULT_GRACE if grace is None else grace,
                cmdline="dropped" if not cmdline else ("redacted" if redact else "unredacted"),
                options=parse_options(option), tags=parse_options(tag, '--tag', 'experiment=baseline'))
            try:
                result = record(req, console=console)
            except TelemrecError as exc:
                status = getattr(exc, "exit_status", None)
                if status is None:
                    raise
                console.line(f"telemrec: error: {exc.message}")
                if exc.remediation:
                    console.line(f"  hint: {exc.remediation}")
                raise typer.Exit(_status(status)) from None
            for message in result.errors[:10]:
                console.warn(message)
            console.summary(summary_line(result))  # the last line, the one a log keeps
    finally:
        console.clear()
    if result.exit_status is not None:
        raise typer.Exit(_status(result.exit_status))


def _status(exit_status: int) -> int:
    """The command's exit status as a shell reports it (128 + N for a command killed by signal N)."""
    return exit_status if exit_status >= 0 else 128 - exit_status


def _reader_options_help() -> str:
    """Every reader's -O options, for `record --help` (imports the reader modules, only when asked)."""
    from telemrec.cli.readers import option_lines
    from telemrec.readers import list_readers

    lines = ["Reader options: -O KEY=VALUE, or -O READER.KEY=VALUE when recording several readers",
             "(`telemrec readers` says which readers run here)."]
    for info in list_readers():
        if info.options:
            lines += ["", f"  {info.name}:", *option_lines(info.options, indent=4, width=80)]
    return "\n".join(lines)


def import_command(
    records: str = typer.Argument(..., help="JSON-lines records file (docs/jsonl.md), or - for stdin."),
    output: str = typer.Option(..., "--output", "-o", help="Trace path to write."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", "-t", metavar="KEY=VALUE",
                                            help="User tag stored in the manifest (repeatable)."),
) -> None:
    """Import JSON-lines records (other tools' data, replay output) into a trace."""
    import io
    import os

    from telemrec.errors import RecordError, UsageError
    from telemrec.jsonl import read_stream
    from telemrec.trace.importer import import_records

    with reported_errors():
        if records == "-":
            stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
            name = "<stdin>"
        else:
            if os.path.isdir(records):
                raise UsageError(f"{records} is a directory", "Give a JSON-lines file or - for stdin.")
            if not os.path.isfile(records):
                raise UsageError(f"no such file: {records}", "Give a JSON-lines file or - for stdin.")
            stream = open(records, encoding="utf-8")
            name = records
        with stream:
            try:
                manifest, records_iter = read_stream(stream)
                n = import_records(records_iter, output, source_name=name, manifest=manifest,
                                   tags=parse_options(tag, '--tag', 'experiment=baseline'))
            except RecordError as exc:
                raise RecordError(f"{name}: {exc.message}; nothing was written", exc.remediation) from None
            except UnicodeDecodeError as exc:
                raise RecordError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); nothing was written",
                                  "JSON-lines records are UTF-8 text, one JSON object per line (docs/jsonl.md).") from None
        typer.echo(f"imported {n} records into {output}", err=True)


def register(app: typer.Typer) -> None:
    app.command("record", cls=LazyEpilogCommand.using(_reader_options_help),
                options_metavar="[OPTIONS] [-- COMMAND [ARGS]...]",
                context_settings={"allow_extra_args": True, "ignore_unknown_options": False})(record_command)
    app.command("import", cls=Command)(import_command)

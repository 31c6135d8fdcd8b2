"""`telemrec record` and `telemrec import`."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from telemrec.cli._common import is_tty, parse_options, reported_errors


def record_command(
    ctx: typer.Context,
    output: str = typer.Option(..., "--output", "-o", help="Trace path; %h host, %j job id, %a array task, %s step, %r requeue count, %n node index, %u unique id, %t start time (docs/slurm.md)."),
    reader: Optional[List[str]] = typer.Option(None, "--reader", "-r", help="Reader name (repeatable). Default: psutil."),
    source: Optional[List[str]] = typer.Option(None, "--source", "-s", help="Source of the reader at the same position (repeatable)."),
    interval: float = typer.Option(1.0, "--interval", "-i", help="Seconds between ticks."),
    duration: Optional[float] = typer.Option(None, "--duration", "-d", help="Stop after this many seconds."),
    flush_every: float = typer.Option(5.0, "--flush-every", help="Seconds between durable flushes."),
    option: Optional[List[str]] = typer.Option(None, "--option", "-O", help="Reader option KEY=VALUE (repeatable)."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", "-t", help="User tag KEY=VALUE stored in the manifest."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line even on a terminal."),
) -> None:
    """Record readers into a trace; with `-- COMMAND ...` record while the command runs and exit with its status."""
    from telemrec.recorder.session import RecordRequest, record, stderr_progress

    with reported_errors():
        req = RecordRequest(
            output=output, readers=reader or ["psutil"], sources=source or [], interval=interval,
            duration=duration, flush_every=flush_every, command=list(ctx.args),
            options=parse_options(option), tags=parse_options(tag, '--tag', 'experiment=baseline'))
        show = is_tty() and not quiet
        result = record(req, progress=stderr_progress if show else None)
        if show:
            sys.stderr.write("\n")
        s = result.stats
        if show or result.errors or s["dropped_records"]:
            typer.echo(f"wrote {result.path}: {s['records']} records, {s['values']} values, {s['ticks']} ticks "
                       f"({s['missed_ticks']} missed, {s['late_ticks']} late, {s['dropped_records']} dropped), "
                       f"{result.bytes} bytes", err=True)
        for message in result.errors[:10]:
            typer.echo(f"telemrec: warning: {message}", err=True)
    if result.exit_status is not None:
        raise typer.Exit(result.exit_status if result.exit_status >= 0 else 128 - result.exit_status)


def import_command(
    records: str = typer.Argument(..., help="JSON-lines records file (docs/jsonl.md), or - for stdin."),
    output: str = typer.Option(..., "--output", "-o", help="Trace path to write."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", "-t", help="User tag KEY=VALUE stored in the manifest."),
) -> None:
    """Import JSON-lines records (other tools' data, replay output) into a trace."""
    import io
    import os

    from telemrec.errors import RecordError, UsageError
    from telemrec.jsonl import iter_records
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
                n = import_records(iter_records(stream), output, source_name=name,
                                   tags=parse_options(tag, '--tag', 'experiment=baseline'))
            except RecordError as exc:
                raise RecordError(f"{name}: {exc.message}; nothing was written", exc.remediation) from None
            except UnicodeDecodeError as exc:
                raise RecordError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); nothing was written",
                                  "JSON-lines records are UTF-8 text, one JSON object per line (docs/jsonl.md).") from None
        typer.echo(f"imported {n} records into {output}", err=True)


def register(app: typer.Typer) -> None:
    app.command("record", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})(record_command)
    app.command("import")(import_command)

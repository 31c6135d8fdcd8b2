"""`telemrec readers` and `telemrec read`."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from telemrec.cli._common import Command, parse_options, reported_errors


def readers_command(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every registered reader, whether it can run on this machine (if not, why), its source and its -O options."""
    from telemrec.readers import list_readers

    infos = list_readers()
    if json_out:
        import json
        typer.echo(json.dumps([info.__dict__ for info in infos], indent=2))
        return
    width = max(len(i.name) for i in infos)
    for info in infos:
        if not info.implemented:
            state = "not implemented"
        else:
            state = "available" if info.available else "unavailable"
        line = f"{info.name:<{width}}  {state:<15}  {info.description}"
        if info.reason:
            line += f"\n    why: {info.reason}"
        if info.source_help:
            line += f"\n    --source: {info.source_help}"
        if info.options:
            line += "\n" + "\n".join(option_lines(info.options, indent=4))
        typer.echo(line.rstrip())


def option_lines(options: dict[str, str], *, indent: int, width: int = 100) -> list[str]:
    """``-O key=  what it does``, one option a line, wrapped under its text."""
    import textwrap

    keys = max((len(k) for k in options), default=0)
    out = []
    for key, text in options.items():
        head = f"{'':<{indent}}-O {key + '=':<{keys + 1}}  "
        out.append(textwrap.fill(text, width, initial_indent=head, subsequent_indent=" " * len(head),
                                 break_long_words=False))
    return out


def read_command(
    reader: str = typer.Option(..., "--reader", "-r", help="Reader name (see `telemrec readers`)."),
    source: Optional[str] = typer.Option(None, "--source", "-s", help="The reader's source (URL, file, procfs root, trace)."),
    interval: float = typer.Option(1.0, "--interval", "-i", help="Seconds between ticks.", min=0.0001),
    count: int = typer.Option(1, "--count", "-n", help="Number of ticks to read (0: until the source ends).", min=0),
    option: Optional[List[str]] = typer.Option(None, "--option", "-O", metavar="KEY=VALUE",
                                               help="Reader option (repeatable; `telemrec readers` lists them)."),
) -> None:
    """Read COUNT ticks from a reader and print their records as JSON lines (docs/jsonl.md)."""
    import time

    from telemrec.jsonl import dumps_record
    from telemrec.readers import get_reader
    from telemrec.record import ReaderConfig

    with reported_errors():
        cls = get_reader(reader)
        instance = cls()
        out = sys.stdout
        try:
            instance.open(ReaderConfig(source=source, interval=interval, options=parse_options(option)))
            interval_ns = int(interval * 1e9)
            next_ns = time.monotonic_ns()
            ticks = 0
            while count == 0 or ticks < count:
                batch = instance.read()
                if batch is None:
                    break
                for rec in batch:
                    out.write(dumps_record(rec))
                    out.write("\n")
                out.flush()
                ticks += 1
                if count and ticks >= count:
                    break
                next_ns += interval_ns
                delay = next_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
        finally:
            instance.close()


def register(app: typer.Typer) -> None:
    app.command("readers", cls=Command)(readers_command)
    app.command("read", cls=Command)(read_command)

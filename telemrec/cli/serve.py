"""`telemrec serve`: a trace as a Prometheus exposition endpoint (telemrec/emulate/prometheus.py)."""

from __future__ import annotations

from typing import List, Optional

import typer

from telemrec.cli._common import reported_errors


def serve_command(
    trace: str = typer.Argument(..., help="Trace to serve (written by `telemrec record` or `import`)."),
    listen: str = typer.Option("127.0.0.1:9400", "--listen", "-l",
                               help="HOST:PORT to listen on (port 0: any free one, printed on start)."),
    speed: str = typer.Option("1", "--speed", "-x",
                              help="1 = real time (default), 10 = ten times faster; "
                                   "max = one recorded tick per scrape."),
    start: Optional[str] = typer.Option(None, "--start",
                                        help="Trace time to start at: ISO 8601, +5m after the first record, "
                                             "or -5m before the last."),
    end: Optional[str] = typer.Option(None, "--end", help="Trace time to stop at (exclusive), same forms as --start."),
    loop: str = typer.Option("1", "--loop", help="Passes over the trace: N or forever."),
    readers: Optional[List[str]] = typer.Option(None, "--reader", "-r", metavar="NAME",
                                                help="Only records of this reader: record source or reader label, "
                                                     "glob (repeatable)."),
    source_name: Optional[List[str]] = typer.Option(None, "--source-name", "-s", hidden=True,
                                                    help="Deprecated spelling of --reader."),
    entity: Optional[List[str]] = typer.Option(None, "--entity", "-e", help="Only this entity; globs (repeatable)."),
    field: Optional[List[str]] = typer.Option(None, "--field", "-f", help="Only this field; globs (repeatable)."),
) -> None:
    """Serve TRACE on /metrics as the recorded node's exporters would have (docs/replay/prometheus.md).

    Prometheus-reader records come back as scraped, nvml and dcgmi records as dcgm-exporter's.

    psutil records appear under node_exporter's names where the two correspond.

    A scrape shows the trace at start + elapsed x speed; the server stops when the replay is over.
    """
    from telemrec.emulate.prometheus import serve

    with reported_errors():
        if source_name:
            typer.echo("telemrec: warning: --source-name/-s is deprecated: use --reader/-r", err=True)
            readers = [*(readers or []), *source_name]
        scrapes = serve(trace, listen, speed=speed, start=start, end=end, loop=loop, entities=entity, fields=field,
                        sources=readers)
        typer.echo(f"telemrec: served {scrapes} scrape{'' if scrapes == 1 else 's'} of {trace}", err=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)

"""`telemrec summary`, `telemrec plot` and `telemrec export` (pandas and matplotlib load inside the commands)."""

from __future__ import annotations

from typing import List, Optional

import typer

from telemrec.cli._common import Command, check_output, reported_errors

_READERS = typer.Option(None, "--reader", "-r", metavar="NAME",
                        help="Only records of this reader: record source or reader label, glob (repeatable).")
_ENTITIES = typer.Option(None, "--entity", "-e", metavar="NAME", help="Entity name or glob such as 'gpu*' (repeatable).")
_FIELDS = typer.Option(None, "--field", "-f", metavar="NAME", help="Field name or glob such as 'cpu_times.*' (repeatable).")
_TIMES = "ISO time (UTC if no zone), epoch seconds, +10min (after the start) or -5min (before the last sample)"
_START = typer.Option(None, "--start", help=f"Start: {_TIMES}.")
_END = typer.Option(None, "--end", help=f"End (exclusive): {_TIMES}.")


def _time(value: Optional[str]):
    """CLI times: epoch seconds if numeric; '+10min' after the start or '-5min' before the last
    sample; else an ISO string."""
    if value is None:
        return None
    from telemrec.analysis._select import parse_offset

    try:
        return float(value.strip())
    except ValueError:
        return parse_offset(value, "the time")


def summary_command(
    paths: List[str] = typer.Argument(..., help="Trace file(s), a directory or a glob."),
    readers: Optional[List[str]] = _READERS,
    entities: Optional[List[str]] = _ENTITIES,
    fields: Optional[List[str]] = _FIELDS,
    start: Optional[str] = _START,
    end: Optional[str] = _END,
    show_all: bool = typer.Option(False, "--all", help="List every row (default: the first 40 of each table)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    each: bool = typer.Option(False, "--each", help="Several traces: one full summary per trace instead of one "
                              "summary per host and overall."),
    engine: str = typer.Option("dask", "--engine", help="Several traces: dask (lazy, trace by trace) or pandas."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Several traces: a dask scheduler address "
                                            "(tcp://HOST:8786) whose workers see the traces; default: threads here."),
) -> None:
    """One trace: per field min/mean/p50/p95/max, GPU busy time and energy, peak memory, and gaps.
    Several (a directory, a glob, a list): per host and overall, and a table of the traces."""
    import json

    with reported_errors():
        from telemrec.analysis._select import is_collection, trace_paths

        found = trace_paths(paths)
        times = dict(start=_time(start), end=_time(end))
        many = len(found) > 1 or (len(paths) == 1 and is_collection(paths[0]))
        if many and not each:
            _summary_of_many(found, readers, entities, fields, times, engine, scheduler, json_out, show_all)
            return
        from telemrec.analysis.summary import summarize

        results = [summarize(p, readers=readers, entities=entities, fields=fields, **times) for p in found]
        if json_out:
            payload = [r.to_dict() for r in results]
            typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, allow_nan=False))
            return
        typer.echo("\n\n".join(r.to_text(max_fields=None if show_all else 40) for r in results))


def _summary_of_many(found, readers, entities, fields, times, engine, scheduler, json_out, show_all) -> None:
    from contextlib import nullcontext

    from telemrec.analysis.jobsummary import summarize_traces

    client = nullcontext()
    if scheduler is not None:
        from telemrec.analysis.dask_frames import require_dask

        require_dask()
        from distributed import Client

        client = Client(scheduler)
    with client:
        result = summarize_traces(found, readers=readers, entities=entities, fields=fields, engine=engine, **times)
    typer.echo(result.to_json() if json_out else result.to_text(max_rows=None if show_all else 40))


def plot_command(
    path: str = typer.Argument(..., help="Trace file."),
    out: str = typer.Option(..., "--output", "-o", help="Image to write (.png, .svg or .pdf)."),
    title: Optional[str] = typer.Option(None, "--title", help="Figure title (default: host, file, span)."),
    width: float = typer.Option(12.0, "--width", help="Figure width in inches.", min=4.0, max=60.0),
) -> None:
    """Draw CPU, memory, disk I/O and GPU panels over time into one figure."""
    from telemrec.analysis.plot import plot_trace

    with reported_errors():
        check_output(out, suffixes=(".png", ".svg", ".pdf"))
        plot_trace(path, out, title=title, width=width)
        typer.echo(out)


def export_command(
    paths: List[str] = typer.Argument(..., help="Trace file(s), a directory or a glob."),
    fmt: str = typer.Option(..., "--format", help="csv, parquet, hdf5 (plain, self-describing), jumper, dmon (a `dcgmi dmon` capture) or openmetrics."),
    out: str = typer.Option(..., "--output", "-o", help="Output file (csv/parquet; - for standard output), or directory or .zip (jumper)."),
    form: str = typer.Option("wide", "--form", help="wide (a column per source/entity/field) or long (a row per value)."),
    rates: bool = typer.Option(False, "--rates", help="Counters as per-second rates."),
    resample: Optional[str] = typer.Option(None, "--resample", help="Bin rows, e.g. 10s or 1min (wide form)."),
    align: str = typer.Option("tick", "--align", help="tick (a row per recorder tick) or exact (a row per timestamp)."),
    readers: Optional[List[str]] = _READERS,
    entities: Optional[List[str]] = _ENTITIES,
    fields: Optional[List[str]] = _FIELDS,
    start: Optional[str] = _START,
    end: Optional[str] = _END,
) -> None:
    """Export traces to CSV, Parquet, plain HDF5 (for MATLAB, HDFView), a JUmPER 0.4.1 session, a `dcgmi dmon`
    capture or OpenMetrics.

    A JUmPER session (directory or .zip) is what %import_session reads; the dmon capture is what
    KempnerPulse's replay backend reads (docs/replay/dcgmi.md); OpenMetrics is what promtool backfills
    (docs/replay/openmetrics.md)."""
    from telemrec.analysis.export import export

    with reported_errors():
        if out != "-":
            check_output(out)
        target = paths[0] if len(paths) == 1 else paths
        if fmt == "jumper":
            export(target, fmt, out, form=form, readers=readers, entities=entities, fields=fields,
                   start=_time(start), end=_time(end), resample=resample)
        else:
            export(target, fmt, out, form=form, rates=rates, resample=resample, align=align, readers=readers,
                   entities=entities, fields=fields, start=_time(start), end=_time(end))
        if out != "-":
            typer.echo(out)


def register(app: typer.Typer) -> None:
    app.command("summary", cls=Command)(summary_command)
    app.command("plot", cls=Command)(plot_command)
    app.command("export", cls=Command)(export_command)

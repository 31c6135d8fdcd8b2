"""`telemrec info`, `telemrec check` and `telemrec upgrade`."""

from __future__ import annotations

import typer

from telemrec.cli._common import Command, EXIT_FAILED, check_output, reported_errors


def _iso(ns):
    import datetime as dt

    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def info_command(
    path: str = typer.Argument(..., help="Trace file."),
    fields: bool = typer.Option(False, "--fields", help="List every field of every entity."),
    json_out: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Summarise a trace: manifest, readers, entities, fields, time span, size, bytes per value."""
    import json
    import os
    import shlex

    from telemrec.analysis.errors import describe, error_records
    from telemrec.analysis.summary import trace_state
    from telemrec.trace import open_trace

    with reported_errors():
        with open_trace(path) as trace:
            m = trace.manifest
            if json_out:
                typer.echo(json.dumps(m, indent=2, sort_keys=True))
                return
            host, stats = _object(m.get("host")), _object(m.get("stats"))
            lo, hi = trace.time_span()
            size = os.path.getsize(path) if os.path.exists(path) else 0
            values = stats.get("values") or 0
            state = trace_state(trace)
            lines = [
                f"trace        {path}",
                f"format       {m.get('format')} v{trace.format_version}, telemrec {m.get('telemrec_version')}, {state}",
                f"host         {host.get('hostname', '-')} ({host.get('os', '')} {host.get('kernel', '')}), "
                f"{host.get('cpu_count_logical', '-')} CPUs, {host.get('cpu_model') or ''}".rstrip(", "),
                f"time span    {_iso(lo)} .. {_iso(hi)}" + (f" ({(hi - lo) / 1e9:.1f} s)" if lo is not None else ""),
                f"interval     {m.get('interval_seconds')} s, flush every {m.get('flush_every_seconds')} s",
                f"records      {stats.get('records', 0)}, values {values}, ticks {stats.get('ticks', '-')} "
                f"(missed {stats.get('missed_ticks', 0)}, late {stats.get('late_ticks', 0)}, dropped records "
                f"{stats.get('dropped_records', 0)})",
                f"size         {size} bytes" + (f", {size / values:.3f} bytes per value" if values else ""),
            ]
            if _object(m.get("imported_from")):
                lines.append(f"imported     from {m['imported_from'].get('source')}")
            command = _object(m.get("command"))
            if command:
                if isinstance(command.get("argv"), list):
                    argv = shlex.join(map(str, command["argv"])).replace("\n", "\\n")
                    argv = argv if len(argv) <= 160 else argv[:157] + "..."
                else:
                    argv = f"(pid {command.get('pid')}; command line not kept (--no-cmdline))"
                lines.append(f"command      {argv} -> exit {command.get('exit_status')}")
            redaction = _object(m.get("redaction"))
            if redaction.get("argv_values_redacted") or redaction.get("reader_values_redacted"):
                lines.append(f"redacted     {redaction.get('argv_values_redacted', 0)} value(s) of the command line, "
                             f"{redaction.get('reader_values_redacted', 0)} of reader settings "
                             f"(shown as {redaction.get('marker', '***')})")
            if _object(m.get("slurm")):
                lines.append(f"slurm        job {m['slurm'].get('job_id')}")
            for gpu in _objects(m.get("gpus")):
                lines.append(f"gpu          {gpu.get('index')}: {gpu.get('name')} {gpu.get('uuid')}")
            for reader in _objects(m.get("readers")):
                fields_of = _object(reader.get("caps")).get("fields")
                lines.append(f"reader       {reader.get('label')}: {reader.get('name')} source={reader.get('source') or '-'} "
                             f"version={reader.get('version') or '-'} "
                             f"fields={len(fields_of) if isinstance(fields_of, list) else 0}")
            by_source: dict[str, list[str]] = {}
            for source, entity in trace.entities():
                by_source.setdefault(source, []).append(entity)
            for source, ents in by_source.items():
                shown = ", ".join(ents[:8]) + (f", ... (+{len(ents) - 8})" if len(ents) > 8 else "")
                lines.append(f"entities     {source}: {len(ents)}: {shown}")
                if fields:
                    for entity in ents:
                        lines.append(f"  {entity}: {', '.join(trace.fields(source, entity))}")
            failing = [describe(e) for e in error_records(trace).values() if e.error_records]
            lines += [f"errors       {line}" for line in failing] or ["errors       none (no record carries an error)"]
            typer.echo("\n".join(lines))


def check_command(
    path: str = typer.Argument(..., help="Trace file."),
    quick: bool = typer.Option(False, "--quick", help="Skip decoding every chunk."),
) -> None:
    """Validate a trace against the format spec and manifest schema: exit 0 when valid and closed cleanly, 1 with reasons."""
    from telemrec.analysis.errors import describe, error_records
    from telemrec.trace.check import check_trace

    with reported_errors():
        report = check_trace(path, deep=not quick)
    for note in report.notes:
        typer.echo(f"note: {note}")
    if report.ok:  # a valid trace may still hold nothing but error records: say so
        with reported_errors():
            for errors in error_records(path).values():
                if errors.error_records:
                    typer.echo(f"errors: {describe(errors)}")
    if report.ok:
        typer.echo(f"{path}: valid")
        return
    for problem in report.problems:
        typer.echo(f"problem: {problem}")
    typer.echo(f"{path}: INVALID ({len(report.problems)} problem(s))")
    raise typer.Exit(EXIT_FAILED)


def upgrade_command(
    path: str = typer.Argument(..., help="Trace file of any supported format version."),
    out: str = typer.Option(..., "--output", "-o", help="New trace file (never overwritten)."),
) -> None:
    """Rewrite a trace in the current format version (every version stays readable as it is)."""
    from telemrec.trace import CURRENT_FORMAT_VERSION
    from telemrec.trace.upgrade import upgrade

    with reported_errors():
        check_output(out)
        was = upgrade(path, out)
    typer.echo(f"{out}: format v{was} -> v{CURRENT_FORMAT_VERSION}")


def register(app: typer.Typer) -> None:
    app.command("info", cls=Command)(info_command)
    app.command("check", cls=Command)(check_command)
    app.command("upgrade", cls=Command)(upgrade_command)


def _object(value) -> dict:
    """A manifest entry that should be an object: itself, or empty when it is something else
    (the manifest is the trace's to say; a wrong type there is shown as missing, not a traceback)."""
    return value if isinstance(value, dict) else {}


def _objects(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []

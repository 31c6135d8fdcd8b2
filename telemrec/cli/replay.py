"""`telemrec replay`: a trace back out as JSON lines, paced like the recording, or served to
COMMAND through a stand-in for the tool it reads (`--as`, backends in telemrec/emulate/)."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from telemrec.cli._common import Command, check_output, reported_errors

EXIT_INTERRUPTED = 130
# --as NAME: the module whose run_as(trace, command, speed=, start=, end=, loop=, entities=, fields=, sources=)
# runs COMMAND against the stand-in and returns its exit status
_AS = {"nvml": "telemrec.emulate.nvml", "dcgmi": "telemrec.emulate.dcgmi"}


def replay_command(
    trace: str = typer.Argument(..., help="Trace to replay (written by `telemrec record` or `import`)."),
    speed: str = typer.Option("1", "--speed", "-x",
                              help="1 = real time (default), 10 = ten times faster, 0.5 = half speed, "
                                   "max = no pacing."),
    start: Optional[str] = typer.Option(None, "--start",
                                        help="Window start: ISO 8601 (2026-03-02T01:00:00Z), +5m after the first "
                                             "record, or -5m before the last."),
    end: Optional[str] = typer.Option(None, "--end", help="Window end (exclusive), same forms as --start."),
    readers: Optional[List[str]] = typer.Option(None, "--reader", "-r", metavar="NAME",
                                                help="Only records of this reader: record source or reader label, "
                                                     "glob (repeatable)."),
    source_name: Optional[List[str]] = typer.Option(None, "--source-name", "-s", hidden=True,
                                                    help="Deprecated spelling of --reader."),
    entity: Optional[List[str]] = typer.Option(None, "--entity", "-e", metavar="NAME",
                                               help="Only this entity; glob patterns such as 'gpu*' (repeatable)."),
    field: Optional[List[str]] = typer.Option(None, "--field", "-f", metavar="NAME",
                                              help="Only this field; records without any chosen field are "
                                                   "skipped unless they carry an error (repeatable, globs)."),
    loop: str = typer.Option("1", "--loop",
                             help="Passes over the selection: N or forever (timestamps keep increasing)."),
    rebase_now: bool = typer.Option(False, "--rebase-now",
                                    help="Shift mono and wall timestamps so the first record is stamped now."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write JSON lines here instead of stdout."),
    as_tool: Optional[str] = typer.Option(None, "--as",
                                          help="Run COMMAND (after --) against a stand-in that answers from the "
                                               f"trace: {', '.join(_AS)} (docs/replay/)."),
    command: Optional[List[str]] = typer.Argument(None, help="With --as: the command to run, after --."),
    manifest: bool = typer.Option(True, "--manifest/--no-manifest",
                                  help="Start with the trace's manifest as a header line (docs/jsonl.md), which "
                                       "`telemrec import` keeps."),
) -> None:
    """Replay a trace as JSON lines (docs/jsonl.md), exactly as recorded, in real time by default.

    `telemrec replay run.h5 --speed max | telemrec import - -o copy.h5` copies a trace record for record.
    `telemrec replay run.h5 --as nvml -- gpustat` or `--as dcgmi -- kempnerpulse --backend dcgm` runs a consumer
    against the trace (exits with its status).
    """
    from telemrec.readers.replay import Replay
    from telemrec.trace import open_trace

    with reported_errors():
        if source_name:
            typer.echo("telemrec: warning: --source-name/-s is deprecated: use --reader/-r (as export and summary "
                       "do; -s is a reader's source in record and read)", err=True)
            readers = [*(readers or []), *source_name]
        if as_tool is not None or command:
            raise typer.Exit(_run_as(as_tool, trace, command or [], speed=speed, start=start, end=end, loop=loop,
                                     entities=entity, fields=field, sources=readers, output=output,
                                     rebase_now=rebase_now))
        if output is not None:
            check_output(output)
        trace_obj = open_trace(trace)
        try:
            _report_state(trace_obj)
            replay = Replay(trace_obj, speed=speed, start=start, end=end, entities=entity, fields=field,
                            readers=readers, loop=loop, rebase_now=rebase_now)
            out = _Output(output)
            try:
                if manifest:
                    whole = not (start or end or entity or field or readers or rebase_now) and replay.loop == 1
                    out.write_header(_header_manifest(trace_obj, whole))
                paced = replay.speed is not None
                for group in replay.paced():
                    out.write(group, flush=paced)
            except KeyboardInterrupt:
                raise typer.Exit(EXIT_INTERRUPTED) from None
            finally:
                out.close()
        finally:
            trace_obj.close()


def _run_as(tool, trace, command, *, output, rebase_now, **replay) -> int:
    import importlib

    from telemrec.errors import UsageError

    if tool is None:
        raise UsageError(f"a command ({command[0]}) was given without --as",
                         f"Name the tool it reads: --as {' or --as '.join(_AS)}; "
                         "without --as, replay prints JSON lines.")
    if tool not in _AS:
        raise UsageError(f"--as {tool!r} is not a tool telemrec stands in for", f"Choose one of {', '.join(_AS)}.")
    if not command:
        raise UsageError(f"--as {tool} needs the command to run", f"Put it after --: telemrec replay TRACE --as {tool} "
                         "-- COMMAND [ARGS...]")
    if output is not None or rebase_now:
        raise UsageError("--output and --rebase-now apply to JSON lines, not to --as",
                         "Drop them; COMMAND reads the trace through the stand-in.")
    return importlib.import_module(_AS[tool]).run_as(trace, list(command), **replay)


class _Output:
    """JSON lines to a file or stdout, UTF-8 with "\\n" line ends whatever the locale."""

    def __init__(self, path: str | None):
        import io

        from telemrec.errors import UsageError

        self.name = path or "stdout"
        if path is None or path == "-":
            raw = getattr(sys.stdout, "buffer", None)
            if raw is None:  # a test harness' plain text stream
                self.stream, self._close = sys.stdout, sys.stdout.flush
            else:
                self.stream = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
                self._close = self.stream.detach  # flushes, and leaves sys.stdout usable
        else:
            try:
                self.stream = open(path, "w", encoding="utf-8", newline="\n")
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror or exc}",
                                 "Check that the directory exists and is writable.") from exc
            self._close = self.stream.close

    def write(self, records, flush: bool) -> None:
        from telemrec.jsonl import dumps_record

        try:
            self.stream.write("".join([dumps_record(rec) + "\n" for rec in records]))
            if flush:
                self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._failed(exc)

    def write_header(self, manifest: dict) -> None:
        from telemrec.jsonl import dumps_header

        try:
            self.stream.write(dumps_header(manifest) + "\n")
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._failed(exc)

    def close(self) -> None:
        try:
            self._close()
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError):
        from telemrec.errors import TelemrecError

        raise TelemrecError(f"writing {self.name} failed: {exc.strerror or exc}",
                            "Free disk space or write elsewhere with -o.") from exc


def _header_manifest(trace, whole: bool) -> dict:
    """The manifest for the header line. Its stats, start and stop describe the whole recording:
    a selection, loop or rebase leaves them out (the importer then takes them from the records)."""
    manifest = dict(trace.manifest)
    if not whole:
        manifest.update({"stats": {}, "start": None, "stop": None})
    return manifest


def _report_state(trace) -> None:
    """Say on stderr when the trace is not a cleanly closed recording (its data may end early)."""
    records = (trace.manifest.get("stats") or {}).get("records")
    count = f"{records} records" if isinstance(records, int) else "the records"
    if trace.in_progress:
        typer.echo(f"telemrec: note: {trace.path} is still being recorded; replaying {count} flushed so far",
                   err=True)
    elif trace.recovered:
        typer.echo(f"telemrec: note: {trace.path} was not closed cleanly (its recorder stopped without finishing); "
                   f"recovered from its journal just now: replaying {count} up to its last flush", err=True)
    elif not trace.closed_cleanly:
        typer.echo(f"telemrec: note: {trace.path} was not closed cleanly (recovered after its recorder stopped "
                   f"without finishing); replaying {count} up to its last flush", err=True)


def register(app: typer.Typer) -> None:
    app.command("replay", cls=Command, context_settings={"allow_extra_args": True, "ignore_unknown_options": False})(
        replay_command)

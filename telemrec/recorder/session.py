"""One recording: open the readers, start the command, run the recorder, close the trace."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from telemrec._version import __version__
from telemrec.errors import TelemrecError, TraceWriteError, UsageError
from telemrec.identity import new_trace_id
from telemrec.readers import get_reader
from telemrec.record import ReaderConfig
from telemrec.recorder.host import allowed_env, host_info, library_versions, slurm_info
from telemrec.recorder.command import Command
from telemrec.recorder.console import Console
from telemrec.recorder.paths import expand_output_path
from telemrec.recorder.recorder import Recorder, ReaderSlot, reader_info
from telemrec.recorder.redact import CommandLine, psutil_cmdline_option, redact_reader_info, redaction_record
from telemrec.redaction import CMDLINE_MODES
from telemrec.trace._store import LIBVER, _remove_stale_temporaries
from telemrec.trace._version import CURRENT_FORMAT_VERSION, FORMAT_NAME
from telemrec.trace.writer import TraceWriter


DEFAULT_GRACE = 15.0
"""Seconds a signalled command gets to exit while recording goes on: with Slurm's default KillWait
(30 s between SIGTERM and SIGKILL) that leaves 15 s to finish writing the trace."""


@dataclass
class RecordRequest:
    output: str
    readers: Sequence[str] = ("psutil",)
    sources: Sequence[str | None] = ()
    interval: float = 1.0
    duration: float | None = None
    flush_every: float = 5.0
    command: Sequence[str] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    queue_limit: int = 200_000
    grace: float = DEFAULT_GRACE
    cmdline: str = "redacted"  # command lines in the trace: redacted, dropped or unredacted (CMDLINE_MODES)


@dataclass
class RecordResult:
    path: str
    stats: dict
    exit_status: int | None
    errors: list[str]
    duration_seconds: float
    bytes: int
    error_records: dict[str, int] = field(default_factory=dict)  # per reader label


MIN_INTERVAL = 0.001
"""1 kHz: below this the sampling threads cannot keep a grid and every tick would be missed."""


def _validate(req: RecordRequest) -> None:
    if not (math.isfinite(req.interval) and MIN_INTERVAL <= req.interval <= 86400):
        raise UsageError(f"--interval must be a number of seconds from {MIN_INTERVAL} to 86400, got {req.interval}",
                         "Use e.g. --interval 1 or --interval 0.1.")
    if not (math.isfinite(req.flush_every) and req.flush_every > 0):
        raise UsageError(f"--flush-every must be a positive number of seconds, got {req.flush_every}",
                         "The default is 5 seconds.")
    if req.duration is not None and not (math.isfinite(req.duration) and req.duration > 0):
        raise UsageError(f"--duration must be a positive number of seconds, got {req.duration}",
                         "Omit it to record until Ctrl-C or the command ends.")
    if not req.output or not req.output.strip():
        raise UsageError("the output path is empty", "Give a file name with -o, e.g. -o run-%h.h5.")
    if len(req.sources) > len(req.readers):
        raise UsageError("more --source values than --reader values",
                         "Give one --source per --reader, in the same order (use '' for the default).")
    if not req.readers:
        raise UsageError("no reader given", "Add --reader psutil (see `telemrec readers`).")
    if req.cmdline not in CMDLINE_MODES:
        raise UsageError(f"unknown command-line mode {req.cmdline!r}", f"Choose among {', '.join(CMDLINE_MODES)}.")
    if not (math.isfinite(req.grace) and 0 <= req.grace <= 3600):
        raise UsageError(f"--grace must be a number of seconds from 0 to 3600, got {req.grace}",
                         f"The default, {DEFAULT_GRACE:g} s, fits Slurm's default KillWait of 30 s.")


def build_manifest(req: RecordRequest, slots: list[ReaderSlot], start_wall: int, start_mono: int,
                   command_pid: int | None, trace_id: str | None = None) -> dict:
    import json

    host = host_info()
    gpus = []
    for slot in slots:
        gpus.extend(slot.reader.identity().get("gpus", []) if slot.reader.name == "nvml" else [])
    readers = [reader_info(slot, redact=False) for slot in slots]
    masked = sum(redact_reader_info(info) for info in readers)
    command = CommandLine.of(req.command, req.cmdline) if req.command else None
    return json.loads(json.dumps({
        "format": FORMAT_NAME,
        "format_version": CURRENT_FORMAT_VERSION,
        "telemrec_version": __version__,
        "trace_id": trace_id or new_trace_id(),
        "libraries": {**library_versions(), "hdf5_libver": list(LIBVER)},
        "host": host,
        "gpus": gpus,
        "readers": readers,
        "interval_seconds": req.interval,
        "flush_every_seconds": req.flush_every,
        "start": {"wall_ns": start_wall, "mono_ns": start_mono},
        "stop": None,
        "slurm": slurm_info(),
        "env": allowed_env(),
        "command": command.record(command_pid, None) if command else None,
        "redaction": redaction_record(command, req.cmdline, readers, masked),
        "tags": dict(req.tags),
        "closed_cleanly": False,
        "stats": {},
    }, default=str))


def reader_options(options: Mapping[str, str], name: str, readers: Sequence[str]) -> dict[str, str]:
    """``READER.key=value`` goes to that reader; a bare ``key=value`` only when there is one reader."""
    names = set(readers)
    mine: dict[str, str] = {}
    for key, value in options.items():
        prefix, dot, rest = key.partition(".")
        if dot and prefix in names:
            if prefix == name:
                mine[rest] = value
        elif len(names) == 1:
            mine[key] = value
        else:
            raise UsageError(f"option {key!r} does not say which reader it is for",
                             f"With several readers write READER.{key}=VALUE, e.g. -O {sorted(names)[0]}.{key}=...")
    return mine


def _open_slots(req: RecordRequest, command_pid: int | None) -> list[ReaderSlot]:
    slots: list[ReaderSlot] = []
    counts: dict[str, int] = {}
    try:
        for i, name in enumerate(req.readers):
            source = req.sources[i] if i < len(req.sources) and req.sources[i] else None
            options = reader_options(req.options, name, req.readers)
            if name == "psutil":
                psutil_cmdline_option(options, req.cmdline)
            if name == "psutil" and command_pid is not None:
                options.setdefault("pid", str(command_pid))
                levels = options.get("levels", "system")
                if "process" not in str(levels).split(","):
                    options["levels"] = f"{levels},process"
            cls = get_reader(name)
            reader = cls()
            config = ReaderConfig(source=source, interval=req.interval, options=options)
            counts[name] = counts.get(name, 0) + 1
            label = name if counts[name] == 1 else f"{name}-{counts[name]}"
            slots.append(ReaderSlot(label, reader, config))
            reader.open(config)
    except BaseException:
        for slot in slots:
            slot.reader.close()
        raise
    return slots


def check_output_path(path: str) -> None:
    """Everything about the output that can be known before recording: a new file in a writable directory."""
    from telemrec.trace import journal

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"output directory {directory} does not exist", "Create it first or choose another -o path.")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory", "Give a trace file name, e.g. -o run.h5.")
    if os.path.lexists(path):
        raise UsageError(f"{path} already exists; telemrec does not overwrite traces",
                         "Remove it or choose another -o path (e.g. -o run-%h-%t.h5).")
    jpath = journal.journal_path(path)
    if os.path.lexists(jpath):
        if journal.is_locked(jpath):
            raise UsageError(f"{path} is being written by a running `telemrec record`",
                             "Choose another -o path, or stop that recorder first.")
        raise UsageError(f"{jpath} is left over from a recording that did not stop cleanly",
                         f"Run `telemrec check {path}` to recover it into the trace, or choose another -o path.")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write in {directory} (permission denied)", "Choose a directory you can write, e.g. -o $HOME/run.h5.")


def record(req: RecordRequest, *, console: Console | None = None, install_signals: bool = True) -> RecordResult:
    """Record until the duration ends, the command ends, every reader ends, or SIGINT/SIGTERM.

    Everything that can fail is checked before the command starts (arguments, output path,
    readers, trace); once the command has run, its exit status is in the result, also when
    writing the trace failed (``TraceWriteError.exit_status``). SIGTERM is forwarded to the
    command and recording goes on until it exits, for at most ``req.grace`` seconds; a second
    signal stops at once.
    """
    _validate(req)
    console = console or Console(quiet=True)
    start_wall, start_mono = time.time_ns(), time.monotonic_ns()
    trace_id = new_trace_id()  # once per recording: the manifest's and what %u expands to
    path = expand_output_path(req.output, wall_ns=start_wall, trace_id=trace_id)
    check_output_path(path)
    _remove_stale_temporaries(path)  # a recorder or reader killed while creating its journal or trace
    command = Command(req.command, req.grace) if req.command else None  # held at its gate: nothing has run yet
    try:
        slots = _open_slots(req, command.pid if command else None)
        try:
            writer = TraceWriter(path, build_manifest(req, slots, start_wall, start_mono,
                                                      command.pid if command else None, trace_id))
        except BaseException:
            for slot in slots:
                slot.reader.close()
            raise
    except BaseException:
        if command:
            command.abort()
        raise
    recorder = Recorder(slots, writer, interval=req.interval, flush_every=req.flush_every, queue_limit=req.queue_limit)
    received: list[int] = []
    previous = {}
    stopping = _Stopping(req.grace)

    def on_signal(signum, _frame):
        # runs between two bytecodes of the main thread: no output here, only flags and kill(2)
        received.append(signum)
        if command is None or not command.alive():
            recorder.stop()
        elif len(received) > 1:  # a second signal: stop now
            recorder.stop()
            command.signal(signal.SIGKILL)
        else:
            if signum == signal.SIGTERM:  # a terminal's Ctrl-C reaches the command itself
                command.signal(signal.SIGTERM)
            stopping.begin(f"signal {signal.Signals(signum).name}")
            recorder.nudge()

    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        recorder.start()
        if command:
            command.release()
            threading.Thread(target=_watch, args=(command, recorder), name="telemrec-command", daemon=True).start()
        reason = _run(req, recorder, writer, command, stopping, console, start_mono)
        if command is not None and command.alive() and (len(received) > 1 or stopping.expired(time.monotonic())):
            command.signal(signal.SIGKILL)
            command.wait()
        if received:
            reason = f"signal {signal.Signals(received[0]).name}"
        stop = {"wall_ns": time.time_ns(), "mono_ns": time.monotonic_ns(), "reason": reason}
        exit_status = command.returncode if command else None
        stats = recorder.stats.to_dict()
        errors = list(recorder.stats.errors)
        kill_at = stopping.until if received else None  # a signalled command gets the grace, no more
        try:
            _finish(path, writer, recorder, console, stop, stats, errors,
                    CommandLine.of(req.command, req.cmdline).record(command.pid, exit_status) if command else None)
        except TraceWriteError as exc:
            exc.exit_status = _wait_for(command, console, kill_at)
            raise
        exit_status = _wait_for(command, console, kill_at)
    finally:
        if command is not None:
            if command.alive():  # only after an unexpected error: never leave it behind
                command.end(req.grace)
            command.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return RecordResult(path, stats, exit_status, errors, (stop["mono_ns"] - start_mono) / 1e9,
                        os.path.getsize(path), {label: c.error_records for label, c in recorder.stats.readers.items()})


def _run(req: RecordRequest, recorder: Recorder, writer: TraceWriter, command: Command | None,
         stopping: _Stopping, console: Console, start_mono: int) -> str:
    """Record until it is time to stop; then stop sampling and write what was sampled. The reason."""
    reason = "stopped"
    deadline = None if req.duration is None else time.monotonic() + req.duration
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                stopping.begin("duration reached")
                recorder.stop()
            if stopping.announce() and stopping.reason.startswith("signal") and command is not None \
                    and command.alive():
                console.line(f"telemrec: {stopping.reason}: recording until the command exits, at most "
                             f"{req.grace:g} s (--grace); again to stop now")
            if stopping.expired(now) and command is not None and command.alive():
                console.warn(f"the command did not exit within --grace {req.grace:g} s: stopping it")
                recorder.stop()
            # a live display refreshes twice a second; otherwise nothing needs this thread until a
            # signal (nudge), the end, or the next look for missed ticks to warn about
            step = 0.5 if (console.tty and not console.quiet) or stopping.reason is not None else 5.0
            if deadline is not None:
                step = min(step, max(0.0, deadline - now))
            if recorder.wait(step):
                if stopping.reason == "duration reached":
                    reason = stopping.reason
                elif command is not None and command.returncode is not None:
                    reason = "command exited"
                elif recorder.write_error:
                    reason = "writer failed"
                elif recorder.readers_done:
                    reason = "readers exhausted"
                break
            console.check(recorder.stats, req.interval)
            console.progress(recorder.stats, (time.monotonic_ns() - start_mono) / 1e9, writer.bytes_written)
    finally:
        console.check(recorder.stats, req.interval)
        with console.phase(lambda: f"stopping: {recorder.queued} batches still to write"):
            recorder.join()
        for slot in recorder.slots:
            slot.reader.close()
    return reason


def _finish(path: str, writer: TraceWriter, recorder: Recorder, console: Console, stop: dict, stats: dict,
            errors: list[str], command: dict | None) -> None:
    """Close the trace (fold the journal), saying what is written while it takes."""
    error = recorder.write_error
    if error is not None and getattr(error, "vanished", False):
        try:  # the journal is gone from its directory, not from our open file: save what it holds
            saved = writer.rescue()
        except (OSError, TelemrecError) as exc:
            raise TraceWriteError(f"{error.message}; saving what was recorded failed too "
                                  f"({exc.message if isinstance(exc, TelemrecError) else exc})",
                                  "Record again, to a directory nothing else removes.", path=path) from exc
        raise TraceWriteError(f"{error.message}: stopped; what was recorded until then is saved in {saved}",
                              "Record to a directory nothing else removes.", path=path, saved=saved)
    if error is not None:
        writer.abandon()
        raise TraceWriteError(
            f"writing the trace failed: {error.message}; everything flushed before that is kept in "
            f"{writer.journal_path}",
            "Free disk space, then run `telemrec check " + path + "` to fold the journal into the trace.", path=path)
    size = writer.bytes_written
    try:
        with console.phase(lambda: f"writing {path}: {stats['values']:,} values from a {size / 1e6:.1f} MB journal"):
            writer.close(stop=stop, command=command, stats=stats, clean=True, error="; ".join(errors[:5]) or None)
    except (OSError, TelemrecError) as exc:
        message = exc.message if isinstance(exc, TelemrecError) else str(exc)
        raise TraceWriteError(f"folding the journal into {path} failed: {message}; the journal {writer.journal_path} is kept",
                              "Free disk space, then run `telemrec check " + path + "` to fold it.", path=path) from exc
    console.clear()


def _wait_for(command: Command | None, console: Console, kill_at: float | None) -> int | None:
    """The command's exit status. A command still running (after --duration, say) is waited for;
    until ``kill_at`` (monotonic seconds) if given, then killed."""
    if command is None:
        return None
    if command.alive():
        console.line(f"telemrec: trace written; waiting for the command (pid {command.pid}) to exit")
        if kill_at is not None and command.wait(max(0.0, kill_at - time.monotonic())) is None:
            command.signal(signal.SIGKILL)
    return command.wait()


class _Stopping:
    """Why recording is stopping, and until when it waits for the command."""

    def __init__(self, grace: float):
        self.grace = grace
        self.reason: str | None = None
        self.until: float | None = None
        self._announced = False

    def begin(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.until = time.monotonic() + self.grace

    def announce(self) -> bool:
        """True once, after begin()."""
        if self.reason is not None and not self._announced:
            self._announced = True
            return True
        return False

    def expired(self, now: float) -> bool:
        return self.until is not None and now >= self.until


def _watch(command: Command, recorder: Recorder) -> None:
    command.wait()
    recorder.stop()


def summary_line(result: RecordResult) -> str:
    """The one line a log keeps of a recording."""
    s = result.stats
    line = (f"wrote {result.path}: {s['records']} records, {s['values']} values, {s['ticks']} ticks "
            f"({s['missed_ticks']} missed, {s['late_ticks']} late, {s['dropped_records']} dropped), "
            f"{result.bytes} bytes in {result.duration_seconds:.1f} s")
    failing = {label: n for label, n in result.error_records.items() if n}
    if failing:
        line += "; error records: " + ", ".join(f"{label} {n}" for label, n in failing.items())
    if result.exit_status is not None:
        line += f"; command exit status {result.exit_status}"
    return line

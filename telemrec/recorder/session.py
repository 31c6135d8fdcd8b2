"""One recording: open the readers, start the command, run the recorder, close the trace."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from telemrec._version import __version__
from telemrec.errors import TelemrecError, TraceWriteError, UsageError
from telemrec.identity import new_trace_id
from telemrec.readers import get_reader
from telemrec.record import ReaderConfig
from telemrec.recorder.host import allowed_env, host_info, library_versions, slurm_info
from telemrec.recorder.paths import expand_output_path
from telemrec.recorder.recorder import Recorder, ReaderSlot, reader_info
from telemrec.trace._store import LIBVER
from telemrec.trace._version import CURRENT_FORMAT_VERSION, FORMAT_NAME
from telemrec.trace.writer import TraceWriter


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


@dataclass
class RecordResult:
    path: str
    stats: dict
    exit_status: int | None
    errors: list[str]
    duration_seconds: float
    bytes: int


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


def build_manifest(req: RecordRequest, slots: list[ReaderSlot], start_wall: int, start_mono: int,
                   command_pid: int | None, trace_id: str | None = None) -> dict:
    import json

    host = host_info()
    gpus = []
    for slot in slots:
        gpus.extend(slot.reader.identity().get("gpus", []) if slot.reader.name == "nvml" else [])
    return json.loads(json.dumps({
        "format": FORMAT_NAME,
        "format_version": CURRENT_FORMAT_VERSION,
        "telemrec_version": __version__,
        "trace_id": trace_id or new_trace_id(),
        "libraries": {**library_versions(), "hdf5_libver": list(LIBVER)},
        "host": host,
        "gpus": gpus,
        "readers": [reader_info(slot) for slot in slots],
        "interval_seconds": req.interval,
        "flush_every_seconds": req.flush_every,
        "start": {"wall_ns": start_wall, "mono_ns": start_mono},
        "stop": None,
        "slurm": slurm_info(),
        "env": allowed_env(),
        "command": {"argv": list(req.command), "pid": command_pid, "exit_status": None} if req.command else None,
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


def record(req: RecordRequest, *, progress: Callable[[Recorder, float, TraceWriter], None] | None = None,
           install_signals: bool = True) -> RecordResult:
    """Record until the duration ends, the command ends, every reader ends, or SIGINT/SIGTERM."""
    _validate(req)
    start_wall, start_mono = time.time_ns(), time.monotonic_ns()
    trace_id = new_trace_id()  # once per recording: the manifest's and what %u expands to
    path = expand_output_path(req.output, wall_ns=start_wall, trace_id=trace_id)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"output directory {directory} does not exist", "Create it first or choose another -o path.")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory", "Give a trace file name, e.g. -o run.h5.")
    child: subprocess.Popen | None = None
    if req.command:
        try:
            child = subprocess.Popen(list(req.command))
        except OSError as exc:
            raise UsageError(f"cannot start {req.command[0]!r}: {exc.strerror}",
                             "Check the command after `--` and that it is on PATH.") from exc
    try:
        slots = _open_slots(req, child.pid if child else None)
    except BaseException:
        if child:
            child.terminate()
            child.wait()
        raise
    writer = None
    try:
        manifest = build_manifest(req, slots, start_wall, start_mono, child.pid if child else None, trace_id)
        writer = TraceWriter(path, manifest)
    except BaseException:
        for slot in slots:
            slot.reader.close()
        if child:
            child.terminate()
            child.wait()
        raise
    recorder = Recorder(slots, writer, interval=req.interval, flush_every=req.flush_every, queue_limit=req.queue_limit)
    received: list[int] = []
    previous = {}

    def on_signal(signum, _frame):
        received.append(signum)
        recorder.stop()
        if child and child.poll() is None and signum == signal.SIGTERM:
            child.send_signal(signum)

    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    recorder.start()
    exit_status = None
    reason = "stopped"
    child_ended = threading.Event()
    if child is not None:
        def watch_child() -> None:
            child.wait()
            child_ended.set()
            recorder.stop()

        threading.Thread(target=watch_child, name="telemrec-command", daemon=True).start()
    try:
        deadline = None if req.duration is None else time.monotonic() + req.duration
        while True:
            # block on the recorder's event: no polling while nothing happens
            remaining = None if deadline is None else deadline - time.monotonic()
            step = 0.5 if progress else remaining
            if remaining is not None and remaining <= 0:
                reason = "duration reached"
                break
            if recorder.wait(step if remaining is None else min(step, remaining)):
                if child_ended.is_set():
                    reason = "command exited"
                elif recorder.write_error:
                    reason = "writer failed"
                elif recorder.readers_done and not received:
                    reason = "readers exhausted"
                break
            if progress:
                progress(recorder, (time.monotonic_ns() - start_mono) / 1e9, writer)
    finally:
        recorder.join()
        for slot in slots:
            slot.reader.close()
        if child is not None:
            if child.poll() is None and received:
                try:
                    exit_status = child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    exit_status = child.wait()
            elif child.poll() is None:
                child.terminate()
                exit_status = child.wait()
            else:
                exit_status = child.returncode
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stop = {"wall_ns": time.time_ns(), "mono_ns": time.monotonic_ns(),
            "reason": f"signal {signal.Signals(received[0]).name}" if received else reason}
    command = None
    if req.command:
        command = {"argv": list(req.command), "pid": child.pid if child else None, "exit_status": exit_status}
    stats = recorder.stats.to_dict()
    errors = list(recorder.stats.errors)
    if recorder.write_error is not None:
        writer.abandon()
        raise TraceWriteError(
            f"writing the trace failed: {recorder.write_error.message}; everything flushed before that is kept in "
            f"{writer.journal_path}",
            "Free disk space, then run `telemrec check " + path + "` to fold the journal into the trace.",
            path=path)
    bytes_journal = writer.bytes_written
    try:
        writer.close(stop=stop, command=command, stats=stats, clean=True, error="; ".join(errors[:5]) or None)
    except (OSError, TelemrecError) as exc:
        message = exc.message if isinstance(exc, TelemrecError) else str(exc)
        raise TraceWriteError(f"folding the journal into {path} failed: {message}; the journal {writer.journal_path} is kept",
                              "Free disk space, then run `telemrec check " + path + "` to fold it.", path=path) from exc
    return RecordResult(path, stats, exit_status, errors, (stop["mono_ns"] - start_mono) / 1e9,
                        os.path.getsize(path) if os.path.exists(path) else bytes_journal)


def stderr_progress(recorder: Recorder, elapsed: float, writer: TraceWriter) -> None:
    s = recorder.stats
    sys.stderr.write(f"\rrecording {elapsed:8.1f}s  ticks {s.ticks}  missed {s.missed_ticks}  "
                     f"late {s.late_ticks}  records {s.records}  {writer.bytes_written / 1e6:.1f} MB")
    sys.stderr.flush()

"""``telemrec replay TRACE --as nvml -- COMMAND``: COMMAND sees the trace's GPUs through NVML.

telemrec writes the trace's GPUs as a timeline (``nvml_timeline``) into a private
directory, puts a ``libnvidia-ml.so.1`` link to its replay library (``nvml_replay.c``,
built by setup.py) there, and runs COMMAND with that directory first in
LD_LIBRARY_PATH and ``TELEMREC_NVML_TIMELINE`` naming the timeline. Whatever loads
``libnvidia-ml.so.1`` by name (nvidia-ml-py's pynvml, so gpustat, nvitop and
telemrec's own ``nvml`` reader; C programs linked with -lnvidia-ml) then reads trace
time ``start + elapsed x speed`` instead of a driver. docs/replay/nvml.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from telemrec.errors import ReplayUnavailableError, UsageError

__all__ = ["LIBRARY_NAME", "TIMELINE_ENV", "Prepared", "library_path", "prepare", "replay_into", "run_command"]

LIBRARY_NAME = "libnvidia-ml.so.1"
TIMELINE_ENV = "TELEMREC_NVML_TIMELINE"
_BUILD_HINT = ("The replay library is compiled when telemrec is installed and needs a C compiler then: install one "
               "(e.g. `apt-get install gcc`) and reinstall telemrec (`pip install --force-reinstall --no-deps "
               "--no-binary telemrec telemrec`, or `pip install -e .` in a checkout).")


def library_path(directory: str | None = None) -> str:
    """The built replay ``libnvidia-ml.so.1`` of this installation (in ``directory``, default this package's)."""
    path = os.path.join(directory or os.path.dirname(os.path.abspath(__file__)), LIBRARY_NAME)
    if not sys.platform.startswith("linux"):
        raise ReplayUnavailableError(f"--as nvml needs Linux (this is {sys.platform})",
                                     "Replay NVML on a Linux machine or container.")
    if not os.path.isfile(path):
        raise ReplayUnavailableError(f"this telemrec installation has no replay NVML library ({path} was not built)",
                                     _BUILD_HINT)
    return path


@dataclass
class Prepared:
    """A replay ready to run: the environment COMMAND needs and what it will see."""

    env: dict[str, str]
    directory: str
    source: str
    gpus: list[str]
    speed: float
    loops: int | None


def prepare(trace_path: str, directory: str, *, speed: Any = 1, start: Any = None, end: Any = None,
            loop: Any = 1, entities: Sequence[str] | None = None, source: str | None = None,
            environ: Mapping[str, str] | None = None, anchor_mono_ns: int | None = None) -> Prepared:
    """Write the timeline of ``trace_path`` and the library link into ``directory``; return the
    environment under which a process sees the trace's GPUs (``environ`` plus the loader path),
    trace time 0 (the window start) falling on ``anchor_mono_ns`` (default: now)."""
    from telemrec.emulate.nvml_timeline import build_timeline
    from telemrec.readers.replay import parse_loop, parse_speed
    from telemrec.trace import open_trace

    factor = parse_speed(speed)
    if factor is None:
        raise UsageError(f"--as nvml needs a speed factor, not {speed!r}",
                         "The library serves trace time start + elapsed x speed: use --speed 1 (real time), 10, ...")
    loops = parse_loop(loop)
    library = library_path()
    with open_trace(trace_path) as trace:
        timeline = build_timeline(trace, source=source, entities=entities, start=start, end=end)
    timeline_path = os.path.join(directory, "timeline.bin")
    link = os.path.join(directory, LIBRARY_NAME)
    if not os.path.lexists(link):
        os.symlink(library, link)
    timeline.write(timeline_path, anchor_mono_ns=time.monotonic_ns() if anchor_mono_ns is None else anchor_mono_ns,
                   speed=factor, loops=loops)
    env = dict(os.environ if environ is None else environ)
    previous = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = directory + (os.pathsep + previous if previous else "")
    env[TIMELINE_ENV] = timeline_path
    return Prepared(env, directory, timeline.source, timeline.gpu_entities, factor, loops)


def run_command(command: Sequence[str], env: Mapping[str, str], started: Callable[[], Any] | None = None) -> int:
    """Run COMMAND to its end and return its exit status (128 + N when signal N ended it);
    ``started()`` is called once it runs.

    SIGINT reaches COMMAND from the terminal itself, so telemrec ignores it meanwhile;
    SIGTERM and SIGHUP sent to telemrec are passed on."""
    import signal
    import subprocess

    try:
        child = subprocess.Popen(list(command), env=dict(env))
    except OSError as exc:
        raise UsageError(f"cannot start {command[0]!r}: {exc.strerror or exc}",
                         "Check the command after `--` and that it is on PATH.") from exc
    handlers = {}

    def forward(signum, _frame):
        child.send_signal(signum)

    try:
        for signum, handler in ((signal.SIGINT, signal.SIG_IGN), (signal.SIGTERM, forward), (signal.SIGHUP, forward)):
            handlers[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        if started is not None:
            started()
        status = child.wait()
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    return status if status >= 0 else 128 - status


def run_as(trace: str, command: Sequence[str], **options) -> int:
    """``telemrec replay TRACE --as nvml -- COMMAND`` (the interface of every ``--as`` backend)."""
    return replay_into(trace, command=command, **options)


def replay_into(trace: str, *, command: Sequence[str], speed: Any = "1", start: Any = None, end: Any = None,
                loop: Any = "1", entities: Sequence[str] | None = None, sources: Sequence[str] | None = None,
                fields: Sequence[str] | None = None, rebase_now: bool = False, output: str | None = None,
                note=None) -> int:
    """The ``--as nvml`` backend of ``telemrec replay``: run COMMAND against the trace's GPUs and return
    its exit status. ``note`` receives a one-line description of what is served (default: stderr)."""
    for given, option in ((fields, "--field"), (rebase_now, "--rebase-now"), (output, "--output")):
        if given:
            raise UsageError(f"{option} does not apply to --as nvml",
                             "NVML serves whole GPUs at trace time; choose GPUs with --entity and time with --start.")
    if not command:
        raise UsageError("--as nvml needs a command to run", "Write it after --, e.g. "
                         "`telemrec replay run.h5 --as nvml -- gpustat`.")
    if sources and len(sources) > 1:
        raise UsageError("--as nvml serves one source", "Pick --source-name nvml or --source-name dcgmi.")
    with tempfile.TemporaryDirectory(prefix="telemrec-nvml-") as directory:
        prepared = prepare(trace, directory, speed=speed, start=start, end=end, loop=loop, entities=entities,
                           source=sources[0] if sources else None)
        passes = "forever" if prepared.loops is None else f"{prepared.loops} pass{'es' if prepared.loops > 1 else ''}"
        message = (f"telemrec: serving {len(prepared.gpus)} GPU(s) ({', '.join(prepared.gpus)}) of {trace} "
                   f"[{prepared.source}] through NVML at {prepared.speed:g}x, {passes}, to {command[0]}")
        tell = note or (lambda text: print(text, file=sys.stderr, flush=True))
        return run_command(command, prepared.env, started=lambda: tell(message))

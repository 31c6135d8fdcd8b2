"""Run jobs in forked children of a warm parent: each its own process (exit status, signals, a
timeout), at the cost of a fork instead of an interpreter start.

A fresh ``python -m telemrec`` costs ~2.5 s of imports on a CI machine; a fork of a parent that
imported telemrec, h5py, numpy and pandas costs milliseconds, so thousands of runs fit in minutes.
The parent never opens a trace (nothing of HDF5's open-file state is inherited); each child
redirects its stdout and stderr to files in its own directory, runs one job and ``_exit``s with
the status the console script would give (an uncaught exception prints its traceback, status 1).

A child that outlives its deadline gets SIGUSR1 first (faulthandler dumps where every thread is,
which names the loop a hang spins in), then SIGKILL with its process group.
"""

from __future__ import annotations

import faulthandler
import io
import os
import resource
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

WARM_MODULES = ("numpy", "pandas", "h5py", "typer", "jsonschema", "telemrec.cli", "telemrec.trace", "telemrec.analysis",
                "telemrec.analysis.summary", "telemrec.analysis.errors", "telemrec.readers.replay",
                "telemrec.trace.check", "telemrec.trace.v1", "telemrec.trace.v2", "telemrec.trace.v3",
                "telemrec.trace._fold", "telemrec.trace._legacy")


@dataclass
class Job:
    key: object
    func: Callable[[], int | None]  # runs in the child; returns its exit status
    rundir: str
    timeout: float
    report_modules: bool = False  # write the modules the job imported to RUNDIR/modules (see warm)


@dataclass
class Outcome:
    status: str         # "exit", "signal" or "timeout"
    code: int | None    # exit status, or the signal number
    wall: float
    cpu: float
    stdout_path: str
    stderr: str


def warm(modules: Iterable[str] = WARM_MODULES) -> None:
    """Import what the jobs will need, once, in the parent (a child that imports a module pays for
    it on every run), then freeze the heap so children's garbage collections do not copy it."""
    import gc
    import importlib

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # no BLAS threads to fork
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for name in modules:
        if name in sys.modules or name.startswith("__"):
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that cannot be imported here is simply not warmed
            pass
    gc.collect()
    gc.freeze()


def imported_by(jobs_rundirs: Iterable[str]) -> set[str]:
    """The modules jobs run with ``report_modules`` imported (to ``warm`` them)."""
    names: set[str] = set()
    for rundir in jobs_rundirs:
        try:
            with open(os.path.join(rundir, "modules")) as f:
                names.update(f.read().split())
        except FileNotFoundError:
            pass
    return names


class ForkRunner:
    def __init__(self, workers: int = 2, memory_limit: int = 4 << 30, poll: float = 0.003):
        self.workers = max(1, workers)
        self.memory_limit = memory_limit
        self.poll = poll

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, Outcome]]:
        """Run ``jobs``, ``workers`` at a time; yield each with its outcome as it finishes."""
        pending = iter(jobs)
        running: dict[int, list] = {}
        exhausted = False
        while running or not exhausted:
            while not exhausted and len(running) < self.workers:
                job = next(pending, None)
                if job is None:
                    exhausted = True
                    break
                running[self._start(job)] = [job, time.monotonic(), False]
            done = False
            for pid, entry in list(running.items()):
                job, started, warned = entry
                waited, status, usage = os.wait4(pid, os.WNOHANG)
                now = time.monotonic()
                if waited:
                    del running[pid]
                    done = True
                    yield job, self._outcome(job, status, usage, now - started, timed_out=warned)
                elif now - started > job.timeout and not warned:
                    entry[2] = True
                    self._signal(pid, signal.SIGUSR1)  # dump the stacks; the kill follows
                elif warned and now - started > job.timeout + 0.5:
                    self._signal(pid, signal.SIGKILL, group=True)
            if not done:
                time.sleep(self.poll)

    @staticmethod
    def _signal(pid: int, sig: int, group: bool = False) -> None:
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _outcome(self, job: Job, status: int, usage, wall: float, timed_out: bool) -> Outcome:
        with open(os.path.join(job.rundir, "stderr"), "rb") as f:
            stderr = f.read(200_000).decode("utf-8", "replace")
        cpu = usage.ru_utime + usage.ru_stime
        stdout = os.path.join(job.rundir, "stdout")
        if timed_out:
            return Outcome("timeout", None, wall, cpu, stdout, stderr)
        if os.WIFSIGNALED(status):
            return Outcome("signal", os.WTERMSIG(status), wall, cpu, stdout, stderr)
        return Outcome("exit", os.WEXITSTATUS(status), wall, cpu, stdout, stderr)

    def _start(self, job: Job) -> int:
        os.makedirs(job.rundir, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            os.setsid()
            os.chdir(job.rundir)
            _redirect(job.rundir)
            _default_warnings()
            if self.memory_limit:
                resource.setrlimit(resource.RLIMIT_AS, (self.memory_limit, self.memory_limit))
            faulthandler.enable(file=sys.stderr, all_threads=True)
            faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
            before = set(sys.modules)
            code = _exit_status(job.func)
            if job.report_modules:
                with open("modules", "w") as f:
                    f.write("\n".join(sorted(set(sys.modules) - before)))
        except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
            try:
                traceback.print_exc()
            except BaseException:  # noqa: BLE001
                pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001
                pass
            os._exit(code)


def _exit_status(func: Callable[[], int | None]) -> int:
    """What the interpreter would exit with: SystemExit's code, 1 after a traceback."""
    try:
        code = func()
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        return 1
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _default_warnings() -> None:
    """The warning filters and display of a fresh interpreter: a parent under pytest (which turns
    warnings into errors and records them) must not change what a run does or prints."""
    import warnings

    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category, append=True)
    warnings.showwarning = getattr(warnings, "_showwarning_orig", warnings.showwarning)

    def show(msg) -> None:
        sys.stderr.write(warnings.formatwarning(msg.message, msg.category, msg.filename, msg.lineno, msg.line))

    if hasattr(warnings, "_showwarnmsg_impl"):  # catch_warnings(record=True) replaces it with list.append
        warnings._showwarnmsg_impl = show


def _redirect(rundir: str) -> None:
    """Point fds 0, 1, 2 and sys.std* at /dev/null and the run's own files (whatever the parent,
    pytest included, had there)."""
    encoding = getattr(sys.__stdout__, "encoding", None) or "utf-8"
    errors = getattr(sys.__stdout__, "errors", None) or "strict"
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(os.path.join(rundir, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding=encoding, errors=errors)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding=encoding, errors="backslashreplace",
                                  line_buffering=True)
    sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr

"""``DcgmiReader``: GPU, GPU-I and GPU-CI telemetry from ``dcgmi dmon`` (DCGM 4.x), live or from a capture.

Live, it runs ``dcgmi dmon -e <ids> -d <ms> [-c N] [-i ENTITIES] [--host HOST]`` and
parses its fixed-width output as it arrives (see ``_dmon_parser``). With
``config.source`` set to a file, it parses that saved capture instead.

Entities: ``gpu<id>``, ``mig:<gpu>:<gi>`` (GPU-I), ``mig:<gpu>:<gi>:<ci>`` (GPU-CI),
with the entity ids dmon prints. Fields are keyed by their DCGM 4.6 names
(``DCGM_FI_DEV_BOARD_POWER_WATTS`` for id 155, whatever name the installed DCGM
uses). ``N/A`` is None; a field an entity did not return is absent; a value dmon
truncated to ``...`` is None and named in the record's ``error``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any, Callable, Mapping, Protocol, Sequence

from telemrec.errors import ReaderUnavailableError, SourceError, SourceParseError, UsageError
from telemrec.readers._dmon_parser import (
    DEFAULT_FIELD_IDS,
    PROFILING_FIRST_ID,
    PROFILING_MIN_INTERVAL_MS,
    Column,
    DmonStream,
    Tick,
    field_key,
    field_table,
    parse_capture,
)
from telemrec.readers._options import bool_option, int_option, list_option, positive_float_option, reject_unknown
from telemrec.readers.base import BaseReader
from telemrec.record import RawRecord, ReaderCaps, ReaderConfig

__all__ = ["DcgmiReader", "popen_runner"]

log = logging.getLogger(__name__)

SOURCE = "dcgmi"
_HOSTENGINE_DOWN_RE = re.compile(
    r"unable to establish a connection|unable to connect to host engine|host engine connection invalid", re.I)
_INSTALL_HINT = ("Install NVIDIA DCGM 4 (package datacenter-gpu-manager-4-core) so `dcgmi` is on PATH, "
                 "or parse a saved capture with --source FILE, or use the nvml reader.")
_HOSTENGINE_HINT = ("Start the DCGM host engine (`sudo systemctl start nvidia-dcgm`, or run `nv-hostengine`) "
                    "and check the `host` option; `dcgmi discovery -l` must list the GPUs.")


class DmonProcess(Protocol):
    """What the reader needs from a started ``dcgmi``: ``subprocess.Popen`` with text pipes fits."""

    stdout: IO[str] | None
    stderr: IO[str] | None
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...
    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str]: ...


Runner = Callable[[Sequence[str], Mapping[str, str]], DmonProcess]


class _SessionPopen(subprocess.Popen):
    """Signals go to dcgmi's whole session, so a wrapper script cannot orphan it."""

    def send_signal(self, sig: int) -> None:
        self.poll()
        if self.returncode is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass


def popen_runner(argv: Sequence[str], env: Mapping[str, str]) -> DmonProcess:
    """Start ``argv`` in its own session with line-buffered text pipes (the default runner)."""
    return _SessionPopen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, encoding="utf-8", errors="replace", bufsize=1, env=dict(env),
                         start_new_session=True)


class _LiveSession:
    """A running ``dcgmi dmon``: a thread parses stdout as lines arrive (stamping each
    tick when its first row arrives), another drains stderr so it never fills."""

    def __init__(self, proc: DmonProcess, stream: DmonStream) -> None:
        self.proc = proc
        self.stream = stream
        self.lock = threading.Lock()
        self.ticks: deque[Tick] = deque()
        self.header = threading.Event()
        self.eof = threading.Event()
        self.error: BaseException | None = None
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._threads = [threading.Thread(target=self._pump_stdout, name="dcgmi-stdout", daemon=True),
                         threading.Thread(target=self._pump_stderr, name="dcgmi-stderr", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        try:
            for line in self.proc.stdout or ():
                mono_ns, wall_ns = time.monotonic_ns(), time.time_ns()
                if self.error is not None:
                    continue  # keep draining so dcgmi never blocks on a full pipe
                try:
                    with self.lock:
                        self.ticks.extend(self.stream.feed(line, mono_ns, wall_ns))
                except SourceParseError as exc:
                    with self.lock:
                        self.ticks.extend(self.stream.finish())
                    self.error = exc  # after the ticks: take() must see them if it sees the error
                if self.stream.layout is not None or self.error is not None:
                    self.header.set()
            with self.lock:
                self.ticks.extend(self.stream.finish())
        except (OSError, ValueError) as exc:  # the pipe was closed under us during close()
            log.debug("dcgmi stdout reader stopped: %s", exc)
        finally:
            self.eof.set()
            self.header.set()

    def _pump_stderr(self) -> None:
        try:
            for line in self.proc.stderr or ():
                self.stderr_tail.append(line.rstrip())
        except (OSError, ValueError):
            pass

    def take(self) -> tuple[list[Tick], bool, BaseException | None]:
        """The ticks completed so far, and whether stdout had ended (and with which parse
        error) before they were taken, so that no tick completed before the end is missed."""
        ended, error = self.eof.is_set(), self.error
        with self.lock:
            ticks = list(self.ticks)
            self.ticks.clear()
        return ticks, ended, error

    def output(self) -> str:
        lines = list(self.stream.messages[-20:]) + list(self.stderr_tail)
        return "\n".join(line for line in lines if line)

    def stop(self, grace_s: float) -> None:
        """SIGINT first (dcgmi prints its trailer and exits 0), then SIGTERM, then SIGKILL."""
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            except OSError:
                break
        for thread in self._threads:
            thread.join(timeout=2.0)
        for pipe in (self.proc.stdout, self.proc.stderr):
            close = getattr(pipe, "close", None)
            try:
                if close is not None:
                    close()
            except (OSError, ValueError):
                pass


class DcgmiReader(BaseReader):
    """GPU telemetry from ``dcgmi dmon`` (DCGM 4.x) or from a saved ``dcgmi dmon`` capture.

    ``executable`` is found with ``shutil.which(executable, path=search_path)``;
    ``run(argv, env)`` starts it (default: ``popen_runner``). Options:
    ``field_ids`` (list or "100,155,..."; default the 23 KempnerPulse fields),
    ``entities`` (dcgmi ``-i``: "gpu:0,gpu:3" or a list of GPU ids), ``host``
    (``--host``), ``count`` (``-c``; 0 = until closed), ``start_timeout`` (seconds to
    wait for the header, default 15), ``probe_version`` (run ``dcgmi -v``, default True).
    """

    name = "dcgmi"
    description = "NVIDIA DCGM fields per GPU and MIG instance, from `dcgmi dmon` (DCGM 4.x) or a saved capture"
    source_help = "a saved `dcgmi dmon` capture to parse instead of running dcgmi (default: run dcgmi dmon)"
    options = {
        "field_ids": "comma-separated DCGM field ids (default: the 23 fields KempnerPulse reads)",
        "entities": "dcgmi -i: gpu:0,gpu:3 or GPU ids (default: every GPU)",
        "host": "dcgmi --host: the nv-hostengine to ask (default: the local one)",
        "count": "dcgmi -c: samples before dcgmi stops (default 0: until closed)",
        "start_timeout": "seconds to wait for dcgmi's header (default 15)",
        "probe_version": "true/false: run `dcgmi -v` for the DCGM version (default true)",
    }
    OPTIONS = tuple(options)

    def __init__(self, run: Runner | None = None, executable: str = "dcgmi", search_path: str | None = None) -> None:
        super().__init__()
        self._run = run or popen_runner
        self._executable = executable
        self._search_path = search_path
        self._field_ids: tuple[int, ...] = DEFAULT_FIELD_IDS
        self._columns: dict[str, Column] = {}
        self._delay_ms = 0
        self._delay_note = ""
        self._version = ""
        self._identity: dict[str, Any] = {}
        self._live: _LiveSession | None = None
        self._exit_reported = False
        self._file_ticks: deque[Tick] = deque()
        self._file_clock: tuple[int, int] | None = None
        self._file_index = 0

    # -- availability ----------------------------------------------------------------
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if shutil.which("dcgmi") is None:
            return False, "dcgmi not found on PATH (install NVIDIA DCGM 4, or parse a capture with --source FILE)"
        return True, ""

    # -- open ------------------------------------------------------------------------
    def _open(self, config: ReaderConfig) -> None:
        reject_unknown(config.options, self.OPTIONS, "dcgmi")
        if config.source:
            self._open_capture(config)
        else:
            self._open_live(config)

    def _open_capture(self, config: ReaderConfig) -> None:
        path = Path(config.source or "")
        ids = _field_ids_option(config, default=None)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SourceError(f"cannot read the dcgmi capture {str(path)!r}: {exc.strerror or exc}",
                              "Check the --source path; it must be a text file saved from `dcgmi dmon`.",
                              path=str(path)) from exc
        ticks, stream = parse_capture(text, ids)
        if stream.headers_seen == 0:
            raise SourceParseError(f"{str(path)!r} has no `dcgmi dmon` header line ('#Entity ...')",
                                   "Save the complete output of `dcgmi dmon`, including its first two lines.",
                                   path=str(path))
        self._columns = dict(stream.columns)
        self._field_ids = tuple(c.field_id for c in self._columns.values() if c.field_id is not None)
        self._delay_ms, self._delay_note = _delay_ms(config.interval, self._field_ids)
        self._file_ticks = deque(ticks)
        self._identity = {
            "mode": "capture", "capture": str(path.resolve()), "ticks_in_capture": len(ticks),
            "headers_in_capture": stream.headers_seen, "interval_ms": self._delay_ms,
            "fields": {c.key: c.field_id for c in self._columns.values()},
            "short_names": {c.key: c.short_name for c in self._columns.values()},
            "messages_in_capture": stream.messages[:20], "stopped_by_signal": stream.stopped,
        }
        if self._delay_note:
            self._identity["interval_note"] = self._delay_note

    def _open_live(self, config: ReaderConfig) -> None:
        exe = shutil.which(self._executable, path=self._search_path)
        if exe is None:
            raise ReaderUnavailableError(f"{self._executable!r} not found on PATH", _INSTALL_HINT,
                                         executable=self._executable)
        self._field_ids = _field_ids_option(config, default=DEFAULT_FIELD_IDS) or DEFAULT_FIELD_IDS
        self._delay_ms, self._delay_note = _delay_ms(config.interval, self._field_ids)
        if self._delay_note:
            log.info("dcgmi: %s", self._delay_note)
        argv = [exe, "dmon", "-e", ",".join(map(str, self._field_ids)), "-d", str(self._delay_ms)]
        count = int_option("count", config.option("count", 0), minimum=0, example=10)
        if count:
            argv += ["-c", str(count)]
        entities = _entities_option(config)
        if entities:
            argv += ["-i", entities]
        host = config.option("host")
        if host:
            argv += ["--host", str(host)]
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        if bool_option("probe_version", config.option("probe_version", True)):
            self._version = self._probe_version(exe, env)
        try:
            proc = self._run(argv, env)
        except OSError as exc:
            raise ReaderUnavailableError(f"cannot start {exe}: {exc}", _INSTALL_HINT, executable=exe) from exc
        self._live = _LiveSession(proc, DmonStream(self._field_ids))
        timeout = positive_float_option("start_timeout", config.option("start_timeout", 15.0), example=15)
        if not self._live.header.wait(timeout) or self._live.stream.layout is None:
            try:
                self._fail_start(argv, timeout)
            finally:
                self._live.stop(grace_s=0.5)
        self._columns = dict(self._live.stream.columns)
        self._identity = {
            "mode": "live", "executable": exe, "argv": argv, "dcgmi_version": self._version,
            "interval_ms": self._delay_ms, "fields": {c.key: c.field_id for c in self._columns.values()},
            "short_names": {c.key: c.short_name for c in self._columns.values()},
            "entities": entities or "", "host": str(host or ""),
        }
        if self._delay_note:
            self._identity["interval_note"] = self._delay_note

    def _probe_version(self, exe: str, env: Mapping[str, str]) -> str:
        try:
            proc = self._run([exe, "-v"], env)
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                return ""
        except OSError:
            return ""
        match = re.search(r"^\s*Version\s*:\s*(\S+)", out or "", re.M)
        return match.group(1) if match else ""

    def _fail_start(self, argv: list[str], timeout: float) -> None:
        live = self._live
        assert live is not None
        if live.error is not None:
            raise live.error
        if not live.eof.is_set():
            raise SourceError(f"`{' '.join(argv)}` printed no header within {timeout:g} s",
                              "Check that `dcgmi discovery -l` answers quickly; raise the start_timeout option "
                              "on a loaded host.", argv=argv)
        try:
            status = live.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            status = None
        output = live.output() or "(no output)"
        if _HOSTENGINE_DOWN_RE.search(output):
            raise ReaderUnavailableError(f"dcgmi cannot reach the DCGM host engine: {output}", _HOSTENGINE_HINT,
                                         argv=argv, status=status)
        raise SourceError(f"`{' '.join(argv)}` exited with status {status} before printing data: {output}",
                          "Run the command by hand; check the field ids, the -i entities and whether profiling "
                          "fields (ids >= 1000) are allowed for this user.", argv=argv, status=status)

    # -- read ------------------------------------------------------------------------
    def _read(self) -> list[RawRecord] | None:
        if self._live is None:
            return self._read_capture()
        live = self._live
        ticks, ended, error = live.take()
        if ticks:
            return [rec for tick in ticks for rec in self._records(tick, tick.mono_ns, tick.wall_ns)]
        if error is not None and not self._exit_reported:
            self._exit_reported = True
            live.stop(grace_s=0.5)  # the rest of the output cannot be trusted
            raise error
        if not ended:
            return []
        if not self._exit_reported:
            self._exit_reported = True
            self._raise_for_exit(live)
        return None

    def _raise_for_exit(self, live: _LiveSession) -> None:
        try:
            status = live.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            live.stop(0.5)
            status = live.proc.returncode
        if status == 0:
            return
        output = live.output() or "(no output)"
        hint = _HOSTENGINE_HINT if _HOSTENGINE_DOWN_RE.search(output) else (
            "Check the DCGM host engine (`dcgmi discovery -l`) and the profiling permissions, then record again.")
        raise SourceError(f"dcgmi dmon exited with status {status}: {output}", hint, status=status)

    def _read_capture(self) -> list[RawRecord] | None:
        if not self._file_ticks:
            return None
        tick = self._file_ticks.popleft()
        if self._file_clock is None:
            self._file_clock = (time.monotonic_ns(), time.time_ns())
        step = self._file_index * self._delay_ms * 1_000_000
        self._file_index += 1
        return self._records(tick, self._file_clock[0] + step, self._file_clock[1] + step)

    def _records(self, tick: Tick, mono_ns: int, wall_ns: int) -> list[RawRecord]:
        return [RawRecord(mono_ns, wall_ns, row.entity, dict(row.values), SOURCE, self._version,
                          "; ".join(row.problems) or None) for row in tick.rows]

    # -- close -----------------------------------------------------------------------
    def _close(self) -> None:
        if self._live is not None:
            # dcgmi finishes its -d sleep before it sees SIGINT; past a few seconds SIGTERM is kinder to the user.
            self._live.stop(grace_s=min(self._delay_ms / 1000.0 + 1.0, 5.0))

    # -- metadata --------------------------------------------------------------------
    @property
    def caps(self) -> ReaderCaps:
        columns = self._columns or {field_key(fid): Column(field_key(fid), "", fid, "", 0, None)
                                    for fid in self._field_ids}
        units, descriptions, counters = {}, {}, set()
        for key, col in columns.items():
            info = field_table().get(col.field_id) if col.field_id is not None else None
            if info is None:
                ident = f"[{col.field_id}]" if col.field_id is not None else "[?]"
                descriptions[key] = f"{ident} dmon column {col.short_name or '?'} (no DCGM 4.6 metadata in telemrec)"
                continue
            renamed = f" (before DCGM 4: {info.deprecated_alias})" if info.deprecated_alias else ""
            descriptions[key] = f"[{info.field_id}] {info.description}{renamed}"
            if info.unit:
                units[key] = info.unit
            if info.counter:
                counters.add(key)
        return ReaderCaps(kind="gpu", fields=frozenset(columns), units=units, descriptions=descriptions,
                          counters=frozenset(counters))

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    @property
    def source_version(self) -> str:
        return self._version


# -- options ------------------------------------------------------------------------------
def _field_ids_option(config: ReaderConfig, default: tuple[int, ...] | None) -> tuple[int, ...] | None:
    raw = config.option("field_ids")
    if raw is None:
        return default
    hint = "Pass DCGM field ids, e.g. -O field_ids=100,155,1002; `dcgmi dmon -l` lists them."
    ids = tuple(int_option("field_ids", item, minimum=1, hint=hint)
                for item in list_option("field_ids", raw, example="100,155,1002"))
    if not ids or len(set(ids)) != len(ids):
        raise UsageError(f"option field_ids={raw!r} must name one or more field ids, each once", hint)
    return ids


def _entities_option(config: ReaderConfig) -> str:
    raw = config.option("entities")
    if raw is None or isinstance(raw, str):
        return raw or ""
    hint = "Pass a dcgmi -i string, e.g. -O entities=gpu:0,gpu:3, or a list of GPU ids such as [0, 3]."
    if not isinstance(raw, (list, tuple)):
        raise UsageError(f"option entities={raw!r} is neither a dcgmi -i string nor a list of GPU ids", hint)
    return ",".join(f"gpu:{int_option('entities', gpu, minimum=0, hint=hint)}" for gpu in raw)


def _delay_ms(interval_s: float, field_ids: Sequence[int]) -> tuple[int, str]:
    """dmon's -d for an interval, raised to 100 ms when profiling fields are watched."""
    wanted = max(1, round(interval_s * 1000))
    if wanted < PROFILING_MIN_INTERVAL_MS and any(fid >= PROFILING_FIRST_ID for fid in field_ids):
        return PROFILING_MIN_INTERVAL_MS, (
            f"interval raised from {wanted} ms to {PROFILING_MIN_INTERVAL_MS} ms: DCGM profiling fields "
            f"(ids >= {PROFILING_FIRST_ID}) cannot be sampled faster")
    return wanted, ""

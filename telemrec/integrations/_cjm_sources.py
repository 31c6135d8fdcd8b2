"""What the two cjm monitors serve, without cjm: their config schemas, their sources, their payload.

``telemrec.integrations.cjm`` wraps these in cjm's ``MonitorPlugin`` (Python >= 3.12);
``cjm_manifest`` writes the schemas into ManifestV2 files. Keeping them free of cjm lets
telemrec's own Python (3.10+) write manifests and test the logic.

cjm's conventions for what is not known (seed-projects.md 3.1, 3.5): its consumers read a
missing figure as ``None`` (``scheduling.py``: "No GPU stats available"), and the worker
answers over JSON, where NaN is not valid. So every NaN of a telemrec snapshot becomes
``None`` here, in the top-level fields and in ``details`` alike.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from telemrec.errors import ReplayError, UsageError

__all__ = ["LIVE", "REPLAY", "TRACE_ENV", "LiveSource", "PluginSpec", "ReplaySource", "json_safe", "payload"]

TRACE_ENV = "TELEMREC_CJM_TRACE"   # the replay monitor's default trace, set by the manifest's env_vars
INTERFACE = "cjm_infra_plugin_system.plugin_interface.MonitorPlugin"


@dataclass(frozen=True)
class PluginSpec:
    """One plugin as its manifest names it (``module`` holds both classes)."""

    name: str
    class_name: str
    description: str
    schema: Callable[..., dict]
    module: str = "telemrec.integrations.cjm"


def live_schema(environ=None) -> dict:
    return {
        "type": "object",
        "title": "telemrec live monitor",
        "properties": {
            "interval": {"type": "number", "minimum": 0, "maximum": 10, "default": 0.1,
                         "description": "Seconds between the first two psutil readings (CPU percent); later calls "
                                        "measure since the previous call, as psutil.cpu_percent() does."},
            "nvml": {"type": "boolean", "default": True,
                     "description": "Read NVIDIA GPUs and their processes through NVML when a driver is present."},
        },
        "additionalProperties": False,
    }


def replay_schema(environ=None) -> dict:
    """The replay schema; the manifest's ``env_vars`` may name a default trace (``--trace``)."""
    environ = os.environ if environ is None else environ
    trace = {"type": "string", "description": "Path of the telemrec trace to play (.h5, or a directory of chunks)."}
    default_trace = environ.get(TRACE_ENV)
    if default_trace:
        trace["default"] = default_trace
    schema = {
        "type": "object",
        "title": "telemrec replay monitor",
        "properties": {
            "trace": trace,
            "speed": {"type": "number", "minimum": 0, "maximum": 1e9, "default": 1.0,
                      "description": "1 = real time, 10 = ten times faster, 0 = hold the node at `start`."},
            "start": {"type": ["string", "null"], "default": None,
                      "description": "Where play begins: ISO 8601, +DURATION after the first record or -DURATION "
                                     "before the last (default: the first record)."},
            "loop": {"type": "boolean", "default": False,
                     "description": "Begin again at `start` after the last record; otherwise hold the last instant."},
        },
        "additionalProperties": False,
    }
    if not default_trace:
        schema["required"] = ["trace"]
    return schema


LIVE = PluginSpec("telemrec-live", "TelemrecLiveMonitor",
                  "This machine now, read through telemrec's psutil and NVML readers", live_schema)
REPLAY = PluginSpec("telemrec-replay", "TelemrecReplayMonitor",
                    "A telemrec trace played back as recorded: the node as it was, instant by instant", replay_schema)


def _check_keys(config: dict, schema: dict, plugin: str) -> None:
    unknown = sorted(set(config) - set(schema["properties"]))
    if unknown:
        raise UsageError(f"{plugin}: unknown config keys {unknown}",
                         f"Accepted keys: {', '.join(sorted(schema['properties']))}.")


def json_safe(value: Any) -> Any:
    """NaN and infinities -> None, NumPy scalars -> Python, recursively (cjm answers over JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def payload(snap, extra_details: dict | None = None) -> tuple[dict, list[dict]]:
    """(``SystemStats`` fields, ``ProcessStats`` fields per process) of a telemrec snapshot, JSON-safe."""
    system = snap.system.to_dict()
    if extra_details:
        system["details"] = {**system["details"], **extra_details}
    return json_safe(system), [json_safe(p.to_dict()) for p in snap.processes]


class LiveSource:
    """The live monitor's state: a ``LiveSampler`` opened on first use."""

    def __init__(self, sampler_factory: Callable[..., Any] | None = None):
        self._factory = sampler_factory
        self._sampler = None
        self._lock = threading.Lock()
        self.config = {k: v["default"] for k, v in live_schema()["properties"].items()}

    def configure(self, config: dict | None) -> None:
        config = dict(config or {})
        _check_keys(config, live_schema(), LIVE.name)
        merged = {**self.config, **config}
        interval = merged["interval"]
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval <= 10:
            raise UsageError(f"{LIVE.name}: interval must be a number of seconds in [0, 10], got {interval!r}",
                             "For example interval=0.1.")
        if not isinstance(merged["nvml"], bool):
            raise UsageError(f"{LIVE.name}: nvml must be true or false, got {merged['nvml']!r}")
        with self._lock:
            self.close()
            self.config = merged

    def snapshot(self, details: dict | None = None) -> tuple[dict, list[dict]]:
        with self._lock:
            if self._sampler is None:
                if self._factory is not None:
                    factory = self._factory
                else:
                    from telemrec.analysis.snapshots import LiveSampler as factory
                self._sampler = factory(self.config["interval"], nvml=self.config["nvml"]).open()
            return payload(self._sampler.snapshot(), details)

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None


class ReplaySource:
    """The replay monitor's state: an open trace and a clock that plays it from ``start`` at ``speed``.

    The instant served at real time ``t`` is ``start + (t - t0) * speed`` (``t0``: when it was
    configured); past the last record it holds the last instant, or with ``loop`` begins
    again at ``start`` one sampling interval after the last record.
    """

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns, environ=None):
        self._clock = clock
        self._environ = environ
        self._trace = None
        self._lock = threading.Lock()
        self._given: dict | None = None
        self.config: dict = {}

    def configure(self, config: dict | None) -> None:
        from telemrec.readers.replay import parse_speed, parse_time
        from telemrec.trace import open_trace

        schema = replay_schema(self._environ)
        config = dict(config or {})
        _check_keys(config, schema, REPLAY.name)
        defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
        merged = {**defaults, **config}
        path = merged.get("trace")
        if not path or not isinstance(path, str):
            raise UsageError(f"{REPLAY.name}: no trace to play",
                             f"Load it with config={{'trace': PATH}}, or write its manifest with "
                             f"`telemrec integrations cjm-manifest --trace PATH`.")
        speed = merged["speed"]
        if isinstance(speed, (int, float)) and not isinstance(speed, bool) and speed == 0:
            speed = 0.0
        else:
            speed = parse_speed(speed)
            if speed is None:
                raise UsageError(f"{REPLAY.name}: speed must be a number (a monitor answers at the instant it is "
                                 f"asked, so 'max' has no meaning here)", "For example speed=1 or speed=10.")
        if not isinstance(merged["loop"], bool):
            raise UsageError(f"{REPLAY.name}: loop must be true or false, got {merged['loop']!r}")
        trace = open_trace(os.path.abspath(path))
        try:
            first, last = trace.time_span()
            if first is None:
                raise ReplayError(f"{path} holds no records to play", "Record something first, or pick another trace.")
            start = parse_time(merged["start"], first_wall_ns=first, last_wall_ns=last)
            start = first if start is None else start
            if not first <= start <= last:
                raise ReplayError(f"start {merged['start']!r} lies outside the trace ({_iso(first)} .. {_iso(last)})",
                                  "Pick a start between the first and the last record.")
            interval = float(trace.manifest.get("interval_seconds") or 1.0)
        except BaseException:
            trace.close()
            raise
        with self._lock:
            self.close()
            self._trace = trace
            self._first, self._last, self._start = first, last, start
            self._period = last - start + int(interval * 1e9)
            self._speed = speed
            self._t0 = self._clock()
            self.config = {**merged, "trace": os.path.abspath(path), "speed": speed}
            self._given = config

    def instant(self) -> tuple[int, int, bool]:
        """(wall_ns of the instant playing now, pass number from 0, whether play has ended)."""
        elapsed = int((self._clock() - self._t0) * self._speed)
        if self._start + elapsed <= self._last:
            return self._start + elapsed, 0, False
        if self.config["loop"]:
            return self._start + elapsed % self._period, elapsed // self._period, False
        return self._last, 0, True

    def snapshot(self) -> tuple[dict, list[dict]]:
        from telemrec.analysis.snapshots import snapshot

        if self._trace is None:
            # never initialized (the manifest's default trace, or a clear error), or closed: open again
            self.configure(self._given)
        with self._lock:
            at, n, ended = self.instant()
            snap = snapshot(self._trace, at=at)
            replay = {"trace": self._trace.path, "at_wall_ns": at, "at": _iso(at), "speed": self._speed,
                      "pass": n, "ended": ended}
            return payload(snap, {"replay": replay})

    def close(self) -> None:
        if self._trace is not None:
            self._trace.close()
            self._trace = None


def _iso(wall_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall_ns // 10**9)) + f".{wall_ns % 10**9:09d}Z"

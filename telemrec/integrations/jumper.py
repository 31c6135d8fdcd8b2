"""A recording played into JUmPER's live monitor slot (jumper-extension 0.4.1).

``ReplayMonitor(trace, speed=1.0, start=None)`` satisfies
``jumper_extension.monitor.MonitorProtocol``: hand it to
``PerfmonitorService.start_monitoring(monitor=...)`` and JUmPER's cells, magics, plots and
reports run on a recorded node, in CI with no GPU::

    service.start_monitoring(monitor=ReplayMonitor("run.h5", speed=10))

The rows are the per-level frames ``telemrec export --format jumper`` writes (JUmPER's
columns and units, ``telemrec.analysis.levels``), fed into JUmPER's own ``NodeDataStore``
while the trace plays: the row of trace instant ``t`` arrives ``(t - start) / speed``
seconds after ``start()`` and is stamped with that moment on the ``perf_counter`` clock,
the clock of JUmPER's cell history. So a cell run during play covers the rows of the part
of the recording that played meanwhile. ``interval`` is the recording's sampling interval
divided by ``speed`` (the spacing of the rows as JUmPER sees them); the interval passed to
``start()`` is kept only as ``requested_interval``, since a recording cannot be sampled
more often than it was. Play stops at the end of the trace (``wait()`` blocks until then);
``stop()`` ends it early. Levels are those both the trace and JUmPER here know
(``slurm`` only with ``SLURM_JOB_ID`` set, JUmPER's rule).

Needs ``pip install 'telemrec[jumper]'``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

import numpy as np

from telemrec.errors import UsageError
from telemrec.integrations import require

_data = require("jumper_extension.adapters.data", extra="jumper", package="jumper-extension")
_utilities = require("jumper_extension.utilities", extra="jumper", package="jumper-extension")

__all__ = ["ReplayMonitor"]

NODE = "local"   # the node name JUmPER's single-node monitors use


class ReplayMonitor:
    """A trace as JUmPER's live monitor: rows arrive as the recording plays (see the module docstring)."""

    def __init__(self, trace, speed: float = 1.0, start=None, *, clock: Callable[[], float] = time.perf_counter,
                 wall_clock: Callable[[], float] = time.time):
        from telemrec.analysis import _select
        from telemrec.analysis.levels import level_data
        from telemrec.analysis.offline import _identity, _interval
        from telemrec.readers.replay import parse_speed, parse_time

        if isinstance(trace, (list, tuple)):
            raise UsageError("ReplayMonitor plays one trace (one node)",
                             "Pass one trace; OfflineMonitor.from_trace takes several for an offline view.")
        rate = parse_speed(speed)
        if rate is None:
            raise UsageError("ReplayMonitor needs a finite speed: JUmPER stamps rows with the time they arrive",
                             "Use speed=1 for real time or e.g. speed=20; for everything at once use "
                             "telemrec.OfflineMonitor or `telemrec export --format jumper`.")
        with _select.opened(trace) as tr:
            data = level_data(tr)
            first, last = tr.time_span()
            start_ns = parse_time(start, first_wall_ns=first, last_wall_ns=last)
            manifest = tr.manifest
            self.session_source = os.fspath(tr.path)
        known = _utilities.get_available_levels()
        self.levels = [lv for lv in known if lv in data.frames]
        if not self.levels:
            raise UsageError(f"{self.session_source} has no level JUmPER can show "
                             f"(it shows {', '.join(known)}; the trace has {', '.join(data.frames) or 'none'})",
                             "Record with the psutil reader (levels system,process,user) or the nvml/dcgmi readers.")
        begin = 0 if start_ns is None else int(np.searchsorted(data.wall_ns, start_ns))
        if begin >= len(data.wall_ns):
            raise UsageError(f"start {start!r} lies after the trace's last sample", "Pick an earlier start.")
        mono = data.mono_ns[begin:]
        self._due = (mono - mono[0]) / 1e9 / rate           # seconds after start() each row arrives
        self._wall_ns = data.wall_ns[begin:]
        self._rows = {lv: data.frames[lv].iloc[begin:].drop(columns="time").to_dict("records") for lv in self.levels}
        self._clock, self._wall_clock = clock, wall_clock
        self.speed = rate

        info = data.node
        self.num_cpus, self.num_system_cpus, self.num_gpus = info.num_cpus, info.num_system_cpus, info.num_gpus
        self.gpu_memory, self.gpu_name = info.gpu_memory, info.gpu_name
        self.cpu_handles = list(info.cpu_handles)
        self.memory_limits = {lv: limit for lv, limit in info.memory_limits.items() if lv in known}
        self.nodes = _data.NodeDataStore()
        self.nodes.register_node(_data.NodeInfo(NODE, info.num_cpus, info.num_system_cpus, info.num_gpus,
                                                info.gpu_memory, info.gpu_name, dict(self.memory_limits),
                                                list(info.cpu_handles)))
        self.nodes.init_node_schema(NODE, {lv: list(data.frames[lv].columns) for lv in self.levels})
        identity = _identity(manifest)
        self.pid, self.uid, self.slurm_job = identity["pid"], identity["uid"], identity["slurm_job"]

        self.interval = _interval(manifest) / rate
        self.requested_interval: float | None = None
        self.running = False
        self.is_imported = False
        self.start_time: float | None = None
        self.stop_time: float | None = None
        self.wallclock_start_time: float | None = None
        self.wallclock_stop_time: float | None = None
        self.n_measurements = 0
        self.n_missed_measurements = 0
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # -- MonitorProtocol ---------------------------------------------------------------------
    def start(self, interval: float = 1.0) -> None:
        if self.running:
            return
        self.requested_interval = interval
        self.start_time = self._clock()
        self.wallclock_start_time = self._wall_clock()
        self.running = True
        self._thread = threading.Thread(target=self._play, name="telemrec-jumper-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self.start_time is None:
            self.running = False
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.running = False
        self.stop_time = self._clock()
        self.wallclock_stop_time = self._wall_clock()

    # -- play ----------------------------------------------------------------------------------
    def _play(self) -> None:
        try:
            for i, due in enumerate(self._due):
                while True:
                    delay = self.start_time + due - self._clock()
                    if delay <= 0 or self._stop.wait(delay):
                        break
                if self._stop.is_set():
                    return
                stamp = self.start_time + float(due)
                for level in self.levels:
                    self.nodes.add_sample(NODE, level, {"time": stamp, **self._rows[level][i]})
                self.n_measurements += 1
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every row has been fed (or ``stop()``); True when play is over."""
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    @property
    def duration(self) -> float:
        """Seconds of real time the whole play takes (the recording's span divided by speed)."""
        return float(self._due[-1]) if len(self._due) else 0.0

    def playing_wall_ns(self) -> int | None:
        """The recording's wall time of the last row fed (None before the first)."""
        n = self.n_measurements
        return int(self._wall_ns[n - 1]) if n else None

    def __repr__(self) -> str:
        state = "finished" if self.finished else "running" if self.running else "idle"
        return (f"<ReplayMonitor {self.session_source!r} speed={self.speed:g} levels={self.levels} "
                f"rows={self.n_measurements}/{len(self._due)} {state}>")

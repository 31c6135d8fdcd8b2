"""telemrec as cjm ``MonitorPlugin``\\ s (cjm-infra-plugin-system 0.0.19, cjm-plugin-system 0.0.46).

- ``TelemrecLiveMonitor`` (``telemrec-live``): this machine now, through telemrec's psutil
  and NVML readers (``telemrec.analysis.snapshots.LiveSampler``).
- ``TelemrecReplayMonitor`` (``telemrec-replay``): a trace played as it was recorded;
  each call answers ``telemrec.snapshot(trace, at=...)`` for the instant playing now
  (config ``trace``, ``speed``, ``start``, ``loop``; ``details["replay"]`` says which instant).

cjm finds them through ManifestV2 files (``telemrec integrations cjm-manifest``) and runs
each in a worker process with ``python -m cjm_plugin_system.core.worker --module
telemrec.integrations.cjm --class ...``. Figures a source did not know are ``None``,
never NaN (see ``_cjm_sources``). Needs ``pip install 'telemrec[cjm]'`` on Python >= 3.12.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from telemrec._version import __version__
from telemrec.integrations import require
from telemrec.integrations._cjm_sources import LIVE, REPLAY, LiveSource, PluginSpec, ReplaySource

_PACKAGE = "cjm-infra-plugin-system"
_core = require("cjm_infra_plugin_system.core", extra="cjm", package=_PACKAGE, min_python=(3, 12))
_interface = require("cjm_infra_plugin_system.plugin_interface", extra="cjm", package=_PACKAGE, min_python=(3, 12))
MonitorPlugin = _interface.MonitorPlugin
SystemStats = _core.SystemStats
ProcessStats = _core.ProcessStats

__all__ = ["TelemrecLiveMonitor", "TelemrecReplayMonitor"]


class _TelemrecMonitor(MonitorPlugin):
    """What both monitors share; ``spec`` and ``_source`` make the difference."""

    spec: PluginSpec

    def __init__(self) -> None:   # cjm's worker instantiates with no arguments
        self._source = self._new_source()

    def _new_source(self):
        # abstract: TelemrecLiveMonitor (live readers) and TelemrecReplayMonitor (a trace) each
        # provide their source; this base class is never registered with cjm itself
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return __version__

    def initialize(self, config: Optional[Dict[str, Any]] = None) -> None:
        self._source.configure(config)

    def get_config_schema(self) -> Dict[str, Any]:
        return self.spec.schema()

    def get_current_config(self) -> Dict[str, Any]:
        return dict(self._source.config)

    def get_system_status(self) -> SystemStats:
        system, _ = self._source.snapshot()
        return SystemStats(**system)

    def list_processes(self) -> List[ProcessStats]:
        _, processes = self._source.snapshot()
        return [ProcessStats(**p) for p in processes]

    def cleanup(self) -> None:
        self._source.close()


class TelemrecLiveMonitor(_TelemrecMonitor):
    """This machine now: psutil for CPU and memory, NVML for GPUs and their processes."""

    spec = LIVE

    def _new_source(self) -> LiveSource:
        return LiveSource()


class TelemrecReplayMonitor(_TelemrecMonitor):
    """A recorded node, played from ``start`` at ``speed`` (optionally looping)."""

    spec = REPLAY

    def _new_source(self) -> ReplaySource:
        return ReplaySource()

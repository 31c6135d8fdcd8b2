"""telemrec: record, replay and analyse cluster-node telemetry.

The public surface is this module's ``__all__``. Heavy modules (h5py, pandas, NVML)
load on first use of the names that need them, so ``import telemrec`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from telemrec._version import __version__
from telemrec.errors import (
    ReaderError,
    ReaderNotFoundError,
    ReaderUnavailableError,
    TelemrecError,
    TraceCorruptError,
    TraceError,
    TraceNotFoundError,
    UnsupportedFormatVersionError,
)
from telemrec.readers import BaseReader, Reader, get_reader, list_readers
from telemrec.record import RawRecord, ReaderCaps, ReaderConfig

_LAZY = {
    "open_trace": "telemrec.trace",
    "Trace": "telemrec.trace",
    "TraceWriter": "telemrec.trace",
    "record": "telemrec.recorder",
    "RecordRequest": "telemrec.recorder",
    "ReplayReader": "telemrec.readers.replay",
    "iter_replay": "telemrec.readers.replay",
    "load": "telemrec.analysis",
    "OfflineMonitor": "telemrec.analysis",
    "export_jumper": "telemrec.analysis",
    "snapshot": "telemrec.analysis",
    "live_snapshot": "telemrec.analysis",
    "summarize": "telemrec.analysis",
    "plot_trace": "telemrec.analysis",
}

__all__ = sorted([
    "BaseReader",
    "RawRecord",
    "Reader",
    "ReaderCaps",
    "ReaderConfig",
    "ReaderError",
    "ReaderNotFoundError",
    "ReaderUnavailableError",
    "TelemrecError",
    "TraceCorruptError",
    "TraceError",
    "TraceNotFoundError",
    "UnsupportedFormatVersionError",
    "__version__",
    "get_reader",
    "list_readers",
    *_LAZY,
])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'telemrec' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

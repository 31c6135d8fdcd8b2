"""Readers by name: the built-ins, then third parties' ``telemrec.readers`` entry points.

Nothing here imports a reader module until that reader is asked for, so a missing
library or GPU never breaks ``import telemrec`` or another reader.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points

from telemrec.errors import ReaderError, ReaderNotFoundError, TelemrecPluginWarning

__all__ = ["ReaderInfo", "get_reader", "list_readers", "refresh_readers"]

ENTRY_POINT_GROUP = "telemrec.readers"

# name -> (module, class). One module, one class, one entry.
BUILTIN_READERS: dict[str, tuple[str, str]] = {
    "psutil": ("telemrec.readers.psutil_", "PsutilReader"),
    "nvml": ("telemrec.readers.nvml", "NvmlReader"),
    "dcgmi": ("telemrec.readers.dcgmi", "DcgmiReader"),
    "prometheus": ("telemrec.readers.prometheus", "PrometheusReader"),
    "replay": ("telemrec.readers.replay", "ReplayReader"),
}


@dataclass(frozen=True)
class ReaderInfo:
    name: str
    target: str
    description: str
    implemented: bool
    available: bool
    reason: str
    source_help: str = ""
    builtin: bool = True
    options: dict = field(default_factory=dict)  # -O option -> what it does


@lru_cache(maxsize=1)
def _plugin_entry_points() -> dict[str, object]:
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_READERS:
            warnings.warn(f"entry point {ep.value!r} tries to replace the built-in reader {ep.name!r}; ignored",
                          TelemrecPluginWarning, stacklevel=2)
            continue
        found[ep.name] = ep
    return found


def refresh_readers() -> None:
    """Forget cached entry points (after installing a plugin in a running process)."""
    _plugin_entry_points.cache_clear()


def _load_builtin(name: str):
    module_name, class_name = BUILTIN_READERS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ReaderNotFoundError(f"reader {name!r} is not implemented in this telemrec version",
                                      "Upgrade telemrec, or pick another reader from `telemrec readers`.") from exc
        raise
    return getattr(module, class_name)


def get_reader(name_or_class):
    """The reader class registered as ``name`` (or ``name_or_class`` itself if it is a class)."""
    if isinstance(name_or_class, type):
        return name_or_class
    name = name_or_class
    if name in BUILTIN_READERS:
        return _load_builtin(name)
    ep = _plugin_entry_points().get(name)
    if ep is None:
        known = ", ".join(sorted({*BUILTIN_READERS, *_plugin_entry_points()}))
        raise ReaderNotFoundError(f"no reader named {name!r} (known: {known})")
    try:
        return ep.load()
    except Exception as exc:  # a broken plugin must not take telemrec down
        raise ReaderError(f"the reader plugin {name!r} ({ep.value}) failed to load: {exc}",
                          "Reinstall or fix the package that provides it.") from exc


def _describe(name: str, builtin: bool) -> ReaderInfo:
    target = ":".join(BUILTIN_READERS[name]) if builtin else getattr(_plugin_entry_points()[name], "value", "")
    try:
        cls = get_reader(name)
    except ReaderNotFoundError as exc:
        return ReaderInfo(name, target, "", False, False, exc.message, builtin=builtin)
    except Exception as exc:
        return ReaderInfo(name, target, "", True, False, f"failed to load: {exc}", builtin=builtin)
    try:
        available, reason = cls.availability()
    except Exception as exc:
        available, reason = False, f"availability check failed: {exc}"
    return ReaderInfo(name, target, getattr(cls, "description", ""), True, bool(available), reason,
                      getattr(cls, "source_help", ""), builtin, dict(getattr(cls, "options", None) or {}))


def list_readers() -> list[ReaderInfo]:
    """Every registered reader, whether it can run here, and if not, why."""
    infos = [_describe(name, True) for name in BUILTIN_READERS]
    for name in sorted(_plugin_entry_points()):
        with warnings.catch_warnings():
            infos.append(_describe(name, False))
    return infos

"""telemrec inside the tools people already run (docs/integrations.md).

- ``telemrec.integrations.cjm``: two cjm ``MonitorPlugin``\\ s, live (psutil + NVML readers)
  and replay (a trace played back as it was recorded). Needs ``pip install 'telemrec[cjm]'``
  on Python >= 3.12.
- ``telemrec.integrations.cjm_manifest``: the ManifestV2 files through which cjm's
  ``PluginManager`` finds them (``telemrec integrations cjm-manifest``); needs no cjm.
- ``telemrec.integrations.jumper``: ``ReplayMonitor``, a recording played into JUmPER's
  live monitor slot. Needs ``pip install 'telemrec[jumper]'``.

Each integration imports its host package on import and raises
``IntegrationUnavailableError`` (an ``ImportError``) naming the extra when it is missing.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from telemrec.errors import IntegrationUnavailableError

__all__ = ["require"]


def require(module: str, *, extra: str, package: str, min_python: tuple[int, int] | None = None) -> ModuleType:
    """Import ``module`` of the optional ``package``, or raise a typed error naming the extra."""
    if min_python is not None and sys.version_info[:2] < min_python:
        want = ".".join(map(str, min_python))
        raise IntegrationUnavailableError(
            f"{package} needs Python >= {want}; this is Python {sys.version.split()[0]}",
            f"Create a Python >= {want} environment and run `pip install 'telemrec[{extra}]'` in it.",
            extra=extra)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise IntegrationUnavailableError(
            f"this integration needs {package}, which cannot be imported here ({exc})",
            f"pip install 'telemrec[{extra}]'", extra=extra) from exc

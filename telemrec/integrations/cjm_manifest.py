"""ManifestV2 files for telemrec's two cjm monitors (``telemrec integrations cjm-manifest``).

cjm's ``PluginManager`` discovers plugins only through JSON manifests in
``./.cjm/manifests`` or ``<data_dir>/manifests`` (``$CJM_DATA_DIR``; seed-projects.md 3.3),
then runs ``install.python_path -m cjm_plugin_system.core.worker --module ... --class ...``.
So a manifest names an interpreter that imports cjm and telemrec (Python >= 3.12 with
``telemrec[cjm]``). ``--trace T`` becomes the replay monitor's default trace through
``install.env_vars`` (the worker's environment), so the schema the worker reports and the
hash recorded here agree and cjm loads it without a drift warning. Needs no cjm itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

from telemrec._version import __version__
from telemrec.errors import IntegrationUnavailableError, TraceWriteError, UsageError
from telemrec.integrations._cjm_sources import INTERFACE, LIVE, REPLAY, TRACE_ENV, PluginSpec

__all__ = ["PLUGINS", "config_schema_hash", "default_directory", "manifest", "write_manifests"]

PLUGINS = (LIVE, REPLAY)
PLATFORMS = ["linux-x64", "linux-arm64"]   # the readers need /proc


def config_schema_hash(schema: dict | None) -> str:
    """cjm's ``compute_config_schema_hash``: sha256 of the canonical JSON."""
    canonical = json.dumps(schema or {}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def manifest(spec: PluginSpec, *, python: str, trace: str | None = None, installed_at: str | None = None) -> dict:
    """The ManifestV2 dict for one plugin (layout of cjm's ``manifest_to_dict``)."""
    env_vars = {TRACE_ENV: trace} if trace and spec is REPLAY else {}
    schema = spec.schema(env_vars)
    return {
        "format_version": "2.0",
        "install": {
            "python_path": python,
            "conda_env": "",
            "db_path": "",
            "env_vars": env_vars,
            "installed_at": installed_at or time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "installer_version": f"telemrec {__version__}",
            "package_source": "telemrec[cjm]",
        },
        "code": {
            "name": spec.name,
            "version": __version__,
            "description": spec.description,
            "module": spec.module,
            "class": spec.class_name,
            "interface": INTERFACE,
            "taxonomy": {"domain": "infra", "role": "MonitorPlugin", "interface_fqcn": INTERFACE},
            "resources": {"requires_gpu": False, "platforms": list(PLATFORMS), "accelerators": []},
            "config_schema": schema,
        },
        "drift_tracking": {"config_schema_hash": config_schema_hash(schema), "structural_surface_hash": None},
        "overrides": {},
    }


def default_directory(environ=None) -> str:
    """Where cjm looks: ``$CJM_DATA_DIR/manifests`` when set, else ``./.cjm/manifests``."""
    environ = os.environ if environ is None else environ
    data_dir = environ.get("CJM_DATA_DIR")
    return os.path.join(data_dir, "manifests") if data_dir else os.path.join(".cjm", "manifests")


def check_python(python: str) -> None:
    """The manifest's interpreter must import cjm and the plugin module, or the worker dies at start."""
    probe = "import cjm_plugin_system.core.worker, telemrec.integrations.cjm"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IntegrationUnavailableError(f"cannot run {python}: {exc}",
                                          "Pass --python with the interpreter of a Python >= 3.12 environment "
                                          "that has telemrec[cjm] installed.", extra="cjm") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise IntegrationUnavailableError(
            f"{python} cannot run the telemrec cjm monitors: {last}",
            "Install them there (`pip install 'telemrec[cjm]'`, Python >= 3.12), or pass --python with an "
            "interpreter that has them (--no-check writes the files anyway).", extra="cjm")


def _check_trace(path: str) -> str:
    from telemrec.trace import open_trace

    path = os.path.abspath(path)
    with open_trace(path) as trace:
        if trace.time_span()[0] is None:
            raise UsageError(f"{path} holds no records to play", "Pick a trace with records.")
    return path


def _writable(path: str) -> None:
    """Refuse to replace a file that is not one of telemrec's own manifests."""
    if not os.path.exists(path):
        return
    try:
        with open(path, encoding="utf-8") as f:
            ours = str(json.load(f).get("install", {}).get("installer_version", "")).startswith("telemrec ")
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise UsageError(f"{path} exists and was not written by telemrec", "Move it away or choose another --dir.")


def write_manifests(directory: str | None = None, *, trace: str | None = None, python: str | None = None,
                    check: bool = True) -> list[str]:
    """Write ``telemrec-live.json`` and ``telemrec-replay.json`` into ``directory``; return their paths.

    ``python``: the interpreter cjm starts the workers with (default: this one), checked
    to import cjm and the plugins unless ``check`` is false. ``trace``: the replay default.
    """
    directory = directory or default_directory()
    python = python or sys.executable
    trace = _check_trace(trace) if trace else None
    if check:
        check_python(python)
    paths = []
    try:
        os.makedirs(directory, exist_ok=True)
        for spec in PLUGINS:
            path = os.path.join(directory, f"{spec.name}.json")
            _writable(path)
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(manifest(spec, python=python, trace=trace), f, indent=2, allow_nan=False)
                f.write("\n")
            os.replace(tmp, path)
            paths.append(path)
    except OSError as exc:
        raise TraceWriteError(f"cannot write the manifests into {directory}: {exc.strerror or exc}",
                              "Check that the directory is writable, or choose another --dir.",
                              path=directory) from exc
    return paths

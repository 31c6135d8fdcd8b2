"""The manifest's JSON Schema (shipped in the wheel) and validation against it."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from telemrec.errors import ManifestValidationError
from telemrec.trace._version import CURRENT_FORMAT_VERSION

KNOWN_EXTENSIONS: frozenset[str] = frozenset()


def schema_path(version: int = CURRENT_FORMAT_VERSION) -> Path:
    """Where the schema lives: inside the installed wheel, or in the source checkout's schemas/."""
    rel = Path("manifest") / f"v{version}" / "manifest.schema.json"
    packaged = resources.files("telemrec") / "schemas" / rel
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "schemas" / rel
    if checkout.is_file():
        return checkout
    raise ManifestValidationError(f"the manifest schema v{version} is not installed",
                                  "Reinstall telemrec; the wheel ships schemas/ inside the package.")


@lru_cache(maxsize=4)
def load_schema(version: int = CURRENT_FORMAT_VERSION) -> dict:
    return json.loads(schema_path(version).read_text(encoding="utf-8"))


def manifest_problems(manifest: object, version: int = CURRENT_FORMAT_VERSION) -> list[str]:
    """Every way ``manifest`` violates the schema (empty when valid), as readable lines."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema(version))
    problems = []
    for err in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        problems.append(f"manifest {where}: {err.message}")
    if isinstance(manifest, dict):
        for name, ext in (manifest.get("extensions") or {}).items():
            if isinstance(ext, dict) and ext.get("must_understand") and name not in KNOWN_EXTENSIONS:
                problems.append(f"manifest extensions/{name}: must be understood, but this telemrec does not know it")
    return problems


def validate_manifest(manifest: object, version: int = CURRENT_FORMAT_VERSION) -> None:
    problems = manifest_problems(manifest, version)
    if problems:
        raise ManifestValidationError("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))


def caps_by_source(manifest: dict) -> dict[str, dict]:
    """Units, descriptions and counters per record source.

    Records carry the reader's name as their source (``psutil``, ``nvml``,
    ``dcgmi``); a reader is also indexed by its caps kind, so a source written
    under another name (a replayed or imported trace) still finds its caps.
    """
    by_name: dict[str, dict] = {}
    by_kind: dict[str, dict] = {}
    for reader in manifest.get("readers") or []:
        caps = reader.get("caps") or {}
        for table, key in ((by_name, reader.get("name")), (by_kind, caps.get("kind"))):
            if not key:
                continue
            entry = table.setdefault(key, {"units": {}, "descriptions": {}, "counters": set()})
            entry["units"].update(caps.get("units") or {})
            entry["descriptions"].update(caps.get("descriptions") or {})
            entry["counters"].update(caps.get("counters") or [])
    out = dict(by_kind)
    out.update(by_name)
    return out

"""The manifest's JSON Schema (shipped in the wheel) and validation against it."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from telemrec.errors import ManifestValidationError
from telemrec.trace._version import CURRENT_FORMAT_VERSION

KNOWN_EXTENSIONS: frozenset[str] = frozenset()


def schema_path(version: int = CURRENT_FORMAT_VERSION, kind: str = "manifest") -> Path:
    """Where a schema lives (``schemas/<kind>/v<version>/``): inside the installed wheel, or in the
    source checkout's schemas/."""
    name = "manifest.schema.json" if kind == "manifest" else "frame.schema.json"
    rel = Path(kind) / f"v{version}" / name
    packaged = resources.files("telemrec") / "schemas" / rel
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "schemas" / rel
    if checkout.is_file():
        return checkout
    raise ManifestValidationError(f"the {kind} schema v{version} is not installed",
                                  "Reinstall telemrec; the wheel ships schemas/ inside the package.")


@lru_cache(maxsize=8)
def load_schema(version: int = CURRENT_FORMAT_VERSION, kind: str = "manifest") -> dict:
    return json.loads(schema_path(version, kind).read_text(encoding="utf-8"))


@lru_cache(maxsize=2)
def _validator(kind: str, version: int):
    import jsonschema

    return jsonschema.Draft202012Validator(load_schema(version, kind))


_INT64 = (-(1 << 63), (1 << 63) - 1)
_TABLE_KINDS = frozenset(("records", "time", "ticks", "annotations"))


def _count(v) -> bool:
    return type(v) is int and 0 <= v <= _INT64[1]


def _def_item_valid(item) -> bool:
    """``schemas/journal/v2``'s ``$defs/item``, checked directly (``def`` frames of a process tree
    hold tens of thousands of items: jsonschema took seconds over them, most of a live open)."""
    if type(item) is not list or not item:
        return False
    kind, n = item[0], len(item)
    if kind == "source":
        return n == 2 and type(item[1]) is str
    if n != 3:
        return False
    if kind == "table":
        return item[1] in _TABLE_KINDS and type(item[1]) is str and type(item[2]) is int and item[2] >= -1
    if kind == "column":
        return _count(item[1]) and type(item[2]) is str and len(item[2]) >= 1
    if kind == "entity":
        return _count(item[1]) and type(item[2]) is str
    if kind == "fields":
        fields = item[2]
        return _count(item[1]) and type(fields) is list and (
            not fields or (set(map(type, fields)) == {int} and min(fields) >= 0 and max(fields) <= _INT64[1]))
    return False


def _checkpoint_valid(obj: dict) -> bool:
    """``schemas/journal/v3``'s checkpoint frame, checked directly (it lists thousands of frames)."""
    frames = obj["frames"]
    return obj.keys() == {"t", "frames"} and type(frames) is list and all(
        type(f) is list and len(f) == 2 and _count(f[0]) and _count(f[1]) for f in frames)


def journal_frame_problem(obj: object, version: int = 2) -> str | None:
    """Why a journal's JSON frame does not follow ``schemas/journal/v<version>`` (None if it does)."""
    if version in (2, 3) and type(obj) is dict and obj.get("t") == "def" and obj.keys() == {"t", "items"} \
            and type(obj["items"]) is list and all(map(_def_item_valid, obj["items"])):
        return None  # what the schema says of it, known faster; anything else gets the schema's own words
    if version == 3 and type(obj) is dict and obj.get("t") == "checkpoint" and "frames" in obj and _checkpoint_valid(obj):
        return None
    error = next(iter(_validator("journal", version).iter_errors(obj)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"{where}: {error.message[:200]}"


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


def _caps_problem(caps) -> str | None:
    """What is wrong with a reader's caps in a manifest, as far as caps_by_source relies on them."""
    if not isinstance(caps, dict):
        return "not an object, or its caps are not"
    for key in ("units", "descriptions"):
        value = caps.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                                  for k, v in value.items()):
            return f"caps.{key} is not an object of strings"
    counters = caps.get("counters") or []
    if not isinstance(counters, list) or not all(isinstance(c, str) for c in counters):
        return "caps.counters is not a list of strings"
    return None


def caps_by_source(manifest: dict) -> dict[str, dict]:
    """Units, descriptions and counters per record source.

    Records carry the reader's name as their source (``psutil``, ``nvml``,
    ``dcgmi``); a reader is also indexed by its caps kind, so a source written
    under another name (a replayed or imported trace) still finds its caps.
    """
    by_name: dict[str, dict] = {}
    by_kind: dict[str, dict] = {}
    for i, reader in enumerate(manifest.get("readers") or []):
        caps = (reader.get("caps") or {}) if isinstance(reader, dict) else None
        problem = _caps_problem(caps)
        if problem:
            from telemrec.errors import TraceCorruptError

            raise TraceCorruptError(f"the manifest's readers[{i}]: {problem}",
                                    "The trace's manifest was written by something else than telemrec, or "
                                    "damaged; `telemrec check` says more.")
        for table, key in ((by_name, reader.get("name")), (by_kind, caps.get("kind"))):
            if not key or not isinstance(key, str):
                continue
            entry = table.setdefault(key, {"units": {}, "descriptions": {}, "counters": set()})
            entry["units"].update(caps.get("units") or {})
            entry["descriptions"].update(caps.get("descriptions") or {})
            entry["counters"].update(caps.get("counters") or [])
    out = dict(by_kind)
    out.update(by_name)
    return out

"""The JSON-lines record schema (docs/jsonl.md): one RawRecord per line.

Keys: ``mono_ns``, ``wall_ns``, ``entity``, ``source``, ``source_version``,
``fields``, ``error``. JSON null is None; non-finite floats are written as the
bare tokens ``NaN``, ``Infinity`` and ``-Infinity`` (Python's json module reads
and writes them). Floats are always written with a decimal point or exponent, so
1 and 1.0 stay distinct.
"""

from __future__ import annotations

import json
from typing import IO, Iterable, Iterator

from telemrec.errors import RecordError
from telemrec.record import RawRecord, validate_record

__all__ = ["dump_record", "dumps_record", "iter_records", "loads_record"]

KEYS = ("mono_ns", "wall_ns", "entity", "source", "source_version", "fields", "error")
_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=True, separators=(",", ":"))


def dumps_record(rec: RawRecord) -> str:
    return _encoder.encode({
        "mono_ns": rec.mono_ns,
        "wall_ns": rec.wall_ns,
        "entity": rec.entity,
        "source": rec.source,
        "source_version": rec.source_version,
        "fields": dict(rec.fields),
        "error": rec.error,
    })


def dump_record(rec: RawRecord, out: IO[str]) -> None:
    out.write(dumps_record(rec))
    out.write("\n")


def _reject_constant(token: str) -> float:
    return float(token)  # NaN, Infinity, -Infinity: allowed by the schema


def loads_record(line: str, lineno: int | None = None) -> RawRecord:
    where = f"line {lineno}: " if lineno is not None else ""
    try:
        obj = json.loads(line, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{where}not valid JSON ({exc.msg} at column {exc.colno})",
                          "Each line must be one JSON object as written by `telemrec read` or `telemrec replay`.") from exc
    if not isinstance(obj, dict):
        raise RecordError(f"{where}expected a JSON object, got {type(obj).__name__}",
                          "Each line must be one JSON object.")
    missing = [k for k in KEYS if k not in obj]
    if missing:
        raise RecordError(f"{where}missing keys {missing}", f"Every record has the keys {list(KEYS)} (docs/jsonl.md).")
    extra = sorted(set(obj) - set(KEYS))
    if extra:
        raise RecordError(f"{where}unknown keys {extra}", f"Allowed keys: {list(KEYS)}.")
    if not isinstance(obj["fields"], dict):
        raise RecordError(f"{where}'fields' must be an object", "")
    rec = RawRecord(
        mono_ns=obj["mono_ns"], wall_ns=obj["wall_ns"], entity=obj["entity"],
        fields=obj["fields"], source=obj["source"], source_version=obj["source_version"],
        error=obj["error"],
    )
    try:
        return validate_record(rec)
    except RecordError as exc:
        raise RecordError(f"{where}{exc.message}", exc.remediation) from None


def iter_records(lines: Iterable[str]) -> Iterator[RawRecord]:
    """Parse JSON lines lazily; blank lines are skipped; errors name the line."""
    for lineno, line in enumerate(lines, 1):
        if line.strip():
            yield loads_record(line, lineno)

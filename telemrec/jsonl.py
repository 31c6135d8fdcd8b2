"""The JSON-lines record schema (docs/jsonl.md): one RawRecord per line.

Keys: ``mono_ns``, ``wall_ns``, ``entity``, ``source``, ``source_version``,
``fields``, ``error``. JSON null is None; non-finite floats are written as the
bare tokens ``NaN``, ``Infinity`` and ``-Infinity`` (Python's json module reads
and writes them). Floats are always written with a decimal point or exponent, so
1 and 1.0 stay distinct.

A stream may start with one header line ``{"telemrec_manifest": {...}}``: the manifest of the
trace the records come from (``telemrec replay`` writes it), so that ``telemrec import`` keeps
the host, interval, readers and their caps. ``read_stream`` returns it; ``iter_records``
skips it.
"""

from __future__ import annotations

import json
from typing import IO, Iterable, Iterator

from telemrec.errors import RecordError
from telemrec.record import RawRecord, validate_record

__all__ = ["HEADER_KEY", "dump_record", "dumps_header", "dumps_record", "iter_records", "loads_record", "read_stream"]

HEADER_KEY = "telemrec_manifest"
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


def dumps_header(manifest: dict) -> str:
    """The header line: the manifest of the trace the records that follow come from."""
    return json.dumps({HEADER_KEY: manifest}, ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=str)


def _header(line: str, lineno: int) -> dict | None:
    """The manifest if ``line`` is a header line, else None (cheap for records: no parse)."""
    if not line.lstrip().startswith('{"' + HEADER_KEY + '"'):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(f"line {lineno}: a manifest header that is not valid JSON ({exc.msg} at column {exc.colno})",
                          "Write the header with telemrec.jsonl.dumps_header, or drop it.") from exc
    if not isinstance(obj, dict) or set(obj) != {HEADER_KEY} or not isinstance(obj[HEADER_KEY], dict):
        raise RecordError(f"line {lineno}: a header line holds exactly one key, {HEADER_KEY!r}, whose value is "
                          "the manifest object", "See docs/jsonl.md.")
    if lineno != 1:
        raise RecordError(f"line {lineno}: a manifest header after the first line",
                          "Only the first line of a stream may be a header (concatenated streams: drop later headers).")
    return obj[HEADER_KEY]


def read_stream(lines: Iterable[str]) -> tuple[dict | None, Iterator[RawRecord]]:
    """(the header's manifest or None, the records), reading lazily."""
    it = iter(lines)
    first = next(it, None)
    if first is None:
        return None, iter(())
    manifest = _header(first, 1)
    rest = it if manifest is not None else _chain_first(first, it)
    return manifest, _records(rest, 2 if manifest is not None else 1)


def _chain_first(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def dump_record(rec: RawRecord, out: IO[str]) -> None:
    out.write(dumps_record(rec))
    out.write("\n")


def _reject_constant(token: str) -> float:
    return float(token)  # NaN, Infinity, -Infinity: allowed by the schema


try:  # four to five times faster than the standard library's parser (measured: benchmarks/bench_encode.py)
    from orjson import JSONDecodeError as _FastError
    from orjson import loads as _fast_loads
except ImportError:  # the [fast] extra is not installed
    _fast_loads = None


def _parse(line: str):
    if _fast_loads is not None:
        try:
            return _fast_loads(line)
        except _FastError:
            pass  # NaN and Infinity tokens, lone surrogates: the standard library's parser takes them
    return json.loads(line, parse_constant=_reject_constant)


def loads_record(line: str, lineno: int | None = None) -> RawRecord:
    where = f"line {lineno}: " if lineno is not None else ""
    try:
        obj = _parse(line)
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
    """Parse JSON lines lazily; blank lines and a header on the first line are skipped; errors name the line."""
    return read_stream(lines)[1]


def _records(lines: Iterable[str], first_lineno: int) -> Iterator[RawRecord]:
    for lineno, line in enumerate(lines, first_lineno):
        if line.strip():
            if _header(line, lineno) is not None:  # raises: a header only comes first
                continue
            yield loads_record(line, lineno)

"""Layer 1 data: ``RawRecord`` (one reading of one entity) and its companions.

A record is in the source's own vocabulary: field names as the source spells
them, values as the source gave them. ``None`` means the source said N/A and is
never turned into 0; interpretation (canonical names, units, rates) happens later.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Union

from telemrec.errors import RecordError

__all__ = ["FieldValue", "RawRecord", "ReaderCaps", "ReaderConfig", "validate_record"]

FieldValue = Union[float, int, str, None]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One reading of one entity, exactly as the source gave it.

    ``mono_ns`` is CLOCK_MONOTONIC in integer nanoseconds (comparable within one
    boot of one host); ``wall_ns`` is the wall clock in integer nanoseconds since
    the Unix epoch, UTC. ``error`` carries a problem the source reported for this
    entity at this instant; it is surfaced, never swallowed.
    """

    mono_ns: int
    wall_ns: int
    entity: str
    fields: Mapping[str, FieldValue]
    source: str
    source_version: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mono_ns": self.mono_ns,
            "wall_ns": self.wall_ns,
            "entity": self.entity,
            "source": self.source,
            "source_version": self.source_version,
            "fields": dict(self.fields),
            "error": self.error,
        }


def _same_value(a: FieldValue, b: FieldValue) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


def records_identical(a: RawRecord, b: RawRecord) -> bool:
    """Exact equality: types kept (1 != 1.0), NaN equals NaN (same bits), -0.0 differs from 0.0.

    ``fields`` compare as mappings: the order of keys is not part of a record.
    """
    if (a.mono_ns, a.wall_ns, a.entity, a.source, a.source_version, a.error) != (
        b.mono_ns, b.wall_ns, b.entity, b.source, b.source_version, b.error
    ):
        return False
    if a.fields.keys() != b.fields.keys():
        return False
    return all(_same_value(a.fields[k], b.fields[k]) for k in a.fields)


def validate_record(rec: RawRecord) -> RawRecord:
    """Check the RawRecord contract; raise ``RecordError`` naming the first violation."""
    for name in ("mono_ns", "wall_ns"):
        value = getattr(rec, name)
        if type(value) is not int:
            raise RecordError(f"{name} must be an int (nanoseconds), got {type(value).__name__}",
                              "Convert seconds with int(seconds * 1e9) or use time.monotonic_ns()/time.time_ns().")
        if not INT64_MIN <= value <= INT64_MAX:
            raise RecordError(f"{name}={value} does not fit in int64", "Timestamps are int64 nanoseconds.")
    for name in ("entity", "source", "source_version"):
        if not isinstance(getattr(rec, name), str):
            raise RecordError(f"{name} must be a str, got {type(getattr(rec, name)).__name__}", "")
    if not rec.entity:
        raise RecordError("entity must not be empty", "Use 'system' for host-wide readings.")
    if not rec.source:
        raise RecordError("source must not be empty", "Name the reader or source that produced the record.")
    if rec.error is not None and not isinstance(rec.error, str):
        raise RecordError("error must be None or a str", "")
    if not isinstance(rec.fields, Mapping):
        raise RecordError("fields must be a mapping of field name to value", "")
    for key, value in rec.fields.items():
        if not isinstance(key, str) or not key:
            raise RecordError(f"field names must be non-empty strings, got {key!r}", "")
        if value is None or type(value) in (float, str):
            continue
        if type(value) is int:
            if not INT64_MIN <= value <= INT64_MAX:
                raise RecordError(f"field {key!r}={value} does not fit in int64",
                                  "Store such values as float or str.")
            continue
        raise RecordError(
            f"field {key!r} has type {type(value).__name__}; allowed: float, int, str, None",
            "Convert booleans to int and numpy scalars with .item().",
        )
    return rec


@dataclass(frozen=True, slots=True)
class ReaderCaps:
    """What a reader can produce: its kind, field names, and per field units,
    descriptions and semantics (counters are cumulative and recorded raw)."""

    kind: str
    fields: frozenset[str] = frozenset()
    units: Mapping[str, str] = field(default_factory=dict)
    descriptions: Mapping[str, str] = field(default_factory=dict)
    counters: frozenset[str] = frozenset()
    dynamic_fields: bool = False
    """True when the field set is only known after reading (e.g. Prometheus)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "fields": sorted(self.fields),
            "units": dict(sorted(self.units.items())),
            "descriptions": dict(sorted(self.descriptions.items())),
            "counters": sorted(self.counters),
            "dynamic_fields": self.dynamic_fields,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ReaderCaps":
        return cls(
            kind=str(data.get("kind", "")),
            fields=frozenset(data.get("fields", ())),
            units=dict(data.get("units", {})),
            descriptions=dict(data.get("descriptions", {})),
            counters=frozenset(data.get("counters", ())),
            dynamic_fields=bool(data.get("dynamic_fields", False)),
        )


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    """What a reader is opened with.

    ``source`` is the reader's source string (a URL, a file, a trace path, a pid);
    ``interval`` the sampling period in seconds; ``options`` reader-specific
    settings (for psutil: ``levels``, ``pid``, ``uid``, ``slurm_job``).
    """

    source: str | None = None
    interval: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

"""Metric families and the two text formats telemrec writes: Prometheus 0.0.4 and OpenMetrics 1.0.

``Family`` holds a name, TYPE, HELP and samples ``(name, labels, value, timestamp_ns)``;
``text_004`` renders families for a scrape, ``om_*`` the lines of an OpenMetrics file. Values are formatted as the Go
exporters print them (``go_float``: strconv's shortest ``%g``) unless the family
carries its exporter's own formatting. Also here: the name rules (``metric_name``,
``label_name``) and reading telemrec's field keys and prometheus entity names back into
names and labels.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Iterable

from telemrec.readers.prometheus import parse_exposition, parse_labels

__all__ = ["Family", "Labels", "entity_label_pairs", "go_float", "label_name", "metric_name", "om_header",
           "om_series", "om_timestamp", "om_value", "split_series", "text_004"]

Labels = tuple[tuple[str, str], ...]

_METRIC_OK = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_OK = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ENTITY_PAIR = re.compile(r'([^=,"]+)=("(?:[^"\\]|\\.)*"|[^,]*)(?:,|$)')


@dataclass
class Family:
    name: str
    type: str                       # counter, gauge, histogram, summary, untyped
    help: str | None = None
    samples: list[tuple[str, Labels, object, int | None]] = field(default_factory=list)
    fmt: Callable[[object], str] | None = None  # the exporter's own value formatting (default: go_float)

    def add(self, labels: Labels, value, timestamp_ns: int | None = None, name: str | None = None) -> None:
        self.samples.append((name or self.name, labels, value, timestamp_ns))


def go_float(value) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)``, as client_golang writes sample values."""
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign, digits, exponent = Decimal(repr(v)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0")
    exp10 = len(digits) + exponent - 1       # the decimal exponent of the first digit
    if exp10 < -4 or exp10 >= 6:             # shortest formatting decides with precision 6
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        body = f"{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    elif exp10 < 0:
        body = "0." + "0" * (-exp10 - 1) + text
    elif len(text) <= exp10 + 1:
        body = text + "0" * (exp10 + 1 - len(text))
    else:
        body = text[: exp10 + 1] + "." + text[exp10 + 1:]
    return ("-" if sign else "") + body


def metric_name(text: str) -> str:
    """A valid (legacy) metric name: other characters become ``_``, a leading digit gets ``_``."""
    if _METRIC_OK.fullmatch(text):
        return text
    out = re.sub(r"[^a-zA-Z0-9_:]", "_", text)
    return out if out and not out[0].isdigit() else "_" + out


def label_name(text: str) -> str:
    """A valid label name (``__`` prefixes are Prometheus's own, so they lose one underscore)."""
    out = text if _LABEL_OK.fullmatch(text) else re.sub(r"[^a-zA-Z0-9_]", "_", text)
    if not out or out[0].isdigit():
        out = "_" + out
    return out[1:] if out.startswith("__") else out


def split_series(key: str) -> tuple[str, Labels]:
    """A field key written by the prometheus reader (``name{a="1"}``, quoted UTF-8 names too)
    back into its sample name and labels."""
    if "{" not in key and _METRIC_OK.fullmatch(key):
        return key, ()
    try:
        name, labels_text, _, _ = parse_exposition(f"{key} 0\n").samples[0]
    except Exception:  # not exposition syntax: a plain field name
        return key, ()
    return name, tuple(parse_labels(labels_text))


def entity_label_pairs(entity: str) -> Labels | None:
    """A prometheus reader entity (``gpu=0,UUID=GPU-x``, values quoted when needed) as labels;
    None if ``entity`` is not in that form."""
    pairs = []
    pos = 0
    while pos < len(entity):
        m = _ENTITY_PAIR.match(entity, pos)
        if m is None:
            return None
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)), value[1:-1])
        pairs.append((m.group(1), value))
        pos = m.end()
    return tuple(pairs) if pairs else None


# -- rendering ----------------------------------------------------------------------------------

def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels) + "}"


def _value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return go_float(value)


def text_004(families: Iterable[Family]) -> str:
    """Prometheus text format 0.0.4 (what a scrape of an exporter returns)."""
    out: list[str] = []
    for fam in families:
        if not fam.samples:
            continue
        if fam.help is not None:
            out.append(f"# HELP {fam.name} {fam.help.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}\n")
        out.append(f"# TYPE {fam.name} {fam.type}\n")
        for name, labels, value, ts in fam.samples:
            stamp = "" if ts is None else f" {ts // 1_000_000}"
            out.append(f"{name}{_labels(labels)} {(fam.fmt or _value)(value)}{stamp}\n")
    return "".join(out)


def om_timestamp(ns: int) -> str:
    """Nanoseconds since the epoch as OpenMetrics seconds, exactly (``1795326992.808236223``)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def om_header(fam: Family) -> str:
    """An OpenMetrics family's TYPE and HELP lines (``untyped`` is written ``unknown``)."""
    typ = "unknown" if fam.type == "untyped" else fam.type
    text = f"# TYPE {fam.name} {typ}\n"
    if fam.help is not None:
        text += f"# HELP {fam.name} {_escape_value(fam.help)}\n"
    return text


def om_series(name: str, labels: Labels) -> str:
    """The part of a sample line before its value (``name{labels} ``), written once per series."""
    return f"{name}{_labels(labels)} "


def om_value(value) -> str:
    """A sample value in OpenMetrics: integers exact, floats shortest (any exact spelling will do here)."""
    kind = type(value)
    if kind is float:
        text = repr(value)
        return text if text[-1].isdigit() else {"inf": "+Inf", "-inf": "-Inf"}.get(text, "NaN")
    if kind is int:
        return str(value)
    return _value(value)

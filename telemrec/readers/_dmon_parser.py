"""Parse the text `dcgmi dmon` prints (DCGM 4.x, dcgmi/DeviceMonitor.cpp) into ticks of rows.

The layout, as DeviceMonitor prints it:

- a header line, ``#Entity`` left-aligned in the entity column (11 characters in
  early 4.x, 16 in 4.6), then each field's short name left-aligned in
  ``width + 8`` characters (``width`` is the field's DCGM display width; the
  value may use ``width + 6`` of them, two are padding);
- a units line, ``ID`` then each field's unit string in the same columns;
- one row per entity and tick: ``"<GROUP> <id>"`` in the entity column, then the
  values in the header's columns. Doubles are ``{:.3F}``, integers plain, a blank
  DCGM value ``N/A``; a field the entity did not return at all is printed as
  spaces; a value longer than ``width + 6`` is cut to ``width + 3`` characters
  plus ``...``;
- the header again after the 15th tick and then every 14 ticks;
- ``"\\n\\ndmon was stopped due to receiving a signal"`` after a SIGINT.

Columns are therefore cut at the positions where the header's short names start,
never by splitting on whitespace (a blank field would shift every later column).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Mapping

from telemrec.errors import SourceParseError
from telemrec.record import FieldValue

__all__ = [
    "DEFAULT_FIELD_IDS",
    "PROFILING_FIRST_ID",
    "PROFILING_MIN_INTERVAL_MS",
    "Column",
    "DmonStream",
    "FieldInfo",
    "Layout",
    "Row",
    "Tick",
    "field_key",
    "field_table",
    "HeaderSchedule",
    "entity_returns",
    "format_header",
    "format_row",
    "format_value",
    "parse_entity_ids",
    "parse_capture",
    "parse_header",
    "parse_row",
    "parse_value",
    "row_label",
]

# The KempnerPulse field list (seed-projects §2.2): device, clock, power, memory and profiling fields.
DEFAULT_FIELD_IDS: tuple[int, ...] = (
    100, 101, 140, 150, 155, 156, 202, 203, 204, 251, 252, 253, 449,
    1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010,
)
PROFILING_FIRST_ID = 1000
"""DCGM profiling (DCP) fields have ids from 1000 up; the profiler cannot sample them faster than 100 ms."""
PROFILING_MIN_INTERVAL_MS = 100

STOP_TRAILER = "dmon was stopped due to receiving a signal"
_STOP_RE = re.compile(r"dmon was stopped d[ou]e? to receiving a signal")  # DCGM 3.x printed "do to"

# Entity group names from DeviceMonitor's format_as(dcgm_field_entity_group_t); longest first.
_GROUPS = ("GPU-CI", "GPU-I", "GPU", "vGPU", "Switch", "SW", "CPU Core", "CPU", "CX", "LINK", "UNKNOWN")
_GROUP_ALT = "|".join(re.escape(g) for g in _GROUPS)
_LABEL_RE = re.compile(rf"(?P<group>{_GROUP_ALT}) (?P<id>\d+)(?: LINK (?P<link>\d+))?")
_INT_RE = re.compile(r"[-+]?\d+")
_FLOAT_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|infinity|nan)", re.IGNORECASE)

_MAX_MESSAGES = 100  # non-row lines kept (error messages dcgmi printed), newest last

ABSENT = object()
"""parse_value's answer for a blank-padded column: the entity did not return the field."""


@dataclass(frozen=True, slots=True)
class FieldInfo:
    field_id: int
    name: str
    deprecated_alias: str
    tag: str
    short_name: str
    dcgm_unit: str
    width: int
    type: str
    entity_level: str
    unit: str
    counter: bool
    description: str

    @property
    def kind(self) -> str:
        """How dmon prints the value: "int", "float" or "str"."""
        return {"DCGM_FT_INT64": "int", "DCGM_FT_TIMESTAMP": "int", "DCGM_FT_DOUBLE": "float",
                "DCGM_FT_STRING": "str"}.get(self.type, "auto")

    @property
    def column_width(self) -> int:
        """Characters dmon gives the value (the header/row cell is two wider)."""
        return self.width + 6


@lru_cache(maxsize=1)
def field_table() -> Mapping[int, FieldInfo]:
    """The DCGM 4.6 metadata of the fields telemrec knows, by field id (package data ``dcgm_fields.tsv``)."""
    text = resources.files("telemrec.readers").joinpath("dcgm_fields.tsv").read_text(encoding="utf-8")
    table: dict[int, FieldInfo] = {}
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    for line in lines[1:]:
        cells = line.split("\t")
        fid, name, alias, tag, short, dunit, width, ftype, level, unit, counter, desc = cells
        table[int(fid)] = FieldInfo(int(fid), name, alias, tag, short, dunit.strip("'"), int(width), ftype, level,
                                    unit, counter == "1", desc)
    return table


def field_key(field_id: int) -> str:
    """The record key of a field id: its DCGM 4.6 name, or ``dcgm_field_<id>`` for an id telemrec has no metadata for."""
    info = field_table().get(field_id)
    return info.name if info else f"dcgm_field_{field_id}"


@lru_cache(maxsize=1)
def _ids_by_short_name() -> Mapping[str, int]:
    return {info.short_name: fid for fid, info in field_table().items()}


# -- printing, as DeviceMonitor does it (the fake dcgmi and the replay dcgmi) -----------
ENTITY_WIDTH = 16
"""dmon's entity column in DCGM 4.6 (11 in early 4.x)."""
_UNKNOWN_WIDTH = 10


def _cell(text: str, width: int) -> str:
    if len(text) > width:  # FixedSizeString
        text = text[: width - 3] + "..."
    return f"{text:<{width + 2}}"


def _meta(field_id: int) -> tuple[str, str, int]:
    info = field_table().get(field_id)
    if info is None:
        return f"F{field_id}", "", _UNKNOWN_WIDTH + 6
    return info.short_name, info.dcgm_unit, info.column_width


def format_header(field_ids, entity_width: int = ENTITY_WIDTH) -> tuple[str, str]:
    """dmon's header and units lines for ``field_ids``."""
    head = [f"{'#Entity':<{entity_width}}"]
    units = [f"{'ID':<{entity_width}}"]
    for fid in field_ids:
        short, unit, width = _meta(fid)
        head.append(_cell(short, width))
        units.append(_cell(unit, width))
    return "".join(head), "".join(units)


def format_row(label: str, cells: Mapping[int, str | None], field_ids, entity_width: int = ENTITY_WIDTH) -> str:
    """One entity row; ``cells[fid]`` is the printed value, or None/missing for a field the entity did not return."""
    out = [f"{label:<{entity_width}}"]
    for fid in field_ids:
        _, _, width = _meta(fid)
        text = cells.get(fid)
        out.append(_cell("" if text is None else text, width))
    return "".join(out)


def format_value(field_id: int, value: object) -> str:
    """A value as dmon prints it: doubles ``{:.3f}``, integers plain, a blank value ``N/A``."""
    if value is None:
        return "N/A"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            return "N/A"
        info = field_table().get(field_id)
        if value.is_integer() and info is not None and info.kind == "int":
            return str(int(value))
        return f"{value:.3f}"
    return str(value)


def entity_returns(group: str, field_id: int) -> bool:
    """Whether DCGM returns a field for an entity of ``group`` at all (else dmon prints spaces):
    GPUs return every field, GPU instances the GPU_I and GPU_CI level ones, compute instances GPU_CI's."""
    if group == "GPU":
        return True
    info = field_table().get(field_id)
    if info is None:
        return False
    if group == "GPU-I":
        return info.entity_level in ("DCGM_FE_GPU_I", "DCGM_FE_GPU_CI")
    return info.entity_level == "DCGM_FE_GPU_CI"


def parse_entity_ids(spec: str | None) -> set[int] | None:
    """The GPU ids of a dmon ``-i`` list ("0,3", "gpu:0,gpu:3"); None for all ("" or "*")."""
    if not spec or spec.strip() == "*":
        return None
    return {int(m) for m in re.findall(r"(?:^|,)\s*(?:gpu:)?(\d+)", spec)}


MAX_PRINT_HEADER_COUNT = 14


class HeaderSchedule:
    """When dmon prints its header again: after the 15th tick, then after every 14th."""

    def __init__(self) -> None:
        self._count = 0

    def after_tick(self) -> bool:
        due = self._count == MAX_PRINT_HEADER_COUNT
        if due:
            self._count = 0
        self._count += 1
        return due


# -- layout -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Column:
    key: str
    short_name: str
    field_id: int | None
    kind: str
    start: int
    end: int | None  # None: the last column runs to the end of the line


@dataclass(frozen=True, slots=True)
class Layout:
    entity_width: int
    columns: tuple[Column, ...]


def parse_header(line: str, field_ids: tuple[int, ...] | None = None) -> Layout:
    """The column layout a ``#Entity ...`` header line announces.

    With ``field_ids`` (the ``-e`` list, in order) column *i* is field ``field_ids[i]``
    whatever short name this DCGM version prints; without it the short names are
    looked up in the 4.6 table, and an unknown one becomes the column's key as is.
    """
    tokens = list(re.finditer(r"\S+", line))
    if not tokens or tokens[0].group() != "#Entity":
        raise SourceParseError(f"not a dcgmi dmon header line: {line!r}",
                               "Pass the output of `dcgmi dmon -e ...`, header lines included.")
    names = tokens[1:]
    if field_ids is not None and len(field_ids) != len(names):
        raise SourceParseError(
            f"the dmon header has {len(names)} columns but {len(field_ids)} field ids were requested: {line.strip()!r}",
            "Check the field id list; dcgmi prints one column per id given with -e.",
            header=line)
    entity_width = names[0].start() if names else len(line.rstrip())
    columns = []
    for i, tok in enumerate(names):
        end = names[i + 1].start() if i + 1 < len(names) else None
        short = tok.group()
        fid = field_ids[i] if field_ids is not None else _ids_by_short_name().get(short)
        info = field_table().get(fid) if fid is not None else None
        key = field_key(fid) if fid is not None else short
        columns.append(Column(key, short, fid, info.kind if info else "auto", tok.start(), end))
    keys = [c.key for c in columns]
    if len(set(keys)) != len(keys):
        raise SourceParseError(f"the dmon header names a field twice: {line.strip()!r}",
                               "Request each field id once.")
    return Layout(entity_width, tuple(columns))


# -- values and rows --------------------------------------------------------------------
def parse_value(text: str, kind: str, key: str = "value") -> tuple[object, str | None]:
    """``(value, problem)`` for one cell's stripped text.

    ``""`` (blank padding: not returned) gives ``ABSENT``; ``N/A`` gives None; a
    value dmon cut to ``...`` gives None plus a problem note (the prefix is not the
    value); numbers keep the column's DCGM type.
    """
    if text == "":
        return ABSENT, None
    if text == "N/A":
        return None, None
    if text.endswith("..."):
        return None, f"{key} truncated by dcgmi to {text!r}"
    if kind == "str":
        return text, None
    if kind in ("int", "auto") and _INT_RE.fullmatch(text):
        return int(text), None
    if _FLOAT_RE.fullmatch(text):
        value = float(text)
        if not math.isfinite(value):
            return None, f"{key} is not finite ({text!r})"
        return value, None
    if kind == "auto":
        return text, None
    return None, f"{key} is not a number: {text!r}"


@dataclass(slots=True)
class Row:
    group: str
    entity_id: int
    link: int | None
    values: dict[str, FieldValue]
    problems: list[str] = field(default_factory=list)
    entity: str = ""  # set when the tick completes (MIG parents depend on the neighbouring rows)

    @property
    def label(self) -> tuple[str, int, int | None]:
        return (self.group, self.entity_id, self.link)


def _label_match(line: str, layout: Layout) -> re.Match[str] | None:
    # A label longer than the entity column would run into the first value with no space
    # between them, which cannot be undone; GPU and MIG labels always fit.
    return _LABEL_RE.fullmatch(line[: layout.entity_width].rstrip())


def row_label(line: str, layout: Layout) -> str | None:
    """The entity label (``"GPU-I 8"``) a row line starts with, or None for any other line."""
    match = _label_match(line, layout)
    return match.group() if match else None


def parse_row(line: str, layout: Layout) -> Row | None:
    """One entity row, or None if ``line`` does not start with an entity label."""
    match = _label_match(line, layout)
    if match is None:
        return None
    row = Row(match["group"], int(match["id"]), int(match["link"]) if match["link"] else None, {})
    width = layout.entity_width
    if width < len(line) and line[width - 1] != " " and line[width] != " ":
        row.problems.append("the entity label fills its column and touches the first value; both may be wrong")
    for i, col in enumerate(layout.columns):
        start, end = col.start, col.end
        text = line[start:end].strip()
        if i and text and line[start - 1] != " ":
            row.values[col.key] = None
            row.problems.append(f"{col.key}: the row does not line up with the header")
            continue
        value, problem = parse_value(text, col.kind, col.key)
        if problem:
            row.problems.append(problem)
        if value is not ABSENT:
            row.values[col.key] = value
    return row


# -- ticks ------------------------------------------------------------------------------
@dataclass(slots=True)
class Tick:
    rows: list[Row]
    mono_ns: int = 0
    wall_ns: int = 0


class DmonStream:
    """Turns dmon output, line by line, into completed ticks.

    A tick is the run of rows printed by one fetch. It is complete when a row for an
    entity it already holds arrives (the next tick's first row), or a non-row line
    (blank, header, trailer, error message) arrives, or at ``finish()`` (EOF). A tick
    is stamped with the stamps given for its first row.
    """

    def __init__(self, field_ids: tuple[int, ...] | None = None) -> None:
        self.field_ids = field_ids
        self.layout: Layout | None = None
        self.headers_seen = 0
        self.stopped = False
        self.messages: list[str] = []
        self.columns: dict[str, Column] = {}  # every column any header announced, in order
        self._rows: list[Row] = []
        self._labels: set[tuple[str, int, int | None]] = set()
        self._stamp = (0, 0)
        self._gi_parent: dict[int, int] = {}
        self._ci_parent: dict[int, tuple[int | None, int]] = {}

    def feed(self, line: str, mono_ns: int = 0, wall_ns: int = 0) -> list[Tick]:
        line = line.rstrip("\r\n")
        if line.startswith("#Entity"):
            layout = parse_header(line, self.field_ids)  # raise before the pending tick is taken
            done = self._complete()
            self.layout = layout
            self.headers_seen += 1
            for col in self.layout.columns:
                self.columns.setdefault(col.key, col)
            return done
        if not line.strip():
            return self._complete()
        if self.layout is not None and line.startswith("ID") and not _LABEL_RE.match(line):
            return self._complete()  # the units line under a header
        if _STOP_RE.search(line):
            self.stopped = True
            return self._complete()
        row = parse_row(line, self.layout) if self.layout is not None else None
        if row is None:
            self.messages.append(line.strip())
            del self.messages[:-_MAX_MESSAGES]
            return self._complete()
        done = self._complete() if row.label in self._labels else []
        if not self._rows:
            self._stamp = (mono_ns, wall_ns)
        self._rows.append(row)
        self._labels.add(row.label)
        return done

    def finish(self) -> list[Tick]:
        return self._complete()

    def _complete(self) -> list[Tick]:
        if not self._rows:
            return []
        rows, self._rows, self._labels = self._rows, [], set()
        self._name_entities(rows)
        return [Tick(rows, *self._stamp)]

    def _name_entities(self, rows: list[Row]) -> None:
        """GPUs are ``gpu<id>``; a GPU instance is ``mig:<gpu>:<gi>`` and a compute instance
        ``mig:<gpu>:<gi>:<ci>``, with the DCGM entity ids dmon prints. dmon lists MIG
        entities next to their parents (topologically sorted), so parents come from the
        neighbouring rows; scanning runs backwards when children precede their GPU."""
        mig = [i for i, r in enumerate(rows) if r.group in ("GPU-I", "GPU-CI")]
        gpus = [i for i, r in enumerate(rows) if r.group == "GPU"]
        forward = not mig or not gpus or gpus[0] < mig[0]
        gpu: int | None = None
        gi: int | None = None
        for row in rows if forward else reversed(rows):
            if row.link is not None:
                row.entity = _other_entity(row)
            elif row.group == "GPU":
                gpu, gi = row.entity_id, None
                row.entity = f"gpu{row.entity_id}"
            elif row.group == "GPU-I":
                parent = gpu if gpu is not None else self._gi_parent.get(row.entity_id)
                if parent is not None:
                    self._gi_parent[row.entity_id] = parent
                gi = row.entity_id
                row.entity = f"mig:{_part(parent)}:{row.entity_id}"
            elif row.group == "GPU-CI":
                if gi is not None:
                    parents = (gpu, gi)
                    self._ci_parent[row.entity_id] = parents
                else:
                    parents = self._ci_parent.get(row.entity_id, (None, None))
                row.entity = f"mig:{_part(parents[0])}:{_part(parents[1])}:{row.entity_id}"
            else:
                row.entity = _other_entity(row)


def _part(value: int | None) -> str:
    return "?" if value is None else str(value)


def _other_entity(row: Row) -> str:
    group = {"SW": "switch", "CPU Core": "cpucore"}.get(row.group, row.group.lower().replace("-", ""))
    name = f"{group}{row.entity_id}"
    return f"{name}:link{row.link}" if row.link is not None else name


def parse_capture(text: str, field_ids: tuple[int, ...] | None = None) -> tuple[list[Tick], DmonStream]:
    """Every tick of a saved ``dcgmi dmon`` capture, and the stream state (layout, messages)."""
    stream = DmonStream(field_ids)
    ticks: list[Tick] = []
    for line in text.splitlines():
        ticks.extend(stream.feed(line))
    ticks.extend(stream.finish())
    return ticks, stream

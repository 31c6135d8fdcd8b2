"""Traces into pandas DataFrames: ``load()``.

Wide form (default): one row per recorder tick, one column per
(source, entity, field) -- plus a leading ``host`` level when several traces are
loaded. The index is a UTC ``DatetimeIndex`` named ``time``. How rows are formed
(``align``, recorded in ``attrs["align"]``):

- ``"tick"`` (default): the recorder ticks every reader on one grid
  (``t0 + k * interval`` on the monotonic clock, ``t0`` from the trace's tick
  tables). A record belongs to tick ``k = floor((mono_ns - t0) / interval)`` and
  the row's time is the grid instant ``t0 + k * interval`` carried to the wall
  clock with the record's own wall-minus-monotonic offset. So the psutil and
  the dcgmi record of one second share a row although they were sampled a few
  ms apart. Traces without tick tables (written directly with TraceWriter,
  imported) or whose readers tick on different grids fall back to ``"exact"``.
- ``"exact"``: an outer join on the records' exact wall_ns. A reader stamps all
  records of one tick with the same instant, so its entities share rows; two
  readers interleave, and each row holds NaN for the other reader's columns.

The exact instants stay available: in the long form, or as the ``_wall_ns``
column (``fields=[..., "_wall_ns"]``). ``resample="10s"`` then puts rows on an
epoch-aligned grid: the mean of the numbers in a bin, except raw counters and
text, which keep the bin's last value.

Values: numbers are float64; NaN means "no number": the source said N/A (None,
never turned into 0), the record lacked the field, or no record of that entity
has this timestamp. Text fields are object columns (None where missing). The
long form keeps what the wide form folds together: it has one row per value
that was recorded, and its ``none`` column says where the source said N/A.

Long form (``form="long"``): columns ``time``, [``host``], ``source``,
``entity``, ``field`` (categoricals), ``value`` (float64), ``none`` (bool: the
source reported N/A), and ``text`` (the value of text fields; only present when
a text field was selected). Rows are sorted by time; a field a record did not
carry has no row.

Units, descriptions and counters travel in ``DataFrame.attrs``:
``attrs["units"][source][field]``, ``attrs["descriptions"][source][field]``,
``attrs["counters"][source]`` (sorted list), ``attrs["rates"]`` (bool) and
``attrs["traces"]`` (path, host, format version, clean close per trace). With
``rates=True`` the units of counters read ``<unit>/s``.

Integers are exact in float64 up to 2**53 (9.007e15): byte counters up to
8 PiB, nanosecond timestamps are kept as int64 in the index.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from telemrec import identity
from telemrec.analysis import _many, _select, _timeline
from telemrec.trace.columnar import (MIXED, NO_TEXT, TEXT, BlockJob, NumericJob, Prefilled, decode_block,
                                     decode_numeric, empty_block, text_in)
from telemrec.analysis.rates import counter_rate, counter_rates, rate_unit
from telemrec.errors import UsageError
from telemrec.trace import Trace
from telemrec.trace._codec import ABSENT, NONE, STR
from telemrec.trace.v1 import META_COLUMNS

__all__ = ["ENGINES", "FORMS", "load", "read_series"]

FORMS = ("wide", "long")
ENGINES = ("pandas", "dask")
_NUM, _STR, _OBJ = "num", "str", "obj"
_LEVELS = ["source", "entity", "field"]


@dataclass(slots=True)  # a load makes one per column
class _Column:
    source: str
    entity: str
    field: str
    kind: str
    counter: bool


@dataclass
class _Entity:
    source: str
    name: str
    reader: object
    lo: int
    hi: int
    columns: list[_Column]
    wall: np.ndarray | None = None
    mono: np.ndarray | None = None
    values: dict = field(default_factory=dict)  # column position -> decoded float64 row
    text: dict = field(default_factory=dict)    # column position -> object array (text columns)

    def get(self, name: str) -> np.ndarray | None:
        """Decoded values of one field (float64, or object for text), None when not selected."""
        for k, c in enumerate(self.columns):
            if c.field == name:
                return self.values[k] if k in self.values else self.text.get(k)
        return None


@dataclass
class _Part:
    frame: pd.DataFrame
    host: str
    units: dict = field(default_factory=dict)
    descriptions: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    trace_info: dict = field(default_factory=dict)
    matched: bool = True
    align: str = "exact"


def load(path, readers=None, entities=None, fields=None, start=None, end=None, rates: bool = False,
         form: str | None = None, resample: str | None = None, align: str = "tick", engine: str = "pandas",
         split=None):
    """Load one or many traces into a DataFrame (the module docstring describes both forms).

    ``path``: a trace file or open ``Trace``; or a list of them, a directory (its
    ``*.h5`` files) or a glob: the frame is then keyed by trace, with the host
    first (wide: rows indexed by ``host``, ``trace``, ``time``; long: ``host`` and
    ``trace`` columns), and the rows of distinct traces are never merged
    (``telemrec.analysis._many``).
    ``readers``, ``entities``, ``fields``: names or glob patterns (``"gpu*"``,
    ``"cpu_times.*"``) selecting record sources (or reader labels), entities and
    fields; only the selected columns are read. Meta columns (``_mono_ns``,
    ``_error``, ``_source_version``, ``_seq``) are loaded when named exactly.
    ``start``/``end``: bounds of the half-open interval [start, end) as a
    timestamp or ISO string (naive = UTC), epoch seconds (float) or
    nanoseconds (int), or a timedelta from the start of the recording (when
    negative, back from its last sample); only the chunks that hold it are read. ``rates``: counters (listed in the readers'
    caps) become per-second rates (``telemrec.analysis.rates``). ``form``:
    ``"wide"`` (the default) or ``"long"``; ``align``: ``"tick"`` or ``"exact"``;
    ``resample``: a pandas frequency such as ``"10s"`` (wide form only).
    ``engine="dask"``: a lazy dask DataFrame of the long form, one partition per
    trace, equal to the pandas long frame once computed (``telemrec.analysis.dask_frames``;
    needs ``pip install 'telemrec[dask]'``); ``split="6h"``: a partition per 6 hours of each trace.
    """
    if engine not in ENGINES:
        raise UsageError(f"engine={engine!r} is not one of {', '.join(ENGINES)}",
                         "Use engine='pandas' (a DataFrame in this process) or engine='dask' (lazy, for many traces).")
    if split is not None and engine != "dask":
        raise UsageError("split applies to engine='dask' only", "Drop split=..., or add engine='dask'.")
    if engine == "dask":
        from telemrec.analysis.dask_frames import load_dask

        if form not in (None, "long") or resample is not None:
            raise UsageError("engine='dask' gives the long form only (a dask DataFrame has no (host, trace, time) "
                             "row index for the wide form)",
                             "Use form='long' with engine='dask', then pivot what you need after a groupby.")
        return load_dask(path, readers=readers, entities=entities, fields=fields, start=start, end=end, rates=rates,
                         split=split)
    form = "wide" if form is None else form
    if form not in FORMS:
        raise UsageError(f"form={form!r} is not one of {', '.join(FORMS)}", "Use form='wide' or form='long'.")
    if resample is not None and form != "wide":
        raise UsageError("resample applies to the wide form only", "Drop resample=..., or use form='wide'.")
    if align not in _timeline.ALIGNS:
        raise UsageError(f"align={align!r} is not one of {', '.join(_timeline.ALIGNS)}",
                         "Use align='tick' (rows are recorder ticks) or align='exact' (rows are distinct timestamps).")
    items, many = expand(path)
    if not items:
        raise UsageError("no trace to load: the list is empty", "Pass a trace path, a list of them, a directory or a glob.")
    selection = _select.selection(readers, entities, fields)
    parts = []
    for item in items:
        with _select.opened(item) as trace:
            parts.append(_load_trace(trace, selection, start, end, rates, form, resample, align))
    _select.check_matched([p.trace_info["path"] for p in parts], any(p.matched for p in parts), selection)
    if not many:
        return parts[0].frame
    return _many.combine(parts, form)


def expand(path) -> tuple[list, bool]:
    """(traces or paths to load, whether the result gets a host level)."""
    if isinstance(path, Trace):
        return [path], False
    if isinstance(path, (list, tuple, set)):
        return [t for item in path for t in ([item] if isinstance(item, Trace) else _select.trace_paths(item))], True
    return _select.trace_paths(path), _select.is_collection(path)


# -- one trace ------------------------------------------------------------------------------------

def bounds(trace: Trace, start, end) -> tuple[int | None, int | None]:
    """``start``/``end`` as wall-clock ns for this trace (offsets count from its start or last sample)."""
    origin = (trace.manifest.get("start") or {}).get("wall_ns")
    if origin is None:
        origin = trace.time_span()[0]
    last = functools.cache(lambda: trace.time_span()[1])  # read only for an offset back from the end
    return (_select.to_wall_ns(start, origin_ns=origin, what="start", last_ns=last),
            _select.to_wall_ns(end, origin_ns=origin, what="end", last_ns=last))


def select(trace: Trace, selection: dict, start, end) -> list[_Entity]:
    """The selected entities and their rows in [start, end): metadata only, no values."""
    start_ns, end_ns = bounds(trace, start, end)
    return _select_entities(trace, selection, _select.source_caps(trace.manifest), start_ns, end_ns)


def _load_trace(trace: Trace, selection: dict, start, end, rates: bool, form: str, resample, align: str) -> _Part:
    ents = select(trace, selection, start, end)
    grid = _timeline.tick_grid(trace) if (form == "wide" and align == "tick" and ents) else None
    _read_times(ents)
    finish = _start_wide(ents, rates, grid) if form == "wide" else None
    try:
        host = _select.hostname(trace.manifest, fallback=trace.path)
        info = describe_trace(trace, host)
        units, descriptions, counters = metadata(ents, _select.source_caps(trace.manifest), rates)
    except BaseException:
        if finish is not None:  # the decode threads still read the trace: let them end before it closes
            with contextlib.suppress(Exception):
                finish()
        raise
    frame = finish() if finish is not None else _long(ents, rates)
    if resample is not None:
        frame = _resample(frame, resample, raw_counters=not rates, counters=counters)
    aligned = ("tick" if grid is not None else "exact") if form == "wide" else "exact"
    frame.attrs.update({"units": units, "descriptions": descriptions, "counters": counters, "rates": bool(rates),
                        "align": aligned, "traces": [info]})
    return _Part(frame, host, units, descriptions, counters, info, matched=bool(ents), align=aligned)


def describe_trace(trace: Trace, host: str) -> dict:
    """What ``attrs["traces"]`` says about one trace: path, host, format, clean close, identity."""
    stored = identity.has_trace_id(trace.manifest)
    prov = identity.provenance(trace.manifest, None if stored else trace.time_span()[0])
    info = {"path": trace.path, "host": host, "format_version": trace.format_version,
            "closed_cleanly": trace.closed_cleanly}
    info.update({k: v for k, v in prov.items() if k != "host"})
    return info


def metadata(ents: list[_Entity], caps: dict, rates: bool) -> tuple[dict, dict, dict]:
    units, descriptions, counters = {}, {}, {}
    for source in sorted({e.source for e in ents}):
        c = _select.caps_for(caps, source)
        names = {col.field for e in ents if e.source == source for col in e.columns}
        counted = {f for f in names if f in c["counters"]}
        units[source] = {f: u for f, u in c["units"].items() if f in names}
        if rates:
            units[source].update({f: rate_unit(c["units"].get(f)) for f in counted})
        descriptions[source] = {f: d for f, d in c["descriptions"].items() if f in names}
        counters[source] = sorted(counted)
    return units, descriptions, counters


def _select_entities(trace: Trace, selection: dict, caps: dict, start_ns, end_ns) -> list[_Entity]:
    out = []
    wanted_meta = [f for f in (selection["fields"] or []) if f in _LOADABLE_META]
    picked: dict[str, bool] = {}  # source -> selected (a reader pattern names it or its label)
    for source, name in trace.entities():
        chosen = picked.get(source)
        if chosen is None:
            chosen = picked[source] = _select.reader_matches(trace.manifest, source, selection["readers"])
        if not chosen or not _select.matches(name, selection["entities"]):
            continue
        ent = trace.entity(source, name)
        names = ent.fields if selection["fields"] is None else [f for f in ent.fields if _select.matches(
            f, selection["fields"])]
        names = list(names) + wanted_meta
        if not names or not ent.rows:
            continue
        lo, hi = ent.row_range(start_ns, end_ns)
        counters = _select.caps_for(caps, source)["counters"]
        stored = [f for f in names if f not in _TIMES]
        kinds = dict(zip(stored, map(_KIND_OF.__getitem__, text_in(ent, stored, lo, hi))))
        columns = [_Column(source, name, f, kinds.get(f, _NUM), f in counters) for f in names]
        out.append(_Entity(source, name, ent, lo, hi, columns))
    out.sort(key=lambda e: (e.source, _select.natural_key(e.name)))
    return out


_LOADABLE_META = META_COLUMNS
_TIMES = ("_mono_ns", "_wall_ns")  # from the source's time table, not stored columns
_KIND_OF = {NO_TEXT: _NUM, TEXT: _STR, MIXED: _OBJ}  # what text_in says -> the column's kind


def _source_column(e, name: str):
    """The column to decode for ``name``: timestamps come from the source's time table."""
    if name in _TIMES:
        if e.mono is None:
            e.mono, e.wall = e.reader.timestamps(e.lo, e.hi)
        return Prefilled(e.mono if name == "_mono_ns" else e.wall)
    if name in META_COLUMNS:
        return e.reader.meta_column(name)
    return e.reader.field_column(name)


def _read_times(ents: list[_Entity]) -> None:
    """wall_ns and mono_ns of every entity's rows: decode the ``_tidx`` columns, then the rows
    of each source's shared timestamp table that they point at (all on the fast path)."""
    ends = np.cumsum([e.hi - e.lo for e in ents], dtype=np.int64)
    flat = np.empty(int(ends[-1]) if len(ents) else 0, np.int64)
    starts = (ends - [e.hi - e.lo for e in ents]).tolist()
    row = flat[None, :]  # one block row, the entities' rows one after another
    decode_block([BlockJob(e.reader, ["_tidx"], [0], e.lo, e.hi, row, at) for e, at in zip(ents, starts)])
    tidx = np.split(flat, ends[:-1])
    filled = [e for e in ents if e.hi > e.lo]
    at = [a for e, a in zip(ents, starts) if e.hi > e.lo]
    spans: dict[int, list] = {}  # id(source time table) -> [table, first row, end row]
    for e, lo, hi in zip(filled, np.minimum.reduceat(flat, at).tolist() if at else [],
                         np.maximum.reduceat(flat, at).tolist() if at else []):
        span = spans.setdefault(id(e.reader.time), [e.reader.time, lo, hi + 1])
        span[1], span[2] = min(span[1], lo), max(span[2], hi + 1)
    tables, jobs = {}, []
    for key, (time, lo, hi) in spans.items():
        mono, wall = np.empty(hi - lo, np.int64), np.empty(hi - lo, np.int64)
        tables[key] = (lo, mono, wall)
        jobs += [NumericJob(time.mono, lo, hi, mono), NumericJob(time.wall, lo, hi, wall)]
    decode_numeric(jobs)
    last: dict[int, tuple] = {}  # the entities of one source mostly share their rows' instants
    for e, t in zip(ents, tidx):
        key = id(e.reader.time)
        prev = last.get(key)
        if prev is not None and np.array_equal(prev[0], t):
            e.mono, e.wall = prev[1], prev[2]
        elif not len(t):
            e.mono, e.wall = np.zeros(0, np.int64), np.zeros(0, np.int64)
        else:
            lo, mono, wall = tables[key]
            e.mono, e.wall = mono[t - lo], wall[t - lo]
            last[key] = (t, e.mono, e.wall)


def _time_index(wall: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(wall.view("datetime64[ns]"), name="time").tz_localize("UTC")


def _apply_rates(e: _Entity, rows: dict[int, np.ndarray], block: np.ndarray | None = None) -> None:
    """Counters into rates, in place. ``block``: the entity's numeric columns as consecutive rows
    of one array (wide form), so runs of counters are converted as 2-D blocks."""
    counted = [k for k, c in enumerate(e.columns) if c.counter and c.kind == _NUM]
    if block is None:
        for k in counted:
            counter_rate(rows[k], e.mono, out=rows[k])
        return
    position = {k: i for i, k in enumerate(k for k, c in enumerate(e.columns) if c.kind == _NUM)}
    at = [position[k] for k in counted]
    start = 0
    for i in range(1, len(at) + 1):
        if i == len(at) or at[i] != at[i - 1] + 1:
            if start < i:
                counter_rates(block[at[start]:at[i - 1] + 1], e.mono)
            start = i


def _text_values(e: _Entity, k: int) -> np.ndarray:
    col = e.reader.read(e.columns[k].field, e.lo, e.hi)
    if e.columns[k].kind == _OBJ:
        return np.array(col.to_list(), dtype=object)
    if col.strs is None:
        return np.full(len(col), None, dtype=object)
    return np.where(col.kinds == STR, col.strs, None).astype(object)


def read_series(trace: Trace, *, readers=None, entities=None, fields=None, start_ns: int | None = None,
                end_ns: int | None = None, rates: bool = False) -> list[_Entity]:
    """The selected entities decoded on their own timelines (no alignment): ``.wall``,
    ``.mono`` and ``.get(field)``. The building block of the offline monitor, snapshots and summaries."""
    selection = _select.selection(readers, entities, fields)
    ents = _select_entities(trace, selection, _select.source_caps(trace.manifest), start_ns, end_ns)
    _read_times(ents)
    jobs = []
    for e in ents:
        for k, c in enumerate(e.columns):
            if c.kind == _NUM:
                e.values[k] = np.empty(e.hi - e.lo, np.float64)
                jobs.append(NumericJob(_source_column(e, c.field), e.lo, e.hi, e.values[k]))
            else:
                e.text[k] = _text_values(e, k)
    decode_numeric(jobs)
    if rates:
        for e in ents:
            _apply_rates(e, e.values)
    return ents


# -- wide -----------------------------------------------------------------------------------------

def _start_wide(ents: list[_Entity], rates: bool, grid):
    """Plan the wide frame and start decoding its numbers on the decode threads; returns the
    function that finishes the frame (what the caller does meanwhile overlaps the decoding)."""
    if not ents:
        return lambda: pd.DataFrame(index=_time_index(np.zeros(0, np.int64)),
                                    columns=pd.MultiIndex.from_tuples([], names=_LEVELS), dtype=np.float64)
    # one (keys, times) per timeline; entities point at theirs
    timelines: list[tuple[np.ndarray, np.ndarray]] = []
    owner: dict[int, int] = {}
    firsts: list[_Entity] = []
    for e in ents:
        t = next((i for i, f in enumerate(firsts) if f.wall is e.wall or (
            len(f.wall) == len(e.wall) and np.array_equal(f.wall, e.wall))), None)
        if t is None:
            t = len(firsts)
            firsts.append(e)
            timelines.append(_timeline.row_keys(e.wall, e.mono, grid))
        owner[id(e)] = t
    rows, positions = _timeline.union(timelines)
    n = len(rows.keys)
    num_cols = [(e, k) for e in ents for k, c in enumerate(e.columns) if c.kind == _NUM]
    block = empty_block((len(num_cols), n))
    jobs, scatter, parts_of = [], [], []
    j = 0
    for e in ents:
        ks = [k for k, c in enumerate(e.columns) if c.kind == _NUM]
        pos = positions[owner[id(e)]]
        if pos is None:
            out, first = block, j
        else:
            out, first = np.empty((len(ks), e.hi - e.lo), np.float64), 0
            scatter.append((j, out, pos))
        part = out[first:first + len(ks)]
        e.values = {k: part[i] for i, k in enumerate(ks)}
        parts_of.append(part)
        names, block_rows = [], []
        for i, k in enumerate(ks):
            name = e.columns[k].field
            if name in _TIMES:
                part[i] = e.mono if name == "_mono_ns" else e.wall
            else:
                names.append(name)
                block_rows.append(first + i)
        jobs.append(BlockJob(e.reader, names, block_rows, e.lo, e.hi, out))
        j += len(ks)
    decoded = decode_block(jobs, wait=False)
    return functools.partial(_finish_wide, ents, rates, rows, positions, owner, block, num_cols, parts_of, scatter,
                             decoded)


def _finish_wide(ents, rates, rows, positions, owner, block, num_cols, parts_of, scatter, decoded) -> pd.DataFrame:
    n = len(rows.keys)
    times = _time_index(rows.times)
    num_index = _column_index([(e.source, e.name, e.columns[k].field) for e, k in num_cols])
    decoded()
    if rates:
        for e, part in zip(ents, parts_of):
            _apply_rates(e, e.values, part)
    for j0, temp, pos in scatter:
        part = block[j0:j0 + len(temp)]
        part.fill(np.nan)
        part[:, pos] = temp
    frame = pd.DataFrame(block.T, index=times, columns=num_index, copy=False)
    text_cols = [(e, k) for e in ents for k, c in enumerate(e.columns) if c.kind != _NUM]
    if not text_cols:
        return frame
    data = {}
    for e, k in text_cols:
        values = _text_values(e, k)
        pos = positions[owner[id(e)]]
        if pos is not None:
            full = np.full(n, None, dtype=object)
            full[pos] = values
            values = full
        data[(e.source, e.name, e.columns[k].field)] = values
    text = _with_text(lambda **kw: pd.DataFrame(data, index=times, **kw))
    text.columns = _column_index(list(data))
    order = _column_index([(e.source, e.name, c.field) for e in ents for c in e.columns])
    return pd.concat([frame, text], axis=1, sort=False).reindex(columns=order)


def _column_index(keys: list[tuple[str, str, str]]) -> pd.MultiIndex:
    """``pd.MultiIndex.from_tuples(keys, names=_LEVELS)``, built from its levels and codes: from
    tuples, pandas factorizes each level through arrays of objects, a tenth of a 1 h load."""
    if not keys:
        return pd.MultiIndex.from_tuples([], names=_LEVELS)
    levels, codes = [], []
    for values in zip(*keys):
        distinct = sorted(set(values))
        code = {v: i for i, v in enumerate(distinct)}
        levels.append(pd.Index(distinct))
        codes.append(np.fromiter(map(code.__getitem__, values), np.int32, len(values)))
    return pd.MultiIndex(levels=levels, codes=codes, names=_LEVELS, verify_integrity=False)


def _resample(frame: pd.DataFrame, freq: str, *, raw_counters: bool, counters: dict) -> pd.DataFrame:
    try:
        keys = frame.index.floor(freq)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"resample={freq!r} is not a pandas frequency ({exc})", "Use e.g. resample='1s' or '10s'.") from None
    counted = {(s, f) for s, fs in counters.items() for f in fs}
    last = [c for c in frame.columns
            if frame[c].dtype == object or (raw_counters and (c[-3], c[-1]) in counted)]
    lasts = set(last)
    mean = [c for c in frame.columns if c not in lasts]
    grouped = frame.groupby(keys)
    pieces = []
    if mean:
        pieces.append(grouped[mean].mean())
    if last:
        pieces.append(grouped[last].last())
    out = pd.concat(pieces, axis=1, sort=False).reindex(columns=frame.columns) if len(pieces) > 1 else pieces[0]
    out.index.name = "time"
    return out


# -- long -----------------------------------------------------------------------------------------

def _long(ents: list[_Entity], rates: bool) -> pd.DataFrame:
    pieces = []  # (time, value, none, text or None, source, entity, field)
    jobs = []
    for e in ents:
        for k, c in enumerate(e.columns):
            if c.kind == _NUM:
                out = np.empty(e.hi - e.lo, np.float64)
                e.values[k] = out
                jobs.append(NumericJob(_source_column(e, c.field), e.lo, e.hi, out))
    decode_numeric(jobs)
    job_kinds = {id(job.out): job.kinds for job in jobs}
    has_text = any(c.kind != _NUM for e in ents for c in e.columns)
    for e in ents:
        if rates:
            _apply_rates(e, e.values)
        for k, c in enumerate(e.columns):
            if c.kind == _NUM:
                values = e.values[k]
                kinds = job_kinds.get(id(values))
                text = None
            else:
                column = e.reader.read(c.field, e.lo, e.hi)
                kinds = column.kinds
                values, _ = column.as_float()
                text = _text_values(e, k)
            if kinds is None or isinstance(kinds, (int, np.integer)):
                kind = ABSENT if kinds is None else int(kinds)
                if kind == ABSENT:
                    continue
                present = slice(None)
                none = np.full(len(values), kind == NONE)
            else:
                present = kinds != ABSENT
                none = (kinds == NONE)[present]
            pieces.append((e.wall[present], values[present], none,
                           text[present] if text is not None else None, c.source, c.entity, c.field))
    return _long_frame(pieces, has_text)


def _with_text(build):
    """``build()``, or ``build(dtype=object)`` when the text holds a lone surrogate (an undecodable
    command line that psutil kept with surrogateescape): pandas' string dtype cannot encode it, a
    Python str can, so the value comes back exactly as recorded."""
    try:
        return build()
    except UnicodeEncodeError:
        return build(dtype=object)


def _long_frame(pieces: list, has_text: bool) -> pd.DataFrame:
    if not pieces:
        cols = {"time": _time_index(np.zeros(0, np.int64)), "source": pd.Categorical([]),
                "entity": pd.Categorical([]), "field": pd.Categorical([]), "value": np.zeros(0), "none": np.zeros(0, bool)}
        if has_text:
            cols["text"] = np.zeros(0, object)
        return pd.DataFrame(cols)
    sizes = np.array([len(p[0]) for p in pieces])
    time = np.concatenate([p[0] for p in pieces])
    order = np.argsort(time, kind="stable")
    data = {"time": _time_index(time[order])}
    for pos, name in ((4, "source"), (5, "entity"), (6, "field")):
        cats = _select.iter_unique(p[pos] for p in pieces)
        lookup = {c: i for i, c in enumerate(cats)}
        codes = np.repeat(np.array([lookup[p[pos]] for p in pieces], np.int32), sizes)[order]
        data[name] = pd.Categorical.from_codes(codes, categories=cats)
    data["value"] = np.concatenate([p[1] for p in pieces])[order]
    data["none"] = np.concatenate([p[2] for p in pieces])[order]
    if has_text:
        data["text"] = np.concatenate([p[3] if p[3] is not None else np.full(len(p[0]), None, object)
                                       for p in pieces])[order]
    frame = _with_text(lambda **kw: pd.DataFrame(
        {k: pd.Series(v, **kw) if k == "text" else v for k, v in data.items()}))
    frame.index = pd.RangeIndex(len(frame))
    return frame


# -- many traces: telemrec.analysis._many ---------------------------------------------------------

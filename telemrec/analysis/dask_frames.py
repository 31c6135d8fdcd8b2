"""``load(..., engine="dask")``: thousands of traces as one lazy dask DataFrame.

The frame is the long form of ``load(paths, form="long")`` (columns ``time``, ``host``,
``trace``, ``source``, ``entity``, ``field``, ``value``, ``none`` [, ``text``]), one partition
per trace, or with ``split="6h"`` one per 6 hours of each trace (a day-long trace of every
field is ~70 million values). With ``rates=True`` a later time range reads a minute (or ten
intervals) before its start, so its first rates have the value before them, as in pandas. Building it reads each trace's metadata only: which entities and fields the
selection holds and how many values each has (the same look-up ``load`` starts with), as one
dask computation, so on a ``distributed`` cluster the workers open the traces (which must be
on a filesystem they share). Values are read when a partition is computed, on the worker that
computes it, one trace at a time: a worker's memory is bounded by the traces it holds at once,
not by the set.

What makes it equal to the pandas frame once computed: the categoricals are fixed from the
metadata (hosts and names sorted, traces in load order), each partition's index continues the
previous one's (the pandas frame's ``RangeIndex``; the divisions are known), and every
partition carries the combined ``attrs`` (``DataFrame.attrs`` survives ``compute()`` only
when all partitions agree). The attrs travel once per worker, as one shared graph key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from telemrec.analysis import _many, _select, frames
from telemrec.errors import MissingDependencyError, TraceError, UsageError
from telemrec.identity import trace_keys
from telemrec.trace._codec import ABSENT
from telemrec.trace.v1 import META_COLUMNS

__all__ = ["TracePlan", "load_dask", "plan_trace", "require_dask"]


def require_dask():
    """``dask.dataframe``, or a MissingDependencyError naming the extra."""
    try:
        import dask
        import dask.dataframe as dd
    except ImportError as exc:
        raise MissingDependencyError(f"engine='dask' needs dask[dataframe], which is not installed ({exc})",
                                     extra="dask") from None
    return dask, dd


@dataclass
class TracePlan:
    """One trace's share of the frame, from its metadata: what ``_many`` needs of a part."""

    path: str
    host: str
    trace_info: dict
    pieces: list  # (first ns or None, end ns or None, values): one partition each
    text: bool
    names: dict
    units: dict = field(default_factory=dict)
    descriptions: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    matched: bool = True
    align: str = "exact"
    interval: float = 1.0


def _present(ent, column, lo: int, hi: int) -> int:
    """How many rows of a column hold a value or an N/A (the long form's rows for it)."""
    if column.field in ("_mono_ns", "_wall_ns"):
        return hi - lo
    col = ent.meta_column(column.field) if column.field in META_COLUMNS else ent.field_column(column.field)
    if col.uniform_kind is not None:
        return 0 if col.uniform_kind == ABSENT else hi - lo
    return int(np.count_nonzero(col.kinds(lo, hi) != ABSENT))


def _values(ents) -> int:
    return sum(_present(e.reader, c, e.lo, e.hi) for e in ents for c in e.columns)


def plan_trace(path: str, selection: dict, start, end, rates: bool, split_ns: int | None = None) -> TracePlan:
    """Open one trace and size its long frame (per ``split_ns`` of time) without decoding a value."""
    with _select.opened(path) as trace:
        caps = _select.source_caps(trace.manifest)
        start_ns, end_ns = frames.bounds(trace, start, end)
        ents = frames._select_entities(trace, selection, caps, start_ns, end_ns)
        pieces = [(start_ns, end_ns, _values(ents))]
        if split_ns is not None and ents:
            first, last = trace.time_span()
            lo = first if start_ns is None else max(start_ns, first)
            hi = last + 1 if end_ns is None else min(end_ns, last + 1)
            pieces = []
            for a in range(lo, hi, split_ns):
                b = min(a + split_ns, hi)
                pieces.append((a, b, _values(frames._select_entities(trace, selection, caps, a, b))))
        host = _select.hostname(trace.manifest, fallback=trace.path)
        units, descriptions, counters = frames.metadata(ents, caps, rates)
        text = any(c.kind != frames._NUM for e in ents for c in e.columns)
        names = {"source": sorted({e.source for e in ents}), "entity": sorted({e.name for e in ents}),
                 "field": sorted({c.field for e in ents for c in e.columns})}
        return TracePlan(trace.path, host, frames.describe_trace(trace, host), pieces, text, names, units,
                         descriptions, counters, matched=bool(ents),
                         interval=float(trace.manifest.get("interval_seconds") or 1.0))


@dataclass
class _Shared:
    """What every partition needs: one graph key, sent once to each worker."""

    selection: dict
    start: object
    end: object
    rates: bool
    dtypes: dict
    text: bool
    attrs: dict


def _rate_margin_ns(plan: TracePlan) -> int:
    """How far before a later time range a partition reads so that the rate of its first value has
    the value before it: a minute, or ten sampling intervals if that is longer."""
    return int(max(60.0, 10 * plan.interval) * 1e9)


def _partition(plan: TracePlan, piece: int, key: str, offset: int, shared: _Shared) -> pd.DataFrame:
    lo, hi, rows = plan.pieces[piece]
    if len(plan.pieces) == 1:
        lo, hi, read_from = shared.start, shared.end, None
    else:
        read_from = lo - _rate_margin_ns(plan) if shared.rates and piece > 0 else None
    with _select.opened(plan.path) as trace:
        part = frames._load_trace(trace, shared.selection, lo if read_from is None else read_from, hi, shared.rates,
                                  "long", None, "exact")
    frame = part.frame
    if read_from is not None:
        frame = frame[frame["time"] >= pd.Timestamp(lo, unit="ns", tz="UTC")].reset_index(drop=True)
    out = _many.keyed_long(frame, plan.host, key, shared.dtypes, shared.text)
    if len(out) != rows:
        raise TraceError(f"{plan.path} changed while it was loaded: {len(out)} values, {rows} when it was "
                         "planned (a recording still running?)", "Load it again once the recording has stopped.",
                         path=plan.path)
    out.index = pd.RangeIndex(offset, offset + len(out))
    out.attrs.update(shared.attrs)
    return out


def _meta(shared: _Shared) -> pd.DataFrame:
    out = _many.keyed_long(frames._long_frame([], shared.text), "", "", _with_blank(shared.dtypes), shared.text)
    out = out.astype({name: shared.dtypes[name] for name in ("host", "trace", *_many.NAME_COLUMNS)})
    out.index = pd.RangeIndex(0)
    out.attrs.update(shared.attrs)
    return out


def _with_blank(dtypes: dict) -> dict:
    """keyed_long looks the host and trace up even for no rows: give it a category to find."""
    return {**dtypes, "host": pd.CategoricalDtype([""]), "trace": pd.CategoricalDtype([""])}


def _split_ns(split) -> int | None:
    if split is None:
        return None
    try:
        value = int(pd.Timedelta(split).value)
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        raise UsageError(f"split={split!r} is not a positive time span", "Use e.g. split='6h' or split=pd.Timedelta('1h').")
    return value


def load_dask(path, *, readers=None, entities=None, fields=None, start=None, end=None, rates: bool = False,
              split=None):
    """The lazy long frame of ``path`` (a trace, list, directory or glob); see the module docstring.
    ``split``: a partition per this much time of each trace instead of one per trace."""
    dask, dd = require_dask()
    split_ns = _split_ns(split)
    items, _ = frames.expand(path)
    items = [_select.trace_paths(item)[0] if not isinstance(item, str) else item for item in items]
    selection = _select.selection(readers, entities, fields)
    plans = list(dask.compute(*[dask.delayed(plan_trace, pure=True)(p, selection, start, end, rates, split_ns)
                                for p in items]))
    _select.check_matched([p.path for p in plans], any(p.matched for p in plans), selection)
    keys = trace_keys(p.trace_info["trace_id"] for p in plans)
    names = {n: [v for p in plans for v in p.names[n]] for n in _many.NAME_COLUMNS}
    dtypes = _many.long_dtypes([p.host for p in plans], keys, names)
    shared = _Shared(selection, start, end, rates, dtypes, any(p.text for p in plans),
                     _many.merged_attrs(plans, rates, "long", keys))
    meta = _meta(shared)
    shared_key = dask.delayed(shared, pure=True, traverse=False)
    parts, divisions, offset = [], [], 0
    for plan, key in zip(plans, keys):
        for piece, (_, _, rows) in enumerate(plan.pieces):
            if rows == 0:
                continue
            parts.append(dask.delayed(_partition, pure=True)(plan, piece, key, offset, shared_key))
            divisions.append(offset)
            offset += rows
    # dask would turn text columns into pyarrow strings: keep pandas' own dtypes
    with dask.config.set({"dataframe.convert-string": False}):
        if not parts:
            return dd.from_pandas(meta, npartitions=1)
        divisions.append(offset - 1)
        return dd.from_delayed(parts, meta=meta, divisions=tuple(divisions), verify_meta=False)

"""Many traces in one frame, keyed by trace: what ``load([...])`` (pandas) and
``load(..., engine="dask")`` share.

Every loaded file is its own trace: its rows are never merged with, or dropped for, another's
(two runs on one node, a requeued job, a byte copy of a file). The key of a trace is its
``trace_id`` (``telemrec.identity``), with ``#2``, ``#3`` for further files with the same id.
Wide form: rows indexed by (``host``, ``trace``, ``time``); long form: ``host`` and ``trace``
columns after ``time``, rows grouped by trace in load order and sorted by time within each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from telemrec.identity import trace_keys

ROW_LEVELS = ["host", "trace", "time"]
NAME_COLUMNS = ("source", "entity", "field")


def merged_attrs(parts: list, rates: bool, form: str, keys: list[str]) -> dict:
    """The attrs of the combined frame: units, descriptions and counters of every trace merged,
    and each trace's ``traces`` entry with its key."""
    units: dict = {}
    descriptions: dict = {}
    counters: dict = {}
    for p in parts:
        for table, src in ((units, p.units), (descriptions, p.descriptions)):
            for source, values in src.items():
                table.setdefault(source, {}).update(values)
        for source, values in p.counters.items():
            counters[source] = sorted(set(counters.get(source, [])) | set(values))
    traces = [{**p.trace_info, "trace": key} for p, key in zip(parts, keys)]
    attrs = {"units": units, "descriptions": descriptions, "counters": counters, "rates": bool(rates),
             "traces": traces}
    if form == "wide":
        aligns = {p.align for p in parts}
        attrs["align"] = aligns.pop() if len(aligns) == 1 else "mixed"
    else:
        attrs["align"] = "exact"
    return attrs


def long_dtypes(hosts, keys, names: dict[str, list[str]]) -> dict[str, pd.CategoricalDtype]:
    """The categoricals of a many-trace long frame: hosts and names sorted, traces in load order."""
    out = {"host": pd.CategoricalDtype(sorted(set(hosts))), "trace": pd.CategoricalDtype(list(keys))}
    for name in NAME_COLUMNS:
        out[name] = pd.CategoricalDtype(sorted(set(names.get(name, ()))))
    return out


def keyed_long(frame: pd.DataFrame, host: str, key: str, dtypes: dict, text: bool) -> pd.DataFrame:
    """One trace's long frame with its ``host`` and ``trace`` columns and the shared categoricals."""
    n = len(frame)
    data = {"time": frame["time"]}
    for name, value in (("host", host), ("trace", key)):
        code = dtypes[name].categories.get_loc(value)
        data[name] = pd.Categorical.from_codes(np.full(n, code, np.int32), dtype=dtypes[name])
    for name in NAME_COLUMNS:
        column = frame[name]
        data[name] = (column.cat.set_categories(dtypes[name].categories) if isinstance(column.dtype, pd.CategoricalDtype)
                      else column.astype(dtypes[name]))
    data["value"] = frame["value"]
    data["none"] = frame["none"]
    if text:
        # object, as pandas would not infer the same dtype for every trace's texts
        data["text"] = (frame["text"].astype(object) if "text" in frame
                        else pd.Series([None] * n, dtype=object, index=frame.index))
    out = pd.DataFrame(data, index=frame.index)
    return out


def combine(parts: list, form: str) -> pd.DataFrame:
    keys = trace_keys(p.trace_info["trace_id"] for p in parts)
    attrs = merged_attrs(parts, bool(parts[0].frame.attrs.get("rates")), form, keys)
    if form == "long":
        names = {name: [c for p in parts for c in p.frame[name].cat.categories] for name in NAME_COLUMNS}
        dtypes = long_dtypes([p.host for p in parts], keys, names)
        text = any("text" in p.frame for p in parts)
        out = pd.concat([keyed_long(p.frame, p.host, key, dtypes, text) for p, key in zip(parts, keys)],
                        ignore_index=True)
        out.attrs.update(attrs)
        return out
    frames = []
    for p, key in zip(parts, keys):
        f = p.frame.copy(deep=False)
        f.index = pd.MultiIndex.from_arrays([pd.Index([p.host] * len(f), dtype=object),
                                             pd.Index([key] * len(f), dtype=object), f.index], names=ROW_LEVELS)
        frames.append(f)
    out = frames[0] if len(frames) == 1 else pd.concat(frames, axis=0, sort=False)
    out.attrs.clear()
    out.attrs.update(attrs)
    return out

"""``export(..., format="hdf5")``: the wide frame as plain HDF5 datasets, nothing to decode.

For people without telemrec (MATLAB's ``h5read``, HDFView, h5py, Slurm's sh5util users). One trace:
``/time`` (float64 seconds since 1970-01-01 UTC, an HDF5 dimension scale), ``/time_ns`` (int64,
exact) and one dataset per field at ``/<source>/<entity>/<field>``. Several traces: the same
layout under ``/<host>/<trace>/`` for each, with that trace's own time axis and only the fields it
recorded. Datasets are float64 (NaN where the field has no sample), int64 (every sample a whole
number) or UTF-8 text, attached to their ``time``, with attributes ``units``, ``description``,
``counter`` and the original ``source``, ``entity`` and ``field`` names ("/" in a name is written
%2F, "%" as %25).
"""

from __future__ import annotations

import datetime as dt
import json

import h5py
import numpy as np
import pandas as pd

from telemrec._version import __version__

__all__ = ["write_hdf5"]


def _name(text: str) -> str:
    """An HDF5 link name for a host, trace, source, entity or field name (one level: "/" escaped)."""
    return str(text).replace("%", "%25").replace("/", "%2F") or "%"


def _column_data(values: pd.Series):
    if values.dtype.kind in "fiub":
        data = values.to_numpy(dtype=np.float64)
        finite = data[np.isfinite(data)]
        if len(finite) == len(data) and len(data) and np.all(finite == np.round(finite)) \
                and np.all(np.abs(finite) < 2**63):
            data = data.astype(np.int64)
        return data, ({"compression": "gzip", "shuffle": True} if len(data) > 1 else {})
    text = [v if isinstance(v, str) else "" for v in values.to_numpy(dtype=object)]
    return text, {"dtype": h5py.string_dtype()}


def _write_group(group: h5py.Group, frame: pd.DataFrame, meta: dict, *, only_recorded: bool) -> None:
    """``time``, ``time_ns`` and a dataset per column of ``frame`` (indexed by time) in ``group``."""
    time_ns = np.asarray(frame.index.as_unit("ns").asi8, dtype=np.int64)
    units, descriptions = meta.get("units") or {}, meta.get("descriptions") or {}
    counters = {source: set(names) for source, names in (meta.get("counters") or {}).items()}
    seconds = group.create_dataset("time", data=time_ns / 1e9)
    seconds.attrs["units"] = "seconds since 1970-01-01 00:00:00 UTC"
    seconds.attrs["long_name"] = "sample time (UTC wall clock)"
    seconds.make_scale("time")
    exact = group.create_dataset("time_ns", data=time_ns)
    exact.attrs["units"] = "nanoseconds since 1970-01-01 00:00:00 UTC"
    for column in frame.columns:
        values = frame[column]
        if only_recorded and not values.notna().any():
            continue  # a field of another trace's entity
        source, entity, field = column
        data, opts = _column_data(values)
        ds = group.create_dataset("/".join(_name(p) for p in column), data=data, **opts)
        ds.attrs["units"] = str((units.get(source) or {}).get(field) or "")
        ds.attrs["description"] = str((descriptions.get(source) or {}).get(field) or "")
        ds.attrs["counter"] = field in counters.get(source, ())
        ds.attrs["source"], ds.attrs["entity"], ds.attrs["field"] = str(source), str(entity), str(field)
        ds.dims[0].attach_scale(seconds)


def write_hdf5(frame: pd.DataFrame, meta: dict, target: str) -> None:
    """Write ``load()``'s wide ``frame`` (one trace, or several indexed by host, trace, time) to ``target``."""
    several = isinstance(frame.index, pd.MultiIndex)
    with h5py.File(target, "w", libver="earliest") as h5:
        h5.attrs["title"] = "telemetry exported by telemrec"
        h5.attrs["description"] = (
            "Plain export of telemrec trace(s): time, time_ns, then one dataset per field at "
            "<source>/<entity>/<field>, a value per time" + (", under /<host>/<trace>/ for each trace."
                                                             if several else "."))
        h5.attrs["exported_by"] = f"telemrec {__version__}"
        h5.attrs["exported_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        h5.attrs["traces"] = json.dumps(meta.get("traces") or [], default=str)
        h5.attrs["rates"] = bool(meta.get("rates"))
        h5.attrs["rows"] = ("a row per recorder tick" if meta.get("align") == "tick" else "a row per timestamp")
        if not several:
            _write_group(h5, frame, meta, only_recorded=False)
            return
        about = {str(t.get("trace")): t for t in meta.get("traces") or []}
        for (host, trace), part in frame.groupby(level=["host", "trace"], sort=False):
            group = h5.create_group(f"{_name(host)}/{_name(trace)}")
            group.attrs["host"], group.attrs["trace"] = str(host), str(trace)
            info = about.get(str(trace)) or {}
            group.attrs["path"] = str(info.get("path") or "")
            _write_group(group, part.droplevel(["host", "trace"]), meta, only_recorded=True)

"""``export(path, format, out)``: traces to CSV, Parquet, plain HDF5, a JUmPER session, a ``dcgmi dmon``
capture or OpenMetrics (``telemrec export``).

CSV and Parquet hold the frame ``load()`` returns. Wide form: a ``time`` column
(ISO 8601, UTC; after ``host`` and ``trace`` when several traces are exported)
and one column per ``source/entity/field``. Long form: ``load(form="long")``'s columns.
Units, descriptions and counters go to ``OUT.meta.json`` next to a CSV, and into
the Parquet file's metadata (pandas keeps ``DataFrame.attrs`` there). Parquet
needs pyarrow (``pip install 'telemrec[parquet]'``). ``dmon`` and ``openmetrics`` are written by
``telemrec.emulate`` (docs/replay/dcgmi.md, docs/replay/openmetrics.md).

HDF5 (``format="hdf5"``) is for people without telemrec (MATLAB's ``h5read``, HDFView, h5py,
Slurm's sh5util users): the wide frame as plain datasets, explained by attributes, nothing to
decode. ``/time`` (float64 seconds since 1970-01-01 UTC, an HDF5 dimension scale) and
``/time_ns`` (int64, exact); one dataset per field at ``/<source>/<entity>/<field>`` (with
``/<host>/`` first for several traces), float64 (NaN where the field has no sample), int64
(every sample a whole number) or UTF-8 text, attached to ``/time``, with attributes ``units``,
``description``, ``counter`` and the original ``source``, ``entity`` and ``field`` names ("/"
in a name is written %2F, "%" as %25).
"""

from __future__ import annotations

import json
import os
import sys

import pandas as pd

from telemrec.analysis.frames import load
from telemrec.errors import ReaderUnavailableError, TraceWriteError, UsageError

__all__ = ["FORMATS", "export", "flat_columns"]

FORMATS = ("csv", "parquet", "hdf5", "jumper", "dmon", "openmetrics")
_EMULATED = {"dmon": ("telemrec.emulate.dcgmi", "export_dmon"),
             "openmetrics": ("telemrec.emulate.openmetrics", "export_openmetrics")}


def flat_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The wide frame with ``source/entity/field`` column names and ``time`` as a column."""
    out = frame.copy(deep=False)
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = ["/".join(map(str, c)) for c in out.columns]
    out = out.reset_index()
    return out


def _meta(frame: pd.DataFrame) -> dict:
    return {key: frame.attrs.get(key) for key in ("units", "descriptions", "counters", "rates", "align", "traces")}


def _to_parquet(table: pd.DataFrame, meta: dict, target) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ReaderUnavailableError("Parquet export needs pyarrow, which is not installed",
                                     "pip install 'telemrec[parquet]'") from None
    table.attrs = {"telemrec": json.dumps(meta, default=str)}
    table.to_parquet(target, index=False, compression="zstd")


def _to_stdout(table: pd.DataFrame, format: str, meta: dict) -> None:
    """``out="-"``: the CSV (without its .meta.json) or the Parquet bytes on standard output."""
    if format == "csv":
        table.to_csv(sys.stdout, index=False)
        sys.stdout.flush()
        return
    import io

    buf = io.BytesIO()
    _to_parquet(table, meta, buf)
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()


def _export_emulated(path, format: str, out: str, form: str, load_args: dict) -> str:
    """One trace as the text a tool would have written (``dmon``) or OpenMetrics, selection applied."""
    import importlib

    if out == "-" or isinstance(path, (list, tuple)) or form != "wide":
        raise UsageError(f"the {format} format takes one trace and writes a file (-o FILE); --form does not apply",
                         "Export one trace at a time, e.g. telemrec export run.h5 --format "
                         f"{format} -o run.{'txt' if format == 'dmon' else 'om'}.")
    ignored = [k for k in ("rates", "resample") if load_args.get(k)]
    if ignored or load_args.get("align") not in (None, "tick"):
        raise UsageError(f"--{(ignored or ['align'])[0]} does not apply to the {format} format",
                         "It writes the recorded values at their own times; drop the option.")
    module, function = _EMULATED[format]
    getattr(importlib.import_module(module), function)(
        path, out, sources=load_args.get("readers"), entities=load_args.get("entities"),
        fields=load_args.get("fields"), start=load_args.get("start"), end=load_args.get("end"))
    return out


def _name(text: str) -> str:
    """An HDF5 link name for a source, entity or field name (one level: "/" escaped)."""
    return str(text).replace("%", "%25").replace("/", "%2F") or "%"


def _to_hdf5(frame: pd.DataFrame, meta: dict, target: str) -> None:
    import datetime as dt

    import h5py
    import numpy as np

    from telemrec._version import __version__

    wall = frame.index.get_level_values(-1) if isinstance(frame.index, pd.MultiIndex) else frame.index
    time_ns = np.asarray(wall.as_unit("ns").asi8, dtype=np.int64)
    units, descriptions = meta.get("units") or {}, meta.get("descriptions") or {}
    counters = {source: set(names) for source, names in (meta.get("counters") or {}).items()}
    with h5py.File(target, "w", libver="earliest") as h5:
        h5.attrs["title"] = "telemetry exported by telemrec"
        h5.attrs["description"] = ("Plain export of telemrec trace(s): /time, then one dataset per field at "
                                   "/<source>/<entity>/<field> (/<host>/... for several traces), a value per time.")
        h5.attrs["exported_by"] = f"telemrec {__version__}"
        h5.attrs["exported_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        h5.attrs["traces"] = json.dumps(meta.get("traces") or [], default=str)
        h5.attrs["rates"] = bool(meta.get("rates"))
        h5.attrs["rows"] = ("a row per recorder tick" if meta.get("align") == "tick" else "a row per timestamp")
        seconds = h5.create_dataset("time", data=time_ns / 1e9)
        seconds.attrs["units"] = "seconds since 1970-01-01 00:00:00 UTC"
        seconds.attrs["long_name"] = "sample time (UTC wall clock)"
        seconds.make_scale("time")
        exact = h5.create_dataset("time_ns", data=time_ns)
        exact.attrs["units"] = "nanoseconds since 1970-01-01 00:00:00 UTC"
        for column in frame.columns:
            parts = column if isinstance(column, tuple) else (column,)
            source, entity, field = parts[-3:]
            values = frame[column]
            if values.dtype.kind in "fiub":
                data = values.to_numpy(dtype=np.float64)
                finite = data[np.isfinite(data)]
                if len(finite) == len(data) and len(data) and np.all(finite == np.round(finite)) \
                        and np.all(np.abs(finite) < 2**63):
                    data = data.astype(np.int64)
                opts = {"compression": "gzip", "shuffle": True} if len(data) > 1 else {}
                ds = h5.create_dataset("/".join(_name(p) for p in parts), data=data, **opts)
            else:
                text = [v if isinstance(v, str) else "" for v in values.to_numpy(dtype=object)]
                ds = h5.create_dataset("/".join(_name(p) for p in parts), data=text, dtype=h5py.string_dtype())
            ds.attrs["units"] = str((units.get(source) or {}).get(field) or "")
            ds.attrs["description"] = str((descriptions.get(source) or {}).get(field) or "")
            ds.attrs["counter"] = field in counters.get(source, ())
            ds.attrs["source"], ds.attrs["entity"], ds.attrs["field"] = str(source), str(entity), str(field)
            if len(parts) == 4:
                ds.attrs["host"] = str(parts[0])
            ds.dims[0].attach_scale(seconds)


def export(path, format: str, out: str | os.PathLike, *, form: str = "wide", **load_args) -> str:
    """Write trace(s) ``path`` to ``out`` as ``format`` (csv, parquet, jumper, hdf5); return ``out``.
    ``out="-"`` writes CSV or Parquet to standard output.

    ``load_args`` (readers, entities, fields, start, end, rates, resample, align) select
    what goes into CSV and Parquet; a JUmPER session always holds whole levels.
    """
    out = os.fspath(out)
    if format not in FORMATS:
        raise UsageError(f"unknown export format {format!r}", f"Choose one of {', '.join(FORMATS)}.")
    if format == "jumper":
        if out == "-":
            raise UsageError("a JUmPER session is a directory or a .zip, not a stream", "Give -o DIR or -o FILE.zip.")
        if any(v is not None for k, v in load_args.items() if k not in ("rates", "align")) or form != "wide":
            raise UsageError("a JUmPER session holds whole levels; selections and --form do not apply",
                             "Drop the selection options, or export csv/parquet instead.")
        from telemrec.analysis.jumper import export_jumper

        return export_jumper(path, out)
    if format in _EMULATED:
        return _export_emulated(path, format, out, form, load_args)
    if format == "hdf5" and (out == "-" or form != "wide"):
        raise UsageError("an HDF5 export is a file of the wide form", "Give -o FILE.h5 and leave --form wide.")
    load_args = {k: v for k, v in load_args.items() if v is not None}
    frame = load(path, form=form, **load_args)
    table = flat_columns(frame) if form == "wide" else frame
    meta = _meta(frame)
    if out == "-":
        _to_stdout(table, format, meta)
        return out
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        if format == "csv":
            table.to_csv(tmp, index=False)
        elif format == "hdf5":
            _to_hdf5(frame, meta, tmp)
        else:
            _to_parquet(table, meta, tmp)
        os.replace(tmp, out)
        if format == "csv":  # written only once the data is in place, so a failure leaves nothing behind
            with open(f"{out}.meta.json", "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=2, default=str)
    except OSError as exc:
        raise TraceWriteError(f"cannot write {out}: {exc.strerror or exc}",
                              "Check that the output directory exists and is writable, and that the disk is not full.",
                              path=out) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out

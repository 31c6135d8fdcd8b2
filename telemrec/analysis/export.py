"""``export(path, format, out)``: traces to CSV, Parquet, plain HDF5, a JUmPER session, a ``dcgmi dmon``
capture or OpenMetrics (``telemrec export``).

CSV and Parquet hold the frame ``load()`` returns. Wide form: a ``time`` column
(ISO 8601, UTC; after ``host`` and ``trace`` when several traces are exported)
and one column per ``source/entity/field``. Long form: ``load(form="long")``'s columns.
Units, descriptions and counters go to ``OUT.meta.json`` next to a CSV, and into
the Parquet file's metadata (pandas keeps ``DataFrame.attrs`` there). Parquet
needs pyarrow (``pip install 'telemrec[parquet]'``). ``dmon`` and ``openmetrics`` are written by
``telemrec.emulate`` (docs/replay/dcgmi.md, docs/replay/openmetrics.md).

HDF5 (``format="hdf5"``) is the wide frame as plain datasets for people without telemrec
(MATLAB, HDFView, h5py): see ``telemrec.analysis._export_hdf5``.
"""

from __future__ import annotations

import json
import os
import sys

import pandas as pd

from telemrec.analysis.frames import load
from telemrec._atomic import atomic_path
from telemrec.errors import ReaderUnavailableError, UsageError

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
    with atomic_path(out) as tmp:
        if format == "csv":
            table.to_csv(tmp, index=False)
        elif format == "hdf5":
            from telemrec.analysis._export_hdf5 import write_hdf5

            write_hdf5(frame, meta, tmp)
        else:
            _to_parquet(table, meta, tmp)
    if format == "csv":  # written only once the data is in place, so a failure leaves nothing behind
        with atomic_path(f"{out}.meta.json") as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, default=str)
    return out

"""``summarize_traces(paths)``: one summary of many traces (a job's nodes, a campaign's jobs),
per host and overall (``telemrec summary DIR`` or a glob).

It aggregates the long frame of ``load(paths, form="long", rates=True, engine=...)``: with
``engine="dask"`` (the default) the frame is lazy and one partition per trace, so the
traces are read on the dask workers one at a time and only the partial aggregates travel;
``engine="pandas"`` loads everything into this process (the same numbers, for a few traces).

- ``hosts``: per host, source and field (over the host's entities and traces): traces,
  entities, samples (values that are numbers), n/a (the source said N/A), min, mean, max.
  Counters are per-second rates.
- ``overall``: the same per source and field over every host (the mean of all samples).
- ``traces``: per trace: its key, host, Slurm job, requeue count, first and last sample,
  clean close, values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from telemrec.analysis import summary as _one
from telemrec.analysis.frames import ENGINES, load
from telemrec.errors import UsageError

__all__ = ["TracesSummary", "summarize_traces"]

_STATS = ["samples", "n/a", "min", "mean", "max"]


@dataclass
class TracesSummary:
    traces: pd.DataFrame
    hosts: pd.DataFrame
    overall: pd.DataFrame

    def to_dict(self) -> dict:
        def records(frame: pd.DataFrame) -> list[dict]:
            return [{k: _one._jsonable(v) for k, v in row.items()} for row in frame.to_dict("records")]

        return {"traces": records(self.traces), "hosts": records(self.hosts), "overall": records(self.overall)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_text(self, max_rows: int | None = None) -> str:
        t = self.traces
        hosts = t["host"].nunique() if len(t) else 0
        lines = [f"{len(t)} trace{'' if len(t) == 1 else 's'} from {hosts} host{'' if hosts == 1 else 's'}, {int(t['values'].sum()) if len(t) else 0:,} values; "
                 f"{int((~t['closed_cleanly']).sum()) if len(t) else 0} not closed cleanly", ""]
        shown_traces = t.assign(**{c: [None if v is None or pd.isna(v) else v.strftime("%Y-%m-%d %H:%M:%S")
                                        for v in t[c]] for c in ("first", "last")})
        for title, frame in (("traces", shown_traces), ("overall (counters as rates)", self.overall),
                             ("per host (counters as rates)", self.hosts)):
            shown = frame if max_rows is None else frame.head(max_rows)
            lines += [title, _one._table(shown)]
            if len(shown) < len(frame):
                lines.append(f"  ... {len(frame) - len(shown)} more rows (--all shows every row)")
            lines.append("")
        return "\n".join(lines).rstrip()


def summarize_traces(path, *, readers=None, entities=None, fields=None, start=None, end=None,
                     engine: str = "dask") -> TracesSummary:
    """Summarise many traces per host and overall (see the module docstring)."""
    if engine not in ENGINES:
        raise UsageError(f"engine={engine!r} is not one of {', '.join(ENGINES)}", "Use engine='dask' or 'pandas'.")
    frame = load(path, readers=readers, entities=entities, fields=fields, start=start, end=end, rates=True,
                 form="long", engine=engine)
    info = frame.attrs["traces"] if engine == "pandas" else frame._meta.attrs["traces"]
    grouped = frame.groupby(["host", "source", "entity", "field"], observed=True, sort=False)
    stats = grouped.agg({"value": ["count", "sum", "min", "max"], "none": "sum"})  # count: values that are numbers
    spans = frame.groupby("trace", observed=True, sort=False).agg({"time": ["min", "max", "count"]})
    if engine == "dask":
        import dask

        stats, spans = dask.compute(stats, spans)
    return TracesSummary(_traces(info, spans), *_tables(stats))


def _tables(stats: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    stats = stats.copy()
    stats.columns = ["samples", "sum", "min", "max", "n/a"]
    stats = stats.reset_index()
    for name in ("host", "source", "entity", "field"):
        stats[name] = stats[name].astype(str)
    by_host = stats.groupby(["host", "source", "field"], sort=True).agg(
        entities=("entity", "nunique"), samples=("samples", "sum"), na=("n/a", "sum"), sum=("sum", "sum"),
        min=("min", "min"), max=("max", "max")).reset_index()
    overall = by_host.groupby(["source", "field"], sort=True).agg(
        hosts=("host", "nunique"), entities=("entities", "sum"), samples=("samples", "sum"), na=("na", "sum"),
        sum=("sum", "sum"), min=("min", "min"), max=("max", "max")).reset_index()
    out = []
    for table, lead in ((by_host, ["host", "source", "field", "entities"]),
                        (overall, ["source", "field", "hosts", "entities"])):
        table = table.rename(columns={"na": "n/a"})
        table["mean"] = table["sum"] / table["samples"].where(table["samples"] > 0)
        table["samples"] = table["samples"].astype("int64")
        table["n/a"] = table["n/a"].astype("int64")
        out.append(table[lead + _STATS].reset_index(drop=True))
    return out[0], out[1]


def _traces(info: list[dict], spans: pd.DataFrame) -> pd.DataFrame:
    spans = spans.copy()
    spans.columns = ["first", "last", "values"]
    spans.index = spans.index.astype(str)
    rows = []
    for t in info:
        span = spans.loc[t["trace"]] if t["trace"] in spans.index else None
        first = None if span is None else span["first"]
        last = None if span is None else span["last"]
        rows.append({"trace": t["trace"], "host": t["host"], "job_id": t.get("job_id"),
                     "restart_count": t.get("restart_count"), "first": first, "last": last,
                     "duration_s": None if span is None else (last - first).total_seconds(),
                     "closed_cleanly": bool(t["closed_cleanly"]), "values": 0 if span is None else int(span["values"]),
                     "path": t["path"]})
    return pd.DataFrame(rows, columns=["trace", "host", "job_id", "restart_count", "first", "last", "duration_s",
                                       "closed_cleanly", "values", "path"])

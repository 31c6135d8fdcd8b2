"""Benchmark: the reference trace into pandas, against Parquet and CSV of the same frame (issue "format 3").

    python benchmarks/bench_load.py [--hours 1 24] [--cache DIR] [--repeat 5] [--pairs 5] [--compare-v2 H=PATH ...]
                                    [--baseline-python PYTHON]

For each length (the dense GPU node of benchmarks/reference_trace.py, 1 Hz), the trace is
built once through ``TraceWriter`` and cached with its frame written as Parquet (zstd)
and CSV. Timed, in this process, best and median of ``--repeat``:
- ``telemrec.load(trace)`` (the wide frame) and ``pandas.read_parquet`` / ``read_csv`` of
  the same frame; the ratios are the medians of ``--pairs`` back-to-back pairs (this VM's
  speed drifts within minutes);
- one field of one entity for one hour (``load(trace, entities="gpu3", fields=..., start,
  end)``);
- with ``--compare-v2 24=/path/to/same_data_in_format_2.h5``, ``load`` of that file too; with
  ``--baseline-python`` also by the telemrec before format 3 (in that interpreter), then format
  3 again.

Targets: 1 h >= 3x faster than ``read_parquet``; 24 h wide frame <= 0.2 s and >= 10x
``read_csv``; one field of one entity for one hour <= 15 ms.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
FIELD = "DCGM_FI_DEV_BOARD_POWER_WATTS"


def _timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
        del result
    return times


def _pairs(a, b, pairs: int, a_runs: int = 3, b_runs: int = 3) -> float:
    """Median of time(b) / time(a) over back-to-back pairs, alternating which runs first; within a
    pair each side is its best of ``*_runs`` timings in a row (a load right after a 500 MB
    ``read_csv`` pays the kernel for fresh pages once: the first-touch cost of this VM, not the code)."""
    ratios = []
    for k in range(pairs):
        if k % 2 == 0:
            ta, tb = min(_timed(a, a_runs)), min(_timed(b, b_runs))
        else:
            tb, ta = min(_timed(b, b_runs)), min(_timed(a, a_runs))
        ratios.append(tb / ta)
    return statistics.median(ratios)


def _cached(cache: str, hours: float) -> tuple[str, str, str]:
    import pandas as pd

    import telemrec
    from reference_trace import build_reference_trace

    os.makedirs(cache, exist_ok=True)
    trace = os.path.join(cache, f"reference-{hours:g}h.h5")
    if not os.path.exists(trace):
        print(f"building {trace} ...", flush=True)
        build_reference_trace(trace + ".part.h5", hours)
        os.replace(trace + ".part.h5", trace)
    parquet, csv = trace[:-3] + ".parquet", trace[:-3] + ".csv"
    if not (os.path.exists(parquet) and os.path.exists(csv)):
        frame = telemrec.load(trace)
        flat = frame.copy()
        flat.columns = ["/".join(c) for c in frame.columns]
        flat.to_parquet(parquet, compression="zstd")
        flat.to_csv(csv)
    return trace, parquet, csv


_BASELINE_LOAD = """
import gc, json, sys, time
import telemrec
times = []
for _ in range(int(sys.argv[2])):
    gc.collect()
    t = time.perf_counter()
    frame = telemrec.load(sys.argv[1])
    times.append(time.perf_counter() - t)
    del frame
print(json.dumps(times))
"""


def _baseline_load(python: str, path: str, repeat: int) -> list[float]:
    """``load(path)`` timed in another interpreter (the baseline install), ``repeat`` times."""
    import json
    import subprocess

    out = subprocess.run([python, "-c", _BASELINE_LOAD, path, str(repeat)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(hours: float, cache: str, repeat: int, pairs: int, v2: str | None, baseline: str | None = None) -> dict:
    import pandas as pd

    import telemrec

    trace, parquet, csv = _cached(cache, hours)
    frame = telemrec.load(trace)
    values = frame.shape[0] * frame.shape[1]
    with telemrec.open_trace(trace) as t:
        stored = t.manifest["stats"]["values"]
    out = {"hours": hours, "shape": frame.shape, "values": stored, "bytes": os.path.getsize(trace)}
    del frame
    load = lambda: telemrec.load(trace)  # noqa: E731
    read_parquet = lambda: pd.read_parquet(parquet)  # noqa: E731
    read_csv = lambda: pd.read_csv(csv, index_col=0)  # noqa: E731
    out["load"] = _timed(load, repeat)
    out["read_parquet"] = _timed(read_parquet, repeat)
    out["vs_parquet"] = _pairs(load, read_parquet, pairs)
    out["read_csv"] = _timed(read_csv, max(1, repeat // 2))
    out["vs_csv"] = _pairs(load, read_csv, max(3, pairs // 2) if hours > 2 else pairs, b_runs=1)
    start = pd.Timedelta(hours=min(10.0, max(0.0, hours - 1)))
    one = lambda: telemrec.load(trace, entities="gpu3", fields=FIELD, start=start, end=start + pd.Timedelta("1h"))  # noqa: E731
    out["one_field_hour"] = _timed(one, repeat * 2)
    if v2:
        out["load_v2"] = _timed(lambda: telemrec.load(v2), repeat)
        out["v2_bytes"] = os.path.getsize(v2)
        if baseline:
            out["load_v2_baseline"] = _baseline_load(baseline, v2, repeat)
            out["load_again"] = _timed(load, repeat)  # the machine may have drifted meanwhile
    return out


def _fmt(times: list[float]) -> str:
    return f"best {min(times):.3f} s, median {statistics.median(times):.3f} s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 24.0])
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "telemrec-bench"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--compare-v2", nargs="*", default=[], metavar="HOURS=PATH",
                        help="the same data in format 2 (e.g. written by telemrec 0.1.0 before format 3)")
    parser.add_argument("--baseline-python", metavar="PYTHON",
                        help="with --compare-v2: also time load() of the format 2 file in this interpreter "
                             "(the telemrec before format 3)")
    args = parser.parse_args(argv)
    from telemrec.trace.columnar import DECODER

    v2 = dict(item.split("=", 1) for item in args.compare_v2)
    print(f"decoder: {DECODER}; load average {os.getloadavg()[0]:.2f}")
    for hours in args.hours:
        r = run(hours, args.cache, args.repeat, args.pairs, v2.get(f"{hours:g}"), args.baseline_python)
        print(f"## {hours:g} h: frame {r['shape'][0]} x {r['shape'][1]}, {r['values'] / 1e6:.1f} M values, "
              f"trace {r['bytes'] / 1e6:.1f} MB = {r['bytes'] / r['values']:.3f} B/value")
        print(f"load (format 3)      {_fmt(r['load'])}")
        if "load_v2" in r:
            print(f"load (format 2)      {_fmt(r['load_v2'])}  ({r['v2_bytes'] / 1e6:.1f} MB)")
        if "load_v2_baseline" in r:
            print(f"load (format 2, baseline telemrec) {_fmt(r['load_v2_baseline'])}; "
                  f"format 3 again {_fmt(r['load_again'])}")
        print(f"read_parquet (zstd)  {_fmt(r['read_parquet'])}; load is {r['vs_parquet']:.1f}x faster (median of pairs)")
        print(f"read_csv             {_fmt(r['read_csv'])}; load is {r['vs_csv']:.1f}x faster (median of pairs)")
        print(f"one field, one entity, one hour: {_fmt(r['one_field_hour'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

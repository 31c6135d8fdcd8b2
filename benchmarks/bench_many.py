"""Many node traces: a per-host summary of 500 one-hour traces with Dask, against pandas.

    python benchmarks/bench_many.py [--traces 500] [--cache DIR] [--workers 2] [--subset 10] [--json OUT]

The set: ``--traces`` one-hour node traces of the reference workload
(benchmarks/reference_trace.py), each with its own seed, host name and trace_id:
jobs of ``--nodes-per-job`` nodes, one after the other (job ``j`` starts ``j`` hours
after the reference start), drawn round-robin from a pool of ``--hosts`` nodes.
Building one takes ~10 s of CPU (the writer is Python), so the set is built once
into ``--cache`` (default ``~/.cache/telemrec-bench/many-1h``, outside the
repository) and reused; ``--generate-only`` stops after that.

The query (what ``telemrec summary`` does over a directory): per host and overall,
samples / mean / max of every psutil ``system`` and dcgmi field, counters as
rates. Measured:

- Dask: ``summarize_traces(paths)`` (``load(paths, engine="dask", ...)`` and two
  groupbys) on a ``distributed.LocalCluster`` (``--workers`` processes, one thread
  each, 127.0.0.1): the whole query's time, the time to build the frame alone
  (metadata only), peak RSS of the client process and of each worker process
  (sampled every 0.2 s with psutil, and the workers' own VmHWM).
- pandas, the baseline: ``load(subset, form="long", ...)`` of the first
  ``--subset`` traces in this process, then the same groupby: time and peak RSS
  growth; the Dask query on the same subset in the same run for the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

HOUR_NS = 3600 * 10**9
DEFAULT_CACHE = Path(os.environ.get("TELEMREC_BENCH_CACHE", Path.home() / ".cache" / "telemrec-bench")) / "many-1h"


def plan(traces: int, hosts: int, nodes_per_job: int) -> list[dict]:
    """Which trace is which: seed, host, job, start shift."""
    out = []
    for i in range(traces):
        job, k = divmod(i, nodes_per_job)
        host = (job * nodes_per_job + k) % hosts
        out.append({"index": i, "seed": 1000 + i, "host": f"node{host:03d}", "job": 50000 + job,
                    "node_id": k, "shift_ns": job * HOUR_NS,
                    "name": f"job{50000 + job}-node{host:03d}.h5"})
    return out


def _build_one(item: dict, cache: str) -> str:
    from reference_trace import build_reference_trace

    final = os.path.join(cache, item["name"])
    if os.path.exists(final):
        return final
    scratch = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else cache, f"bench-many-{os.getpid()}.h5")
    slurm = {"job_id": str(item["job"]), "node_id": str(item["node_id"]),
             "restart_count": "0", "node_name": item["host"]}
    build_reference_trace(scratch, hours=1, seed=item["seed"], wall_shift_ns=item["shift_ns"],
                          manifest={"trace_id": uuid.uuid4().hex, "slurm": slurm,
                                    "host": {**_reference_host(), "hostname": item["host"]}})
    shutil.move(scratch, final + ".part")
    os.replace(final + ".part", final)
    return final


def _reference_host() -> dict:
    from reference_trace import reference_manifest

    return reference_manifest(1, 0)["host"]


def generate(items: list[dict], cache: Path, jobs: int) -> list[str]:
    cache.mkdir(parents=True, exist_ok=True)
    missing = [it for it in items if not (cache / it["name"]).exists()]
    if missing:
        print(f"building {len(missing)} of {len(items)} traces into {cache} ({jobs} processes) ...", flush=True)
        t0 = time.perf_counter()
        with ProcessPoolExecutor(jobs) as pool:
            for n, _ in enumerate(pool.map(_build_one, missing, [str(cache)] * len(missing)), 1):
                if n % 10 == 0 or n == len(missing):
                    print(f"  {n}/{len(missing)} built, {time.perf_counter() - t0:.0f} s", flush=True)
    return [str(cache / it["name"]) for it in items]


class PeakRSS:
    """Peak resident memory of processes, sampled in a thread (pids looked up once)."""

    def __init__(self, pids: dict[str, int], every: float = 0.2):
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = {name: 0 for name in pids}
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            for name, proc in self.procs.items():
                try:
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
                except Exception:  # a worker restarted: keep what was seen
                    pass
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


QUERY = dict(entities=["system", "gpu*"])


def _query(paths: list[str], engine: str):
    from telemrec.analysis.jobsummary import summarize_traces

    return summarize_traces(paths, engine=engine, **QUERY)


def run_benchmark(paths: list[str], *, workers: int, subset: int) -> dict:
    import psutil
    from distributed import Client, LocalCluster

    me = os.getpid()
    result: dict = {"traces": len(paths), "bytes": sum(os.path.getsize(p) for p in paths), "workers": workers}
    # the baseline first, in a fresh process state: pandas on the subset in this process
    small = paths[:subset]
    base_rss = psutil.Process(me).memory_info().rss
    with PeakRSS({"client": me}) as peak:
        t0 = time.perf_counter()
        base = _query(small, "pandas")
        result["pandas_subset_s"] = time.perf_counter() - t0
    result["pandas_subset_traces"] = len(small)
    result["pandas_subset_peak_growth_mb"] = (peak.peak["client"] - base_rss) / 1e6
    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                      processes=True, memory_limit=0) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        watch = {"client": me, **{f"worker{i}": pid for i, pid in enumerate(pids.values())}}
        t0 = time.perf_counter()
        small_dask = _query(small, "dask")
        result["dask_subset_s"] = time.perf_counter() - t0
        import pandas as pd

        for name in ("hosts", "overall", "traces"):
            pd.testing.assert_frame_equal(getattr(small_dask, name), getattr(base, name))
        from telemrec.analysis import load

        t0 = time.perf_counter()
        ddf = load(paths, engine="dask", rates=True, **QUERY)
        result["dask_build_s"] = time.perf_counter() - t0  # metadata of every trace, read on the workers
        result["partitions"] = ddf.npartitions
        del ddf
        client.run(_reset_peak)
        start_rss = {name: psutil.Process(pid).memory_info().rss for name, pid in watch.items()}
        with PeakRSS(watch) as peak:
            t0 = time.perf_counter()
            full = _query(paths, "dask")
            result["dask_all_s"] = time.perf_counter() - t0
        result["peak_rss_mb"] = {name: v / 1e6 for name, v in peak.peak.items()}
        result["start_rss_mb"] = {name: v / 1e6 for name, v in start_rss.items()}
        result["worker_peak_rss_mb_self_reported"] = {str(k): v / 1e6 for k, v in client.run(_peak_rss).items()}
    result["hosts"] = int(full.traces["host"].nunique())
    result["values"] = int(full.traces["values"].sum())
    result["rows_per_host_table"] = len(full.hosts)
    result["ratio_dask_vs_pandas_per_trace"] = (result["dask_all_s"] / len(paths)) / (
        result["pandas_subset_s"] / len(small))
    return result


def _reset_peak() -> None:
    """Linux: reset the process's peak RSS (VmHWM) so the query's peak is what is reported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=500)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--nodes-per-job", type=int, default=4)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--build-jobs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--subset", type=int, default=10, help="traces the pandas baseline loads")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    items = plan(args.traces, args.hosts, args.nodes_per_job)
    paths = generate(items, args.cache, args.build_jobs)
    if args.generate_only:
        return 0
    result = run_benchmark(paths, workers=args.workers, subset=args.subset)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

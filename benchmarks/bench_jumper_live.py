"""Benchmark: would a live JUmPER monitor over telemrec's readers beat JUmPER's own? (issue 15, item 2)

Per tick, the CPU time (process time, this process) and wall time of

- ``jumper``: JUmPER 0.4.1's thread monitor collecting one row per level
  (``PerformanceMonitor._collect_metrics()``: psutil for every level, NVML when present);
- ``telemrec``: telemrec's psutil reader reading the same levels (``levels=system,process,user``,
  ``uss=false``: JUmPER reads no USS) plus its NVML reader when present -- raw records only,
  before any per-level row is derived from them (a live variant would add that on top).

Both run in this process, target this process (JUmPER's rule), interleaved tick by tick so
they see the same machine; medians and p90 over ``--ticks`` ticks after ``--warmup``.

    python benchmarks/bench_jumper_live.py [--ticks 200] [--warmup 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def _cost(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def _p(values, q) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import psutil
    from jumper_extension.monitor.backends.thread import PerformanceMonitor

    from telemrec.readers.nvml import NvmlReader
    from telemrec.readers.psutil_ import PsutilReader
    from telemrec.record import ReaderConfig

    jumper = PerformanceMonitor()
    ps = PsutilReader()
    ps.open(ReaderConfig(interval=1.0, options={"levels": "system,process,user", "uss": False,
                                                      "pid": os.getpid()}))
    nv = NvmlReader() if NvmlReader.availability()[0] else None
    if nv is not None:
        nv.open(ReaderConfig(interval=1.0, options={"processes": True}))

    def telemrec_tick():
        n = len(ps.read() or [])
        if nv is not None:
            n += len(nv.read() or [])
        return n

    costs = {"jumper": [], "telemrec": []}
    for i in range(args.warmup + args.ticks):
        a = _cost(jumper._collect_metrics)
        b = _cost(telemrec_tick)
        if i >= args.warmup:
            costs["jumper"].append(a)
            costs["telemrec"].append(b)
        time.sleep(0.01)
    records = telemrec_tick()
    ps.close()
    if nv is not None:
        nv.close()

    uid = os.getuid()
    user_procs = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid)
    result = {"ticks": args.ticks, "user_processes": user_procs, "cpus": psutil.cpu_count(),
              "gpus_via_nvml": nv is not None, "telemrec_records_per_tick": records, "levels": jumper.levels}
    for name, pairs in costs.items():
        cpu = [c * 1e3 for c, _ in pairs]
        wall = [w * 1e3 for _, w in pairs]
        result[name] = {"cpu_ms_median": round(statistics.median(cpu), 3), "cpu_ms_p90": round(_p(cpu, 0.9), 3),
                        "wall_ms_median": round(statistics.median(wall), 3), "wall_ms_p90": round(_p(wall, 0.9), 3)}
    ratio = result["telemrec"]["cpu_ms_median"] / result["jumper"]["cpu_ms_median"]
    result["telemrec_over_jumper_cpu"] = round(ratio, 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: `telemrec replay TRACE --as nvml` on the reference trace (8 GPUs of dcgmi records, 1 Hz).

    python benchmarks/bench_nvml_replay.py [--hours 1] [--cache DIR] [--calls 20000] [--json OUT]

1. Preparing: build_timeline + write (what runs before COMMAND starts), against iterating the same
   records with ``Trace.records(sources=["dcgmi"])`` (the floor: reading them at all), each in a
   fresh subprocess (CPU seconds and peak RSS are that phase's alone).
2. Serving: the cost of one pynvml call answered by the replay library (a binary search over the
   day's samples), against ``nvmlDeviceGetCount`` (no lookup: the bindings' own overhead), in one
   process under the replay environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

_PHASE = r'''
import json, resource, sys, time
import telemrec
path, phase, out = sys.argv[1:4]
c0, w0 = time.process_time(), time.perf_counter()
with telemrec.open_trace(path) as t:
    if phase == "iterate":
        n = sum(1 for _ in t.records(sources=["dcgmi"]))
    else:
        from telemrec.emulate.nvml_timeline import build_timeline
        timeline = build_timeline(t)
        timeline.write(out, anchor_mono_ns=time.monotonic_ns(), speed=1.0, loops=1)
        n = sum(len(d.series.times) for d in timeline.devices)
print(json.dumps({"records": n, "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''

_CALLS = r'''
import json, sys, time
import pynvml as N
calls = int(sys.argv[1])
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(3)
def rate(fn, *args):
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - t0) / calls * 1e6
count = rate(N.nvmlDeviceGetCount)
power = rate(N.nvmlDeviceGetPowerUsage, h)
memory = rate(N.nvmlDeviceGetMemoryInfo, h)
print(json.dumps({"count_us": count, "power_us": power, "memory_v1_us": memory}))
'''


def _run(code: str, *args: str, env=None) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--cache", default=tempfile.gettempdir())
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    sys.path.insert(0, HERE)
    from reference_trace import build_reference_trace

    trace = os.path.join(args.cache, f"telemrec-reference-{args.hours:g}h.h5")
    if not os.path.exists(trace):
        build_reference_trace(trace, hours=args.hours)
    with tempfile.TemporaryDirectory() as tmp:
        timeline = os.path.join(tmp, "timeline.bin")
        iterate = _run(_PHASE, trace, "iterate", timeline)
        build = _run(_PHASE, trace, "build", timeline)
        size = os.path.getsize(timeline)
        from telemrec.emulate.nvml import prepare

        prepared = prepare(trace, tmp, speed=1)
        calls = _run(_CALLS, str(args.calls), env=prepared.env)
    result = {"hours": args.hours, "gpu_records": build["records"], "iterate": iterate, "prepare": build,
              "timeline_bytes": size, "prepare_over_iterate_cpu": build["cpu_s"] / iterate["cpu_s"], "calls": calls,
              "power_call_over_count_call": calls["power_us"] / calls["count_us"]}
    print(f"{args.hours:g} h, {build['records']} GPU samples: prepare {build['cpu_s']:.2f} CPU s "
          f"({build['wall_s']:.2f} s wall, peak RSS {build['peak_rss_mib']:.0f} MiB, timeline {size / 2**20:.1f} MiB) "
          f"vs iterating the records {iterate['cpu_s']:.2f} CPU s: x{result['prepare_over_iterate_cpu']:.2f}")
    print(f"per call: nvmlDeviceGetPowerUsage {calls['power_us']:.2f} us, nvmlDeviceGetMemoryInfo "
          f"{calls['memory_v1_us']:.2f} us, nvmlDeviceGetCount (bindings only) {calls['count_us']:.2f} us: "
          f"x{result['power_call_over_count_call']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: replay throughput, memory and real-time pacing (issue "Replay", item 6).

Targets: >= 500k records/s through the record iterator and >= 20M values/s through the
batch iterator, as fast as possible; memory independent of the trace's length; pacing
error p99 <= 2 ms at 10 Hz.

    python benchmarks/bench_replay.py [--hours 3] [--trace reference|synthetic] [--cache DIR]
                                      [--pacing-seconds 10] [--skip-cli]
                                      [--compare TRACE [--baseline-python PYTHON]]

The trace is built once through ``TraceWriter`` and cached in ``--cache``: ``reference``
is benchmarks/reference_trace.py (8 GPUs x 23 DCGM fields, 64 CPUs x 10 counters and
a system record, 1 Hz), ``synthetic`` the issue's plain variant (8 GPUs x 23 float
fields, 64 CPUs x 10 int counters). Each throughput figure comes from a fresh
subprocess, so its peak RSS is that phase's alone. Rates are given per wall second
and per CPU second of the process: on a shared machine the CPU figure is the steadier.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_FIELDS = operator.attrgetter("fields")
N_GPUS, GPU_FIELDS, N_CPUS, CPU_FIELDS = 8, 23, 64, 10


# -- building the trace -----------------------------------------------------------------------------

def _synthetic_ticks(hours: float, seed: int):
    import numpy as np

    from telemrec.record import RawRecord

    rng = np.random.default_rng(seed)
    gpu_names = [f"DCGM_FI_FIELD_{i:02d}" for i in range(GPU_FIELDS)]
    cpu_names = [f"cpu_times.f{i}" for i in range(CPU_FIELDS)]
    gpu = rng.uniform(0, 400, (N_GPUS, GPU_FIELDS))
    cpu = rng.integers(10**6, 10**9, (N_CPUS, CPU_FIELDS))
    mono0, wall0 = 1_000_000_000_000, 1_772_409_600_000_000_000
    for i in range(int(hours * 3600)):
        gpu = np.clip(gpu + rng.normal(0, 2.0, gpu.shape), 0, 700)
        cpu = cpu + rng.integers(0, 100, cpu.shape)
        mono = mono0 + i * 10**9 + int(rng.integers(50_000, 900_000))
        wall = wall0 + (mono - mono0)
        recs = [RawRecord(mono, wall, f"gpu{g}", dict(zip(gpu_names, np.round(gpu[g], 3).tolist())), "dcgmi", "4.6")
                for g in range(N_GPUS)]
        recs += [RawRecord(mono + 2_000, wall + 2_000, f"cpu{c}", dict(zip(cpu_names, cpu[c].tolist())),
                           "psutil", "7.2") for c in range(N_CPUS)]
        yield recs


def build_trace(path: str, kind: str, hours: float, seed: int) -> None:
    if kind == "reference":
        sys.path.insert(0, HERE)
        from reference_trace import build_reference_trace

        build_reference_trace(path, hours, seed)
        return
    from telemrec.trace import TraceWriter
    from telemrec.trace.importer import import_manifest

    writer = TraceWriter(path, import_manifest("bench_replay synthetic"))
    for recs in _synthetic_ticks(hours, seed):
        writer.write(recs)
    writer.close()


def cached_trace(cache: str, kind: str, hours: float, seed: int) -> str:
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, f"replay-{kind}-{hours:g}h-seed{seed}.h5")
    if not os.path.exists(path):
        print(f"building {path} ...", flush=True)
        t0 = time.perf_counter()
        build_trace(path + ".part.h5", kind, hours, seed)
        os.replace(path + ".part.h5", path)
        print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


# -- one measured phase, run in its own process -------------------------------------------------------

def _phase(name: str, path: str) -> dict:
    from telemrec.trace import open_trace
    from telemrec.trace._iterate import iter_batches, iter_records

    records = values = 0
    w0, c0 = time.perf_counter(), time.process_time()
    if name == "records":
        with open_trace(path) as trace:
            entities = {key: trace.entity(*key) for key in trace.entities()}
            for batch in iter_records(entities):
                records += len(batch)
                values += sum(map(len, map(_FIELDS, batch)))
    elif name == "iter_replay":
        from telemrec.readers.replay import iter_replay

        for rec in iter_replay(path):
            records += 1
            values += len(rec.fields)  # a consumer that touches every record
    elif name == "reader":
        from telemrec.readers.replay import ReplayReader
        from telemrec.record import ReaderConfig

        reader = ReplayReader()
        reader.open(ReaderConfig(source=path))
        try:
            while (batch := reader.read()) is not None:
                records += len(batch)
        finally:
            reader.close()
    elif name == "batches":
        with open_trace(path) as trace:
            entities = {key: trace.entity(*key) for key in trace.entities()}
            for batch in iter_batches(entities):
                records += len(batch.seq)
                values += sum(len(col) for col in batch.columns.values())
    else:
        raise SystemExit(f"unknown phase {name}")
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"phase": name, "records": records, "values": values, "wall_s": wall, "cpu_s": cpu,
            "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: a forked child inherits its parent's ru_maxrss."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_phase(name: str, path: str, python: str = sys.executable) -> dict:
    out = subprocess.run([python, os.path.abspath(__file__), "--phase", name, path],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cli(path: str, python: str = sys.executable) -> dict:
    """`telemrec replay --speed max` into a pipe that only counts lines."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "telemrec", "replay", path, "--speed", "max"],
                            stdout=subprocess.PIPE)
    lines = 0
    while chunk := proc.stdout.read(1 << 20):
        lines += chunk.count(b"\n")
    _, status, usage = os.wait4(proc.pid, 0)  # its ru_maxrss may be ours (fork): not reported
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"telemrec replay exited {proc.returncode}")
    return {"phase": "cli --speed max", "records": lines, "values": 0, "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": float("nan")}


# -- pacing ----------------------------------------------------------------------------------------

def pacing(cache: str, seconds: float, rate_hz: float) -> dict:
    """Replay a rate_hz trace (8 GPU records per instant) in real time; lateness of each instant."""
    import numpy as np

    from telemrec.readers.replay import Replay
    from telemrec.record import RawRecord
    from telemrec.trace import TraceWriter, open_trace
    from telemrec.trace.importer import import_manifest

    path = os.path.join(cache, f"pacing-{rate_hz:g}hz-{seconds:g}s.h5")
    if not os.path.exists(path):
        step = int(1e9 / rate_hz)
        rng = np.random.default_rng(1)
        writer = TraceWriter(path, import_manifest("bench_replay pacing"))
        for i in range(int(seconds * rate_hz) + 1):
            mono = 10**12 + i * step + int(rng.integers(0, 2_000_000))  # sampling jitter, as recorded
            writer.write([RawRecord(mono, 1_772_409_600 * 10**9 + mono, f"gpu{g}",
                                    {"power": float(rng.uniform(60, 700)), "util": int(rng.integers(0, 100))},
                                    "nvml") for g in range(N_GPUS)])
        writer.close()
    late = []
    with open_trace(path) as trace:
        replay = Replay(trace, speed=1)
        t0 = m0 = None
        for group in replay.paced():
            now = time.monotonic_ns()
            mono = group[0].mono_ns
            if t0 is None:
                t0, m0 = now, mono
            late.append((now - t0) - (mono - m0))
        total = (time.monotonic_ns() - t0) / 1e9
    late_ms = np.array(late[1:]) / 1e6
    return {"instants": len(late), "seconds": total, "p50_ms": float(np.percentile(late_ms, 50)),
            "p99_ms": float(np.percentile(late_ms, 99)), "max_ms": float(late_ms.max()),
            "early": int((late_ms < 0).sum())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--trace", choices=("reference", "synthetic"), default="reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "telemrec-bench"))
    parser.add_argument("--pacing-seconds", type=float, default=10.0)
    parser.add_argument("--skip-cli", action="store_true", help="do not time `telemrec replay --speed max`")
    parser.add_argument("--compare", metavar="TRACE", help="time the same phases on this trace too, in the same run "
                                                           "(e.g. the same data in an older format)")
    parser.add_argument("--baseline-python", metavar="PYTHON",
                        help="run the --compare trace's phases with this interpreter (an older telemrec: the "
                             "baseline; it must read that trace)")
    parser.add_argument("--phase", nargs=2, metavar=("NAME", "TRACE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(_phase(*args.phase)))
        return 0
    kind = args.trace
    if kind == "reference" and not os.path.exists(os.path.join(HERE, "reference_trace.py")):
        kind = "synthetic"
    path = cached_trace(args.cache, kind, args.hours, args.seed)
    runs = [(path, sys.executable)]
    if args.compare:
        runs.append((args.compare, args.baseline_python or sys.executable))
    for trace, python in runs:
        version = subprocess.run([python, "-c", "import sys; from telemrec.trace import open_trace\n"
                                  "with open_trace(sys.argv[1]) as t: print(t.format_version)", trace],
                                 capture_output=True, text=True, check=True).stdout.strip()
        print(f"trace: {trace} (format {version}, {os.path.getsize(trace) / 1e6:.1f} MB) read by {python}; "
              f"load average {os.getloadavg()[0]:.2f}")
        phases = [run_phase(name, trace, python) for name in ("records", "iter_replay", "reader", "batches")]
        if not args.skip_cli:
            phases.append(run_cli(trace, python))
        print(f"{'phase':<16} {'records':>9} {'rec/s wall':>11} {'rec/s cpu':>11} {'Mval/s wall':>12} "
              f"{'Mval/s cpu':>11} {'peak RSS MB':>12}")
        for p in phases:
            mv_wall = f"{p['values'] / p['wall_s'] / 1e6:.1f}" if p["values"] else "-"
            mv_cpu = f"{p['values'] / p['cpu_s'] / 1e6:.1f}" if p["values"] else "-"
            print(f"{p['phase']:<16} {p['records']:>9} {p['records'] / p['wall_s']:>11,.0f} "
                  f"{p['records'] / p['cpu_s']:>11,.0f} {mv_wall:>12} {mv_cpu:>11} {p['peak_rss_mb']:>12.0f}")
    if args.pacing_seconds > 0:
        pace = pacing(args.cache, args.pacing_seconds, 10.0)
        print(f"pacing at 10 Hz, real time: {pace['instants']} instants in {pace['seconds']:.2f} s; lateness "
              f"p50 {pace['p50_ms']:.3f} ms, p99 {pace['p99_ms']:.3f} ms, max {pace['max_ms']:.3f} ms, "
              f"early {pace['early']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the emulators of issue 14 against baselines measured side by side in the same run.

    python benchmarks/bench_emulate.py [--hours 1] [--cache DIR] [--scrapes 50]

On the reference trace (benchmarks/reference_trace.py: 8 GPUs x 23 DCGM fields, 64 CPUs,
1 Hz), each phase in a fresh subprocess (wall s, CPU s, peak RSS):

- ``telemrec export --format openmetrics`` against ``telemrec export --format csv`` (the
  existing export of the same values);
- ``telemrec export --format dmon`` (every tick as dcgmi printed it) against
  ``telemrec replay --speed max -o FILE`` (the same records as JSON lines);
- ``telemrec serve --speed max``: the latency of a scrape of the node's state (8 GPUs as
  dcgm-exporter, 64 CPUs as node_exporter) against a scrape of the real
  prometheus-node-exporter running on this machine (when installed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def _timed(argv: list[str]) -> dict:
    """Run argv in a fresh process: wall and CPU seconds, peak RSS of that process (MiB)."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
            "w = time.perf_counter() - t; r = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(p.returncode, w, r.ru_utime + r.ru_stime, r.ru_maxrss / 1024)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"{' '.join(argv)} failed ({out[0]})")
    return {"wall_s": round(float(out[1]), 2), "cpu_s": round(float(out[2]), 2), "peak_rss_mib": round(float(out[3]))}


def _telemrec(*args: str) -> list[str]:
    return [sys.executable, "-m", "telemrec", *args]


def _scrape_latency(url: str, n: int) -> dict:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = resp.read()
        times.append(time.perf_counter() - t)
    times.sort()
    return {"scrapes": n, "bytes": len(body), "samples": sum(1 for line in body.splitlines() if line[:1] != b"#"),
            "p50_ms": round(1000 * statistics.median(times), 1), "p95_ms": round(1000 * times[int(0.95 * (n - 1))], 1)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(trace: str, n: int) -> dict:
    proc = subprocess.Popen(_telemrec("serve", trace, "--listen", "127.0.0.1:0", "--speed", "max", "--loop", "forever"),
                            stderr=subprocess.PIPE, text=True)
    try:
        port = re.search(r":(\d+)/metrics", proc.stderr.readline()).group(1)
        return _scrape_latency(f"http://127.0.0.1:{port}/metrics", n)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _node_exporter(n: int) -> dict | None:
    binary = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
    if not os.access(binary, os.X_OK):
        return None
    port = _free_port()
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        return _scrape_latency(f"http://127.0.0.1:{port}/metrics", n)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--cache", default=None, help="directory to keep the reference trace in")
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args(argv)
    sys.path.insert(0, HERE)
    from reference_trace import build_reference_trace

    cache = args.cache or tempfile.mkdtemp(prefix="bench-emulate-")
    os.makedirs(cache, exist_ok=True)
    trace = os.path.join(cache, f"reference-{args.hours:g}h.h5")
    if not os.path.exists(trace):
        build_reference_trace(trace, hours=args.hours)
    out = tempfile.mkdtemp(prefix="bench-emulate-out-")
    report = {"hours": args.hours, "trace_bytes": os.path.getsize(trace)}

    def export(fmt: str, name: str) -> dict:
        target = os.path.join(out, name)
        result = _timed(_telemrec("export", trace, "--format", fmt, "-o", target))
        result["bytes"] = os.path.getsize(target)
        return result

    report["openmetrics"] = export("openmetrics", "t.om")
    report["csv (baseline)"] = export("csv", "t.csv")
    report["dmon"] = export("dmon", "t.txt")
    jsonl = os.path.join(out, "t.jsonl")
    report["replay -o jsonl (baseline)"] = _timed(_telemrec("replay", trace, "--speed", "max", "-o", jsonl))
    report["replay -o jsonl (baseline)"]["bytes"] = os.path.getsize(jsonl)
    report["serve scrape"] = _serve(trace, args.scrapes)
    report["node_exporter scrape (baseline)"] = _node_exporter(args.scrapes)
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

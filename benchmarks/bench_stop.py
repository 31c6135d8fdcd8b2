"""Benchmark: from SIGTERM to exit, for recordings users make (issue "format 3").

    python benchmarks/bench_stop.py [--scenario dense24h procs10k hz100 ...] [--hours-dense 24]
                                    [--baseline-python /path/to/old/venv/bin/python]

Each scenario runs in a child process that writes a recording through ``TraceWriter``
as the recorder does (``write`` every tick, ``flush`` every 5 s of recorded time), says
it is ready, and waits; then it gets SIGTERM, and its handler stops the writer
(``close``: what `telemrec record` does after SIGTERM). The time from the signal to the
process's exit is what Slurm's KillWait (30 s by default) must cover. Before the signal,
another process opens the live recording (``live_open_s``). While the
recording is fed, fsync is skipped (the feed takes minutes instead of hours; the
stop's own fsyncs are real).

- ``dense24h``: the reference GPU node (benchmarks/reference_trace.py), 8 GPUs x 23
  DCGM fields + 64 CPUs, 1 Hz, 24 h (73.5 M values);
- ``procs10k``: 1 h at 1 Hz of the psutil reader's process level with 10,000 process
  entities over the recording's life (~100 alive at a time, 36 s each on average);
- ``hz100``: 1 h at 100 Hz of the process and user levels (20 processes, system, 2 CPUs).

``--baseline-python`` runs the same children with another interpreter (a venv holding
the telemrec to compare with): both columns come from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = ("dense24h", "procs10k", "hz100")
TARGET_S = 2.0


def _feed(scenario: str, hours: float):
    """(records of a tick, tick rows by reader label, seconds of recorded time per tick)."""
    sys.path.insert(0, HERE)
    if scenario == "dense24h":
        import reference_trace as ref

        for i, (ck, recs) in enumerate(ref._reference(hours, 0)):
            rows = {"dcgmi": {"tick": i, "scheduled_mono_ns": ck["scheduled"], "start_mono_ns": ck["dc_start"],
                              "end_mono_ns": ck["dc_end"], "start_wall_ns": ck["dc_start_wall"], "status": 0,
                              "records": ref.N_GPUS, "cpu_ns": ck["dc_cpu"]},
                    "psutil": {"tick": i, "scheduled_mono_ns": ck["scheduled"], "start_mono_ns": ck["ps_start"],
                               "end_mono_ns": ck["ps_end"], "start_wall_ns": ck["ps_start_wall"], "status": 0,
                               "records": ref.N_CPUS + 1, "cpu_ns": ck["ps_cpu"]}}
            yield recs, rows, 1.0
        return
    import workloads

    hz = 100.0 if scenario == "hz100" else 1.0
    kwargs = dict(hours=hours, hz=hz, alive=20) if scenario == "hz100" else dict(hours=hours, hz=hz, alive=100,
                                                                                lifetime_s=36)
    for i, (mono, wall, recs) in enumerate(workloads.process_ticks(**kwargs)):
        rows = {"psutil": {"tick": i, "scheduled_mono_ns": mono - 40_000, "start_mono_ns": mono,
                           "end_mono_ns": mono + 900_000, "start_wall_ns": wall, "status": 0,
                           "records": len(recs), "cpu_ns": 800_000}}
        yield recs, rows, 1.0 / hz


def child(scenario: str, out: str, hours: float) -> int:
    """Feed the recording, print a JSON line when ready, stop on SIGTERM."""
    from telemrec.trace import TraceWriter

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(time.monotonic()))
    real_fsync = os.fsync
    os.fsync = lambda fd: None
    writer = TraceWriter(out, {"readers": [], "interval_seconds": 1.0, "tags": {"bench": scenario}})
    records = values = 0
    since_flush = 0.0
    ticks: dict[str, list] = {}
    t0 = time.perf_counter()
    for recs, rows, dt in _feed(scenario, hours):
        writer.write(recs)
        records += len(recs)
        values += sum(len(r.fields) for r in recs)
        for label, row in rows.items():
            ticks.setdefault(label, []).append(row)
        since_flush += dt
        if since_flush >= 5.0:
            for label, batch in ticks.items():
                writer.write_ticks(label, batch)
            ticks.clear()
            writer.flush()
            since_flush = 0.0
    for label, batch in ticks.items():
        writer.write_ticks(label, batch)
    writer.flush()
    os.fsync = real_fsync
    feed_s = time.perf_counter() - t0
    print(json.dumps({"records": records, "values": values, "feed_s": feed_s,
                      "journal_bytes": os.path.getsize(out + ".journal")}), flush=True)
    while not stop:
        signal.pause()
    writer.close(stop={"wall_ns": time.time_ns(), "mono_ns": time.monotonic_ns(), "reason": "signal SIGTERM"})
    return 0


def _live_open(python: str, out: str) -> float | None:
    """Seconds to open the live recording (the journal a running recorder holds) and read its span."""
    code = ("import sys, time, telemrec; t = time.perf_counter(); tr = telemrec.open_trace(sys.argv[1]); "
            "tr.time_span(); print(time.perf_counter() - t); tr.close()")
    proc = subprocess.run([python, "-c", code, out], capture_output=True, text=True, timeout=600)
    return float(proc.stdout.strip()) if proc.returncode == 0 else None


def run(python: str, scenario: str, hours: float, workdir: str) -> dict:
    out = os.path.join(workdir, f"{scenario}-{abs(hash(python)) % 10000}.h5")
    proc = subprocess.Popen([python, os.path.abspath(__file__), "--child", scenario, out, "--hours", str(hours)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit(f"{python}: the {scenario} child failed (exit {proc.returncode})")
    info = json.loads(line)
    info["live_open_s"] = _live_open(python, out)
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    info["stop_s"] = time.monotonic() - t0
    info["exit"] = proc.returncode
    info["trace_bytes"] = os.path.getsize(out) if os.path.exists(out) else None
    for path in (out, out + ".journal"):
        if os.path.exists(path):
            os.unlink(path)
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--hours", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--hours-dense", type=float, default=24.0)
    parser.add_argument("--hours-other", type=float, default=1.0)
    parser.add_argument("--baseline-python", help="another interpreter (venv) with the telemrec to compare")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child[0], args.child[1], args.hours)
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-stop-")
    pythons = [("this telemrec", sys.executable)] + ([("baseline", args.baseline_python)] if args.baseline_python else [])
    results = {}
    for scenario in args.scenario:
        hours = args.hours_dense if scenario == "dense24h" else args.hours_other
        for label, python in pythons:
            res = run(python, scenario, hours, workdir)
            results.setdefault(scenario, {})[label] = res
            print(f"{scenario:9} {label:14} {res['values'] / 1e6:7.1f} M values, journal "
                  f"{res['journal_bytes'] / 1e6:7.1f} MB: SIGTERM to exit {res['stop_s']:6.2f} s "
                  f"({'met' if res['stop_s'] <= TARGET_S else 'over'} {TARGET_S} s), trace "
                  f"{(res['trace_bytes'] or 0) / res['values']:.3f} B/value, live open "
                  f"{res['live_open_s'] if res['live_open_s'] is None else round(res['live_open_s'], 2)} s, "
                  f"feed {res['feed_s']:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

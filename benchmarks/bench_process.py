"""Benchmark: what per-process telemetry costs the recorder, next to JUmPER and atop.

    python benchmarks/bench_process.py [--runs 3] [--duration 35] [--warmup 10] [--processes 90]
                                       [--parts side,wrap,100hz] [--skip-jumper] [--skip-atop] [--json OUT]
                                       [--baseline OTHER/venv/bin/telemrec] [--variants]

Part ``side`` (issue 13's main target): the recorders run side by side, at the same time
and on the same processes, at 1 Hz; for each, the CPU time (user + system, all its
threads, from ``/proc/PID/task/*/schedstat``) spent between the end of the warm-up and
the end of the window, divided by the samples it took in that window:

- ``telemrec record -O levels=system,process,user -O pid=<tree>``, with its defaults (the
  procfs process collector, USS budgeted); with ``--variants`` also the psutil collector, and
  each with USS every tick (the behaviour before the procfs collector) and off: four more
  recorders at once, two of them heavy, which load the machine the others share;
- JUmPER 0.4.1's thread monitor (``PerformanceMonitor``: user, process and system levels,
  its process level pointed at the same tree), in a Python process of its own;
- ``atop -w FILE 1`` (Debian ``atop``; skipped with a hint when it is not installed).

The processes: a tree (a root, four Python workers that wake every 100 ms to compute
and write a little, each with two ``sleep`` children, and ``sleep`` processes) sized so
that this user owns about ``--processes`` processes in all, besides whatever else runs.

Part ``wrap``: ``telemrec record -O levels=system,process -- <50-process tree>``, the procfs
and the psutil collector one after the other, each alone with its tree, as a job runs it
(target: <= 2 ms per sample at 1 Hz).
Part ``100hz``: the same wrapping a 20-process tree at 100 Hz for 12 s, one collector
after the other (target: 0 missed ticks on an idle machine).

Each part prints the load average before and after: the machine may be shared.
``--baseline`` adds another telemrec (an earlier release's CLI) with its defaults to every part,
in the same run: beside the others in ``side``, after them in ``wrap`` and ``100hz``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_format import _process_cpu_ns, _sleep_until, recorder_command  # noqa: E402

TARGET_SIDE_MS = 3.0
TARGET_RATIO = 0.25
TARGET_WRAP_MS = 2.0

JUMPER_HOST = """
import sys, time, psutil
from jumper_extension.monitor.backends.thread.monitor import PerformanceMonitor
target, seconds = int(sys.argv[1]), float(sys.argv[2])
monitor = PerformanceMonitor()
backend = monitor._process_backend          # its process level: the same tree as telemrec's
backend._pid, backend._process = target, psutil.Process(target)
print("ready", flush=True)
monitor.start(1.0)
time.sleep(seconds)
monitor.stop()
print(monitor.n_measurements, monitor.n_missed_measurements, flush=True)
"""

BASELINE = "telemrec baseline"  # a telemrec: not one of the peers the ratios are taken against
ATOP_HINT = "atop is not installed: `apt-get install atop` (Debian/Ubuntu) adds it; its rows are skipped"


# -- the processes being recorded ---------------------------------------------------------------------

def worker_main(seconds: float) -> None:
    """A data-loader-like process: wakes every 100 ms, computes ~1 ms, writes 4 KB."""
    kids = [subprocess.Popen(["sleep", str(seconds)]) for _ in range(2)]
    end = time.monotonic() + seconds
    with open(os.devnull, "wb") as sink:
        while time.monotonic() < end:
            sum(range(20000))
            sink.write(b"x" * 4096)
            sink.flush()
            time.sleep(0.1)
    for kid in kids:
        kid.kill()
        kid.wait()


def tree_main(size: int, seconds: float) -> None:
    """``size`` processes in all, in a process group of their own that ends together."""
    if os.getpgid(0) != os.getpid():
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    workers = max(0, min(4, (size - 1) // 3))
    try:
        kids = [subprocess.Popen([sys.executable, __file__, "--worker", str(seconds)]) for _ in range(workers)]
        kids += [subprocess.Popen(["sleep", str(seconds)]) for _ in range(size - 1 - 3 * workers)]
        time.sleep(0.5)
        print("ready", flush=True)
        time.sleep(seconds)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.killpg(0, signal.SIGTERM)


def tree_argv(size: int, seconds: float) -> list[str]:
    return [sys.executable, __file__, "--tree", str(size), str(seconds)]


def start_tree(size: int, seconds: float) -> subprocess.Popen:
    """The tree in a session of its own, so that stop_tree ends all of it."""
    proc = subprocess.Popen(tree_argv(size, seconds), stdout=subprocess.PIPE, text=True, start_new_session=True)
    if proc.stdout.readline().strip() != "ready":
        stop_tree(proc)
        raise RuntimeError("the process tree did not start")
    return proc


def stop_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    proc.stdout.close()


def user_processes() -> int:
    """Processes of this user other than kernel threads (what the user level records)."""
    uid, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status", "rb") as f:
                    text = f.read()
            except OSError:
                continue
            ppid = int(text.split(b"\nPPid:")[1].split()[0])
            real = int(text.split(b"\nUid:")[1].split()[0])
            count += real == uid and ppid != 2 and name != "2"
    return count


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- recorders ----------------------------------------------------------------------------------------

class Recorder:
    def __init__(self, name: str, argv: list[str], trace: str | None = None, stdin_ready: bool = False):
        self.name, self.argv, self.trace, self.wait_ready = name, argv, trace, stdin_ready
        self.proc: subprocess.Popen | None = None
        self.cpu: list[int | None] = []

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE if self.wait_ready else subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    def sample(self) -> None:
        self.cpu.append(_process_cpu_ns(self.proc.pid))

    def stop(self, timeout: float) -> str:
        if self.trace is None and self.proc.poll() is None and not self.wait_ready:
            self.proc.terminate()  # atop runs until told
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            err = f"still running {timeout:.0f} s after its end; its threads wait in: {self.waits()}"
            self.kill()
            out = ""
        if self.trace is not None and self.proc.returncode != 0:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {err.strip()[-400:]}")
        return out or ""

    def waits(self) -> str:
        found = []
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{tid}/wchan") as f:
                    found.append(f.read().strip() or "running")
            except OSError:
                pass
        return ", ".join(found)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def telemrec_recorder(cmd: list[str], name: str, workdir: str, interval: float, duration: float,
                      options: list[str], command: list[str] | None = None) -> Recorder:
    trace = os.path.join(workdir, f"{name}.h5")
    argv = [*cmd, "record", "-q", "-o", trace, "--interval", str(interval), "--duration", str(duration)]
    for option in options:
        argv += ["-O", option]
    if command:
        argv += ["--", *command]
    return Recorder(name, argv, trace)


def trace_window(path: str, mono1: int, mono2: int) -> dict:
    from telemrec.trace import open_trace

    with open_trace(path) as trace:
        table = trace.ticks("psutil")
        members = [rec.fields.get("tick.processes") for rec in trace.records(entities=["collector"])]
    done = table["status"] != 2
    start = table["start_mono_ns"]
    window = done & (start >= mono1) & (start < mono2)
    tick_cpu = table["cpu_ns"][window]
    return {"ticks": int(np.count_nonzero(window)), "ticks_total": int(np.count_nonzero(done)),
            "missed_total": int(np.count_nonzero(table["status"] == 2)),
            "late_total": int(np.count_nonzero(table["status"] == 1)),
            "tick_cpu_median_ms": float(np.median(tick_cpu)) / 1e6 if len(tick_cpu) else None,
            # the slowest tick: a cyclic garbage collection in the sampling thread shows here
            "tick_cpu_max_ms": float(np.max(tick_cpu)) / 1e6 if len(tick_cpu) else None,
            "processes_median": float(np.median([m for m in members if m is not None])) if members else None}


def measure(recorders: list[Recorder], warmup: float, window: float, interval: float) -> dict:
    """Start them together, take CPU times at the start and end of the window, let them finish."""
    t0 = time.monotonic()
    for rec in recorders:
        rec.start()
    load_before = load()
    _sleep_until(t0 + warmup)
    for rec in recorders:
        rec.sample()
    mono1 = time.monotonic_ns()
    _sleep_until(t0 + warmup + window)
    for rec in recorders:
        rec.sample()
    mono2 = time.monotonic_ns()
    rows = {}
    try:
        outs = [rec.stop(timeout=120) for rec in recorders]
    finally:
        for rec in recorders:
            rec.kill()
    for rec, out in zip(recorders, outs):
        cpu1, cpu2 = rec.cpu[-2:]
        row = {"cpu_ms": None if cpu1 is None or cpu2 is None else (cpu2 - cpu1) / 1e6}
        if rec.trace is not None:
            row.update(trace_window(rec.trace, mono1, mono2))
            samples = row["ticks"]
        else:
            samples = (mono2 - mono1) / 1e9 / interval  # JUmPER and atop keep their own 1 s schedule
            if out.strip():
                row["jumper_measurements_missed"] = out.split()[-2:]
        row["samples"] = samples
        row["ms_per_sample"] = row["cpu_ms"] / samples if row["cpu_ms"] is not None and samples else None
        rows[rec.name] = row
    return {"load_before": load_before, "load_after": load(), "window_s": (mono2 - mono1) / 1e9, "rows": rows}


# -- parts --------------------------------------------------------------------------------------------

SIDE_VARIANTS = (
    ("telemrec procfs", ["processes=procfs"]),
    ("telemrec procfs, uss=false", ["processes=procfs", "uss=false"]),
    ("telemrec procfs, uss=every-tick", ["processes=procfs", "uss=every-tick"]),
    ("telemrec psutil, uss=every-tick (before)", ["processes=psutil", "uss=every-tick"]),
    ("telemrec psutil, uss=false", ["processes=psutil", "uss=false"]),
)


def part_side(cmd, args, workdir: str) -> dict:
    existing = user_processes()
    size = max(10, min(200, args.processes - existing))
    total = args.warmup + args.duration + 5
    tree = start_tree(size, total + 30)
    try:
        variants = SIDE_VARIANTS if args.variants else SIDE_VARIANTS[:1]
        recorders = [telemrec_recorder(cmd, f"side-{i}", workdir, 1.0, total,
                                       ["levels=system,process,user", f"pid={tree.pid}", *options])
                     for i, (_, options) in enumerate(variants)]
        for rec, (label, _) in zip(recorders, variants):
            rec.name = label
        if args.baseline:
            rec = telemrec_recorder([args.baseline], "side-baseline", workdir, 1.0, total,
                                    ["levels=system,process,user", f"pid={tree.pid}"])
            rec.name = BASELINE
            recorders.append(rec)
        if not args.skip_jumper:
            recorders.append(Recorder("JUmPER 0.4.1 thread monitor",
                                      [sys.executable, "-c", JUMPER_HOST, str(tree.pid), str(total)],
                                      stdin_ready=True))
        atop = shutil.which("atop")
        if atop and not args.skip_atop:
            recorders.append(Recorder("atop -w (2.x, 1 s)", [atop, "-w", os.path.join(workdir, "atop.raw"), "1"]))
        result = measure(recorders, args.warmup, args.duration, 1.0)
    finally:
        stop_tree(tree)
    result.update({"tree_size": size, "other_user_processes": existing, "atop": bool(atop) or ATOP_HINT})
    return result


def part_wrap(cmd, args, workdir: str) -> dict:
    """Each recorder alone with its tree, one after the other: the target is what wrapping a job
    costs, not what it costs beside a heavier recorder."""
    total = args.warmup + args.duration + 5
    recorders = [telemrec_recorder(cmd, f"wrap {processes}", workdir, 1.0, total,
                                   ["levels=system,process", f"processes={processes}"],
                                   command=tree_argv(50, total + 30))
                 for processes in ("procfs", "psutil")]
    if args.baseline:
        recorders.append(telemrec_recorder([args.baseline], "wrap baseline", workdir, 1.0, total,
                                           ["levels=system,process"], command=tree_argv(50, total + 30)))
    out: dict = {"rows": {}}
    for rec in recorders:
        result = measure([rec], args.warmup, args.duration, 1.0)
        out["rows"][rec.name] = {**result["rows"][rec.name], "load_before": result["load_before"],
                                 "load_after": result["load_after"]}
    return out


def part_100hz(cmd, args, workdir: str) -> dict:
    out = {}
    runs = [(cmd, p, f"processes={p}") for p in ("procfs", "psutil")]
    if args.baseline:
        runs.append(([args.baseline], "baseline", "processes=procfs"))
    for command, label, option in runs:
        rec = telemrec_recorder(command, f"100hz {label}", workdir, 0.01, 14.0,
                                ["levels=system,process", option], command=tree_argv(20, 60))
        result = measure([rec], 3.0, 10.0, 0.01)
        out[rec.name] = {**result["rows"][rec.name], "load_before": result["load_before"],
                         "load_after": result["load_after"]}
    return out


# -- report -------------------------------------------------------------------------------------------

def _ms(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_side(i: int, res: dict) -> None:
    rows = res["rows"]
    base = rows["telemrec procfs"]["ms_per_sample"]
    print(f"\n### side by side, run {i + 1}: load {res['load_before']} -> {res['load_after']}, tree of "
          f"{res['tree_size']} + {res['other_user_processes']} other processes of this user, window "
          f"{res['window_s']:.0f} s\n")
    print("| recorder | CPU ms/sample | x telemrec procfs | samples | members (median) | sampling thread ms (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        ratio = "-" if not base or r["ms_per_sample"] is None else f"{r['ms_per_sample'] / base:.1f}"
        print(f"| {name} | {_ms(r['ms_per_sample'])} | {ratio} | {r['samples']:.0f} | "
              f"{r.get('processes_median') or '-'} | {_ms(r.get('tick_cpu_median_ms'))} |")
    if res["atop"] is not True:
        print(f"\n({res['atop']})")
    new = rows["telemrec procfs"]["ms_per_sample"]
    peers = {k: v["ms_per_sample"] for k, v in rows.items() if not k.startswith("telemrec")}
    verdicts = [f"{new:.2f} ms/sample {'meets' if new <= TARGET_SIDE_MS else 'MISSES'} <= {TARGET_SIDE_MS} ms"]
    for name, peer in peers.items():
        if peer:
            verdicts.append(f"{new / peer:.3f} of {name} ({'meets' if new / peer <= TARGET_RATIO else 'MISSES'} "
                            f"<= {TARGET_RATIO})")
    print("\ntelemrec procfs: " + "; ".join(verdicts))


def print_wrap(res: dict) -> None:
    print("\n### wrapping a 50-process tree, levels=system,process, 1 Hz, one recorder after the other\n")
    print("| collector | CPU ms/sample | samples | members (median) | sampling thread ms (median) | target "
          "| load before -> after |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name, r in res["rows"].items():
        print(f"| {name} | {_ms(r['ms_per_sample'])} | {r['samples']:.0f} | {r.get('processes_median') or '-'} | "
              f"{_ms(r.get('tick_cpu_median_ms'))} | <= {TARGET_WRAP_MS} ms | {r['load_before']} -> "
              f"{r['load_after']} |")


def print_100hz(res: dict) -> None:
    print("\n### 100 Hz, levels=system,process, 20-process tree, 14 s each\n")
    print("| collector | ticks | missed | late | CPU ms/tick (window) | sampling thread ms/tick (median, max) "
          "| load before -> after |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, r in res.items():
        print(f"| {name} | {r['ticks_total']} | {r['missed_total']} | {r['late_total']} | {_ms(r['ms_per_sample'])} | "
              f"{_ms(r.get('tick_cpu_median_ms'))}, {_ms(r.get('tick_cpu_max_ms'))} | "
              f"{r['load_before']} -> {r['load_after']} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="repeat the side-by-side part (default 1)")
    parser.add_argument("--duration", type=float, default=35.0, help="measured window in seconds (default 35)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the window (default 10)")
    parser.add_argument("--processes", type=int, default=90, help="processes of this user to record (default 90)")
    parser.add_argument("--parts", default="side,wrap,100hz", help="which parts (default side,wrap,100hz)")
    parser.add_argument("--skip-jumper", action="store_true")
    parser.add_argument("--skip-atop", action="store_true")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--baseline", metavar="TELEMREC",
                        help="another telemrec CLI (e.g. an earlier release's venv/bin/telemrec) run with the "
                             "defaults in every part, in the same run")
    parser.add_argument("--variants", action="store_true",
                        help="side: also the psutil collector and USS every tick and off (four more recorders)")
    parser.add_argument("--tree", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tree:
        tree_main(int(args.tree[0]), float(args.tree[1]))
        return 0
    if args.worker:
        worker_main(float(args.worker))
        return 0
    cmd = recorder_command()
    if cmd is None:
        print("telemrec record is not installed here", file=sys.stderr)
        return 1
    if not shutil.which("atop") and not args.skip_atop:
        print(ATOP_HINT, file=sys.stderr)
    parts = set(args.parts.split(","))
    results: dict = {"cpus": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="telemrec-bench-process-") as workdir:
        if "side" in parts:
            results["side"] = []
            for i in range(args.runs):
                results["side"].append(part_side(cmd, args, workdir))
                print_side(i, results["side"][-1])
                for name in os.listdir(workdir):
                    os.remove(os.path.join(workdir, name))
        if "wrap" in parts:
            results["wrap"] = part_wrap(cmd, args, workdir)
            print_wrap(results["wrap"])
        if "100hz" in parts:
            results["100hz"] = part_100hz(cmd, args, workdir)
            print_100hz(results["100hz"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

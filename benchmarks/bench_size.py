"""Benchmark: the size of typical recordings (issue "format 3"), side by side with peers.

    python benchmarks/bench_size.py [--seconds 300] [--baseline-telemrec PATH] [--skip-real | --skip-churn]

Part 1 (real, on this machine, all at once for the same ``--seconds``, 1 Hz):
- ``telemrec record -r psutil -O levels=system,process,user -- sleep N`` (the user level
  is every process of this uid),
- ``telemrec record -r psutil`` (system level),
- ``atop -w`` (everything atop records) and ``sadc -S XALL`` where installed,
- the same two telemrec recordings with ``--baseline-telemrec`` (another install's CLI).
Bytes per value divide the file by the values the manifest counts.

Part 2 (synthetic, benchmarks/workloads.py): what a process entity costs beyond its values.
Two 1 h, 1 Hz process-level recordings with the same number of process rows a tick (100):
one keeps the same 100 processes all hour, the other replaces them every 36 s on average
(about 10,000 process entities). The difference in size, divided by the extra entities, is
what an entity costs beyond its values.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_BPV = 1.5
TARGET_ENTITY_BYTES = 300


def _values(path: str, telemrec_python: str) -> int:
    code = "import sys, telemrec; t = telemrec.open_trace(sys.argv[1]); print(t.manifest['stats']['values'])"
    out = subprocess.run([telemrec_python, "-c", code, path], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def real(seconds: int, workdir: str, baseline: str | None) -> dict:
    me = os.path.join(os.path.dirname(sys.executable), "telemrec")
    runs = {"telemrec system+process+user": [me, "record", "-r", "psutil", "-i", "1", "-q",
                                             "-O", "levels=system,process,user", "-o", "{out}.h5", "--", "sleep", str(seconds)],
            "telemrec system": [me, "record", "-r", "psutil", "-i", "1", "-d", str(seconds), "-q", "-o", "{out}.h5"]}
    if baseline:
        runs["baseline system+process+user"] = [baseline, *runs["telemrec system+process+user"][1:]]
        runs["baseline system"] = [baseline, *runs["telemrec system"][1:]]
    if shutil.which("atop"):
        runs["atop -w"] = ["atop", "-w", "{out}.atop", "1", str(seconds)]
    sadc = next((p for p in ("/usr/lib/sysstat/sadc", "/usr/lib64/sa/sadc") if os.path.exists(p)), None)
    if sadc:
        runs["sadc -S XALL"] = [sadc, "-S", "XALL", "1", str(seconds), "{out}.sa"]
    procs = {}
    for k, (name, cmd) in enumerate(runs.items()):
        out = os.path.join(workdir, f"r{k}")
        procs[name] = (subprocess.Popen([c.format(out=out) for c in cmd], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True), out)
    results = {}
    for name, (proc, out) in procs.items():
        _, err = proc.communicate(timeout=seconds + 600)
        files = [p for p in (out + ".h5", out + ".atop", out + ".sa") if os.path.exists(p)]
        if proc.returncode not in (0, None) or not files:
            results[name] = {"error": f"exit {proc.returncode}: {err[-300:]}"}
            continue
        size = os.path.getsize(files[0])
        row = {"bytes": size}
        if files[0].endswith(".h5"):
            python = os.path.join(os.path.dirname(runs[name][0]), "python")
            row["values"] = _values(files[0], python)
            row["bytes_per_value"] = size / row["values"]
        results[name] = row
    return results


def churn(workdir: str) -> dict:
    sys.path.insert(0, HERE)
    import workloads

    from telemrec.trace import TraceWriter, open_trace

    out = {}
    for name, lifetime in (("100 processes all hour", None), ("100 alive, replaced every 36 s", 36)):
        path = os.path.join(workdir, f"churn-{lifetime}.h5")
        writer = TraceWriter(path, {"readers": [], "interval_seconds": 1.0})
        for i, (_, _, recs) in enumerate(workloads.process_ticks(hours=1, hz=1, alive=100, lifetime_s=lifetime)):
            writer.write(recs)
            if i % 5 == 4:
                writer.flush()
        writer.close()
        with open_trace(path) as trace:
            entities = sum(1 for s, e in trace.entities() if e.startswith("pid:"))
            values = trace.manifest["stats"]["values"]
        out[name] = {"bytes": os.path.getsize(path), "values": values, "process_entities": entities,
                     "bytes_per_value": os.path.getsize(path) / values}
    a, b = out.values()
    out["per extra entity"] = (b["bytes"] - a["bytes"]) / (b["process_entities"] - a["process_entities"])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--baseline-telemrec", help="the telemrec CLI of another install, recorded side by side")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-churn", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="bench-size-")
    results = {}
    if not args.skip_real:
        t0 = time.monotonic()
        results["real"] = real(args.seconds, workdir, args.baseline_telemrec)
        print(f"## {args.seconds} s at 1 Hz on this machine, recorded at once ({time.monotonic() - t0:.0f} s)")
        for name, row in results["real"].items():
            if "error" in row:
                print(f"{name:32} failed: {row['error']}")
                continue
            bpv = row.get("bytes_per_value")
            print(f"{name:32} {row['bytes'] / 1e3:9.1f} kB" + (f"  {row.get('values'):9d} values  {bpv:6.2f} B/value"
                                                              f" ({'met' if bpv <= TARGET_BPV else 'over'} {TARGET_BPV})"
                                                              if bpv else ""))
    if not args.skip_churn:
        results["churn"] = c = churn(workdir)
        print("## what a process entity costs beyond its values (1 h, 1 Hz, 100 process rows a tick)")
        for name, row in c.items():
            if isinstance(row, dict):
                print(f"{name:32} {row['bytes'] / 1e3:9.1f} kB  {row['process_entities']:6d} process entities  "
                      f"{row['bytes_per_value']:.3f} B/value")
        print(f"per extra entity: {c['per extra entity']:.0f} bytes "
              f"({'met' if c['per extra entity'] <= TARGET_ENTITY_BYTES else 'over'} {TARGET_ENTITY_BYTES})")
    shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

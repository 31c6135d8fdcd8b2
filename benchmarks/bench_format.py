"""Benchmark: the trace format's size and speed, and the psutil recorder's cost.

    python benchmarks/bench_format.py [--hours 24] [--seed 0] [--keep DIR] [--skip-recorder] [--json OUT]

Part 1 builds the reference trace (benchmarks/reference_trace.py: 8 GPUs x 23
DCGM fields + a 64-core psutil system level, 1 Hz) through ``TraceWriter``
(journal, then the fold into HDF5 at ``close()``) and, in the same run from the
same records, the baselines: CSV (one file per record shape), HDF5 with a
float64 dataset per field (plus int64 timestamps) under the same shuffle+gzip
filter telemrec uses, and Parquet with zstd. Sizes are divided by the number of
field values, so every ratio compares like with like. "write" is values per
second spent in the writer (for telemrec: ``write`` + ``close`` including the
fold; for the baselines: writing the file from columns already in memory);
"read" decodes every column back into numpy arrays.

Part 2 measures what recording costs: the CPU time of ``telemrec record
--reader psutil`` child processes at 1 Hz and 100 Hz divided by their ticks,
next to the cost of the raw psutil calls the reader makes.

The target (issue "trace format"): <= 1.0 byte per value on the 24 h trace.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from array import array

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference_trace as ref  # noqa: E402

TARGET_BYTES_PER_VALUE = 1.0


# -- columns kept in memory for the baselines -----------------------------------------------------

class _Column:
    __slots__ = ("values", "nulls", "typecode")

    def __init__(self) -> None:
        self.values: array | None = None
        self.nulls: list[int] = []
        self.typecode = ""

    def append(self, row: int, value) -> None:
        if value is None:
            self.nulls.append(row)
            value = 0
        elif self.values is None:
            self.typecode = "d" if type(value) is float else "q"
            self.values = array(self.typecode, [0] * row)
        if self.values is None:
            return
        if self.typecode == "q" and type(value) is float:   # a column that mixes kinds becomes float
            self.values, self.typecode = array("d", self.values), "d"
        self.values.append(value)

    def numpy(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(values, null mask); a column that never held a number is float NaN."""
        if self.values is None:
            return np.full(rows, np.nan), np.ones(rows, bool)
        vals = np.frombuffer(self.values, np.float64 if self.typecode == "d" else np.int64).copy()
        mask = np.zeros(rows, bool)
        mask[self.nulls] = True
        return vals, mask


class _Entity:
    __slots__ = ("source", "name", "mono", "wall", "fields", "rows")

    def __init__(self, source: str, name: str) -> None:
        self.source, self.name = source, name
        self.mono, self.wall = array("q"), array("q")
        self.fields: dict[str, _Column] = {}
        self.rows = 0

    def add(self, rec) -> None:
        self.mono.append(rec.mono_ns)
        self.wall.append(rec.wall_ns)
        row = self.rows
        fields = rec.fields
        for key, value in fields.items():
            col = self.fields.get(key)
            if col is None:   # a field that appears late is null before
                col = self.fields[key] = _Column()
                for earlier in range(row):
                    col.append(earlier, None)
            col.append(row, value)
        if len(fields) != len(self.fields):   # a field a record lacks is null in that row
            for key, col in self.fields.items():
                if key not in fields:
                    col.append(row, None)
        self.rows += 1


def _shape(source: str, entity: str) -> str:
    """Records of one shape share a CSV file / Parquet table: gpu*, cpu*, system."""
    return f"{source}-{entity.rstrip('0123456789') or entity}"


class _Baselines:
    """Collects the records once (off the clock) and writes every baseline from them."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.entities: dict[tuple[str, str], _Entity] = {}
        self._csv: dict[str, tuple] = {}
        self.values = 0

    def add(self, records) -> None:
        for rec in records:
            key = (rec.source, rec.entity)
            ent = self.entities.get(key)
            if ent is None:
                ent = self.entities[key] = _Entity(rec.source, rec.entity)
            ent.add(rec)
            self.values += len(rec.fields)
            self._csv_row(rec)

    # CSV is streamed while the records pass by: one file per record shape, header from the first record
    def _csv_row(self, rec) -> None:
        shape = _shape(rec.source, rec.entity)
        entry = self._csv.get(shape)
        if entry is None:
            f = open(os.path.join(self.workdir, f"baseline-{shape}.csv"), "w", newline="")
            w = csv.writer(f)
            names = list(rec.fields)
            w.writerow(["mono_ns", "wall_ns", "entity", *names])
            entry = self._csv[shape] = (f, w, names)
        f, w, names = entry
        w.writerow([rec.mono_ns, rec.wall_ns, rec.entity, *(("" if (v := rec.fields.get(n)) is None else v)
                                                            for n in names)])

    def finish_csv(self) -> list[str]:
        paths = []
        for f, _, _ in self._csv.values():
            f.close()
            paths.append(f.name)
        return paths

    def write_hdf5(self, path: str, filters: dict) -> None:
        import h5py

        with h5py.File(path, "w") as h5:
            for (source, name), ent in self.entities.items():
                g = h5.require_group(source).create_group(name)
                chunks = (min(8192, ent.rows),)
                g.create_dataset("mono_ns", data=np.frombuffer(ent.mono, np.int64), chunks=chunks, **filters)
                g.create_dataset("wall_ns", data=np.frombuffer(ent.wall, np.int64), chunks=chunks, **filters)
                for field, col in ent.fields.items():
                    vals, nulls = col.numpy(ent.rows)
                    vals = vals.astype(np.float64)
                    vals[nulls] = np.nan
                    g.create_dataset(field, data=vals, chunks=chunks, **filters)

    def parquet_tables(self):
        import pyarrow as pa

        by_shape: dict[str, list[_Entity]] = {}
        for ent in self.entities.values():
            by_shape.setdefault(_shape(ent.source, ent.name), []).append(ent)
        for shape, ents in by_shape.items():
            names = list(ents[0].fields)
            cols = {"mono_ns": pa.array(np.concatenate([np.frombuffer(e.mono, np.int64) for e in ents])),
                    "wall_ns": pa.array(np.concatenate([np.frombuffer(e.wall, np.int64) for e in ents])),
                    "entity": pa.array(np.concatenate([np.full(e.rows, e.name, object) for e in ents])).dictionary_encode()}
            for field in names:
                parts = [e.fields[field].numpy(e.rows) for e in ents]
                vals = np.concatenate([p[0] for p in parts])
                nulls = np.concatenate([p[1] for p in parts])
                cols[field] = pa.array(vals, mask=nulls)
            yield shape, pa.table(cols)

    def write_parquet(self, prefix: str, level: int, tuned: bool = False) -> list[str]:
        """Parquet with zstd; ``tuned``: also DELTA_BINARY_PACKED ints and BYTE_STREAM_SPLIT floats
        (Parquet's own answers to counters and noisy floats; dictionary only for the entity column)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        paths = []
        for shape, table in self.parquet_tables():
            path = f"{prefix}-{shape}.parquet"
            options = {}
            if tuned:
                encodings = {}
                for field in table.schema:
                    if pa.types.is_integer(field.type):
                        encodings[field.name] = "DELTA_BINARY_PACKED"
                    elif pa.types.is_floating(field.type):
                        encodings[field.name] = "BYTE_STREAM_SPLIT"
                options = {"use_dictionary": ["entity"], "column_encoding": encodings}
            pq.write_table(table, path, compression="zstd", compression_level=level, **options)
            paths.append(path)
        return paths


# -- reading back ---------------------------------------------------------------------------------

def read_telemrec(path: str) -> int:
    """Decode every field and timestamp column of every entity; returns field values decoded."""
    from telemrec.trace import open_trace

    n = 0
    with open_trace(path) as trace:
        for source, name in trace.entities():
            ent = trace.entity(source, name)
            ent.ints("_mono_ns")
            ent.ints("_wall_ns")
            for field in ent.fields:
                n += len(ent.read(field))
    return n


def read_hdf5(path: str) -> None:
    import h5py

    def load(_, obj) -> None:   # visititems stops at the first callback that returns something
        if isinstance(obj, h5py.Dataset):
            obj[()]

    with h5py.File(path, "r") as h5:
        h5.visititems(load)


def read_parquet(paths: list[str]) -> None:
    import pyarrow.parquet as pq

    for p in paths:
        pq.read_table(p).columns  # noqa: B018  (decoding is the point)


def read_csv(paths: list[str]) -> None:
    import pandas as pd

    for p in paths:
        pd.read_csv(p)


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _size(paths) -> int:
    return sum(os.path.getsize(p) for p in ([paths] if isinstance(paths, str) else paths))


# -- part 1 -------------------------------------------------------------------------------------------

def bench_format(hours: float, seed: int, workdir: str) -> dict:
    from telemrec.trace import v1

    trace_path = os.path.join(workdir, "reference.h5")
    base = _Baselines(workdir)
    t0 = time.perf_counter()
    info = ref.build_reference_trace(trace_path, hours, seed, on_tick=base.add)
    build_s = time.perf_counter() - t0
    csv_paths = base.finish_csv()
    values = info["values"]
    assert values == base.values, (values, base.values)
    rows = []

    def row(name, size, write_s, read_s, note=""):
        rows.append({"format": name, "bytes": size, "bytes_per_value": size / values,
                     "write_values_per_s": values / write_s if write_s else None,
                     "read_values_per_s": values / read_s if read_s else None, "note": note})

    tele_s = info["write_s"] + info["close_s"]
    from telemrec.trace import CURRENT_FORMAT_VERSION

    row(f"telemrec v{CURRENT_FORMAT_VERSION} (" + _filters_text(v1.default_filters()) + ")", info["bytes"], tele_s,
        _timed(read_telemrec, trace_path), f"fold {info['close_s']:.1f} s of {tele_s:.1f} s")
    row("CSV", _size(csv_paths), None, _timed(read_csv, csv_paths), "pandas.read_csv")
    h5_path = os.path.join(workdir, "baseline-float64.h5")
    filters = v1.default_filters()
    row(f"HDF5 float64 ({_filters_text(filters)})", 0, _timed(base.write_hdf5, h5_path, filters), 0)
    rows[-1]["bytes"] = _size(h5_path)
    rows[-1]["bytes_per_value"] = rows[-1]["bytes"] / values
    rows[-1]["read_values_per_s"] = values / _timed(read_hdf5, h5_path)
    for tuned, label in ((False, "Parquet (zstd-9; a long table per record shape, sorted by entity)"),
                         (True, "Parquet tuned (zstd-9 + DELTA_BINARY_PACKED ints, BYTE_STREAM_SPLIT floats)")):
        t = time.perf_counter()
        pq_paths = base.write_parquet(os.path.join(workdir, "baseline-tuned" if tuned else "baseline"), 9, tuned)
        pq_s = time.perf_counter() - t
        row(label, _size(pq_paths), pq_s, _timed(read_parquet, pq_paths))
    return {"hours": hours, "seed": seed, "ticks": info["ticks"], "records": info["records"], "values": values,
            "values_per_tick": values / info["ticks"], "build_s": build_s, "rows": rows}


def _filters_text(filters: dict) -> str:
    parts = []
    if filters.get("shuffle"):
        parts.append("shuffle")
    comp = filters.get("compression")
    if comp is not None:
        opts = filters.get("compression_opts")
        parts.append(f"{comp}" + (f"-{opts}" if isinstance(opts, int) else ""))
    return "+".join(parts) or "no filter"


# -- part 2 -------------------------------------------------------------------------------------------

RAW_CALLS = (   # what PsutilReader._read_system calls each tick (levels=system, the default)
    ("cpu_times(percpu=True)", lambda ps: ps.cpu_times(percpu=True)),
    ("cpu_times()", lambda ps: ps.cpu_times()),
    ("virtual_memory()", lambda ps: ps.virtual_memory()),
    ("swap_memory()", lambda ps: ps.swap_memory()),
    ("cpu_stats()", lambda ps: ps.cpu_stats()),
    ("disk_io_counters(perdisk=True)", lambda ps: ps.disk_io_counters(perdisk=True, nowrap=False)),
    ("net_io_counters(pernic=True)", lambda ps: ps.net_io_counters(pernic=True, nowrap=False)),
    ("getloadavg()", lambda ps: ps.getloadavg()),
    ("cpu_count()", lambda ps: ps.cpu_count(logical=True)),
    ("boot_time()", lambda ps: ps.boot_time()),
    ("os.sched_getaffinity(0)", lambda ps: os.sched_getaffinity(0)),
)


def bench_raw_psutil(seconds_per_call: float = 0.4) -> dict:
    import psutil

    out = {}
    for name, fn in RAW_CALLS:
        fn(psutil)
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds_per_call:
            fn(psutil)
            n += 1
        out[name] = {"wall_us": (time.perf_counter() - t0) / n * 1e6, "cpu_us": (time.process_time() - c0) / n * 1e6}
    out["sum"] = {k: sum(v[k] for v in out.values()) for k in ("wall_us", "cpu_us")}
    try:   # the reader around those calls (record building), in a hot loop, without the recorder
        from telemrec.readers.psutil_ import PsutilReader
        from telemrec.record import ReaderConfig

        reader = PsutilReader()
        reader.open(ReaderConfig(source=None, interval=1.0, options={}))
        records = len(reader.read())
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < 4 * seconds_per_call:
            reader.read()
            n += 1
        reader.close()
        out[f"PsutilReader.read() ({records} records)"] = {"wall_us": (time.perf_counter() - t0) / n * 1e6,
                                                           "cpu_us": (time.process_time() - c0) / n * 1e6}
    except Exception as exc:  # the reader is not there yet: the raw calls still stand
        print(f"(PsutilReader not measured: {type(exc).__name__}: {exc})", file=sys.stderr)
    return out


def recorder_command() -> list[str] | None:
    """The ``telemrec`` CLI next to this Python, or None when it cannot record yet."""
    exe = os.path.join(os.path.dirname(sys.executable), "telemrec")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-c", "from telemrec.cli import main; main()"]
    try:
        probe = subprocess.run([*cmd, "record", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode != 0 or "--interval" not in probe.stdout:
        return None
    try:
        from telemrec.readers.registry import get_reader

        get_reader("psutil")
    except Exception:
        return None
    return cmd


def _process_cpu_ns(pid: int) -> int | None:
    """CPU time of all live threads of ``pid`` in ns (schedstat: exact, unlike the 10 ms of /proc/PID/stat)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            t = psutil.Process(pid).cpu_times()
            return int((t.user + t.system) * 1e9)
        except Exception:
            return None
    return total


def _sleep_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))


def _run_recorder(cmd: list[str], interval: float, duration: float, out: str, warmup: float = 4.0) -> dict:
    """One ``telemrec record`` child. The steady-state cost is the CPU time its threads spend between two
    moments well after start-up and before the stop, divided by the ticks sampled in between."""
    argv = [*cmd, "record", "--reader", "psutil", "--interval", str(interval), "--duration", str(duration),
            "-q", "-o", out]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _sleep_until(t0 + warmup)
    cpu1, mono1 = _process_cpu_ns(proc.pid), time.monotonic_ns()
    _sleep_until(t0 + duration - 1.0)
    cpu2, mono2 = _process_cpu_ns(proc.pid), time.monotonic_ns()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}: {err.strip()[-400:]}")
    from telemrec.trace import open_trace

    with open_trace(out) as trace:
        table = trace.ticks("psutil")
        done = table["status"] != 2
        ticks = int(np.count_nonzero(done))
        start = table["start_mono_ns"]
        in_window = int(np.count_nonzero(done & (start >= mono1) & (start < mono2)))
        tick_cpu = table["cpu_ns"][done]
        records = int(trace.manifest["stats"].get("records", 0))
        missed = int(np.count_nonzero(table["status"] == 2))
    steady = None
    if cpu1 is not None and cpu2 is not None and in_window:
        steady = (cpu2 - cpu1) / in_window / 1e3
    return {"interval": interval, "duration": duration, "wall_s": time.monotonic() - t0, "ticks": ticks,
            "missed_ticks": missed, "records_per_tick": records / ticks if ticks else 0.0,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "cpu_per_tick_us_whole": (usage.ru_utime + usage.ru_stime) / ticks * 1e6 if ticks else None,
            "cpu_per_tick_us_steady": steady, "window_ticks": in_window,
            "tick_cpu_median_us": float(np.median(tick_cpu)) / 1e3 if len(tick_cpu) else None}


def bench_recorder(workdir: str, plan=((1.0, 40.0), (0.01, 10.0))) -> dict:
    """CPU per tick of `telemrec record --reader psutil` at each (interval, duration) of ``plan``."""
    cmd = recorder_command()
    if cmd is None:
        return {"unavailable": "`telemrec record` or the psutil reader is not installed yet; "
                               "recorder rows skipped (raw psutil costs above still apply)"}
    return {f"{1 / interval:g} Hz": _run_recorder(cmd, interval, duration,
                                                  os.path.join(workdir, f"rec-{interval:g}s.h5"))
            for interval, duration in plan}


# -- report ---------------------------------------------------------------------------------------------

def _fmt_rate(x) -> str:
    return "-" if x is None else f"{x / 1e6:.2f} M/s" if x >= 1e6 else f"{x / 1e3:.0f} k/s"


def print_format(res: dict) -> None:
    print(f"\nReference trace: {res['hours']:g} h, {res['ticks']} ticks, {res['records']} records, "
          f"{res['values']} values ({res['values_per_tick']:.0f} per tick); built in {res['build_s']:.0f} s\n")
    tele = res["rows"][0]["bytes"]
    print("| format | bytes | bytes/value | x telemrec | write values/s | read values/s | note |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in res["rows"]:
        print(f"| {r['format']} | {r['bytes']:,} | {r['bytes_per_value']:.3f} | {r['bytes'] / tele:.2f} | "
              f"{_fmt_rate(r['write_values_per_s'])} | {_fmt_rate(r['read_values_per_s'])} | {r['note']} |")
    bpv = res["rows"][0]["bytes_per_value"]
    verdict = "meets" if bpv <= TARGET_BYTES_PER_VALUE else "MISSES"
    print(f"\ntelemrec: {bpv:.3f} bytes/value {verdict} the target of <= {TARGET_BYTES_PER_VALUE} "
          f"({'24 h' if res['hours'] == 24 else 'the target is defined on 24 h; this run is ' + format(res['hours'], 'g') + ' h'})")


def print_psutil(raw: dict, rec: dict) -> None:
    print("\nRaw psutil calls the reader makes (mean per call, this machine):\n")
    print("| call | wall us | CPU us |")
    print("|---|---:|---:|")
    for name, v in raw.items():
        label = "**sum of the calls above (one tick)**" if name == "sum" else f"`{name}`"
        print(f"| {label} | {v['wall_us']:.0f} | {v['cpu_us']:.0f} |")
    print()
    if "unavailable" in rec:
        print(f"Recorder: {rec['unavailable']}")
        return
    print("| `telemrec record --reader psutil` | ticks (missed) | records/tick | CPU/tick, whole process "
          "(start-up and fold included) | CPU/tick, steady state (all threads) | sampling thread CPU/tick "
          "(median of the tick table) | the raw psutil calls alone |")
    print("|---|---:|---:|---:|---:|---:|---:|")

    def us(x) -> str:
        return "-" if x is None else f"{x:,.0f} us"

    for rate, v in rec.items():
        print(f"| {rate} (`--interval {v['interval']:g} --duration {v['duration']:g}`) | {v['ticks']} "
              f"({v['missed_ticks']}) | {v['records_per_tick']:.0f} | {us(v['cpu_per_tick_us_whole'])} | "
              f"{us(v['cpu_per_tick_us_steady'])} | {us(v['tick_cpu_median_us'])} | {us(raw['sum']['cpu_us'])} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="length of the reference trace (default 24)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", metavar="DIR", help="write the files here and keep them (default: a temp dir)")
    parser.add_argument("--skip-format", action="store_true", help="only the recorder/psutil part")
    parser.add_argument("--skip-recorder", action="store_true", help="only the format part")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    workdir = args.keep or tempfile.mkdtemp(prefix="telemrec-bench-format-")
    os.makedirs(workdir, exist_ok=True)
    results: dict = {}
    try:
        if not args.skip_format:
            results["format"] = bench_format(args.hours, args.seed, workdir)
            print_format(results["format"])
        if not args.skip_recorder:
            results["psutil_raw"] = bench_raw_psutil()
            results["recorder"] = bench_recorder(workdir)
            print_psutil(results["psutil_raw"], results["recorder"])
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

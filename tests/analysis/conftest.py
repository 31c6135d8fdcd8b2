"""A small synthetic node trace with psutil and NVML vocabulary, written through TraceWriter.

Every value is chosen so that the expected JUmPER figures are easy to state:

- ``cpu<k>`` (k = 0..3) is busy ``BUSY[k]`` of every second (user time), idle otherwise.
- ``system``: 16 GiB total, in use 4 GiB + 0.1 GiB per tick.
- ``disk:sda`` reads 1 MiB/s and 10 ops/s, writes 2 MiB/s and 20 ops/s; its write_bytes
  counter resets at tick ``RESET``; ``disk:sda1`` (a partition) must not be added in.
- ``pid:100`` ("process user") uses 0.6 CPU s/s and 1 GiB RSS; ``pid:200`` ("user", from
  tick 5) uses 0.2 CPU s/s and 0.5 GiB. ``pid:100`` holds 1 GiB on GPU 0; ``pid:300``
  (in no level) 2 GiB on GPU 1.
- ``gpu0``/``gpu1`` (NVML, stamped 5 ms after psutil): 50 % / 80 % busy, 2 / 4 GiB used,
  300 W; ``temperature.gpu`` of gpu0 is None (N/A) at tick 3; gpu1's energy counter resets
  at tick 15.
- psutil misses tick ``MISSED`` (no records, a missed tick in its tick table).
"""

from __future__ import annotations

import pytest

from telemrec.record import RawRecord
from telemrec.trace import TraceWriter
from telemrec.trace.v1 import TICK_MISSED, TICK_OK

N = 20
T0_MONO = 1_000 * 10**9
T0_WALL = 1_700_000_000 * 10**9
S = 10**9
GIB = 1 << 30
MIB = 1 << 20
BUSY = (0.25, 0.5, 0.75, 1.0)
MISSED = 7
RESET = 12
NVML_DELAY = 5_000_000

PSUTIL_CAPS = {
    "kind": "psutil",
    "fields": [],
    "units": {"cpu_times.user": "seconds", "cpu_times.system": "seconds", "cpu_times.idle": "seconds",
              "cpu_times.iowait": "seconds", "virtual_memory.total": "bytes", "virtual_memory.available": "bytes",
              "virtual_memory.used": "bytes", "disk_io_counters.read_bytes": "bytes",
              "disk_io_counters.write_bytes": "bytes", "memory_info.rss": "bytes", "io_counters.read_bytes": "bytes",
              "io_counters.write_bytes": "bytes"},
    "descriptions": {"cpu_times.user": "CPU time spent in user mode"},
    "counters": ["cpu_times.user", "cpu_times.system", "cpu_times.idle", "cpu_times.iowait",
                 "disk_io_counters.read_bytes", "disk_io_counters.write_bytes", "disk_io_counters.read_count",
                 "disk_io_counters.write_count", "io_counters.read_bytes", "io_counters.write_bytes",
                 "io_counters.read_count", "io_counters.write_count"],
}
NVML_CAPS = {
    "kind": "gpu",
    "fields": [],
    "units": {"utilization.gpu": "percent", "utilization.memory": "percent", "memory.used": "bytes",
              "memory.total": "bytes", "memory.free": "bytes", "power.usage": "milliwatts",
              "energy.total": "millijoules", "temperature.gpu": "celsius", "used_gpu_memory": "bytes"},
    "descriptions": {},
    "counters": ["energy.total"],
}


def manifest(host: str = "node-a", ticks: bool = True) -> dict:
    return {
        "host": {"hostname": host, "os": "Linux", "kernel": "6.1", "cpu_model": "test", "cpu_count_logical": 4,
                 "cpu_affinity": [0, 1, 2, 3], "memory_total_bytes": 16 * GIB, "python": "3.11.7"},
        "gpus": [{"index": g, "name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{g}", "memory_total_bytes": 80 * GIB}
                 for g in range(2)],
        "readers": [
            {"label": "psutil", "name": "psutil", "source": None, "options": {}, "interval_seconds": 1.0,
             "caps": PSUTIL_CAPS, "identity": {"pid": 100, "uid": 1000, "levels": ["system", "process", "user"]},
             "version": "7.2.2"},
            {"label": "nvml", "name": "nvml", "source": None, "options": {}, "interval_seconds": 1.0,
             "caps": NVML_CAPS, "identity": {}, "version": "12.570"},
        ],
        "interval_seconds": 1.0,
        "start": {"wall_ns": T0_WALL, "mono_ns": T0_MONO},
        "stop": None, "slurm": None, "command": {"argv": ["python", "train.py"], "pid": 100, "exit_status": 0},
        "tags": {},
    }


def psutil_records(i: int, wall_shift: int = 0) -> list[RawRecord]:
    mono = T0_MONO + i * S + 2_000_000
    wall = T0_WALL + i * S + 2_000_000 + 40 + wall_shift
    recs = []
    used = 4 * GIB + i * GIB // 10
    recs.append(RawRecord(mono, wall, "system", {
        "cpu_times.user": round(100.0 + i * sum(BUSY), 2), "cpu_times.system": 50.0,
        "cpu_times.idle": round(1000.0 + i * (4 - sum(BUSY)), 2), "cpu_times.iowait": 1.0,
        "virtual_memory.total": 16 * GIB, "virtual_memory.available": 16 * GIB - used, "virtual_memory.used": used,
        "cpu_count.logical": 4}, "psutil", "7.2.2"))
    for k, busy in enumerate(BUSY):
        recs.append(RawRecord(mono, wall, f"cpu{k}", {
            "cpu_times.user": round(10.0 + i * busy, 2), "cpu_times.system": 5.0,
            "cpu_times.idle": round(500.0 + i * (1 - busy), 2), "cpu_times.iowait": 0.5}, "psutil", "7.2.2"))
    write = (i - RESET) * 2 * MIB if i >= RESET else 10**12 + i * 2 * MIB
    recs.append(RawRecord(mono, wall, "disk:sda", {
        "disk_io_counters.read_bytes": 10**9 + i * MIB, "disk_io_counters.write_bytes": write,
        "disk_io_counters.read_count": 5000 + i * 10, "disk_io_counters.write_count": 7000 + i * 20}, "psutil", "7.2.2"))
    recs.append(RawRecord(mono, wall, "disk:sda1", {
        "disk_io_counters.read_bytes": 10**8 + i * MIB // 2, "disk_io_counters.write_bytes": 10**8 + i * MIB,
        "disk_io_counters.read_count": 100 + i * 5, "disk_io_counters.write_count": 100 + i * 10}, "psutil", "7.2.2"))
    recs.append(RawRecord(mono, wall, "pid:100", {
        "cpu_times.user": round(i * 0.5, 2), "cpu_times.system": round(i * 0.1, 2), "memory_info.rss": GIB,
        "io_counters.read_bytes": i * 1000, "io_counters.write_bytes": i * 4000, "io_counters.read_count": i * 3,
        "io_counters.write_count": i * 4, "name": "python", "cmdline": "python train.py", "num_threads": 8,
        "levels": "process user"}, "psutil", "7.2.2"))
    if i >= 5:
        recs.append(RawRecord(mono, wall, "pid:200", {
            "cpu_times.user": round((i - 5) * 0.2, 2), "cpu_times.system": 0.0, "memory_info.rss": GIB // 2,
            "io_counters.read_bytes": 0, "io_counters.write_bytes": 0, "io_counters.read_count": 0,
            "io_counters.write_count": 0, "name": "bash", "cmdline": "bash", "num_threads": 1,
            "levels": "user"}, "psutil", "7.2.2"))
    return recs


def nvml_records(i: int, wall_shift: int = 0) -> list[RawRecord]:
    mono = T0_MONO + i * S + NVML_DELAY
    wall = T0_WALL + i * S + NVML_DELAY + 55 + wall_shift
    recs = []
    for g, (util, used) in enumerate(((50, 2 * GIB), (80, 4 * GIB))):
        energy = (i - 15) * 300_000 if (g == 1 and i >= 15) else 5 * 10**9 + i * 300_000
        recs.append(RawRecord(mono, wall, f"gpu{g}", {
            "utilization.gpu": util, "utilization.memory": 10, "memory.used": used, "memory.total": 80 * GIB,
            "memory.free": 80 * GIB - used, "power.usage": 300_000, "energy.total": energy,
            "temperature.gpu": None if (g == 0 and i == 3) else 40 + g}, "nvml", "12.570"))
    recs.append(RawRecord(mono, wall, "gpu0/pid:100", {"pid": 100, "used_gpu_memory": GIB, "type": "compute",
                                                       "gpu_index": 0}, "nvml", "12.570"))
    recs.append(RawRecord(mono, wall, "gpu1/pid:300", {"pid": 300, "used_gpu_memory": 2 * GIB, "type": "compute",
                                                       "gpu_index": 1}, "nvml", "12.570"))
    return recs


def build_node_trace(path, *, host: str = "node-a", n: int = N, ticks: bool = True, annotations: bool = True,
                     wall_shift: int = 0, missed: tuple[int, ...] = (MISSED,)) -> str:
    path = str(path)
    writer = TraceWriter(path, manifest(host, ticks))
    tick_rows = {"psutil": [], "nvml": []}
    for i in range(n):
        if i not in missed:
            writer.write(psutil_records(i, wall_shift))
        writer.write(nvml_records(i, wall_shift))
        sched = T0_MONO + i * S
        for label, delay, status in (("psutil", 2_000_000, TICK_MISSED if i in missed else TICK_OK),
                                     ("nvml", NVML_DELAY, TICK_OK)):
            ok = status == TICK_OK
            tick_rows[label].append({"tick": i, "scheduled_mono_ns": sched,
                                     "start_mono_ns": sched + 1000 if ok else None,
                                     "end_mono_ns": sched + delay + 1000 if ok else None,
                                     "start_wall_ns": T0_WALL + i * S + 1000 + wall_shift if ok else None,
                                     "status": status, "records": 5 if ok else 0, "cpu_ns": 100 if ok else None})
    if ticks:
        for label, rows in tick_rows.items():
            writer.write_ticks(label, rows)
    if annotations:
        writer.annotate("warmup", T0_WALL + wall_shift, T0_WALL + 4 * S + 500_000_000 + wall_shift,
                        T0_MONO, T0_MONO + 4 * S + 500_000_000)
        writer.annotate("train", T0_WALL + 5 * S + wall_shift, T0_WALL + (n - 1) * S + 500_000_000 + wall_shift,
                        T0_MONO + 5 * S, T0_MONO + (n - 1) * S + 500_000_000)
    stop = {"wall_ns": T0_WALL + n * S + wall_shift, "mono_ns": T0_MONO + n * S}
    writer.close(stop=stop)
    return path


@pytest.fixture(scope="session")
def node_trace(tmp_path_factory):
    return build_node_trace(tmp_path_factory.mktemp("analysis") / "node-a.h5")


@pytest.fixture(scope="session")
def node_trace_b(tmp_path_factory):
    """A second host, 300 ms later on the wall clock, without annotations."""
    return build_node_trace(tmp_path_factory.mktemp("analysis-b") / "node-b.h5", host="node-b",
                            annotations=False, wall_shift=300_000_000, missed=())

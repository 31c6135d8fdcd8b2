import dataclasses
import math

import pandas as pd
import pytest

from telemrec.analysis import ProcessStats, SystemStats, live_snapshot, snapshot
from telemrec.record import RawRecord

from .conftest import BUSY, GIB, MIB, T0_WALL, S


def test_dataclasses_have_cjms_fields():
    assert [f.name for f in dataclasses.fields(SystemStats)] == [
        "cpu_percent", "memory_used_mb", "memory_total_mb", "memory_available_mb", "gpu_type", "gpu_free_memory_mb",
        "gpu_total_memory_mb", "gpu_used_memory_mb", "gpu_load_percent", "details"]
    assert [f.name for f in dataclasses.fields(ProcessStats)] == ["pid", "gpu_index", "gpu_memory_mb", "command"]
    assert SystemStats().to_dict()["gpu_type"] == "None"
    assert ProcessStats().to_dict() == {"pid": 0, "gpu_index": -1, "gpu_memory_mb": 0.0, "command": ""}


def test_snapshot_at_an_instant(node_trace):
    snap = snapshot(node_trace, at=pd.Timestamp(T0_WALL + 10 * S + 500_000_000, unit="ns", tz="UTC"))
    s = snap.system
    assert s.cpu_percent == pytest.approx(sum(BUSY) / 4 * 100)
    assert s.memory_total_mb == pytest.approx(16 * 1024)
    assert s.memory_used_mb == pytest.approx((4 * GIB + 10 * GIB // 10) / MIB)
    assert s.memory_available_mb == pytest.approx(16 * 1024 - s.memory_used_mb)
    assert s.gpu_type == "NVIDIA"
    assert s.gpu_used_memory_mb == pytest.approx(6 * 1024)
    assert s.gpu_total_memory_mb == pytest.approx(160 * 1024)
    assert s.gpu_free_memory_mb == pytest.approx(154 * 1024)
    assert s.gpu_load_percent == 80.0                      # the busiest GPU
    assert [d["index"] for d in s.details["gpus"]] == [0, 1]
    assert s.details["time"].startswith("2023-11-14T22:13:30.005")
    procs = {p.pid: p for p in snap.processes}
    assert procs[100] == ProcessStats(pid=100, gpu_index=0, gpu_memory_mb=1024.0, command="python train.py")
    assert procs[300].gpu_index == 1 and procs[300].command == ""


def test_snapshot_defaults_to_the_end_and_accepts_offsets(node_trace):
    end = snapshot(node_trace)
    assert end.wall_ns >= T0_WALL + 19 * S
    early = snapshot(node_trace, at=pd.Timedelta("2s"))
    assert early.wall_ns < T0_WALL + 3 * S


def test_first_sample_has_no_cpu_percent(node_trace):
    first = snapshot(node_trace, at=T0_WALL + S // 2)
    assert math.isnan(first.system.cpu_percent)           # unknown, not 0


class FakeReader:
    def __init__(self, batches, identity=None):
        self.batches = list(batches)
        self.closed = False
        self._identity = identity or {}

    def open(self, config):
        self.config = config

    def read(self):
        return self.batches.pop(0)

    def identity(self):
        return self._identity

    def close(self):
        self.closed = True


def test_live_snapshot_with_injected_readers():
    def system(t, user, idle):
        return RawRecord(t, t, "system", {"cpu_times.user": user, "cpu_times.idle": idle,
                                          "virtual_memory.total": 8 * GIB, "virtual_memory.used": 2 * GIB,
                                          "virtual_memory.available": 6 * GIB}, "psutil", "7")

    ps = FakeReader([[system(1, 10.0, 90.0)], [system(2, 10.3, 90.1)]])
    nv = FakeReader([[RawRecord(3, 3, "gpu0", {"utilization.gpu": 33, "memory.used": GIB, "memory.free": 3 * GIB,
                                              "memory.total": 4 * GIB}, "nvml", "1")]],
                    identity={"gpus": [{"index": 0, "name": "T4"}]})
    snap = live_snapshot(0.0, psutil_reader=ps, nvml_reader=nv)
    assert snap.system.cpu_percent == pytest.approx(75.0)
    assert snap.system.memory_used_mb == 2048.0 and snap.system.gpu_load_percent == 33.0
    assert snap.system.gpu_total_memory_mb == 4096.0 and snap.system.details["gpus"][0]["name"] == "T4"
    assert ps.closed and nv.closed
    assert ps.config.options["levels"] == "system"


def test_live_snapshot_on_this_machine():
    snap = live_snapshot(0.05)
    s = snap.system
    assert 0.0 <= s.cpu_percent <= 100.0
    assert s.memory_total_mb > s.memory_used_mb > 0
    assert s.details["source"] == "live"

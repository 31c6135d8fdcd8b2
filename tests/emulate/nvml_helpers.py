"""Helpers of the NVML replay tests: traces of the nvml reader over telemrec.testing.fake_nvml restamped onto
a grid, and a probe that runs pynvml calls in a process served by the replay library."""

from __future__ import annotations

import dataclasses
import os

from telemrec.readers.nvml import NvmlReader
from telemrec.record import ReaderConfig
from telemrec.recorder import ReaderSlot, RecordRequest
from telemrec.recorder.session import build_manifest
from telemrec.testing.fake_nvml import GIB, DeviceSpec, FakeNvml, ManualClock, MigSpec, ProcessSpec
from telemrec.trace import TraceWriter

START_WALL = 1_795_000_000 * 10**9
START_MONO = 10**12
SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "sample_traces", "v2")


def write_nvml_trace(path: str, devices, *, ticks: int = 30, interval: float = 0.5, seed: int = 3,
                     options: dict | None = None) -> str:
    """Record ``devices`` with the nvml reader for ``ticks`` ticks of ``interval`` script seconds, each
    record stamped on the grid (GPUs a few microseconds apart within a tick, as a real reader)."""
    clock = ManualClock()
    reader = NvmlReader(nvml=FakeNvml(devices, clock=clock, seed=seed), environ={})
    config = ReaderConfig(interval=interval, options=dict(options or {}))
    reader.open(config)
    manifest = build_manifest(RecordRequest(output=path, readers=["nvml"], interval=interval),
                              [ReaderSlot("nvml", reader, config)], START_WALL, START_MONO, None)
    writer = TraceWriter(path, manifest)
    for k in range(ticks):
        base = int(round(k * interval * 1e9))
        writer.write([dataclasses.replace(r, mono_ns=START_MONO + base + i * 1000, wall_ns=START_WALL + base + i * 1000)
                      for i, r in enumerate(reader.read())])
        clock.advance(interval)
    reader.close()
    end = int(round(ticks * interval * 1e9))
    writer.close(stop={"wall_ns": START_WALL + end, "mono_ns": START_MONO + end, "reason": "duration reached"})
    return path


def mig_and_processes() -> list[DeviceSpec]:
    """GPU 0: MIG with two instances and processes in them (compute, graphics); GPU 1: memory only
    through the v1 call, a process in both lists and one whose memory NVML cannot tell, lost after
    10 s; GPU 2: a fan."""
    migs = (MigSpec(1, 0, memory_total=10 * GIB, memory_used=3 * GIB, profile="2g.10gb", uuid="MIG-11111111-2222-3333-4444-555555555555"),
            MigSpec(2, 0, memory_total=20 * GIB, memory_used=5 * GIB, profile="3g.20gb"))
    gpu0 = DeviceSpec(mig_capable=True, mig_enabled=True, mig_devices=migs, unsupported={"nvmlDeviceGetFanSpeed": 3},
                      processes=(ProcessSpec(5001, "compute", 2 * GIB, gpu_instance_id=1, compute_instance_id=0),
                                 ProcessSpec(5002, "graphics", 1 * GIB, start=3.0, gpu_instance_id=2,
                                             compute_instance_id=0)))
    gpu1 = DeviceSpec(name="NVIDIA H100 80GB HBM3", memory_total=80 * GIB, power_limit=700_000,
                      unsupported={"nvmlDeviceGetMemoryInfo_v2": 13, "nvmlDeviceGetFanSpeed": 3},
                      processes=(ProcessSpec(6001, "compute", 4 * GIB), ProcessSpec(6001, "graphics", 4 * GIB),
                                 ProcessSpec(6002, "compute", None, start=2.0, end=6.0)),
                      lost_after=10.0)
    gpu2 = DeviceSpec(name="NVIDIA L40S", memory_total=48 * GIB, power_limit=350_000, ecc=None)
    return [gpu0, gpu1, gpu2]


PRELUDE = '''
import ctypes, json, sys
import pynvml as N

def plain(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, ctypes._SimpleCData):
        return plain(v.value)
    if isinstance(v, (list, tuple, ctypes.Array)):
        return [plain(x) for x in v]
    if hasattr(v, "_fields_"):
        return {name: plain(getattr(v, name)) for name, *_ in v._fields_}
    if isinstance(v, N.nvmlFriendlyObject):
        return {k: plain(x) for k, x in sorted(v.__dict__.items())}
    return v

def call(fn, *args, **kwargs):
    """The value of a pynvml call as JSON, or {"error": NVML return code}."""
    try:
        return plain(getattr(N, fn)(*args, **kwargs))
    except N.NVMLError as exc:
        return {"error": exc.value}

out = {}
'''


def probe(trace: str, code: str, directory, *, at: float | None = None, speed: float = 1e-6,
          init: bool = True, **window) -> dict:
    """Run ``code`` (pynvml calls filling ``out``) in a process that loads the replay library serving
    ``trace``; with ``at``, trace time stands still at ``at`` seconds after the window start."""
    import json
    import subprocess
    import sys
    import time

    from telemrec.emulate.nvml import prepare

    os.makedirs(directory, exist_ok=True)
    anchor = None if at is None else time.monotonic_ns() - int(at * 1e9 / speed)
    prepared = prepare(trace, str(directory), speed=speed, anchor_mono_ns=anchor, **window)
    source = PRELUDE + ("N.nvmlInit()\n" if init else "") + code + "\nprint(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", source], env=prepared.env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def recorded_at(trace: str, entity: str, seconds: float, source: str = "nvml"):
    """The record of ``entity`` in effect ``seconds`` after the trace's first record of ``source``."""
    from telemrec.trace import open_trace

    with open_trace(trace) as t:
        records = list(t.records(sources=[source]))
    origin = records[0].mono_ns
    mine = [r for r in records if r.entity == entity and r.mono_ns - origin <= seconds * 1e9]
    return mine[-1] if mine else next(r for r in records if r.entity == entity)

"""The reference trace: a deterministic, realistic day of an 8-GPU training node.

    python benchmarks/reference_trace.py OUT.h5 [--hours 24] [--seed 0]

What one tick (1 Hz) holds: 73 records, 851 field values

======================  =======  ==========================================  ======
source / entity         records  fields                                      values
======================  =======  ==========================================  ======
dcgmi ``gpu0..gpu7``          8  the 23 DCGM fields of KempnerPulse's list       184
psutil ``system``             1  ``cpu_times.*`` (10, aggregate),                 27
                                 ``virtual_memory.*`` (10), ``cpu_stats.*``
                                 (4), ``getloadavg.1m|5m|15m``
psutil ``cpu0..cpu63``       64  ``cpu_times.user|nice|system|idle|iowait|      640
                                 irq|softirq|steal|guest|guest_nice``
======================  =======  ==========================================  ======

24 h = 86,400 ticks = 6,307,200 records = 73,526,400 values (the first tick's
ten profiling fields, ids 1001-1010, are None: DCGM's cold-start N/A). The
trace also holds what the recorder writes besides records: the tick tables of
both readers and a schema-valid manifest.

Values are what the sources give, with their types and precision:

- DCGM fields are keyed by their DCGM 4.6 names (telemrec/readers/dcgm_fields.tsv:
  records are keyed by the 4.6 name of the id). INT64 fields are ints (clocks
  MHz, temperatures C, MiB, percent, counters, bytes/s); DOUBLE fields are what
  ``dcgmi dmon`` prints with ``{:.3F}``: power in W with 3 decimals (NVML's mW),
  profiling ratios 0-1 with 3 decimals. The energy counter integrates the power
  in mJ; the PCIe replay counter almost never moves.
- psutil CPU times are ``ticks / 100`` (USER_HZ=100 clock ticks of /proc/stat),
  computed from nanosecond accounting the way the kernel does, so they carry 2
  decimals and the per-CPU increments add up to ~100 ticks a second; the
  aggregate is the sum over CPUs (the ``cpu`` line). Memory figures are kB *
  1024 as psutil derives them from /proc/meminfo; load averages are the
  kernel's fixed-point ``avenrun / 2048`` (glibc reads them via sysinfo()),
  updated every 5 s; cpu_stats are raw counters, ``syscalls`` is 0 on Linux.

Workload: jobs on all 8 (or 4) GPUs, each with a data-loading phase, training
epochs (with a step rhythm and dataloader stalls), an evaluation after every
epoch and a checkpoint after most, separated by idle gaps.

Timestamps follow telemrec's recorder: each reader samples on its own thread on
a 1 s grid (``scheduled_mono_ns = t0 + i * 1e9``) and wakes up 50 us - 1 ms late
(rarely tens of ms); all records of one reader tick share one (mono_ns, wall_ns)
pair taken at the sample; wall_ns = mono_ns + a constant offset + the few tens
of ns between the two clock reads. The dcgmi tick is stamped when dmon's block
is read, 1-4 ms after the grid point.

The generator is prefix-stable: the first hour of ``hours=24`` equals ``hours=1``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from telemrec.record import RawRecord

N_GPUS = 8
N_CPUS = 64
INTERVAL_NS = 1_000_000_000
T0_MONO_NS = 1_141_357_902_118_245          # 13.2 days after boot
T0_WALL_NS = 1_772_409_600_000_000_000      # 2026-03-02T00:00:00Z
BOOT_WALL_NS = T0_WALL_NS - T0_MONO_NS
DCGMI_VERSION = "4.6.0"
PSUTIL_VERSION = "7.2.2"

# (id, DCGM 4.6 name, unit word, counter) in KempnerPulse's DCGM_DMON_FIELDS order (seed-projects.md 2.2).
DCGM_FIELDS = (
    (100, "DCGM_FI_DEV_SM_CLOCK", "megahertz", False),
    (101, "DCGM_FI_DEV_MEM_CLOCK", "megahertz", False),
    (140, "DCGM_FI_DEV_MEMORY_TEMP_CELSIUS", "celsius", False),
    (150, "DCGM_FI_DEV_GPU_TEMP_CELSIUS", "celsius", False),
    (155, "DCGM_FI_DEV_BOARD_POWER_WATTS", "watts", False),
    (156, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "millijoules", True),
    (202, "DCGM_FI_DEV_PCIE_REPLAY_TOTAL", "", True),
    (203, "DCGM_FI_DEV_GPU_UTIL_RATIO", "percent", False),
    (204, "DCGM_FI_DEV_MEM_COPY_UTIL", "percent", False),
    (251, "DCGM_FI_DEV_FB_FREE", "mebibytes", False),
    (252, "DCGM_FI_DEV_FB_USED", "mebibytes", False),
    (253, "DCGM_FI_DEV_FB_RESERVED", "mebibytes", False),
    (449, "DCGM_FI_DEV_NVLINK_THROUGHPUT_TOTAL", "megabytes_per_second", False),
    (1001, "DCGM_FI_PROF_GR_ENGINE_UTIL_RATIO", "ratio", False),
    (1002, "DCGM_FI_PROF_SM_UTIL_RATIO", "ratio", False),
    (1003, "DCGM_FI_PROF_SM_OCCUPANCY_RATIO", "ratio", False),
    (1004, "DCGM_FI_PROF_TENSOR_UTIL_RATIO", "ratio", False),
    (1005, "DCGM_FI_PROF_DRAM_UTIL_RATIO", "ratio", False),
    (1006, "DCGM_FI_PROF_FP64_UTIL_RATIO", "ratio", False),
    (1007, "DCGM_FI_PROF_FP32_UTIL_RATIO", "ratio", False),
    (1008, "DCGM_FI_PROF_FP16_UTIL_RATIO", "ratio", False),
    (1009, "DCGM_FI_PROF_PCIE_TX_BYTES", "bytes_per_second", False),
    (1010, "DCGM_FI_PROF_PCIE_RX_BYTES", "bytes_per_second", False),
)
GPU_FIELDS = tuple(name for _, name, _, _ in DCGM_FIELDS)
PROFILING_FIELDS = tuple(name for fid, name, _, _ in DCGM_FIELDS if fid >= 1001)

CPU_TIMES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
VIRTUAL_MEMORY = ("total", "available", "used", "free", "active", "inactive", "buffers", "cached", "shared", "slab")
CPU_STATS = ("ctx_switches", "interrupts", "soft_interrupts", "syscalls")
LOADAVG = ("getloadavg.1m", "getloadavg.5m", "getloadavg.15m")
CPU_FIELDS = tuple(f"cpu_times.{a}" for a in CPU_TIMES)
SYSTEM_FIELDS = (*CPU_FIELDS, *(f"virtual_memory.{a}" for a in VIRTUAL_MEMORY),
                 *(f"cpu_stats.{a}" for a in CPU_STATS), *LOADAVG)

RECORDS_PER_TICK = N_GPUS + 1 + N_CPUS
VALUES_PER_TICK = N_GPUS * len(GPU_FIELDS) + len(SYSTEM_FIELDS) + N_CPUS * len(CPU_FIELDS)

# H100 SXM 80GB as DCGM reports it
FB_TOTAL_MIB = 81559
FB_RESERVED_MIB = 516
SM_CLOCK_IDLE, SM_CLOCK_MAX, MEM_CLOCK = 345, 1980, 2619
POWER_CAP_W = 700.0

MEM_TOTAL_KB = 2_113_534_292               # MemTotal of a 2 TiB node
KERNEL_OTHER_KB = 9_800_000                # page tables, vmalloc, percpu: not in any psutil field
LOW_WATERMARK_KB = 1_400_000

# kernel/sched/loadavg.c
FSHIFT, FIXED_1 = 11, 1 << 11
EXP_LOAD = np.array([1884, 2014, 2037], np.int64)   # 1, 5, 15 minutes
LOAD_FREQ_NS = 5 * 1_000_000_000 + 10_000_000       # 5 s + 1 tick

PHASES = ("idle", "load", "train", "eval", "checkpoint")


@dataclass
class _Segment:
    phase: str
    start: int          # tick
    end: int            # tick (exclusive)
    gpus: int           # GPUs the job uses (0 when idle)
    job: dict


def _schedule(rng: np.random.Generator) -> Iterator[_Segment]:
    """Endless sequence of phases: idle gap, then a job (load, epochs of train/eval/checkpoint)."""
    t = 0
    first = True
    while True:
        gap = int(rng.integers(600, 2400)) if first else int(rng.choice([rng.integers(120, 900),
                                                                         rng.integers(900, 3600)]))
        first = False
        yield _Segment("idle", t, t + gap, 0, {})
        t += gap
        job = {
            "gpus": int(rng.choice([8, 8, 8, 4])),
            "fb_mib": int(rng.integers(52_000, 78_000)),
            "power": float(rng.uniform(0.78, 1.0)),        # fraction of (cap - idle) reached in training
            "sm": float(rng.uniform(0.70, 0.92)),
            "occ": float(rng.uniform(0.25, 0.50)),
            "tensor": float(rng.uniform(0.25, 0.60)),
            "dram": float(rng.uniform(0.35, 0.65)),
            "fp32": float(rng.uniform(0.05, 0.18)),
            "fp16": float(rng.uniform(0.0, 0.04)),
            "step_s": float(rng.uniform(0.6, 2.8)),
            "stall": float(rng.uniform(0.0, 0.25)),       # depth of the dataloader dips
            "pcie_rx": float(rng.uniform(0.2e9, 1.4e9)),
            "nvlink": float(rng.uniform(40_000, 160_000)),
            "anon_kb": int(rng.integers(150, 700)) * 1_048_576,
            "shm_kb": int(rng.integers(2, 16)) * 1_048_576,
            "workers": float(rng.uniform(0.25, 0.7)),
            "ckpt_gb": float(rng.uniform(15, 160)),
        }
        n = job["gpus"]
        load = int(rng.integers(120, 600))
        yield _Segment("load", t, t + load, n, job)
        t += load
        epochs = int(rng.integers(2, 7))
        epoch_s = int(rng.integers(900, 3000))
        for e in range(epochs):
            yield _Segment("train", t, t + epoch_s, n, job)
            t += epoch_s
            ev = int(rng.integers(120, 420))
            yield _Segment("eval", t, t + ev, n, job)
            t += ev
            if e == epochs - 1 or rng.random() < 0.7:
                ck = int(rng.integers(45, 240))
                yield _Segment("checkpoint", t, t + ck, n, job)
                t += ck


class _Node:
    """State of the simulated node, advanced one second per ``step``."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        self.schedule = _schedule(np.random.default_rng(np.random.SeedSequence([seed, 0])))
        self.seg = next(self.schedule)
        rng = self.rng
        g, c = N_GPUS, N_CPUS
        # GPUs
        self.idle_w = rng.uniform(66.0, 78.0, g)
        self.temp_off = rng.normal(0.0, 2.5, g)
        self.gpu_temp = 30.0 + 0.055 * self.idle_w + self.temp_off
        self.mem_temp = 34.0 + 0.06 * self.idle_w + self.temp_off
        self.energy = rng.integers(30, 90, g).astype(np.int64) * 1_000_000_000 + rng.integers(0, 10**9, g)
        self.replay = rng.choice([0, 0, 0, 0, 1, 3], g).astype(np.int64)
        self.fb_used = np.zeros(g, np.int64)
        self.gpu_ar = np.zeros((g, 6))
        self.step_phase = rng.uniform(0, 2 * math.pi, g)
        self.clock = np.full(g, SM_CLOCK_IDLE, np.int64)
        self.active_for = np.zeros(g)
        # CPUs: cumulative ns per state (user, nice, system, idle, iowait, irq, softirq; steal/guest are 0)
        up = float(T0_MONO_NS)
        share = np.array([0.22, 0.0004, 0.03, 0.74, 0.004, 0.0008, 0.004])
        share = share / share.sum()
        jitter = rng.uniform(0.8, 1.2, (c, len(share)))
        self.cpu_ns = np.round(up * share * jitter / (share * jitter).sum(axis=1, keepdims=True)).astype(np.int64)
        self.cpu_ar = np.zeros(c)
        self.irq_cpu = np.zeros(c)
        self.irq_cpu[rng.choice(c, 6, replace=False)] = 1.0      # cores that take the NIC/NVMe interrupts
        self.nice_cpu = np.zeros(c)
        self.nice_cpu[rng.choice(c, 3, replace=False)] = 1.0     # a niced monitoring agent
        # memory (kB)
        self.anon = 11_500_000.0
        self.shm = 900_000.0
        self.file = 380_000_000.0
        self.buffers = 2_600_000.0
        self.slab = 14_200_000.0
        # counters
        self.ctx = int(rng.integers(10**11, 3 * 10**11))
        self.intr = int(rng.integers(5 * 10**10, 10**11))
        self.softirq = int(rng.integers(3 * 10**10, 6 * 10**10))
        self.avenrun = np.array([3, 3, 3], np.int64) * FIXED_1
        self.next_load_ns = T0_MONO_NS + int(rng.integers(0, LOAD_FREQ_NS))
        self.runnable = 2.0

    # -- schedule ---------------------------------------------------------------------------
    def _segment(self, tick: int) -> _Segment:
        while tick >= self.seg.end:
            self.seg = next(self.schedule)
        return self.seg

    # -- one second ---------------------------------------------------------------------------
    def step(self, tick: int, mono: int, dt_ns: int) -> tuple[dict, list]:
        seg = self._segment(tick)
        job = seg.job
        phase = seg.phase
        since = tick - seg.start
        on = np.arange(N_GPUS) < seg.gpus
        gpu = self._gpus(phase, job, on, since, tick, dt_ns)
        cpu_ticks, agg_ticks, runnable = self._cpus(phase, job, seg.gpus, since, dt_ns)
        system = self._system(phase, job, agg_ticks, runnable, mono, dt_ns)
        return gpu, (system, cpu_ticks)

    def _gpus(self, phase: str, job: dict, on: np.ndarray, since: int, tick: int, dt_ns: int) -> list:
        rng = self.rng
        g = N_GPUS
        t = tick
        ar = self.gpu_ar
        ar *= 0.92
        ar += rng.normal(0.0, 0.04 * math.sqrt(1 - 0.92**2), (g, 6))
        if phase == "train":
            rhythm = 0.5 + 0.5 * np.cos(2 * math.pi * t / job["step_s"] + self.step_phase)
            stall = (rng.random(g) < 0.04) * rng.uniform(0.2, 0.9, g)
            act = 0.985 - job["stall"] * 0.3 * rhythm - stall + ar[:, 0]
        elif phase == "eval":
            act = 0.72 + 0.15 * np.sin(2 * math.pi * t / 23.0) + ar[:, 0] * 2
        elif phase == "load":
            act = np.where(rng.random(g) < 0.15, rng.uniform(0.05, 0.4, g), 0.0) + np.abs(ar[:, 0])
        elif phase == "checkpoint":
            act = np.where(rng.random(g) < 0.1, rng.uniform(0.02, 0.2, g), 0.0)
        else:
            act = np.zeros(g)
        act = np.where(on, np.clip(act, 0.0, 1.0), 0.0)
        busy = on & (phase != "idle")
        self.active_for = np.where(busy, self.active_for + 1, 0)

        util = np.clip(np.round(100 * act + rng.normal(0, 1.2, g)), 0, 100).astype(np.int64)
        util[act == 0] = 0

        def ratio(level, k, sd=0.006):
            x = act * level * (1 + ar[:, k]) + rng.normal(0, sd, g)
            return np.where(act > 0, np.clip(np.round(x * 1000), 0, 1000), 0).astype(np.int64)

        gr = ratio(0.995, 1, 0.004)
        gr = np.minimum(gr, np.maximum(util * 10 + 5, 0))
        sm = ratio(job.get("sm", 0), 2)
        occ = ratio(job.get("occ", 0), 3)
        tensor = ratio(job.get("tensor", 0), 4)
        dram = ratio(job.get("dram", 0), 5)
        fp32 = ratio(job.get("fp32", 0), 1, 0.003)
        fp16 = ratio(job.get("fp16", 0), 2, 0.002)
        fp64 = np.where((act > 0) & (rng.random(g) < 0.03), 1, 0).astype(np.int64)
        mcu = np.clip(np.round(dram * 0.085 + rng.normal(0, 1.0, g)), 0, 100).astype(np.int64)
        mcu[act == 0] = 0

        level = job.get("power", 0.0)
        target_w = self.idle_w + (POWER_CAP_W - 20 - self.idle_w) * level * (0.25 * act + 0.75 * act**2)
        target_w = np.where(busy & (act == 0), self.idle_w + 38.0, target_w)     # context alive, clocks up
        power_w = np.clip(target_w + rng.normal(0, 1.5 + 9.0 * act, g), 55.0, POWER_CAP_W + 15)
        power_mw = np.round(power_w * 1000).astype(np.int64)
        self.energy += np.round(power_mw * (dt_ns / 1e9)).astype(np.int64)
        self.replay += (rng.random(g) < 3e-6).astype(np.int64)

        throttle = (power_w > POWER_CAP_W - 25) & (rng.random(g) < 0.6)
        clock = np.where(busy | (self.active_for > 0), SM_CLOCK_MAX, SM_CLOCK_IDLE)
        clock = np.where(throttle, SM_CLOCK_MAX - 15 * rng.integers(1, 10, g), clock).astype(np.int64)
        self.clock = clock

        tau = 45.0
        self.gpu_temp += (28.0 + 0.057 * power_w + self.temp_off - self.gpu_temp) / tau
        self.mem_temp += (31.0 + 0.066 * power_w + self.temp_off - self.mem_temp) / (tau * 1.6)
        gpu_temp = np.round(self.gpu_temp + rng.normal(0, 0.22, g)).astype(np.int64)
        mem_temp = np.round(self.mem_temp + rng.normal(0, 0.22, g)).astype(np.int64)

        fb = self.fb_used
        if phase == "load":
            grow = (rng.random(g) < 0.3) * rng.integers(1, 800, g) * 2
            fb[:] = np.where(on, np.minimum(fb + grow, job["fb_mib"]), 0)
        elif phase == "idle":
            fb[:] = np.where(fb > 0, np.maximum(fb - 9000, 0), 0)
        elif phase == "train" and since < 60:      # the first steps allocate activations and optimizer state
            grow = rng.integers(200, 2000, g) * 2
            fb[:] = np.where(on, np.maximum(fb, np.minimum(fb + grow, job["fb_mib"])), 0)
        else:
            change = (rng.random(g) < 0.003) * rng.integers(-256, 512, g) * 2
            if phase == "eval" and since == 0:
                change += 1536
            fb[:] = np.where(on, np.clip(fb + change, 0, FB_TOTAL_MIB - FB_RESERVED_MIB - 200), 0)
        fb_free = FB_TOTAL_MIB - FB_RESERVED_MIB - fb

        if phase == "train":
            nvl = job["nvlink"] * (0.6 + 0.4 * act) * rng.lognormal(0, 0.15, g)
            rx = job["pcie_rx"] * act * rng.lognormal(0, 0.35, g)
            tx = 0.12 * job["pcie_rx"] * rng.lognormal(0, 0.5, g)
        elif phase == "eval":
            nvl = 1500.0 * rng.lognormal(0, 0.5, g)
            rx = 0.4 * job["pcie_rx"] * rng.lognormal(0, 0.4, g)
            tx = 0.05 * job["pcie_rx"] * rng.lognormal(0, 0.5, g)
        elif phase == "load":
            nvl = np.where(rng.random(g) < 0.2, 8000.0 * rng.lognormal(0, 0.6, g), 0.0)
            rx = rng.uniform(1.5e9, 7e9, g)
            tx = 3e6 * rng.lognormal(0, 0.8, g)
        elif phase == "checkpoint":
            nvl = np.where(since < 15, 20000.0 * rng.lognormal(0, 0.4, g), 0.0)
            tx = np.where(since < 40, rng.uniform(3e9, 11e9, g), 2e6 * rng.lognormal(0, 0.8, g))
            rx = 1e6 * rng.lognormal(0, 0.8, g)
        else:
            nvl = np.zeros(g)
            rx = rng.uniform(18_000, 90_000, g)
            tx = rng.uniform(12_000, 60_000, g)
        off = ~on
        idle_rx, idle_tx = rng.uniform(18_000, 90_000, g), rng.uniform(12_000, 60_000, g)
        rx = np.where(off, idle_rx, rx).astype(np.int64)
        tx = np.where(off, idle_tx, tx).astype(np.int64)
        nvl = np.where(off, 0, nvl).astype(np.int64)

        cols = [
            clock.tolist(), [MEM_CLOCK] * g, mem_temp.tolist(), gpu_temp.tolist(), (power_mw / 1000).tolist(),
            self.energy.tolist(), self.replay.tolist(), util.tolist(), mcu.tolist(), fb_free.tolist(),
            fb.tolist(), [FB_RESERVED_MIB] * g, nvl.tolist(), (gr / 1000).tolist(), (sm / 1000).tolist(),
            (occ / 1000).tolist(), (tensor / 1000).tolist(), (dram / 1000).tolist(), (fp64 / 1000).tolist(),
            (fp32 / 1000).tolist(), (fp16 / 1000).tolist(), tx.tolist(), rx.tolist(),
        ]
        return cols

    def _cpus(self, phase: str, job: dict, ngpu: int, since: int, dt_ns: int):
        rng = self.rng
        c = N_CPUS
        idx = np.arange(c)
        rank = idx < ngpu
        worker = (idx >= 8) & (idx < 8 + 6 * ngpu)
        base = np.full(c, 0.006)
        iowait = np.full(c, 0.0015)
        sys_share = 0.12
        if phase == "load":
            base = np.where(rank, 0.92, np.where(worker, 0.85, 0.08))
            iowait = np.where(worker, 0.25, 0.01)
        elif phase == "train":
            base = np.where(rank, 0.985, np.where(worker, job["workers"], 0.04))
            iowait = np.where(worker, 0.03, 0.002)
        elif phase == "eval":
            base = np.where(rank, 0.9, np.where(worker, job["workers"] * 0.6, 0.03))
        elif phase == "checkpoint":
            base = np.where(idx == 0, 1.0, np.where(rank, 0.35, 0.01))
            iowait = np.where((idx >= 56) & (idx < 60), 0.45, 0.003)
            sys_share = 0.3
        self.cpu_ar = 0.85 * self.cpu_ar + rng.normal(0, 0.06 * math.sqrt(1 - 0.85**2), c)
        busy = np.clip(base + self.cpu_ar * np.where(base > 0.5, 0.5, 1.0) + rng.normal(0, 0.015, c), 0, 1)
        busy = np.where(base < 0.05, np.clip(base * rng.lognormal(0, 0.8, c), 0, 1), busy)
        irq = self.irq_cpu * (0.004 + 0.01 * busy.mean()) + 0.0003
        softirq = self.irq_cpu * (0.01 + 0.04 * busy.mean()) + 0.002 * busy
        nice = self.nice_cpu * 0.003 * rng.lognormal(0, 0.5, c)
        system = busy * sys_share
        user = busy - system
        rest = np.clip(1.0 - busy - irq - softirq - nice, 0, 1)
        io = rest * np.clip(iowait * rng.lognormal(0, 0.4, c), 0, 1)
        idle = rest - io
        frac = np.stack([user, nice, system, idle, io, irq, softirq], axis=1)
        self.cpu_ns += np.round(frac * dt_ns).astype(np.int64)
        ticks = self.cpu_ns // 10_000_000
        agg = self.cpu_ns.sum(axis=0) // 10_000_000
        runnable = float(busy.sum() + (io > 0.2).sum())
        return ticks, agg, runnable

    def _system(self, phase: str, job: dict, agg: np.ndarray, runnable: float, mono: int, dt_ns: int) -> list:
        rng = self.rng
        dt = dt_ns / 1e9
        # memory, kB
        if phase == "idle":
            self.anon += (11_500_000 - self.anon) * 0.2
            self.shm += (900_000 - self.shm) * 0.2
            churn = 180.0
        else:
            target = job["anon_kb"] + (30_000_000 if phase == "checkpoint" else 0) + (
                5_000_000 if phase == "eval" else 0)
            rate = 2_000_000.0 if phase == "load" else 500_000.0
            self.anon += float(np.clip(target - self.anon, -rate, rate))
            shm_t = job["shm_kb"] if phase in ("train", "eval", "load") else 900_000
            self.shm += (shm_t - self.shm) * 0.05 + rng.normal(0, 25_000)
            churn = 1500.0
            read = {"load": 1_500_000.0, "train": 150_000.0, "eval": 60_000.0,
                    "checkpoint": job["ckpt_gb"] * 1_048_576 / 120}[phase]
            self.file += read * rng.lognormal(0, 0.3)
        self.anon += rng.normal(0, churn)
        self.shm = max(self.shm, 200_000.0)
        self.buffers += rng.normal(0, 6.0)
        self.slab += rng.normal(0, 160.0)
        self.file += rng.normal(0, 90.0)
        free = MEM_TOTAL_KB - self.anon - self.shm - self.file - self.buffers - self.slab - KERNEL_OTHER_KB
        if free < 9_000_000:               # kswapd reclaims page cache down to the watermark
            self.file -= 9_000_000 - free + rng.uniform(0, 200_000)
        anon, shm, file_, buffers, slab = (int(round(v)) for v in (self.anon, self.shm, self.file,
                                                                   self.buffers, self.slab))
        free = MEM_TOTAL_KB - anon - shm - file_ - buffers - slab - KERNEL_OTHER_KB
        sreclaim = slab * 6 // 10
        cached = file_ + shm + sreclaim     # psutil: Cached + SReclaimable
        available = free + file_ * 95 // 100 + buffers + sreclaim * 8 // 10 - LOW_WATERMARK_KB
        active = anon * 85 // 100 + file_ // 2 + shm * 9 // 10
        inactive = anon - anon * 85 // 100 + file_ - file_ // 2 + shm - shm * 9 // 10
        used = MEM_TOTAL_KB - free - buffers - cached
        vm = [MEM_TOTAL_KB, available, used, free, active, inactive, buffers, cached, shm, slab]
        vm = [v * 1024 for v in vm]
        # cpu_stats
        level = {"idle": 0.08, "load": 1.0, "train": 0.7, "eval": 0.5, "checkpoint": 0.3}[phase]
        self.ctx += int(dt * (18_000 + 420_000 * level) * rng.lognormal(0, 0.05))
        self.intr += int(dt * (31_000 + 160_000 * level) * rng.lognormal(0, 0.04))
        self.softirq += int(dt * (12_000 + 95_000 * level) * rng.lognormal(0, 0.05))
        # load average: the kernel folds the active task count every 5 s
        self.runnable = runnable
        while mono >= self.next_load_ns:
            active = int(max(0, round(self.runnable + rng.poisson(1.2)))) * FIXED_1
            new = self.avenrun * EXP_LOAD + active * (FIXED_1 - EXP_LOAD)
            new += np.where(active >= self.avenrun, FIXED_1 - 1, 0)
            self.avenrun = new // FIXED_1
            self.next_load_ns += LOAD_FREQ_NS
        load = (self.avenrun / FIXED_1).tolist()
        times = (agg / 100).tolist() + [0.0, 0.0, 0.0]
        # order of CPU_TIMES: user nice system idle iowait irq softirq steal guest guest_nice
        return [*times, *vm, self.ctx, self.intr, self.softirq, 0, *load]


class _Clock:
    """The recorder's 1 s grid and the moments each reader actually samples."""

    def __init__(self, seed: int, wall_shift_ns: int = 0):
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self.offset = T0_WALL_NS - T0_MONO_NS + wall_shift_ns

    def _late(self) -> int:
        rng = self.rng
        if rng.random() < 0.002:
            return int(rng.uniform(1e6, 3e7))
        return int(45_000 + rng.lognormal(math.log(60_000), 0.6))

    def wall(self, mono: int) -> int:
        return mono + self.offset + 30 + int(self.rng.exponential(25.0))

    def tick(self, i: int) -> dict:
        scheduled = T0_MONO_NS + i * INTERVAL_NS
        ps_start = scheduled + self._late()
        dc_start = scheduled + self._late()
        rng = self.rng
        ps_mono = ps_start + int(rng.integers(2_000, 9_000))
        ps_cpu = int(rng.lognormal(math.log(2_100_000), 0.12))
        dc_mono = dc_start + int(rng.lognormal(math.log(1_800_000), 0.35))
        dc_cpu = int(rng.lognormal(math.log(260_000), 0.2))
        return {"scheduled": scheduled, "ps_start": ps_start, "ps_mono": ps_mono, "ps_wall": self.wall(ps_mono),
                "ps_start_wall": self.wall(ps_start), "ps_end": ps_mono + ps_cpu + int(rng.integers(30_000, 200_000)),
                "ps_cpu": ps_cpu, "dc_start": dc_start, "dc_mono": dc_mono, "dc_wall": self.wall(dc_mono),
                "dc_start_wall": self.wall(dc_start), "dc_end": dc_mono + int(rng.integers(20_000, 90_000)),
                "dc_cpu": dc_cpu}


def _ticks(hours: float) -> int:
    n = int(round(hours * 3600))
    if n < 1:
        raise ValueError(f"hours={hours} gives no tick at 1 Hz")
    return n


def _reference(hours: float, seed: int, wall_shift_ns: int = 0) -> Iterator[tuple[dict, list[RawRecord]]]:
    """(clock facts, records) per tick; ``wall_shift_ns`` moves the wall clock (another day, same node)."""
    node = _Node(seed)
    clock = _Clock(seed, wall_shift_ns)
    prev_ps = prev_dc = None
    gpu_names = [f"gpu{g}" for g in range(N_GPUS)]
    cpu_names = [f"cpu{c}" for c in range(N_CPUS)]
    for i in range(_ticks(hours)):
        ck = clock.tick(i)
        dt_ps = INTERVAL_NS if prev_ps is None else ck["ps_mono"] - prev_ps
        dt_dc = INTERVAL_NS if prev_dc is None else ck["dc_mono"] - prev_dc
        prev_ps, prev_dc = ck["ps_mono"], ck["dc_mono"]
        gpu_cols, (system, cpu_ticks) = node.step(i, ck["ps_mono"], dt_ps)
        del dt_dc  # the node's physics runs on one clock; the dmon stamp only moves the record
        recs: list[RawRecord] = []
        mono, wall = ck["dc_mono"], ck["dc_wall"]
        # real captures list GPU 7 .. GPU 0
        for g in range(N_GPUS - 1, -1, -1):
            fields = dict(zip(GPU_FIELDS, (col[g] for col in gpu_cols)))
            if i == 0:
                for name in PROFILING_FIELDS:
                    fields[name] = None
            recs.append(RawRecord(mono, wall, gpu_names[g], fields, "dcgmi", DCGMI_VERSION))
        mono, wall = ck["ps_mono"], ck["ps_wall"]
        recs.append(RawRecord(mono, wall, "system", dict(zip(SYSTEM_FIELDS, system)), "psutil", PSUTIL_VERSION))
        per_cpu = np.zeros((N_CPUS, len(CPU_TIMES)), np.int64)
        per_cpu[:, :7] = cpu_ticks
        for name, row in zip(cpu_names, (per_cpu / 100).tolist()):
            recs.append(RawRecord(mono, wall, name, dict(zip(CPU_FIELDS, row)), "psutil", PSUTIL_VERSION))
        yield ck, recs


def reference_records(hours: float = 24, seed: int = 0) -> Iterator[RawRecord]:
    """The reference trace's records, tick by tick (73 records, 851 values a tick)."""
    for _, recs in _reference(hours, seed):
        yield from recs


def reference_manifest(hours: float = 24, seed: int = 0) -> dict:
    """A manifest like the recorder's (valid against schemas/manifest/v1)."""
    from telemrec._version import __version__
    from telemrec.trace import CURRENT_FORMAT_VERSION, FORMAT_NAME

    dcgm_units = {name: unit for _, name, unit, _ in DCGM_FIELDS if unit}
    psutil_units = {f: "seconds" for f in CPU_FIELDS}
    psutil_units.update({f"virtual_memory.{a}": "bytes" for a in VIRTUAL_MEMORY})
    return {
        "format": FORMAT_NAME,
        "format_version": CURRENT_FORMAT_VERSION,
        "telemrec_version": __version__,
        "host": {"hostname": "gpu-node-ref", "os": "Linux", "kernel": "6.8.0-reference", "machine": "x86_64",
                 "cpu_model": "reference 64-core", "cpu_count_logical": N_CPUS, "cpu_affinity": list(range(N_CPUS)),
                 "memory_total_bytes": MEM_TOTAL_KB * 1024, "boot_time_wall_ns": BOOT_WALL_NS},
        "gpus": [{"index": g, "name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-00000000-0000-0000-0000-00000000000{g}",
                  "memory_total_bytes": FB_TOTAL_MIB * 1024 * 1024} for g in range(N_GPUS)],
        "readers": [
            {"label": "dcgmi", "name": "dcgmi", "source": None, "options": {}, "interval_seconds": 1.0,
             "version": DCGMI_VERSION, "identity": {},
             "caps": {"kind": "dcgmi", "fields": list(GPU_FIELDS), "units": dcgm_units, "descriptions": {},
                      "counters": [name for _, name, _, counter in DCGM_FIELDS if counter]}},
            {"label": "psutil", "name": "psutil", "source": None, "options": {}, "interval_seconds": 1.0,
             "version": PSUTIL_VERSION, "identity": {},
             "caps": {"kind": "psutil", "fields": list(SYSTEM_FIELDS), "units": psutil_units, "descriptions": {},
                      "counters": [*CPU_FIELDS, *(f"cpu_stats.{a}" for a in CPU_STATS)]}},
        ],
        "interval_seconds": 1.0,
        "start": {"wall_ns": T0_WALL_NS, "mono_ns": T0_MONO_NS},
        "stop": None,
        "slurm": None,
        "env": {},
        "command": None,
        "tags": {"reference_trace": f"hours={hours} seed={seed}"},
        "closed_cleanly": False,
        "stats": {},
    }


def build_reference_trace(path: str, hours: float = 24, seed: int = 0, *, overwrite: bool = True,
                          on_tick: Callable[[list[RawRecord]], None] | None = None, wall_shift_ns: int = 0,
                          manifest: dict | None = None) -> dict:
    """Write the reference trace to ``path`` through ``TraceWriter``.

    Returns counts and the seconds spent inside TraceWriter (``write_s``: write and
    write_ticks calls; ``close_s``: close, which folds the journal into HDF5), so a
    benchmark can tell the writer's cost from the generator's. ``on_tick`` gets each
    tick's records too (off the clock), e.g. to write baselines from the same data.
    ``wall_shift_ns`` moves every wall time (the start too); ``manifest`` updates top-level
    manifest keys (another host name, a trace_id), for sets of node traces.
    """
    from telemrec.trace import TraceWriter

    if overwrite and os.path.exists(path):
        os.unlink(path)
    head = reference_manifest(hours, seed)
    head["start"]["wall_ns"] += wall_shift_ns
    head.update(manifest or {})
    writer = TraceWriter(path, head)
    clock = time.perf_counter
    write_s = 0.0
    records = values = ticks = 0
    tick_rows: dict[str, list] = {"dcgmi": [], "psutil": []}
    last = None
    for ck, recs in _reference(hours, seed, wall_shift_ns):
        tick_rows["dcgmi"].append({"tick": ticks, "scheduled_mono_ns": ck["scheduled"],
                                   "start_mono_ns": ck["dc_start"], "end_mono_ns": ck["dc_end"],
                                   "start_wall_ns": ck["dc_start_wall"], "status": 0, "records": N_GPUS,
                                   "cpu_ns": ck["dc_cpu"]})
        tick_rows["psutil"].append({"tick": ticks, "scheduled_mono_ns": ck["scheduled"],
                                    "start_mono_ns": ck["ps_start"], "end_mono_ns": ck["ps_end"],
                                    "start_wall_ns": ck["ps_start_wall"], "status": 0, "records": N_CPUS + 1,
                                    "cpu_ns": ck["ps_cpu"]})
        records += len(recs)
        values += sum(len(r.fields) for r in recs)
        ticks += 1
        last = ck
        if on_tick is not None:
            on_tick(recs)
        t0 = clock()
        writer.write(recs)
        if ticks % 300 == 0:
            for label, rows in tick_rows.items():
                writer.write_ticks(label, rows)
                rows.clear()
        write_s += clock() - t0
    t0 = clock()
    for label, rows in tick_rows.items():
        writer.write_ticks(label, rows)
    write_s += clock() - t0
    stop = {"wall_ns": last["ps_wall"], "mono_ns": last["ps_mono"], "reason": "duration reached"}
    t0 = clock()
    writer.close(stop=stop, stats={"ticks": ticks, "late_ticks": 0, "missed_ticks": 0, "dropped_records": 0,
                                   "reader_errors": 0, "flushes": ticks // 5})
    close_s = clock() - t0
    return {"path": path, "ticks": ticks, "records": records, "values": values, "write_s": write_s,
            "close_s": close_s, "bytes": os.path.getsize(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="trace path to write (replaced if it exists)")
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    info = build_reference_trace(args.out, args.hours, args.seed)
    total = time.perf_counter() - t0
    print(f"{args.out}: {info['ticks']} ticks, {info['records']} records, {info['values']} values, "
          f"{info['bytes']} bytes = {info['bytes'] / info['values']:.3f} B/value "
          f"(built in {total:.1f} s, of which TraceWriter {info['write_s'] + info['close_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

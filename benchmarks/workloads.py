"""Synthetic recordings shaped like telemrec's psutil reader at its process and user levels.

The dense GPU-node day is ``reference_trace.py``; this module makes what typical
job recordings look like instead: a ``system`` entity and per-CPU entities, and
``pid:<pid>`` entities with the reader's process fields (``PsutilReader``'s
PROCESS_FIELDS: cpu times, memory, I/O and context-switch counters, uid, threads,
ppid, create time, name, status, cmdline, levels) that start, live and end.

    process_ticks(hours, hz, alive, lifetime_s, seed)   -> iterator of (mono_ns, wall_ns, records)

Values move like a real process's: counters only grow, in the clock-tick steps
(``/ 100``) psutil reports; memory moves in pages now and then; strings never
change within a process. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from telemrec.readers.psutil_ import PROCESS_FIELDS
from telemrec.record import RawRecord

T0_MONO = 5_000_000_000_000
T0_WALL = 1_764_000_000_000_000_000
SOURCE, VERSION = "psutil", "7.2.2"
CPU_FIELDS = tuple(f"cpu_times.{a}" for a in ("user", "nice", "system", "idle", "iowait", "irq", "softirq",
                                               "steal", "guest", "guest_nice"))
SYSTEM_FIELDS = (*CPU_FIELDS, *(f"virtual_memory.{a}" for a in ("total", "available", "used", "free", "active",
                                                                "inactive", "buffers", "cached", "shared", "slab")),
                 "cpu_stats.ctx_switches", "cpu_stats.interrupts", "getloadavg.1m")
_COUNTERS = ("cpu_times.user", "cpu_times.system", "cpu_times.children_user", "cpu_times.children_system",
             "cpu_times.iowait", "io_counters.read_count", "io_counters.write_count", "io_counters.read_bytes",
             "io_counters.write_bytes", "io_counters.read_chars", "io_counters.write_chars",
             "num_ctx_switches.voluntary", "num_ctx_switches.involuntary")
_NAMES = ("python", "torchrun", "pt_data_worker", "bash", "nccl-proxy", "srun", "sshd", "sleep")


def process_ticks(hours: float = 1.0, hz: float = 1.0, alive: int = 20, lifetime_s: float | None = None,
                  seed: int = 0, cpus: int = 2):
    """(mono_ns, wall_ns, records) per tick: ``system``, ``cpu0..``, and about ``alive`` processes,
    each living ``lifetime_s`` seconds on average (None: the whole recording)."""
    rng = np.random.default_rng(seed)
    ticks = int(round(hours * 3600 * hz))
    step = int(1e9 / hz)
    life = None if lifetime_s is None else max(1, int(lifetime_s * hz))
    # the processes alive, as arrays (one row each) and their constant strings
    pids = np.zeros(0, np.int64)
    ends = np.zeros(0, np.int64)
    counters = np.zeros((0, len(_COUNTERS)), np.int64)
    memory = np.zeros((0, 2), np.int64)
    busy = np.zeros(0)
    constant: dict[int, tuple] = {}
    next_pid = 2000
    system = np.zeros(len(SYSTEM_FIELDS), np.int64)
    cpu = np.zeros((cpus, len(CPU_FIELDS)), np.int64)
    scale = np.array([1, 1, 4096, 4096, 512, 512])
    for tick in range(ticks):
        keep = ends > tick
        if not keep.all():
            for pid in pids[~keep].tolist():
                del constant[pid]
            pids, ends, counters, memory, busy = pids[keep], ends[keep], counters[keep], memory[keep], busy[keep]
        new = alive - len(pids)
        if new > 0:
            born = np.arange(next_pid, next_pid + new)
            next_pid += new
            life_ticks = np.full(new, ticks) if life is None else tick + np.maximum(1, rng.exponential(life, new)).astype(np.int64)
            rss = rng.integers(4_000, 400_000, new) * 4096
            pids = np.concatenate([pids, born])
            ends = np.concatenate([ends, life_ticks])
            counters = np.concatenate([counters, np.zeros((new, len(_COUNTERS)), np.int64)])
            memory = np.concatenate([memory, np.stack([rss, rss * 3], axis=1)])
            busy = np.concatenate([busy, rng.random(new)])
            for pid in born.tolist():
                name = _NAMES[pid % len(_NAMES)]
                constant[pid] = (1000, int(1 + pid % 23), 1000 + pid % 7, round(1_764_000_000 + tick / hz + (pid % 97) / 100, 2),
                                 name, "running" if pid % 3 else "sleeping",
                                 f"/usr/bin/{name} --rank {pid % 8} --config /scratch/job/config_{pid % 13}.yaml",
                                 "process user")
        mono = T0_MONO + tick * step + int(rng.integers(50_000, 900_000))
        wall = T0_WALL + tick * step + int(rng.integers(50_000, 900_000))
        cpu[:, :4] += rng.integers(0, 2 + int(100 / hz), (cpus, 4))
        system[:10] = cpu.sum(axis=0)
        system[10:20] = [8 << 30, 6 << 30, 2 << 30, 5 << 30, 1 << 30, 1 << 29, 1 << 26, 1 << 30, 1 << 25, 1 << 27]
        system[20:22] += rng.integers(100, 2000, 2)
        records = [RawRecord(mono, wall, "system", dict(zip(SYSTEM_FIELDS, [*(system[:10] / 100).tolist(),
                                                                            *system[10:22].tolist(), 0.52])),
                             SOURCE, VERSION)]
        records += [RawRecord(mono, wall, f"cpu{c}", dict(zip(CPU_FIELDS, (cpu[c] / 100).tolist())), SOURCE, VERSION)
                    for c in range(cpus)]
        n = len(pids)
        active = rng.random(n) < busy
        counters[active, :2] += rng.integers(0, 1 + int(200 / hz), (int(active.sum()), 2))
        counters[active, 5:11] += rng.integers(0, 3, (int(active.sum()), 6)) * scale
        counters[active, 11:13] += rng.integers(0, 4, (int(active.sum()), 2))
        moved = rng.random(n) < 0.02
        memory[moved, 0] += rng.integers(-64, 65, int(moved.sum())) * 4096
        times = (counters[:, :5] / 100).tolist()
        rest = np.concatenate([memory, counters[:, 5:]], axis=1).tolist()
        for pid, t, r in zip(pids.tolist(), times, rest):
            records.append(RawRecord(mono, wall, f"pid:{pid}", dict(zip(PROCESS_FIELDS, (*t, *r, *constant[pid]))),
                                     SOURCE, VERSION))
        yield mono, wall, records

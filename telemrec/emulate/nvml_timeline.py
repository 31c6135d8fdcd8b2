"""A trace's GPUs as the timeline file the replay ``libnvidia-ml.so.1`` maps.

``build_timeline(trace, ...)`` reads the GPU, MIG and process records of one source
(``nvml`` as recorded, or ``dcgmi`` through the DCGM-to-NVML field mapping) and the
GPUs' identity from the manifest; ``Timeline.write(path, ...)`` lays them out as
``nvml_replay.h`` declares (little-endian, fixed-size header and device table, then
per-device arrays), with the clock of the run: the monotonic anchor, the speed and
the loop passes. The library never reads HDF5.

Trace time 0 is the window start (``start``, else the first GPU record); each device
answers from its last sample at or before the trace time, the sample just before
the window included. A field recorded as None, or not at all, is NOT_SUPPORTED.
"""

from __future__ import annotations

import re
import struct
import uuid
from array import array
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from statistics import median
from typing import TYPE_CHECKING, Any, Iterable

from telemrec.errors import ReplayError

if TYPE_CHECKING:
    from telemrec.trace import Trace

__all__ = ["FIELDS", "GPU_SOURCES", "Timeline", "build_timeline"]

MAGIC = b"TRNVML01"
VERSION = 1
HEADER_SIZE = 256
NONE = -(2**63)
GPU_SOURCES = ("nvml", "dcgmi")

# enum tl_field of nvml_replay.h, in its order: the nvml reader's field names, then two only DCGM records
FIELDS = (
    "utilization.gpu", "utilization.memory", "memory.total", "memory.used", "memory.free", "memory.reserved",
    "temperature.gpu", "power.usage", "power.limit", "energy.total", "clocks.sm", "clocks.mem", "pcie.tx",
    "pcie.rx", "clocks_event_reasons", "ecc.corrected.volatile", "ecc.uncorrected.volatile",
    "ecc.corrected.aggregate", "ecc.uncorrected.aggregate", "fan.speed", "pstate", "memory.temperature",
    "pcie.replay_counter",
)
_SLOT = {name: i for i, name in enumerate(FIELDS)}
# Cumulative counters: each loop pass continues where the previous one ended.
_COUNTERS = tuple(_SLOT[n] for n in ("energy.total", "ecc.corrected.volatile", "ecc.uncorrected.volatile",
                                     "ecc.corrected.aggregate", "ecc.uncorrected.aggregate", "pcie.replay_counter"))

_MIB = 1 << 20
# DCGM field ids per served field, preferred first, with the factor from DCGM's unit to NVML's.
_DCGM_FIELDS: dict[str, tuple[tuple[int, float], ...]] = {
    "clocks.sm": ((100, 1),), "clocks.mem": ((101, 1),), "clocks_event_reasons": ((112, 1),),
    "memory.temperature": ((140, 1),), "temperature.gpu": ((150, 1),),
    "power.usage": ((155, 1000),),                    # W -> mW
    "energy.total": ((156, 1),),                      # mJ both
    "power.limit": ((164, 1000), (160, 1000)),        # enforced limit, else the management limit; W -> mW
    "pstate": ((190, 1),), "fan.speed": ((191, 1),),
    "pcie.tx": ((200, 1), (1009, 1 / 1024)),          # NVML's KB/s; DCGM_FI_PROF_PCIE_*_BYTES are bytes/s
    "pcie.rx": ((201, 1), (1010, 1 / 1024)),
    "pcie.replay_counter": ((202, 1),), "utilization.gpu": ((203, 1),), "utilization.memory": ((204, 1),),
    "memory.total": ((250, _MIB),), "memory.free": ((251, _MIB),), "memory.used": ((252, _MIB),),
    "memory.reserved": ((253, _MIB),),                # MiB -> bytes
    "ecc.corrected.volatile": ((310, 1),), "ecc.uncorrected.volatile": ((311, 1),),
    "ecc.corrected.aggregate": ((312, 1),), "ecc.uncorrected.aggregate": ((313, 1),),
}

_HEADER = struct.Struct("<8s6Iqdqqqi I80s80s")
_DEVICE = struct.Struct("<96s96s32s16s5I3i8I6Q")
_PROC = struct.Struct("<IIQII")
_NO_INSTANCE = 0xFFFFFFFF
_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF
_KINDS = {"compute": 1, "graphics": 2, "compute+graphics": 3, "graphics+compute": 3}
# the nvml reader writes "<call>: <message> (NVML error N)" when a device stopped answering
_GONE = re.compile(r"\(NVML error (\d+)\)")
_GONE_CODES = frozenset({1, 9, 15, 16, 18, 28, 999})
_GPU = re.compile(r"gpu(\d+)$")
_PROCESS = re.compile(r"gpu(\d+)/pid:(\d+)$")
_MIG = re.compile(r"mig:(\d+):(\d+)$")
_MIG_CI = re.compile(r"mig:(\d+):(\d+):(\d+)$")
_BUS_ID = re.compile(r"([0-9a-fA-F]{1,8}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.[0-7]$")
_PLACEHOLDERS = uuid.UUID("5b0c6c1e-39a4-4d8e-9a57-1f0c2f6c7e01")


@dataclass
class _Series:
    """One device's samples: times (raw mono_ns until the window is known), values, status, processes."""

    times: array = field(default_factory=lambda: array("q"))
    values: array = field(default_factory=lambda: array("q"))
    status: array = field(default_factory=lambda: array("i"))
    proc_index: array = field(default_factory=lambda: array("I", [0]))
    procs: bytearray = field(default_factory=bytearray)
    pre: bool = False
    """The first sample lies before the window (it holds until the first one inside)."""

    def add(self, mono_ns: int, row: list[int], status: int, in_window: bool) -> None:
        if not in_window:  # keep only the last sample before the window
            self.times, self.values, self.status = array("q"), array("q"), array("i")
            self.proc_index, self.procs = array("I", [0]), bytearray()
            self.pre = True
        self.times.append(mono_ns)
        self.values.extend(row)
        self.status.append(status)
        self.proc_index.append(self.proc_index[-1])

    def add_process(self, entry: bytes) -> None:
        if self.times:  # a process listed before its GPU's first sample has no tick to join
            self.procs += entry
            self.proc_index[-1] += 1

    def matrix(self):
        """The values as an int64 array, one row per sample, one column per field."""
        import numpy as np

        return np.frombuffer(self.values, dtype=np.int64).reshape(len(self.times), len(FIELDS))


@dataclass
class _Device:
    entity: str
    name: str
    uuid: str
    bus_id: str
    minor: int = -1
    mig_mode: int = -1
    parent: int = -1
    gpu_instance_id: int = 0
    compute_instance_id: int = 0
    has_processes: bool = False
    series: _Series = field(default_factory=_Series)
    children: list[int] = field(default_factory=list)


@dataclass
class Timeline:
    """What the library serves: devices (GPUs, then MIG devices), versions and the window's span."""

    source: str
    devices: list[_Device]
    n_gpus: int
    driver_version: str
    nvml_version: str
    cuda_version: int
    end_ns: int
    period_ns: int

    @property
    def gpu_entities(self) -> list[str]:
        return [d.entity for d in self.devices[:self.n_gpus]]

    def write(self, path: str, *, anchor_mono_ns: int, speed: float, loops: int | None) -> None:
        """Write the timeline file: ``speed`` trace seconds per second from ``anchor_mono_ns``
        (CLOCK_MONOTONIC), ``loops`` passes over the window (None: forever)."""
        chunks: list = []  # what follows the device table, in order (buffers, not copies)
        offset = HEADER_SIZE + _DEVICE.size * len(self.devices)

        def place(data) -> int:
            nonlocal offset
            at, size = offset, memoryview(data).nbytes
            chunks.extend((data, b"\0" * (-size % 8)))
            offset += size + (-size % 8)
            return at

        table = []
        for device in self.devices:
            s = device.series
            offsets = [place(s.times), place(s.values), place(s.status), place(s.proc_index), place(s.procs),
                       place(_increments(s))]
            present = sum(1 << slot for slot, seen in enumerate((s.matrix() != NONE).any(axis=0)) if seen)
            domain, bus, dev = _parse_bus_id(device.bus_id)
            first_child = device.children[0] if device.children else 0
            table.append(_DEVICE.pack(
                _c(device.name, 96), _c(device.uuid, 96), _c(device.bus_id, 32),
                _c(f"{domain:04X}:{bus:02X}:{dev:02X}.0" if device.bus_id else "", 16),
                domain, bus, dev, 0, 0, device.minor, device.parent, device.mig_mode,
                device.gpu_instance_id, device.compute_instance_id, first_child, len(device.children),
                int(device.has_processes), len(s.times), present, 0, *offsets))
        header = _HEADER.pack(MAGIC, VERSION, HEADER_SIZE, len(self.devices), self.n_gpus, len(FIELDS), _DEVICE.size,
                              anchor_mono_ns, float(speed), self.period_ns, loops or 0, self.end_ns,
                              self.cuda_version, 0, _c(self.driver_version, 80), _c(self.nvml_version, 80))
        with open(path, "wb") as f:
            f.write(header.ljust(HEADER_SIZE, b"\0"))
            f.write(b"".join(table))
            for chunk in chunks:
                f.write(chunk)


def _c(text: str | None, size: int) -> bytes:
    """A NUL-terminated C string field (truncated on a UTF-8 character boundary)."""
    data = (text or "").encode("utf-8")[:size - 1]
    return data.decode("utf-8", "ignore").encode("utf-8")


def _parse_bus_id(bus_id: str) -> tuple[int, int, int]:
    match = _BUS_ID.match(bus_id or "")
    return tuple(int(part, 16) for part in match.groups()) if match else (0, 0, 0)  # type: ignore[return-value]


def _increments(s: _Series):
    """Per field, what a counter gains per loop pass: its rise over the window plus one average step."""
    import numpy as np

    out = np.zeros(len(FIELDS), dtype=np.int64)
    window = s.matrix()[1 if s.pre else 0:]
    for slot in _COUNTERS:
        values = window[:, slot][window[:, slot] != NONE]
        if len(values) >= 2 and values[-1] >= values[0]:
            rise = int(values[-1] - values[0])
            out[slot] = rise + round(rise / (len(values) - 1))
    return out


# -- from a trace ---------------------------------------------------------------------------------
def build_timeline(trace: "Trace", *, source: str | None = None, entities: Iterable[str] | None = None,
                   start: Any = None, end: Any = None) -> Timeline:
    """The timeline of ``trace``'s GPUs: those of ``source`` (default: nvml, else dcgmi) whose
    entity (``gpu0``, ...) matches one of ``entities`` (glob patterns; default all), over the
    window [start, end) (ISO 8601, +DURATION from the first record, -DURATION before the last)."""
    import numpy as np

    from telemrec.errors import UsageError
    from telemrec.readers.replay import parse_time

    source = _choose_source(trace, source)
    numbers = _select_gpus(trace, source, list(entities or ()))
    first_wall, last_wall = trace.time_span()
    start_ns = parse_time(start, first_wall_ns=first_wall, last_wall_ns=last_wall)
    end_ns = parse_time(end, first_wall_ns=first_wall, last_wall_ns=last_wall)
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        raise UsageError("--end is not after --start", "The window is [start, end): give an end later than the start.")
    # The sample in effect at the window start is usually a tick before it: read from a minute (or
    # ten intervals) earlier, and from the beginning only if some device said nothing in that time.
    lookback = max(60 * 10**9, 10 * _manifest_interval_ns(trace.manifest))
    read_from = None if start_ns is None or first_wall is None or start_ns - lookback <= first_wall \
        else start_ns - lookback
    devices, versions, origin = _scan(trace, source, numbers, start_ns, end_ns, read_from)
    if read_from is not None and not all(d.series.pre for d in devices):
        devices, versions, origin = _scan(trace, source, numbers, start_ns, end_ns, None)
    if origin is None:
        raise ReplayError(f"no GPU record of {trace.path} lies in the window",
                          "Widen --start/--end; +5m counts from the first record, -5m back from the last.")
    for device in devices:
        device.series.times = array("q", (np.frombuffer(device.series.times, dtype=np.int64) - origin).tobytes())
    last = max((d.series.times[-1] for d in devices if len(d.series.times)), default=0)
    return Timeline(source, devices, sum(d.parent < 0 for d in devices), *versions, end_ns=max(last, 0),
                    period_ns=max(last, 0) + _interval_ns(devices, trace.manifest))


def _scan(trace: "Trace", source: str, numbers: list[int], start_ns: int | None, end_ns: int | None,
          read_from: int | None) -> tuple[list[_Device], tuple[str, str, int], int | None]:
    """The devices with their samples from ``read_from`` to the window end, the versions, and the
    raw mono_ns of trace time 0 (None: no record in the window)."""
    devices, versions = _devices(trace, source, numbers)
    by_entity = {d.entity: d.series for d in devices}
    gpus = {int(_GPU.match(d.entity)[1]): d for d in devices if d.parent < 0}
    row_of = _nvml_row if source == "nvml" else _dcgm_row
    instances = {(gpu_number, devices[i].gpu_instance_id): devices[i].compute_instance_id
                 for gpu_number, gpu in gpus.items() for i in gpu.children}
    origin = None
    for rec in trace.records(sources=[source], start_wall_ns=read_from, end_wall_ns=end_ns):
        in_window = start_ns is None or rec.wall_ns >= start_ns
        series = by_entity.get(rec.entity)
        if series is None:
            match = _PROCESS.match(rec.entity)
            if match and int(match[1]) in gpus:
                gpus[int(match[1])].series.add_process(_process(rec.fields, int(match[1]), int(match[2]), instances))
            continue
        if in_window and origin is None:
            origin = rec.mono_ns - (rec.wall_ns - start_ns if start_ns is not None else 0)
        series.add(rec.mono_ns, row_of(rec.fields), _status(rec.error), in_window)
    return devices, versions, origin


def _choose_source(trace: "Trace", source: str | None) -> str:
    from telemrec.errors import UsageError

    present = trace.sources()
    if source is not None:
        if source not in GPU_SOURCES:
            raise UsageError(f"--as nvml serves GPU records of the nvml or dcgmi reader, not {source!r}",
                             "Pick --source-name nvml or --source-name dcgmi.")
        if source not in present:
            raise ReplayError(f"{trace.path} has no records from source {source!r} (it has: {', '.join(present)})",
                              "Pick a source from `telemrec info PATH`.")
        return source
    for candidate in GPU_SOURCES:
        if candidate in present:
            return candidate
    raise ReplayError(f"{trace.path} holds no GPU records (its sources: {', '.join(present) or 'none'})",
                      "Replay a trace recorded with `telemrec record -r nvml` or `-r dcgmi`.")


def _select_gpus(trace: "Trace", source: str, patterns: list[str]) -> list[int]:
    numbers = sorted(int(m[1]) for s, e in trace.entities() if s == source and (m := _GPU.match(e)))
    if not numbers:
        raise ReplayError(f"{trace.path} has no GPU entity (gpu0, gpu1, ...) from {source}",
                          "Replay a trace recorded with `telemrec record -r nvml` or `-r dcgmi`.")
    if not patterns:
        return numbers
    chosen = [n for n in numbers if any(fnmatchcase(f"gpu{n}", p) for p in patterns)]
    if not chosen:
        raise ReplayError(f"--entity {', '.join(patterns)} matches none of the GPUs of {trace.path} "
                          f"({', '.join(f'gpu{n}' for n in numbers)})", "Name GPUs as gpu0 or gpu*.")
    return chosen


def _reader(manifest: dict, source: str) -> tuple[dict, dict]:
    for reader in manifest.get("readers") or []:
        if isinstance(reader, dict) and reader.get("name") == source:
            return reader.get("identity") or {}, reader.get("options") or {}
    return {}, {}


def _placeholder(kind: str, key: str, *parts: object) -> str:
    return f"{kind}-{uuid.uuid5(_PLACEHOLDERS, '|'.join(map(str, (key, *parts))))}"


def _devices(trace: "Trace", source: str, numbers: list[int]) -> tuple[list[_Device], tuple[str, str, int]]:
    """The device table (GPUs in index order, then their MIG devices) and the driver/NVML/CUDA versions."""
    manifest = trace.manifest
    identity, options = _reader(manifest, source)
    known = {g.get("index"): g for g in identity.get("gpus") or manifest.get("gpus") or [] if isinstance(g, dict)}
    # placeholders derive from the recording host and start (an imported trace: its first record)
    start = (manifest.get("start") or {}).get("wall_ns") or trace.time_span()[0]
    key = f"{(manifest.get('host') or {}).get('hostname')}|{start}"
    processes = source == "nvml" and str(options.get("processes", "1")).strip().lower() not in ("0", "false", "no", "off")
    entity_names = {e for s, e in trace.entities() if s == source}
    gpus, migs = [], []
    for position, number in enumerate(numbers):
        info = known.get(number)
        if info is None:  # an imported trace, or a reader that keeps no identity: stable placeholders
            gpu = _Device(f"gpu{number}", "NVIDIA GPU (replayed)", _placeholder("GPU", key, source, number), "")
        else:
            gpu = _Device(f"gpu{number}", info.get("name") or "", info.get("uuid") or "", info.get("pci_bus_id") or "",
                          minor=_int(info.get("minor_number"), -1))
        gpu.has_processes = processes
        children = _mig_children(number, info, entity_names)
        mode = (info or {}).get("mig_mode")
        gpu.mig_mode = 1 if children or mode is True else 0 if mode is False else -1
        for gi, (ci, mig_uuid) in sorted(children.items()):
            gpu.children.append(len(numbers) + len(migs))
            migs.append(_Device(f"mig:{number}:{gi}", f"{gpu.name or 'NVIDIA GPU'} MIG",
                                mig_uuid or _placeholder("MIG", key, source, number, gi), "", parent=position,
                                gpu_instance_id=gi, compute_instance_id=ci))
        gpus.append(gpu)
    cuda = str(identity.get("cuda_driver_version") or "")
    match = re.fullmatch(r"(\d+)\.(\d+)", cuda)
    versions = (str(identity.get("driver_version") or ""), str(identity.get("nvml_version") or ""),
                int(match[1]) * 1000 + int(match[2]) * 10 if match else 0)
    return gpus + migs, versions


def _mig_children(number: int, info: dict | None, entity_names: set[str]) -> dict[int, tuple[int, str]]:
    """GPU instance id -> (compute instance id, UUID) of a GPU's MIG devices, from the identity and the entities."""
    children: dict[int, tuple[int, str]] = {}
    for mig in (info or {}).get("mig_devices") or []:
        if isinstance(mig, dict) and isinstance(mig.get("gpu_instance_id"), int):
            children[mig["gpu_instance_id"]] = (_int(mig.get("compute_instance_id"), 0), mig.get("uuid") or "")
    compute = {}
    for name in entity_names:
        if (m := _MIG_CI.match(name)) and int(m[1]) == number:  # dcgmi's GPU-CI rows name the compute instance
            compute[int(m[2])] = min(int(m[3]), compute.get(int(m[2]), int(m[3])))
    for name in entity_names:
        if (m := _MIG.match(name)) and int(m[1]) == number and int(m[2]) not in children:
            children[int(m[2])] = (compute.get(int(m[2]), 0), "")
    return children


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _number(value: Any, scale: float = 1) -> int:
    """A recorded value in NVML's integer units; None, text and non-finite numbers are NONE."""
    kind = type(value)
    if kind is int or kind is bool:
        number = int(value) if scale == 1 else round(value * scale)
    elif kind is float and value == value and value not in (_INF, -_INF):
        number = round(value * scale)
    else:
        return NONE
    return number if -(2**63) < number < 2**63 else NONE


_INF = float("inf")


def _nvml_row(fields: dict) -> list[int]:
    row = [NONE] * len(FIELDS)
    for slot, name in enumerate(FIELDS):
        value = fields.get(name)
        if value is not None:
            row[slot] = value if type(value) is int and -(2**63) < value < 2**63 else _number(value)
    return row


@lru_cache(maxsize=1)
def _dcgm_plan() -> tuple[tuple[int, tuple[tuple[str, float], ...]], ...]:
    """Per served field: its slot and the record keys (DCGM 4.6 name, or dcgm_field_<id>) with their factors."""
    from telemrec.readers._dmon_parser import field_key

    return tuple((_SLOT[name], tuple((field_key(fid), scale) for fid, scale in candidates))
                 for name, candidates in _DCGM_FIELDS.items())


_TOTAL, _FREE, _USED, _RESERVED = (_SLOT[n] for n in ("memory.total", "memory.free", "memory.used", "memory.reserved"))


def _dcgm_row(fields: dict) -> list[int]:
    row = [NONE] * len(FIELDS)
    get = fields.get
    for slot, candidates in _dcgm_plan():
        for key, scale in candidates:
            value = get(key)
            if value is None:
                continue
            if type(value) is int and type(scale) is int:  # most DCGM fields: exact, no rounding
                number = value * scale if -(2**63) < value * scale < 2**63 else NONE
            else:
                number = _number(value, scale)
            if number != NONE:
                row[slot] = number
                break
    if row[_TOTAL] == NONE and row[_FREE] != NONE and row[_USED] != NONE:  # DCGM: total = free + used + reserved
        row[_TOTAL] = row[_FREE] + row[_USED] + (row[_RESERVED] if row[_RESERVED] != NONE else 0)
    return row


def _status(error: str | None) -> int:
    """The NVML error a sample answers with: the code of a device that stopped answering, else 0."""
    match = _GONE.search(error or "")
    code = int(match[1]) if match else 0
    return code if code in _GONE_CODES else 0


def _process(fields: dict, gpu: int, pid: int, instances: dict[tuple[int, int], int]) -> bytes:
    memory = fields.get("used_gpu_memory")
    instance = fields.get("gpu_instance_id")
    if isinstance(instance, int) and not isinstance(instance, bool) and 0 <= instance < _NO_INSTANCE:
        compute = instances.get((gpu, instance), 0)
    else:
        instance = compute = _NO_INSTANCE
    return _PROC.pack(_int(fields.get("pid"), pid) & 0xFFFFFFFF, _KINDS.get(str(fields.get("type")), 1),
                      memory if isinstance(memory, int) and 0 <= memory < _NOT_AVAILABLE else _NOT_AVAILABLE,
                      instance, compute)


def _manifest_interval_ns(manifest: dict) -> int:
    seconds = manifest.get("interval_seconds")
    return int(seconds * 1e9) if isinstance(seconds, (int, float)) and seconds > 0 else 10**9


def _interval_ns(devices: list[_Device], manifest: dict) -> int:
    """The recording's sampling interval: the median step of a GPU's samples (the gap between loop passes)."""
    for device in devices:
        times = device.series.times
        steps = [b - a for a, b in zip(times, times[1:]) if b > a]
        if steps:
            return int(median(steps))
    return _manifest_interval_ns(manifest)

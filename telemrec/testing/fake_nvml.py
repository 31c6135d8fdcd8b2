"""A fake of the ``pynvml`` module surface (nvidia-ml-py), driven by a scripted device model.

``FakeNvml`` is an object that quacks like the ``pynvml`` module: the same
function names and signatures, the same return types (the real ctypes structs
``c_nvmlMemory_t``, ``c_nvmlMemory_v2_t``, ``c_nvmlUtilization_t``,
``nvmlPciInfo_t`` and the ``nvmlFriendlyObject`` process entries), the same
error classes (the *real* ``pynvml.NVMLError`` subclasses, so ``except
pynvml.NVMLError_NotSupported`` works for fake and real alike) and the same raw
units (bytes, milliwatts, millijoules, MHz, KB/s, celsius, percent). Pass it
wherever code expects the module: ``NvmlReader(nvml=FakeNvml(...))``.

Values follow a time-based script per device: a list of ``Phase``\\ s (for
instance idle -> loading -> training) with optional Gaussian noise and linear
ramps; the energy counter integrates the scripted power. Everything is a pure
function of ``(seed, clock())``, so two fakes with the same seed and clock
readings return the same values whatever the call order.

It imports ``pynvml`` (nvidia-ml-py) to borrow its error classes, constants and
structs; it never loads ``libnvidia-ml.so``.
"""

from __future__ import annotations

import ctypes
import math
import random
import time
import uuid as uuid_module
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

__all__ = [
    "DEFAULT_PHASES",
    "DeviceSpec",
    "FakeNvml",
    "ManualClock",
    "MigSpec",
    "Phase",
    "ProcessSpec",
    "training_job",
]

GIB = 1024**3
MIB = 1024**2

# Scripted per-tick quantities (the reader's field names) and the range NVML can report.
_BOUNDS: dict[str, tuple[int, int | None]] = {
    "utilization.gpu": (0, 100),
    "utilization.memory": (0, 100),
    "memory.used": (0, None),
    "temperature.gpu": (0, None),
    "power.usage": (0, None),
    "clocks.sm": (0, None),
    "clocks.mem": (0, None),
    "pcie.tx": (0, None),
    "pcie.rx": (0, None),
    "fan.speed": (0, 100),
    "pstate": (0, 32),  # 32 is NVML_PSTATE_UNKNOWN
    "clocks_event_reasons": (0, None),
}


@dataclass(frozen=True)
class Phase:
    """A stretch of the script: ``values`` hold for ``duration`` seconds.

    ``noise`` maps a field to the standard deviation of Gaussian noise added to
    it; with ``ramp`` the values move linearly from the previous phase's values
    to these over the phase. The last phase lasts forever.
    """

    name: str
    duration: float
    values: Mapping[str, float]
    noise: Mapping[str, float] = field(default_factory=dict)
    ramp: bool = False


DEFAULT_PHASES: tuple[Phase, ...] = (
    Phase("idle", 5.0, {
        "utilization.gpu": 0, "utilization.memory": 0, "memory.used": 4 * MIB,
        "temperature.gpu": 31, "power.usage": 56_000, "clocks.sm": 210, "clocks.mem": 1215,
        "pcie.tx": 120, "pcie.rx": 90, "fan.speed": 30, "pstate": 0, "clocks_event_reasons": 0x1,
    }, noise={"power.usage": 400}),
    Phase("loading", 10.0, {
        "utilization.gpu": 12, "utilization.memory": 4, "memory.used": 30 * GIB,
        "temperature.gpu": 42, "power.usage": 95_000, "clocks.sm": 1410, "clocks.mem": 1215,
        "pcie.tx": 40_000, "pcie.rx": 6_000_000, "fan.speed": 38, "pstate": 0, "clocks_event_reasons": 0,
    }, noise={"utilization.gpu": 3, "power.usage": 2_000, "pcie.rx": 300_000}, ramp=True),
    Phase("training", math.inf, {
        "utilization.gpu": 96, "utilization.memory": 58, "memory.used": 38 * GIB,
        "temperature.gpu": 67, "power.usage": 330_000, "clocks.sm": 1410, "clocks.mem": 1215,
        "pcie.tx": 220_000, "pcie.rx": 850_000, "fan.speed": 62, "pstate": 0, "clocks_event_reasons": 0x4,
    }, noise={"utilization.gpu": 2, "utilization.memory": 5, "memory.used": 64 * MIB,
              "temperature.gpu": 0.7, "power.usage": 12_000, "pcie.tx": 20_000, "pcie.rx": 60_000}),
)


@dataclass(frozen=True)
class MigSpec:
    """One MIG device (GPU instance ``gpu_instance_id`` / compute instance)."""

    gpu_instance_id: int
    compute_instance_id: int = 0
    memory_total: int = 5 * GIB
    memory_used: int = 0
    memory_reserved: int = 0
    profile: str = "1g.5gb"
    uuid: str | None = None


@dataclass(frozen=True)
class ProcessSpec:
    """A process on a GPU from ``start`` until ``end`` seconds (None: forever).

    ``used_memory`` None mimics NVML_VALUE_NOT_AVAILABLE (pynvml turns it into None).
    """

    pid: int
    kind: str = "compute"  # "compute" or "graphics"
    used_memory: int | None = 1 * GIB
    start: float = 0.0
    end: float | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None


@dataclass(frozen=True)
class DeviceSpec:
    """A scripted GPU. ``unsupported`` maps a pynvml function name to the NVML
    error code it raises on this (full-GPU) handle, e.g.
    ``{"nvmlDeviceGetFanSpeed": pynvml.NVML_ERROR_NOT_SUPPORTED}``; the key
    ``"nvmlDeviceGetMemoryInfo_v2"`` affects only the ``version=`` variant."""

    name: str = "NVIDIA A100-SXM4-40GB"
    uuid: str | None = None
    pci_bus_id: str | None = None
    minor_number: int | None = None
    memory_total: int = 40 * GIB
    memory_reserved: int = 581 * MIB
    power_limit: int = 400_000
    energy_start: int = 0
    phases: tuple[Phase, ...] = DEFAULT_PHASES
    ecc: Mapping[str, int] | None = field(default_factory=lambda: {
        "corrected.volatile": 0, "uncorrected.volatile": 0,
        "corrected.aggregate": 2, "uncorrected.aggregate": 0})
    unsupported: Mapping[str, int] = field(default_factory=dict)
    mig_capable: bool = False
    mig_enabled: bool = False
    mig_devices: tuple[MigSpec, ...] = ()
    processes: tuple[ProcessSpec, ...] = ()
    lost_after: float | None = None
    """Seconds after the fake's start from which every call on this GPU raises GPU_IS_LOST."""


class ManualClock:
    """A clock for tests: returns ``now`` seconds until told to ``advance``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def training_job(n_gpus: int = 2, **overrides) -> list[DeviceSpec]:
    """``n_gpus`` A100-like GPUs running idle -> loading -> training, one
    training process each (pids 4242, 4243, ...) appearing after the idle phase.
    ``overrides`` are passed to every ``DeviceSpec``."""
    devices = []
    for i in range(n_gpus):
        spec = dict(processes=(ProcessSpec(pid=4242 + i, used_memory=37 * GIB, start=5.0),),
                    unsupported={"nvmlDeviceGetFanSpeed": 3})  # SXM boards have no fan: NOT_SUPPORTED
        spec.update(overrides)
        devices.append(DeviceSpec(**spec))
    return devices


@dataclass(frozen=True)
class _GpuHandle:
    index: int

    def __repr__(self) -> str:
        return f"<fake nvmlDevice_t gpu {self.index}>"


@dataclass(frozen=True)
class _MigHandle:
    index: int
    gpu_instance_id: int

    def __repr__(self) -> str:
        return f"<fake nvmlDevice_t mig {self.index}:{self.gpu_instance_id}>"


_BORROWED_PREFIXES = ("NVML_", "NVMLError", "nvmlClocksEventReason", "nvmlClocksThrottleReason")
_BORROWED_NAMES = ("NVMLLibraryMismatchError", "nvmlMemory_v2", "c_nvmlMemory_t", "c_nvmlMemory_v2_t",
                   "c_nvmlUtilization_t", "nvmlPciInfo_t", "c_nvmlProcessInfo_t", "nvmlFriendlyObject",
                   "nvmlStructToFriendlyObject", "NVML_VALUE_NOT_AVAILABLE_ulonglong")
_PCI_BUSES = (0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD)
_UINT_MAX = 0xFFFFFFFF


class FakeNvml:
    """The ``pynvml`` surface over scripted devices.

    ``clock`` returns seconds (default ``time.monotonic``); the script's time 0
    is the clock reading when the fake is built. ``init_error`` makes
    ``nvmlInit`` raise that NVML error code (e.g. ``NVML_ERROR_LIBRARY_NOT_FOUND``).
    ``missing_functions`` names pynvml functions this fake pretends its bindings
    lack (an old nvidia-ml-py): reading them raises AttributeError.
    ``calls`` counts every call as ``(function name, device)`` with device the
    GPU index, ``(index, gpu_instance_id)`` for a MIG handle, or None.
    """

    def __init__(self, devices: Sequence[DeviceSpec] = (), *, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic,
                 driver_version: str = "550.54.15", nvml_version: str = "12.550.54.15",
                 cuda_driver_version: int = 12040, init_error: int | None = None,
                 missing_functions: Sequence[str] = (), noise_step: float = 0.1) -> None:
        import pynvml  # nvidia-ml-py: the real error classes, constants and structs

        self._pynvml = pynvml
        for name in dir(pynvml):
            if name.startswith(_BORROWED_PREFIXES) or name in _BORROWED_NAMES:
                object.__setattr__(self, name, getattr(pynvml, name))
        self.devices = list(devices)
        self.seed = seed
        self.clock = clock
        self.driver_version = driver_version
        self.nvml_version = nvml_version
        self.cuda_driver_version = cuda_driver_version
        self.init_error = init_error
        self.missing_functions = frozenset(missing_functions)
        self.noise_step = noise_step
        self.calls: Counter = Counter()
        self._t0 = clock()
        self._refcount = 0
        self._energy_cache: dict[int, list[float]] = {}

    def __getattribute__(self, name: str):
        if name.startswith("nvml") and name in object.__getattribute__(self, "missing_functions"):
            raise AttributeError(f"module 'pynvml' has no attribute {name!r}")
        return object.__getattribute__(self, name)

    # -- bookkeeping ------------------------------------------------------------------
    def call_count(self, function: str, device: int | tuple[int, int] | None = None) -> int:
        return self.calls[(function, device)]

    @property
    def initialized(self) -> bool:
        return self._refcount > 0

    def elapsed(self) -> float:
        """Seconds of script time (clock now minus clock at construction)."""
        return self.clock() - self._t0

    def _error(self, code: int) -> Exception:
        return self._pynvml.NVMLError(code)

    def _enter(self, function: str, handle=None) -> tuple[DeviceSpec | None, MigSpec | None]:
        device_key = None
        if isinstance(handle, _GpuHandle):
            device_key = handle.index
        elif isinstance(handle, _MigHandle):
            device_key = (handle.index, handle.gpu_instance_id)
        self.calls[(function, device_key)] += 1
        if self._refcount <= 0:
            raise self._error(self._pynvml.NVML_ERROR_UNINITIALIZED)
        if handle is None:
            return None, None
        if not isinstance(handle, (_GpuHandle, _MigHandle)) or not 0 <= handle.index < len(self.devices):
            raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        spec = self.devices[handle.index]
        if spec.lost_after is not None and self.elapsed() >= spec.lost_after:
            raise self._error(self._pynvml.NVML_ERROR_GPU_IS_LOST)
        if isinstance(handle, _MigHandle):
            mig = self._mig(spec, handle.gpu_instance_id)
            if mig is None:
                raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
            return spec, mig
        code = spec.unsupported.get(function)
        if code is not None:
            raise self._error(code)
        return spec, None

    def _gpu_only(self, function: str, handle) -> DeviceSpec:
        spec, mig = self._enter(function, handle)
        if mig is not None:  # MIG handles answer only memory, identity and process queries
            raise self._error(self._pynvml.NVML_ERROR_NOT_SUPPORTED)
        return spec

    @staticmethod
    def _mig(spec: DeviceSpec, gpu_instance_id: int) -> MigSpec | None:
        if not spec.mig_enabled:
            return None
        return next((m for m in spec.mig_devices if m.gpu_instance_id == gpu_instance_id), None)

    # -- the script -------------------------------------------------------------------
    def _base(self, spec: DeviceSpec, name: str, t: float) -> float:
        start = 0.0
        previous: Phase | None = None
        for phase in spec.phases:
            if t < start + phase.duration or phase is spec.phases[-1]:
                target = phase.values.get(name, spec.phases[0].values.get(name, 0))
                if phase.ramp and previous is not None and phase.duration > 0 and math.isfinite(phase.duration):
                    origin = previous.values.get(name, target)
                    fraction = min(max((t - start) / phase.duration, 0.0), 1.0)
                    return origin + (target - origin) * fraction
                return target
            start += phase.duration
            previous = phase
        return 0.0

    def _phase(self, spec: DeviceSpec, t: float) -> Phase:
        start = 0.0
        for phase in spec.phases:
            if t < start + phase.duration:
                return phase
            start += phase.duration
        return spec.phases[-1]

    def value(self, index: int, name: str, t: float | None = None) -> int:
        """The scripted value of ``name`` for GPU ``index`` at script time ``t``
        (default now), exactly as the fake's NVML calls report it."""
        t = self.elapsed() if t is None else t
        spec = self.devices[index]
        step = math.floor(t / self.noise_step + 1e-9)
        # noise is fixed within one noise step so all calls of one tick agree
        value = self._base(spec, name, step * self.noise_step if name == "power.usage" else t)
        sigma = self._phase(spec, t).noise.get(name, 0.0)
        if sigma:
            value += random.Random(f"{self.seed}:{index}:{name}:{step}").gauss(0.0, sigma)
        low, high = _BOUNDS.get(name, (0, None))
        if name == "memory.used":
            high = spec.memory_total - spec.memory_reserved
        value = max(low, value if high is None else min(high, value))
        return int(round(value))

    def energy(self, index: int, t: float | None = None) -> int:
        """Millijoules: ``energy_start`` plus scripted power (mW) integrated over seconds."""
        t = self.elapsed() if t is None else max(0.0, t)
        step = self.noise_step
        whole = math.floor(t / step + 1e-9)
        cumulative = self._energy_cache.setdefault(index, [0.0])
        while len(cumulative) <= whole:
            k = len(cumulative) - 1
            cumulative.append(cumulative[-1] + self.value(index, "power.usage", k * step) * step)
        partial = self.value(index, "power.usage", whole * step) * max(0.0, t - whole * step)
        return int(self.devices[index].energy_start + cumulative[whole] + partial)

    def _uuid(self, index: int) -> str:
        spec = self.devices[index]
        if spec.uuid:
            return spec.uuid
        bits = random.Random(f"gpu-uuid:{self.seed}:{index}").getrandbits(128)
        return "GPU-" + str(uuid_module.UUID(int=bits, version=4))

    def _mig_uuid(self, index: int, mig: MigSpec) -> str:
        if mig.uuid:
            return mig.uuid
        bits = random.Random(f"mig-uuid:{self.seed}:{index}:{mig.gpu_instance_id}").getrandbits(128)
        return "MIG-" + str(uuid_module.UUID(int=bits, version=4))

    # -- init / system ----------------------------------------------------------------
    def nvmlInit(self):
        self.nvmlInitWithFlags(0)
        return None

    def nvmlInitWithFlags(self, flags):
        self.calls[("nvmlInitWithFlags", None)] += 1
        if self.init_error is not None:
            raise self._error(self.init_error)
        self._refcount += 1
        return None

    def nvmlShutdown(self):
        self._enter("nvmlShutdown")
        self._refcount -= 1
        return None

    def nvmlErrorString(self, result):
        return self._pynvml.NVMLError._errcode_to_string.get(result, "Unknown Error")

    def nvmlSystemGetDriverVersion(self):
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetNVMLVersion(self):
        self._enter("nvmlSystemGetNVMLVersion")
        return self.nvml_version

    def nvmlSystemGetCudaDriverVersion(self):
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self):
        self._enter("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda_driver_version

    # -- device enumeration and identity -----------------------------------------------
    def nvmlDeviceGetCount(self):
        self._enter("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(self.devices):
            self._enter("nvmlDeviceGetHandleByIndex")
            raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        handle = _GpuHandle(index)
        self._enter("nvmlDeviceGetHandleByIndex", handle)  # a lost GPU cannot be opened either
        return handle

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self._enter("nvmlDeviceGetHandleByUUID")
        for index in range(len(self.devices)):
            if self._uuid(index) == uuid:
                return _GpuHandle(index)
        raise self._error(self._pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetIndex(self, handle):
        self._gpu_only("nvmlDeviceGetIndex", handle)
        return handle.index

    def nvmlDeviceGetName(self, handle):
        spec, mig = self._enter("nvmlDeviceGetName", handle)
        return f"{spec.name} MIG {mig.profile}" if mig else spec.name

    def nvmlDeviceGetUUID(self, handle):
        spec, mig = self._enter("nvmlDeviceGetUUID", handle)
        return self._mig_uuid(handle.index, mig) if mig else self._uuid(handle.index)

    def nvmlDeviceGetMinorNumber(self, handle):
        spec = self._gpu_only("nvmlDeviceGetMinorNumber", handle)
        return handle.index if spec.minor_number is None else spec.minor_number

    def nvmlDeviceGetPciInfo(self, handle):
        spec = self._gpu_only("nvmlDeviceGetPciInfo", handle)
        bus = _PCI_BUSES[handle.index % len(_PCI_BUSES)]
        info = self._pynvml.nvmlPciInfo_t()
        info.busId = spec.pci_bus_id or f"00000000:{bus:02X}:00.0"
        info.busIdLegacy = info.busId[4:]
        info.domain, info.bus, info.device = 0, bus, 0
        info.pciDeviceId, info.pciSubSystemId = 0x20B010DE, 0x134F10DE
        return info

    # -- per-tick queries --------------------------------------------------------------
    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        function = "nvmlDeviceGetMemoryInfo_v2" if version else "nvmlDeviceGetMemoryInfo"
        spec, mig = self._enter(function, handle)
        if version and mig is None and "nvmlDeviceGetMemoryInfo" in spec.unsupported:
            raise self._error(spec.unsupported["nvmlDeviceGetMemoryInfo"])
        if version and version != self._pynvml.nvmlMemory_v2:
            raise self._error(self._pynvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        if mig is not None:
            total, used, reserved = mig.memory_total, mig.memory_used, mig.memory_reserved
        else:
            total, reserved = spec.memory_total, spec.memory_reserved
            used = self.value(handle.index, "memory.used")
        free = total - reserved - used
        if not version:
            # v1 folds the driver-reserved memory into "used"
            memory = self._pynvml.c_nvmlMemory_t()
            memory.total, memory.free, memory.used = total, free, total - free
            return memory
        memory = self._pynvml.c_nvmlMemory_v2_t()
        memory.version = version
        memory.total, memory.reserved, memory.free, memory.used = total, reserved, free, used
        return memory

    def nvmlDeviceGetUtilizationRates(self, handle):
        spec = self._gpu_only("nvmlDeviceGetUtilizationRates", handle)
        if spec.mig_enabled:  # NVML reports no utilization for a GPU in MIG mode
            raise self._error(self._pynvml.NVML_ERROR_NOT_SUPPORTED)
        util = self._pynvml.c_nvmlUtilization_t()
        util.gpu = self.value(handle.index, "utilization.gpu")
        util.memory = self.value(handle.index, "utilization.memory")
        return util

    def nvmlDeviceGetTemperature(self, handle, sensor):
        self._gpu_only("nvmlDeviceGetTemperature", handle)
        if sensor != self._pynvml.NVML_TEMPERATURE_GPU:
            raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.value(handle.index, "temperature.gpu")

    def nvmlDeviceGetPowerUsage(self, handle):
        self._gpu_only("nvmlDeviceGetPowerUsage", handle)
        return self.value(handle.index, "power.usage")

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        return self._gpu_only("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit

    def nvmlDeviceGetPowerManagementLimit(self, handle):
        return self._gpu_only("nvmlDeviceGetPowerManagementLimit", handle).power_limit

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        self._gpu_only("nvmlDeviceGetTotalEnergyConsumption", handle)
        return self.energy(handle.index)

    def nvmlDeviceGetClockInfo(self, handle, type):
        self._gpu_only("nvmlDeviceGetClockInfo", handle)
        names = {self._pynvml.NVML_CLOCK_SM: "clocks.sm", self._pynvml.NVML_CLOCK_GRAPHICS: "clocks.sm",
                 self._pynvml.NVML_CLOCK_MEM: "clocks.mem"}
        if type not in names:
            raise self._error(self._pynvml.NVML_ERROR_NOT_SUPPORTED)
        return self.value(handle.index, names[type])

    def nvmlDeviceGetPcieThroughput(self, device, counter):
        self._gpu_only("nvmlDeviceGetPcieThroughput", device)
        names = {self._pynvml.NVML_PCIE_UTIL_TX_BYTES: "pcie.tx", self._pynvml.NVML_PCIE_UTIL_RX_BYTES: "pcie.rx"}
        if counter not in names:
            raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.value(device.index, names[counter])

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        self._gpu_only("nvmlDeviceGetCurrentClocksEventReasons", handle)
        return self.value(handle.index, "clocks_event_reasons")

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
        self._gpu_only("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        return self.value(handle.index, "clocks_event_reasons")

    def nvmlDeviceGetTotalEccErrors(self, handle, errorType, counterType):
        spec = self._gpu_only("nvmlDeviceGetTotalEccErrors", handle)
        if spec.ecc is None:  # ECC disabled or absent (GeForce): NOT_SUPPORTED
            raise self._error(self._pynvml.NVML_ERROR_NOT_SUPPORTED)
        kind = {self._pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: "corrected",
                self._pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: "uncorrected"}.get(errorType)
        counter = {self._pynvml.NVML_VOLATILE_ECC: "volatile", self._pynvml.NVML_AGGREGATE_ECC: "aggregate"}.get(counterType)
        if kind is None or counter is None:
            raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(spec.ecc.get(f"{kind}.{counter}", 0))

    def nvmlDeviceGetFanSpeed(self, handle):
        self._gpu_only("nvmlDeviceGetFanSpeed", handle)
        return self.value(handle.index, "fan.speed")

    def nvmlDeviceGetPerformanceState(self, handle):
        self._gpu_only("nvmlDeviceGetPerformanceState", handle)
        return self.value(handle.index, "pstate")

    # -- MIG ----------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, device):
        spec = self._gpu_only("nvmlDeviceGetMigMode", device)
        if not spec.mig_capable:
            raise self._error(self._pynvml.NVML_ERROR_NOT_SUPPORTED)
        mode = self._pynvml.NVML_DEVICE_MIG_ENABLE if spec.mig_enabled else self._pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device):
        spec = self._gpu_only("nvmlDeviceGetMaxMigDeviceCount", device)
        if not spec.mig_capable:
            raise self._error(self._pynvml.NVML_ERROR_NOT_SUPPORTED)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device, index):
        spec = self._gpu_only("nvmlDeviceGetMigDeviceHandleByIndex", device)
        if not spec.mig_enabled:
            raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if not 0 <= index < len(spec.mig_devices):
            raise self._error(self._pynvml.NVML_ERROR_NOT_FOUND)
        return _MigHandle(device.index, spec.mig_devices[index].gpu_instance_id)

    def nvmlDeviceIsMigDeviceHandle(self, device):
        self._enter("nvmlDeviceIsMigDeviceHandle", device)
        return ctypes.c_uint(int(isinstance(device, _MigHandle)))  # pynvml returns the c_uint itself

    def nvmlDeviceGetGpuInstanceId(self, device):
        spec, mig = self._enter("nvmlDeviceGetGpuInstanceId", device)
        if mig is None:
            raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return mig.gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, device):
        spec, mig = self._enter("nvmlDeviceGetComputeInstanceId", device)
        if mig is None:
            raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return mig.compute_instance_id

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice):
        spec, mig = self._enter("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice)
        if mig is None:
            raise self._error(self._pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _GpuHandle(migDevice.index)

    # -- processes ----------------------------------------------------------------------
    def _processes(self, function: str, kind: str, handle) -> list:
        spec, mig = self._enter(function, handle)
        if mig is None and spec.unsupported.get(function) == self._pynvml.NVML_ERROR_FUNCTION_NOT_FOUND:
            # the real binding's @throwOnVersionMismatch turns this into its own exception
            raise self._pynvml.NVMLLibraryMismatchError("Unversioned function called and the pyNVML version "
                                                        "does not match the NVML lib version.")
        t = self.elapsed()
        result = []
        for proc in spec.processes:
            if proc.kind != kind or t < proc.start or (proc.end is not None and t >= proc.end):
                continue
            if mig is not None and proc.gpu_instance_id != mig.gpu_instance_id:
                continue
            struct = self._pynvml.c_nvmlProcessInfo_t()
            struct.pid = proc.pid
            struct.usedGpuMemory = (self._pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
                                    if proc.used_memory is None else proc.used_memory)
            in_mig = spec.mig_enabled and proc.gpu_instance_id is not None
            struct.gpuInstanceId = proc.gpu_instance_id if in_mig else _UINT_MAX
            struct.computeInstanceId = (proc.compute_instance_id or 0) if in_mig else _UINT_MAX
            obj = self._pynvml.nvmlStructToFriendlyObject(struct)
            if obj.usedGpuMemory == self._pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value:
                obj.usedGpuMemory = None  # what pynvml does with NVML_VALUE_NOT_AVAILABLE
            result.append(obj)
        return result

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return self._processes("nvmlDeviceGetComputeRunningProcesses", "compute", handle)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses", "graphics", handle)

    def __repr__(self) -> str:
        return f"<FakeNvml {len(self.devices)} GPU(s) seed={self.seed} {'initialized' if self.initialized else 'not initialized'}>"

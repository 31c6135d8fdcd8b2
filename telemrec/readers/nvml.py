"""``nvml``: per-GPU, per-MIG-instance and per-process readings through NVML (nvidia-ml-py).

Values are NVML's raw ones in NVML's units (bytes, milliwatts, millijoules, MHz,
KB/s, celsius, percent). A call a device does not support gives None for its
fields and is remembered, so it is not retried every tick; a lost GPU gives a
record with ``error`` set. Which GPUs are read follows the ``gpus`` and
``all_gpus`` options, then CUDA_VISIBLE_DEVICES, NVIDIA_VISIBLE_DEVICES,
SLURM_STEP_GPUS and SLURM_JOB_GPUS (docs/readers/nvml.md).

The module is injected (``NvmlReader(nvml=...)``); by default ``pynvml`` is
imported when the reader opens, never at import time.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from telemrec.errors import ReaderUnavailableError, UsageError
from telemrec.readers._options import bool_option, list_option, reject_unknown
from telemrec.readers.base import BaseReader
from telemrec.record import RawRecord, ReaderCaps, ReaderConfig

__all__ = ["GpuSelection", "NvmlReader", "bindings_problem", "select_gpus"]

SOURCE = "nvml"
INSTALL_HINT = "pip install nvidia-ml-py (it provides the `pynvml` module)"

# NVML return codes (nvml.h; stable across driver releases).
_ERR_UNINITIALIZED = 1
_ERR_INVALID_ARGUMENT = 2
_ERR_NOT_SUPPORTED = 3
_ERR_NO_PERMISSION = 4
_ERR_DRIVER_NOT_LOADED = 9
_ERR_LIBRARY_NOT_FOUND = 12
_ERR_FUNCTION_NOT_FOUND = 13
_ERR_GPU_IS_LOST = 15
_ERR_RESET_REQUIRED = 16
_ERR_LIB_RM_VERSION_MISMATCH = 18
_ERR_ARGUMENT_VERSION_MISMATCH = 25
_ERR_DEPRECATED = 26
_ERR_GPU_NOT_FOUND = 28
_ERR_UNKNOWN = 999

# This device or driver will never answer this call: None, remembered, not retried.
_UNSUPPORTED = frozenset({_ERR_INVALID_ARGUMENT, _ERR_NOT_SUPPORTED, _ERR_NO_PERMISSION,
                          _ERR_FUNCTION_NOT_FOUND, _ERR_ARGUMENT_VERSION_MISMATCH, _ERR_DEPRECATED})
# The device (or the NVML session) is gone: stop reading it this tick, error record.
_DEVICE_GONE = frozenset({_ERR_UNINITIALIZED, _ERR_DRIVER_NOT_LOADED, _ERR_GPU_IS_LOST, _ERR_RESET_REQUIRED,
                          _ERR_LIB_RM_VERSION_MISMATCH, _ERR_GPU_NOT_FOUND, _ERR_UNKNOWN})

_PSTATE_UNKNOWN = 32
_NO_INSTANCE = 0xFFFFFFFF  # gpuInstanceId of a process on a GPU without MIG

# -- fields -----------------------------------------------------------------------------
_GPU_FIELDS: dict[str, tuple[str | None, str]] = {
    "utilization.gpu": ("percent", "Percent of the last sample period a kernel ran (nvmlDeviceGetUtilizationRates.gpu)."),
    "utilization.memory": ("percent", "Percent of the last sample period device memory was read or written "
                                      "(nvmlDeviceGetUtilizationRates.memory)."),
    "memory.total": ("bytes", "Installed device memory (nvmlDeviceGetMemoryInfo.total)."),
    "memory.used": ("bytes", "Allocated device memory; excludes memory.reserved when memory.reserved is "
                             "not None (nvmlDeviceGetMemoryInfo v2), includes it otherwise (v1)."),
    "memory.free": ("bytes", "Unallocated device memory (nvmlDeviceGetMemoryInfo.free)."),
    "memory.reserved": ("bytes", "Memory reserved by the driver and firmware (nvmlDeviceGetMemoryInfo v2 only)."),
    "temperature.gpu": ("celsius", "GPU die temperature (nvmlDeviceGetTemperature, NVML_TEMPERATURE_GPU)."),
    "power.usage": ("milliwatts", "Board power draw (nvmlDeviceGetPowerUsage); a 1 s average on Ampere and newer."),
    "power.limit": ("milliwatts", "Power limit in effect (nvmlDeviceGetEnforcedPowerLimit, else "
                                  "nvmlDeviceGetPowerManagementLimit)."),
    "energy.total": ("millijoules", "Energy used since the driver was loaded (nvmlDeviceGetTotalEnergyConsumption); counter."),
    "clocks.sm": ("megahertz", "Current SM clock (nvmlDeviceGetClockInfo, NVML_CLOCK_SM)."),
    "clocks.mem": ("megahertz", "Current memory clock (nvmlDeviceGetClockInfo, NVML_CLOCK_MEM)."),
    "pcie.tx": ("kilobytes_per_second", "PCIe transmit throughput over a 20 ms window, NVML's KB/s "
                                        "(nvmlDeviceGetPcieThroughput, NVML_PCIE_UTIL_TX_BYTES)."),
    "pcie.rx": ("kilobytes_per_second", "PCIe receive throughput over a 20 ms window, NVML's KB/s "
                                        "(nvmlDeviceGetPcieThroughput, NVML_PCIE_UTIL_RX_BYTES)."),
    "clocks_event_reasons": ("bitmask", "Why clocks are held down: nvmlClocksEventReason* bits "
                                        "(nvmlDeviceGetCurrentClocksEventReasons, formerly ...ThrottleReasons)."),
    "ecc.corrected.volatile": ("errors", "Corrected ECC errors since the driver was loaded; counter."),
    "ecc.uncorrected.volatile": ("errors", "Uncorrected ECC errors since the driver was loaded; counter."),
    "ecc.corrected.aggregate": ("errors", "Corrected ECC errors over the device's lifetime; counter."),
    "ecc.uncorrected.aggregate": ("errors", "Uncorrected ECC errors over the device's lifetime; counter."),
    "fan.speed": ("percent", "Intended fan speed in percent of maximum (nvmlDeviceGetFanSpeed); None on fanless boards."),
    "pstate": (None, "Performance state 0 (P0, maximum) to 15 (P15, minimum); None when NVML reports it unknown."),
}
_PROCESS_FIELDS: dict[str, tuple[str | None, str]] = {
    "pid": (None, "Process id (in the PID namespace of the NVIDIA driver, i.e. the host's)."),
    "used_gpu_memory": ("bytes", "Device memory used by the process; None when NVML cannot tell "
                                 "(e.g. MIG without privileges, Windows WDDM)."),
    "type": (None, "'compute', 'graphics', or 'compute+graphics' for a process in both NVML lists."),
    "gpu_index": (None, "NVML index of the GPU (the <i> of gpu<i>)."),
    "gpu_instance_id": (None, "MIG GPU instance the process runs in (the <gi> of mig:<gpu>:<gi>); None without MIG."),
}
_MIG_FIELDS = ("memory.total", "memory.used", "memory.free", "memory.reserved")
_COUNTERS = frozenset({"energy.total", "ecc.corrected.volatile", "ecc.uncorrected.volatile",
                       "ecc.corrected.aggregate", "ecc.uncorrected.aggregate"})


def _build_caps() -> ReaderCaps:
    described = {**_GPU_FIELDS, **_PROCESS_FIELDS}
    return ReaderCaps(
        kind="gpu",
        fields=frozenset(described),
        units={name: unit for name, (unit, _) in described.items() if unit},
        descriptions={name: text for name, (_, text) in described.items()},
        counters=_COUNTERS,
    )


CAPS = _build_caps()


# -- queries: one NVML call (with fallbacks) filling one or more fields --------------------------
@dataclass(frozen=True)
class _Alternative:
    function: str
    call: Callable[[Callable, Any, Any], tuple]  # (function, handle, module) -> field values
    label: str
    needs: tuple[str, ...] = ()  # module attributes the call uses besides the function


@dataclass(frozen=True)
class _Query:
    fields: tuple[str, ...]
    alternatives: tuple[_Alternative, ...]


def _alt(function: str, call: Callable, label: str | None = None, needs: tuple[str, ...] = ()) -> _Alternative:
    return _Alternative(function, call, label or function, needs)


def _memory_v2(info) -> tuple:
    return int(info.total), int(info.used), int(info.free), int(info.reserved)


def _memory_v1(info) -> tuple:
    return int(info.total), int(info.used), int(info.free), None


def _pstate(value) -> tuple:
    value = int(value)
    return (None if value == _PSTATE_UNKNOWN else value,)


_MEMORY = _Query(_MIG_FIELDS, (
    _alt("nvmlDeviceGetMemoryInfo", lambda f, h, m: _memory_v2(f(h, version=m.nvmlMemory_v2)),
         "nvmlDeviceGetMemoryInfo(v2)", ("nvmlMemory_v2",)),
    _alt("nvmlDeviceGetMemoryInfo", lambda f, h, m: _memory_v1(f(h)), "nvmlDeviceGetMemoryInfo(v1)"),
))


def _ecc(field_name: str, error_type: str, counter_type: str) -> _Query:
    return _Query((field_name,), (_alt(
        "nvmlDeviceGetTotalEccErrors",
        lambda f, h, m: (int(f(h, getattr(m, error_type), getattr(m, counter_type))),),
        f"nvmlDeviceGetTotalEccErrors({error_type}, {counter_type})", (error_type, counter_type)),))


def _one(field_name: str, function: str, *constants: str) -> _Query:
    label = f"{function}({', '.join(constants)})" if constants else function
    return _Query((field_name,), (_alt(
        function, lambda f, h, m: (int(f(h, *(getattr(m, c) for c in constants))),), label, constants),))


_GPU_QUERIES: tuple[_Query, ...] = (
    _Query(("utilization.gpu", "utilization.memory"), (
        _alt("nvmlDeviceGetUtilizationRates", lambda f, h, m: (int((u := f(h)).gpu), int(u.memory))),)),
    _MEMORY,
    _one("temperature.gpu", "nvmlDeviceGetTemperature", "NVML_TEMPERATURE_GPU"),
    _one("power.usage", "nvmlDeviceGetPowerUsage"),
    _Query(("power.limit",), (
        _alt("nvmlDeviceGetEnforcedPowerLimit", lambda f, h, m: (int(f(h)),)),
        _alt("nvmlDeviceGetPowerManagementLimit", lambda f, h, m: (int(f(h)),)))),
    _one("energy.total", "nvmlDeviceGetTotalEnergyConsumption"),
    _one("clocks.sm", "nvmlDeviceGetClockInfo", "NVML_CLOCK_SM"),
    _one("clocks.mem", "nvmlDeviceGetClockInfo", "NVML_CLOCK_MEM"),
    _Query(("clocks_event_reasons",), (
        _alt("nvmlDeviceGetCurrentClocksEventReasons", lambda f, h, m: (int(f(h)),)),
        _alt("nvmlDeviceGetCurrentClocksThrottleReasons", lambda f, h, m: (int(f(h)),)))),
    _ecc("ecc.corrected.volatile", "NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC"),
    _ecc("ecc.uncorrected.volatile", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC"),
    _ecc("ecc.corrected.aggregate", "NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_AGGREGATE_ECC"),
    _ecc("ecc.uncorrected.aggregate", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_AGGREGATE_ECC"),
    _one("fan.speed", "nvmlDeviceGetFanSpeed"),
    _Query(("pstate",), (_alt("nvmlDeviceGetPerformanceState", lambda f, h, m: _pstate(f(h))),)),
)
# Each PCIe call samples a byte counter over 20 ms, so they are optional (option pcie=0).
_PCIE_QUERIES: tuple[_Query, ...] = (
    _one("pcie.tx", "nvmlDeviceGetPcieThroughput", "NVML_PCIE_UTIL_TX_BYTES"),
    _one("pcie.rx", "nvmlDeviceGetPcieThroughput", "NVML_PCIE_UTIL_RX_BYTES"),
)
_PROCESS_QUERIES: tuple[tuple[str, _Query], ...] = tuple(
    (kind, _Query(("processes",), (_alt(function, lambda f, h, m: (list(f(h)),)),)))
    for kind, function in (("compute", "nvmlDeviceGetComputeRunningProcesses"),
                           ("graphics", "nvmlDeviceGetGraphicsRunningProcesses"))
)


class _DeviceGone(Exception):
    """Internal: the device stopped answering; becomes a record's ``error``."""


# -- the binding package --------------------------------------------------------------------
def _installed_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _major(version: str) -> int | None:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def bindings_problem(version_of: Callable[[str], str | None] = _installed_version) -> tuple[str, str] | None:
    """Why ``import pynvml`` would not give nvidia-ml-py's bindings: (message, remediation), or None.

    The legacy ``pynvml`` distribution (gpuopenanalytics) up to 11.x ships its own
    ``pynvml`` package, which shadows nvidia-ml-py's ``pynvml.py`` with older
    bindings. From 12.0 it is only a deprecated wrapper that depends on
    nvidia-ml-py (13.x adds a FutureWarning on import), so it is tolerated.
    ``version_of(distribution)`` returns an installed version or None.
    """
    official = version_of("nvidia-ml-py")
    legacy = version_of("pynvml")
    fix = "pip uninstall -y pynvml && pip install --force-reinstall nvidia-ml-py"
    if legacy is not None:
        major = _major(legacy)
        if major is None or major < 12:
            return (f"the legacy `pynvml` distribution {legacy} is installed; its `pynvml` package shadows "
                    f"nvidia-ml-py's bindings{'' if official else ' (and nvidia-ml-py is missing)'}", fix)
        if official is None:
            return (f"the deprecated `pynvml` wrapper {legacy} is installed without nvidia-ml-py", fix)
        return None
    if official is None:
        return "nvidia-ml-py is not installed", INSTALL_HINT
    return None


def _import_pynvml():
    with warnings.catch_warnings():
        # the deprecated pynvml>=13 wrapper warns on import; bindings_problem() already judged it
        warnings.simplefilter("ignore", FutureWarning)
        import pynvml
    if os.path.basename(getattr(pynvml, "__file__", "") or "") == "__init__.py":
        raise ReaderUnavailableError(
            f"`import pynvml` loads a package ({pynvml.__file__}), not nvidia-ml-py's pynvml.py module",
            "pip uninstall -y pynvml && pip install --force-reinstall nvidia-ml-py")
    return pynvml


_INIT_HINTS = {
    _ERR_LIBRARY_NOT_FOUND: ("the NVML library libnvidia-ml.so.1 was not found (no NVIDIA driver on this machine)",
                             "Run on a node with an NVIDIA GPU and driver (check `nvidia-smi`); in a container "
                             "start it with the NVIDIA runtime (--gpus all). Elsewhere record with the psutil reader."),
    _ERR_DRIVER_NOT_LOADED: ("the NVIDIA kernel driver is not loaded",
                             "Check `nvidia-smi` and `lsmod | grep nvidia`; load the driver or run on a GPU node."),
    _ERR_LIB_RM_VERSION_MISMATCH: ("the NVML library and the loaded NVIDIA kernel driver differ in version",
                                   "Reboot (or reload the nvidia kernel modules) after the driver upgrade."),
    _ERR_NO_PERMISSION: ("no permission to open the NVIDIA device files",
                         "Check the permissions of /dev/nvidia* and /dev/nvidiactl for this user."),
}


def _init_failure(exc: Exception) -> ReaderUnavailableError:
    code = getattr(exc, "value", None)
    message, remediation = _INIT_HINTS.get(code, (
        f"nvmlInit failed: {exc}", "Run `nvidia-smi` to see whether the driver works on this machine."))
    return ReaderUnavailableError(f"NVML is unavailable: {message}", remediation, nvml_error=code)


# -- options ----------------------------------------------------------------------------------
_OPTIONS = {
    "gpus": "comma-separated GPU indices or UUIDs to read (default: CUDA_VISIBLE_DEVICES, "
            "NVIDIA_VISIBLE_DEVICES, then Slurm's GPUs, else all)",
    "all_gpus": "true: read every GPU of the node, whatever the job was given (default false)",
    "pcie": "true/false: PCIe throughput and link fields (default true)",
    "processes": "true/false: per-process GPU memory records gpu<i>/pid:<n> (default true)",
}


def _flag(options: Mapping[str, Any], name: str, default: bool) -> bool:
    value = options.get(name)
    return default if value is None else bool_option(name, value)


def _gpu_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):  # one GPU index from Python: gpus=0
        value = str(value)
    return list(list_option("gpus", value, example="0,2")) or None


# -- devices and selection --------------------------------------------------------------------
@dataclass
class _Mig:
    gpu_index: int
    gpu_instance_id: int
    compute_instance_id: int | None
    uuid: str | None
    memory_total: int | None
    handle: Any

    @property
    def entity(self) -> str:
        return f"mig:{self.gpu_index}:{self.gpu_instance_id}"


@dataclass
class _Gpu:
    index: int
    handle: Any
    uuid: str | None = None
    name: str | None = None
    pci_bus_id: str | None = None
    minor_number: int | None = None
    memory_total: int | None = None
    mig_mode: bool | None = None
    migs: list[_Mig] = field(default_factory=list)

    @property
    def entity(self) -> str:
        return f"gpu{self.index}"


@dataclass(frozen=True)
class GpuSelection:
    """The GPUs to read: NVML index -> MIG GPU-instance ids (None: all of them),
    which rule decided (``by``) and the text it used (``value``)."""

    chosen: Mapping[int, frozenset[int] | None]
    by: str
    value: str | None = None


def _match(token: str, gpus: Sequence[Any], numbers: str) -> tuple[int, int | None] | None:
    """The (GPU index, MIG GPU instance or None) one token names, or None.

    Digits are NVML indices (``numbers="index"``, CUDA's view) or device minor
    numbers, i.e. the N of /dev/nvidiaN (``numbers="minor"``: Slurm and the
    container runtime count devices that way, and it survives cgroups hiding
    devices); UUIDs may be abbreviated to a unique prefix as CUDA allows.
    """
    text = token.strip()
    lowered = text.lower()
    if text.isdigit():
        number = int(text)
        if numbers == "minor" and any(g.minor_number is not None for g in gpus):
            hits = [g.index for g in gpus if g.minor_number == number]
        else:
            hits = [g.index for g in gpus if g.index == number]
        return (hits[0], None) if hits else None
    if lowered.startswith("mig-gpu-"):  # pre-R470 form MIG-GPU-<gpu uuid>/<gi>/<ci>
        parts = text[len("MIG-"):].split("/")
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        for g in gpus:
            if g.uuid and g.uuid.lower() == parts[0].lower() and any(
                    m.gpu_instance_id == int(parts[1]) for m in g.migs):
                return g.index, int(parts[1])
        return None
    if lowered.startswith("mig-"):
        found = [(g.index, m.gpu_instance_id) for g in gpus for m in g.migs
                 if m.uuid and m.uuid.lower().startswith(lowered)]
        return found[0] if len(found) == 1 else None
    if lowered.startswith("gpu-"):
        found = [g.index for g in gpus if g.uuid and g.uuid.lower().startswith(lowered)]
        return (found[0], None) if len(found) == 1 else None
    return None


def _add(chosen: dict[int, frozenset[int] | None], hit: tuple[int, int | None]) -> None:
    index, instance = hit
    if instance is None:
        chosen[index] = None
    elif index not in chosen:
        chosen[index] = frozenset({instance})
    elif chosen[index] is not None:
        chosen[index] = chosen[index] | {instance}


def _expand(raw: str) -> list[str]:
    out = []
    for token in (t.strip() for t in raw.split(",")):
        low, dash, high = token.partition("-")
        if dash and low.isdigit() and high.isdigit():
            out.extend(str(n) for n in range(int(low), int(high) + 1))
        elif token:
            out.append(token)
    return out


def _describe(gpus: Sequence[Any]) -> str:
    if not gpus:
        return "NVML lists no accessible GPU"
    return "NVML lists " + ", ".join(f"{g.index} ({g.uuid or 'uuid unknown'})" for g in gpus)


def select_gpus(gpus: Sequence[Any], environ: Mapping[str, str], *,
                explicit: Sequence[str] | None = None, all_gpus: bool = False) -> GpuSelection:
    """Choose GPUs as KempnerPulse's GPUSelector ranks the sources: ``explicit``
    (option gpus) > ``all_gpus`` > CUDA_VISIBLE_DEVICES > NVIDIA_VISIBLE_DEVICES
    > SLURM_STEP_GPUS > SLURM_JOB_GPUS > all.

    ``gpus`` are the accessible devices (``index``, ``uuid``, ``minor_number``,
    ``migs`` with ``gpu_instance_id`` and ``uuid``). Unlike KempnerPulse, a set
    CUDA_VISIBLE_DEVICES is final: it is read as CUDA reads it (the list ends at
    the first entry naming no device; empty means no device), because falling
    through would record GPUs the job cannot use.
    Raises ReaderUnavailableError when the deciding rule selects nothing.
    """
    chosen: dict[int, frozenset[int] | None] = {}
    escape = "Pass option all_gpus=1 to read every GPU NVML lists, or gpus=<indices or UUIDs>."
    if explicit:
        missing = []
        for token in explicit:
            hit = _match(token, gpus, "index")
            if hit is None:
                missing.append(token)
            else:
                _add(chosen, hit)
        if missing:
            raise ReaderUnavailableError(f"option gpus names no accessible GPU for {', '.join(missing)}; "
                                         f"{_describe(gpus)}",
                                         "Use NVML indices (as nvidia-smi numbers them) or GPU/MIG UUIDs "
                                         "from `nvidia-smi -L`.")
        return GpuSelection(chosen, "gpus", ",".join(explicit))
    if all_gpus:
        return GpuSelection({g.index: None for g in gpus}, "all_gpus")
    if "CUDA_VISIBLE_DEVICES" in environ:
        raw = environ["CUDA_VISIBLE_DEVICES"]
        for token in raw.split(","):
            hit = _match(token, gpus, "index")
            if hit is None:
                break
            _add(chosen, hit)
        if not chosen:
            raise ReaderUnavailableError(f"CUDA_VISIBLE_DEVICES={raw!r} selects none of the GPUs here "
                                         f"({_describe(gpus)}), so this job sees no GPU", escape)
        return GpuSelection(chosen, "CUDA_VISIBLE_DEVICES", raw)
    for name in ("NVIDIA_VISIBLE_DEVICES", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        raw = environ.get(name, "").strip()
        if not raw or raw.lower() in ("all", "none", "void"):
            continue
        for token in _expand(raw):
            hit = _match(token, gpus, "minor")
            if hit is not None:
                _add(chosen, hit)
        if chosen:
            return GpuSelection(chosen, name, raw)
    return GpuSelection({g.index: None for g in gpus}, "all")


# -- the reader ---------------------------------------------------------------------------------
class NvmlReader(BaseReader):
    """GPU, MIG-instance and process readings from NVML.

    ``nvml`` is a module-like object with the pynvml surface (default: import
    ``pynvml`` from nvidia-ml-py at open); ``environ`` the environment the GPU
    selection reads (default ``os.environ``); ``version_of`` looks up installed
    distribution versions for the legacy-pynvml check (default importlib.metadata).
    Options: ``all_gpus``, ``gpus``, ``processes`` (default 1), ``pcie`` (default 1).
    """

    name = "nvml"
    options = _OPTIONS
    description = "NVIDIA GPUs through NVML (nvidia-ml-py): utilization, memory, power, energy, clocks, PCIe, ECC, MIG, processes"
    source_help = "not used (NVML reads the local GPUs); choose GPUs with -O gpus=0,1 or -O all_gpus=1"

    def __init__(self, nvml: Any = None, environ: Mapping[str, str] | None = None,
                 version_of: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self._injected = nvml
        self._environ = environ
        self._version_of = version_of or _installed_version
        self._nvml: Any = None
        self._initialized = False
        self._gpus: list[_Gpu] = []
        self._selected: list[tuple[_Gpu, list[_Mig]]] = []
        self._selection: GpuSelection | None = None
        self._inaccessible: list[dict[str, Any]] = []
        self._unsupported: dict[tuple[str, str], str] = {}
        self._versions: dict[str, Any] = {}
        self._queries: tuple[_Query, ...] = _GPU_QUERIES
        self._processes = True
        self._mismatch_errors: tuple[type, ...] = ()

    # -- availability -------------------------------------------------------------------
    @classmethod
    def availability(cls, nvml: Any = None,
                     version_of: Callable[[str], str | None] | None = None) -> tuple[bool, str]:
        if nvml is None:
            problem = bindings_problem(version_of or _installed_version)
            if problem is not None:
                return False, f"{problem[0]}; fix: {problem[1]}"
            try:
                nvml = _import_pynvml()
            except ImportError as exc:
                return False, f"pynvml cannot be imported ({exc}); {INSTALL_HINT}"
            except ReaderUnavailableError as exc:
                return False, exc.message
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return False, _init_failure(exc).message
        try:
            count = nvml.nvmlDeviceGetCount()
            driver = nvml.nvmlSystemGetDriverVersion()
        except nvml.NVMLError as exc:
            return False, f"NVML answered nvmlInit but not the device query: {exc}"
        finally:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError:
                pass
        if count == 0:
            return False, f"NVML (driver {driver}) sees no GPU"
        return True, f"{count} GPU(s), driver {driver}"

    # -- lifecycle ------------------------------------------------------------------------
    def _open(self, config: ReaderConfig) -> None:
        if config.source not in (None, ""):
            raise UsageError(f"the nvml reader takes no source (got {config.source!r})",
                             "Drop --source; choose GPUs with -O gpus=0,1 or -O all_gpus=1.")
        options = dict(config.options)
        reject_unknown(options, _OPTIONS, "nvml")
        explicit = _gpu_list(options.get("gpus"))
        all_gpus = _flag(options, "all_gpus", False)
        self._processes = _flag(options, "processes", True)
        self._queries = _GPU_QUERIES + (_PCIE_QUERIES if _flag(options, "pcie", True) else ())

        nvml = self._load_module()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise _init_failure(exc) from exc
        self._nvml = nvml
        self._initialized = True
        mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
        self._mismatch_errors = (mismatch,) if isinstance(mismatch, type) else ()
        try:
            self._discover()
            environ = os.environ if self._environ is None else self._environ
            self._selection = select_gpus(self._gpus, environ, explicit=explicit, all_gpus=all_gpus)
            self._selected = [
                (gpu, [m for m in gpu.migs if instances is None or m.gpu_instance_id in instances])
                for gpu in self._gpus if gpu.index in self._selection.chosen
                for instances in (self._selection.chosen[gpu.index],)
            ]
        except BaseException:
            self._shutdown()
            raise

    def _load_module(self):
        if self._injected is not None:
            return self._injected
        problem = bindings_problem(self._version_of)
        if problem is not None:
            raise ReaderUnavailableError(f"cannot use NVML: {problem[0]}", problem[1])
        try:
            module = _import_pynvml()
        except ImportError as exc:
            raise ReaderUnavailableError(f"pynvml cannot be imported: {exc}", INSTALL_HINT) from exc
        official = self._version_of("nvidia-ml-py")
        self._versions["bindings"] = f"nvidia-ml-py {official}" if official else None
        return module

    def _close(self) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        if self._initialized:
            self._initialized = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass  # NVML already lost its state; nothing left to release

    # -- discovery (once, at open) ------------------------------------------------------------
    def _static(self, function: str, *args: Any) -> Any:
        """An identity query: its value, or None when NVML cannot answer it."""
        fn = getattr(self._nvml, function, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            return None

    def _discover(self) -> None:
        nvml = self._nvml
        self._versions["driver_version"] = self._static("nvmlSystemGetDriverVersion")
        self._versions["nvml_version"] = self._static("nvmlSystemGetNVMLVersion")
        cuda = self._static("nvmlSystemGetCudaDriverVersion_v2")
        if cuda is None:
            cuda = self._static("nvmlSystemGetCudaDriverVersion")
        self._versions["cuda_driver_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            raise ReaderUnavailableError(f"NVML cannot count the GPUs: {exc}",
                                         "Run `nvidia-smi` to see whether the driver works on this machine.") from exc
        self._versions["gpu_count"] = count
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except nvml.NVMLError as exc:
                self._inaccessible.append({"index": index, "error": str(exc)})
                continue
            self._gpus.append(self._describe_gpu(index, handle))
        if not self._gpus:
            raise ReaderUnavailableError(
                "NVML sees no GPU" if count == 0 else f"none of the {count} GPU(s) NVML lists can be opened",
                "Check `nvidia-smi`; inside a job or container, make sure GPUs were allocated to it.")

    def _describe_gpu(self, index: int, handle: Any) -> _Gpu:
        gpu = _Gpu(index, handle)
        gpu.uuid = self._static("nvmlDeviceGetUUID", handle)
        gpu.name = self._static("nvmlDeviceGetName", handle)
        pci = self._static("nvmlDeviceGetPciInfo", handle)
        gpu.pci_bus_id = getattr(pci, "busId", None)
        gpu.minor_number = self._static("nvmlDeviceGetMinorNumber", handle)
        memory = self._static("nvmlDeviceGetMemoryInfo", handle)
        gpu.memory_total = int(memory.total) if memory is not None else None
        mode = self._static("nvmlDeviceGetMigMode", handle)
        enable = getattr(self._nvml, "NVML_DEVICE_MIG_ENABLE", 1)
        gpu.mig_mode = None if mode is None else mode[0] == enable
        if gpu.mig_mode:
            gpu.migs = self._describe_migs(index, handle)
        return gpu

    def _describe_migs(self, index: int, handle: Any) -> list[_Mig]:
        migs = []
        for slot in range(self._static("nvmlDeviceGetMaxMigDeviceCount", handle) or 0):
            mig_handle = self._static("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
            if mig_handle is None:  # NOT_FOUND: no MIG device in this slot
                continue
            instance = self._static("nvmlDeviceGetGpuInstanceId", mig_handle)
            if instance is None:
                continue
            memory = self._static("nvmlDeviceGetMemoryInfo", mig_handle)
            migs.append(_Mig(index, int(instance), self._static("nvmlDeviceGetComputeInstanceId", mig_handle),
                             self._static("nvmlDeviceGetUUID", mig_handle),
                             int(memory.total) if memory is not None else None, mig_handle))
        return migs

    # -- reading ----------------------------------------------------------------------------
    def _run(self, entity: str, handle: Any, query: _Query, errors: list[str]) -> tuple:
        """Values for ``query``'s fields: the first alternative the device
        supports; None for each field when none does or the call failed."""
        nvml = self._nvml
        for alt in query.alternatives:
            key = (entity, alt.label)
            if key in self._unsupported:
                continue
            function = getattr(nvml, alt.function, None)
            if function is None or not all(hasattr(nvml, name) for name in alt.needs):
                self._unsupported[key] = "not in these pynvml bindings"
                continue
            try:
                return alt.call(function, handle, nvml)
            except self._mismatch_errors as exc:  # pynvml's NVMLLibraryMismatchError: driver lacks the versioned call
                self._unsupported[key] = str(exc)
            except nvml.NVMLError as exc:
                code = getattr(exc, "value", None)
                if code in _UNSUPPORTED:
                    self._unsupported[key] = str(exc)
                    continue
                if code in _DEVICE_GONE:
                    raise _DeviceGone(f"{alt.label}: {exc} (NVML error {code})") from exc
                errors.append(f"{alt.label}: {exc}")
                break
        return (None,) * len(query.fields)

    def _read(self) -> list[RawRecord]:
        records: list[RawRecord] = []
        for gpu, migs in self._selected:
            records.extend(self._read_gpu(gpu, migs))
        return records

    def _record(self, mono_ns: int, wall_ns: int, entity: str, fields: dict, errors: Iterable[str]) -> RawRecord:
        error = "; ".join(errors) or None
        return RawRecord(mono_ns, wall_ns, entity, fields, SOURCE, self.source_version, error)

    def _read_gpu(self, gpu: _Gpu, migs: list[_Mig]) -> list[RawRecord]:
        mono_ns, wall_ns = time.monotonic_ns(), time.time_ns()
        fields: dict[str, Any] = {}
        errors: list[str] = []
        try:
            for query in self._queries:
                fields.update(zip(query.fields, self._run(gpu.entity, gpu.handle, query, errors)))
        except _DeviceGone as gone:
            return [self._record(mono_ns, wall_ns, gpu.entity, fields, [str(gone)])]
        records = [self._record(mono_ns, wall_ns, gpu.entity, fields, errors)]
        for mig in migs:
            records.append(self._read_mig(mig))
        if self._processes:
            try:
                records.extend(self._read_processes(gpu, migs))
            except _DeviceGone as gone:
                records[0] = self._record(mono_ns, wall_ns, gpu.entity, fields, [*errors, str(gone)])
        return records

    def _read_mig(self, mig: _Mig) -> RawRecord:
        mono_ns, wall_ns = time.monotonic_ns(), time.time_ns()
        errors: list[str] = []
        try:
            values = self._run(mig.entity, mig.handle, _MEMORY, errors)
        except _DeviceGone as gone:
            return self._record(mono_ns, wall_ns, mig.entity, {}, [str(gone)])
        return self._record(mono_ns, wall_ns, mig.entity, dict(zip(_MIG_FIELDS, values)), errors)

    def _read_processes(self, gpu: _Gpu, migs: list[_Mig]) -> list[RawRecord]:
        mono_ns, wall_ns = time.monotonic_ns(), time.time_ns()
        found: dict[int, dict[str, Any]] = {}
        errors: list[str] = []
        for kind, query in _PROCESS_QUERIES:
            (listed,) = self._run(gpu.entity, gpu.handle, query, errors)
            if listed is not None:
                for proc in listed:
                    self._merge(found, gpu, proc, kind, None)
            elif gpu.mig_mode:
                # without privileges NVML lists a MIG GPU's processes only per MIG device
                for mig in gpu.migs:
                    (listed,) = self._run(mig.entity, mig.handle, query, errors)
                    for proc in listed or ():
                        self._merge(found, gpu, proc, kind, mig.gpu_instance_id)
        return [self._record(mono_ns, wall_ns, f"{gpu.entity}/pid:{pid}", fields, errors)
                for pid, fields in sorted(found.items())]

    @staticmethod
    def _merge(found: dict[int, dict[str, Any]], gpu: _Gpu, proc: Any, kind: str, instance: int | None) -> None:
        pid = int(proc.pid)
        memory = getattr(proc, "usedGpuMemory", None)
        memory = None if memory is None else int(memory)
        if instance is None:
            reported = getattr(proc, "gpuInstanceId", None)
            instance = None if reported is None or reported >= _NO_INSTANCE else int(reported)
        seen = found.get(pid)
        if seen is None:
            found[pid] = {"pid": pid, "used_gpu_memory": memory, "type": kind,
                          "gpu_index": gpu.index, "gpu_instance_id": instance}
            return
        if kind not in seen["type"].split("+"):
            seen["type"] = "compute+graphics"
        if seen["gpu_instance_id"] != instance:
            # one process on several MIG devices of this GPU: its memory there adds up
            seen["gpu_instance_id"] = None
            seen["used_gpu_memory"] = (None if memory is None or seen["used_gpu_memory"] is None
                                       else seen["used_gpu_memory"] + memory)
        elif seen["used_gpu_memory"] is None:
            seen["used_gpu_memory"] = memory

    # -- metadata -----------------------------------------------------------------------------
    @property
    def caps(self) -> ReaderCaps:
        return CAPS

    @property
    def source_version(self) -> str:
        return str(self._versions.get("nvml_version") or "")

    @property
    def unsupported_calls(self) -> dict[str, str]:
        """``"<entity> <call>" -> NVML's answer`` for calls given up on (diagnostics)."""
        return {f"{entity} {label}": reason for (entity, label), reason in sorted(self._unsupported.items())}

    def identity(self) -> dict[str, Any]:
        if self._selection is None:
            return {}
        gpus = []
        for gpu, migs in self._selected:
            entry = {"index": gpu.index, "name": gpu.name, "uuid": gpu.uuid, "pci_bus_id": gpu.pci_bus_id,
                     "memory_total_bytes": gpu.memory_total, "mig_mode": gpu.mig_mode,
                     "minor_number": gpu.minor_number}
            if gpu.mig_mode:
                entry["mig_devices"] = [
                    {"entity": m.entity, "gpu_instance_id": m.gpu_instance_id,
                     "compute_instance_id": m.compute_instance_id, "uuid": m.uuid,
                     "memory_total_bytes": m.memory_total} for m in migs]
            gpus.append(entry)
        identity = {
            "driver_version": self._versions.get("driver_version"),
            "nvml_version": self._versions.get("nvml_version"),
            "cuda_driver_version": self._versions.get("cuda_driver_version"),
            "bindings": self._versions.get("bindings"),
            "gpu_count": self._versions.get("gpu_count"),
            "selection": {"by": self._selection.by, "value": self._selection.value},
            "gpus": gpus,
        }
        if self._inaccessible:
            identity["inaccessible"] = list(self._inaccessible)
        return identity

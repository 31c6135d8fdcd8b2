"""The GPUs of a trace as DCGM sees them: field ids of recorded values, entities, identity.

- ``dcgm_values(record)``: a dcgmi record's fields by DCGM field id as recorded; an nvml
  record's through ``NVML_TO_DCGM`` (NVML's units converted to DCGM's: mW to W, bytes to
  MiB). A field recorded as None stays None (DCGM's blank value).
- ``gpu_entity(name)``: ``gpu3`` is GPU 3, ``mig:3:25`` GPU instance 25 of GPU 3,
  ``mig:3:25:26`` compute instance 26 (the entity names both GPU readers write).
- ``gpu_identity(trace)``: name, UUID, PCI bus id and minor number per GPU index from the
  manifest (the nvml reader records them); a trace that does not know them (dcgmi,
  imported) gets stable placeholders derived from its host name and the index.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from telemrec.readers._dmon_parser import field_table
from telemrec.record import FieldValue, RawRecord

__all__ = ["GPU_SOURCES", "NVML_TO_DCGM", "GpuEntity", "GpuInfo", "dcgm_field_id", "dcgm_values", "driver_version",
           "gpu_entity", "gpu_identity"]

GPU_SOURCES = ("dcgmi", "nvml")
PLACEHOLDER_NAME = "NVIDIA GPU (name not recorded)"
_MIB = 1 << 20


def _same(v):
    return v


def _milli(v):
    return v / 1000.0


def _mib(v):
    return int(v) // _MIB


# (nvml field, DCGM field id, conversion to DCGM's unit): the DCGM field that reads the same NVML call
NVML_TO_DCGM: tuple[tuple[str, int, Callable[[Any], Any]], ...] = (
    ("clocks.sm", 100, _same),
    ("clocks.mem", 101, _same),
    ("clocks_event_reasons", 112, _same),
    ("temperature.gpu", 150, _same),
    ("power.usage", 155, _milli),            # mW -> W
    ("energy.total", 156, _same),            # mJ
    ("power.limit", 160, _milli),            # mW -> W
    ("pstate", 190, _same),
    ("fan.speed", 191, _same),
    ("pcie.tx", 200, _same),                 # KB/s, both from nvmlDeviceGetPcieThroughput
    ("pcie.rx", 201, _same),
    ("utilization.gpu", 203, _same),
    ("utilization.memory", 204, _same),
    ("memory.total", 250, _mib),             # bytes -> MiB
    ("memory.free", 251, _mib),
    ("memory.used", 252, _mib),
    ("memory.reserved", 253, _mib),
    ("ecc.corrected.volatile", 310, _same),
    ("ecc.uncorrected.volatile", 311, _same),
    ("ecc.corrected.aggregate", 312, _same),
    ("ecc.uncorrected.aggregate", 313, _same),
)

_UNKNOWN_FIELD = re.compile(r"dcgm_field_(\d+)")


def _ids_by_name() -> dict[str, int]:
    table = field_table()
    names = {info.name: fid for fid, info in table.items()}
    names.update({info.deprecated_alias: fid for fid, info in table.items() if info.deprecated_alias})
    return names


_NAMES: dict[str, int] | None = None


def dcgm_field_id(key: str) -> int | None:
    """The DCGM field id of a dcgmi record's field key (its 4.6 name, old name, or ``dcgm_field_<id>``)."""
    global _NAMES
    if _NAMES is None:
        _NAMES = _ids_by_name()
    fid = _NAMES.get(key)
    if fid is None and (m := _UNKNOWN_FIELD.fullmatch(key)):
        fid = int(m.group(1))
    return fid


def dcgm_values(rec: RawRecord) -> dict[int, FieldValue]:
    """The record's values by DCGM field id (see the module docstring); strings and unmapped fields are left out."""
    out: dict[int, FieldValue] = {}
    if rec.source == "dcgmi":
        for key, value in rec.fields.items():
            fid = dcgm_field_id(key)
            if fid is not None and not isinstance(value, str):
                out[fid] = value
    elif rec.source == "nvml":
        fields = rec.fields
        for key, fid, convert in NVML_TO_DCGM:
            if key in fields:
                value = fields[key]
                out[fid] = None if value is None or isinstance(value, str) else convert(value)
    return out


@dataclass(frozen=True)
class GpuEntity:
    group: str                    # "GPU", "GPU-I" or "GPU-CI", as dmon labels rows
    gpu: int | None
    instance: int | None = None   # GPU-I id
    compute: int | None = None    # GPU-CI id

    @property
    def entity_id(self) -> int | None:
        return {"GPU": self.gpu, "GPU-I": self.instance, "GPU-CI": self.compute}[self.group]


_GPU_RE = re.compile(r"gpu(\d+)")
_MIG_RE = re.compile(r"mig:(\d+|\?):(\d+|\?)(?::(\d+))?")


def gpu_entity(name: str) -> GpuEntity | None:
    """A GPU, GPU instance or compute instance entity name parsed; None for anything else (processes...)."""
    if m := _GPU_RE.fullmatch(name):
        return GpuEntity("GPU", int(m.group(1)))
    if m := _MIG_RE.fullmatch(name):
        gpu = None if m.group(1) == "?" else int(m.group(1))
        gi = None if m.group(2) == "?" else int(m.group(2))
        if m.group(3) is None:
            return GpuEntity("GPU-I", gpu, gi)
        return GpuEntity("GPU-CI", gpu, gi, int(m.group(3)))
    return None


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    pci_bus_id: str
    minor_number: int
    recorded: bool  # False: placeholders


def gpu_identity(manifest: Mapping[str, Any], indices) -> dict[int, GpuInfo]:
    """Identity of each GPU index: recorded (manifest ``gpus``) or stable placeholders."""
    listed = {int(g.get("index", i)): g for i, g in enumerate(manifest.get("gpus") or [])}
    host = str((manifest.get("host") or {}).get("hostname") or "")
    out = {}
    for index in sorted(set(indices) | set(listed)):
        g = listed.get(index)
        if g and g.get("uuid"):
            out[index] = GpuInfo(index, str(g.get("name") or PLACEHOLDER_NAME), str(g["uuid"]),
                                 str(g.get("pci_bus_id") or _placeholder_bus(index)),
                                 int(g["minor_number"]) if g.get("minor_number") is not None else index, True)
        else:
            stable = uuid.uuid5(uuid.NAMESPACE_URL, f"telemrec-replay://{host}/gpu{index}")
            out[index] = GpuInfo(index, PLACEHOLDER_NAME, f"GPU-{stable}", _placeholder_bus(index), index, False)
    return out


def _placeholder_bus(index: int) -> str:
    return f"00000000:{index + 1:02X}:00.0"


def driver_version(manifest: Mapping[str, Any]) -> str:
    """The NVIDIA driver version an nvml reader recorded, or ''."""
    for reader in manifest.get("readers") or []:
        version = (reader.get("identity") or {}).get("driver_version")
        if version:
            return str(version)
    return ""

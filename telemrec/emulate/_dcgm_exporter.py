"""GPU records rendered as dcgm-exporter (3.x/4.x) exposes them on :9400/metrics.

Metric names, TYPEs and HELP texts are dcgm-exporter's (etc/default-counters.csv and
etc/dcp-metrics-included.csv): the pre-4.6 DCGM names it still uses
(``DCGM_FI_DEV_POWER_USAGE`` for field 155, ``DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`` for
449), which is what KempnerPulse and dashboards query. Fields outside those lists use
their DCGM name (the old one where DCGM renamed it). Labels follow its template: gpu,
UUID, pci_bus_id, device, modelName, GPU_I_ID (GPU instances), Hostname,
DCGM_FI_DRIVER_VERSION (when recorded). Integers print as ``%d``, doubles as ``%f``,
as dcgm-exporter formats them; a blank (None) value is left out, as it does.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Iterable, Mapping

from telemrec.emulate._exposition import Family, Labels
from telemrec.emulate._gpus import GPU_SOURCES, dcgm_values, driver_version, gpu_entity, gpu_identity
from telemrec.readers._dmon_parser import field_table
from telemrec.record import RawRecord

__all__ = ["EXPORTER_METRICS", "dcgm_exporter_families", "exporter_metric", "exporter_value"]

# field id: (dcgm-exporter metric name, TYPE, HELP), in the order of its counters files
EXPORTER_METRICS: dict[int, tuple[str, str, str]] = {
    100: ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    101: ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    140: ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    150: ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    155: ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    156: ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    200: ("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "counter",
          "Total number of bytes transmitted through PCIe TX (in KB) via NVML."),
    201: ("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "counter",
          "Total number of bytes received through PCIe RX (in KB) via NVML."),
    202: ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    203: ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    204: ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    206: ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %)."),
    207: ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %)."),
    230: ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    251: ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    252: ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    253: ("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB)."),
    310: ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "counter", "Total number of single-bit volatile ECC errors."),
    311: ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter", "Total number of double-bit volatile ECC errors."),
    312: ("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "counter", "Total number of single-bit persistent ECC errors."),
    313: ("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "counter", "Total number of double-bit persistent ECC errors."),
    449: ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", "Total number of NVLink bandwidth counters for all lanes"),
    1001: ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
    1002: ("DCGM_FI_PROF_SM_ACTIVE", "gauge", "The ratio of cycles an SM has at least 1 warp assigned."),
    1003: ("DCGM_FI_PROF_SM_OCCUPANCY", "gauge", "The ratio of number of warps resident on an SM."),
    1004: ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active."),
    1005: ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
           "Ratio of cycles the device memory interface is active sending or receiving data."),
    1006: ("DCGM_FI_PROF_PIPE_FP64_ACTIVE", "gauge", "Ratio of cycles the fp64 pipes are active."),
    1007: ("DCGM_FI_PROF_PIPE_FP32_ACTIVE", "gauge", "Ratio of cycles the fp32 pipes are active."),
    1008: ("DCGM_FI_PROF_PIPE_FP16_ACTIVE", "gauge", "Ratio of cycles the fp16 pipes are active."),
    1009: ("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge", "The rate of data transmitted over the PCIe bus - including both "
           "protocol headers and data payloads - in bytes per second."),
    1010: ("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge", "The rate of data received over the PCIe bus - including both "
           "protocol headers and data payloads - in bytes per second."),
    1011: ("DCGM_FI_PROF_NVLINK_TX_BYTES", "gauge",
           "The rate of data transmitted over NVLink, not including protocol headers, in bytes per second."),
    1012: ("DCGM_FI_PROF_NVLINK_RX_BYTES", "gauge",
           "The rate of data received over NVLink, not including protocol headers, in bytes per second."),
}


def exporter_metric(field_id: int) -> tuple[str, str, str]:
    """(name, TYPE, HELP) dcgm-exporter uses for a DCGM field."""
    known = EXPORTER_METRICS.get(field_id)
    if known is not None:
        return known
    info = field_table().get(field_id)
    if info is None:
        return f"DCGM_FI_FIELD_{field_id}", "gauge", f"DCGM field {field_id}."
    return info.deprecated_alias or info.name, "counter" if info.counter else "gauge", info.description + "."


def exporter_value(field_id: int, value) -> str:
    """dcgm-exporter's formatting: ``%d`` for int64 fields, ``%f`` for doubles."""
    if isinstance(value, bool):
        return str(int(value))
    info = field_table().get(field_id)
    integral = isinstance(value, int) or (info is not None and info.kind == "int" and float(value).is_integer())
    if integral:
        return str(int(value))
    return f"{float(value):f}"


def dcgm_exporter_families(records: Iterable[RawRecord], manifest: Mapping) -> list[Family]:
    """Families for the GPU and GPU-instance records (dcgmi preferred where both readers recorded one)."""
    chosen: dict[tuple, tuple] = {}
    for rec in records:
        entity = gpu_entity(rec.entity) if rec.source in GPU_SOURCES else None
        if entity is None or entity.gpu is None or entity.group == "GPU-CI":
            continue  # dcgm-exporter watches GPUs and GPU instances, not compute instances
        slot = (entity.gpu, entity.instance)
        if slot not in chosen or rec.source == "dcgmi":
            chosen[slot] = (entity, rec)
    if not chosen:
        return []
    identity = gpu_identity(manifest, {gpu for gpu, _ in chosen})
    host = str((manifest.get("host") or {}).get("hostname") or "")
    driver = driver_version(manifest)
    families: dict[int, Family] = {}
    for slot in sorted(chosen, key=lambda s: (s[0], -1 if s[1] is None else s[1])):
        entity, rec = chosen[slot]
        labels = _labels(identity[entity.gpu], entity.instance, host, driver)
        for fid, value in dcgm_values(rec).items():
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            fam = families.get(fid)
            if fam is None:
                name, typ, help_text = exporter_metric(fid)
                fam = families[fid] = Family(name, typ, help_text, fmt=partial(exporter_value, fid))
            fam.add(labels, value)
    order = list(EXPORTER_METRICS)
    ranked = sorted(families, key=lambda fid: (order.index(fid) if fid in order else len(order), fid))
    return [families[fid] for fid in ranked]


def _labels(info, instance: int | None, host: str, driver: str) -> Labels:
    labels = [("gpu", str(info.index)), ("UUID", info.uuid), ("pci_bus_id", info.pci_bus_id),
              ("device", f"nvidia{info.minor_number}"), ("modelName", info.name)]
    if instance is not None:
        labels.append(("GPU_I_ID", str(instance)))
    if host:
        labels.append(("Hostname", host))
    if driver:
        labels.append(("DCGM_FI_DRIVER_VERSION", driver))
    return tuple(labels)

"""The replay libnvidia-ml.so.1 through the real nvidia-ml-py bindings (pynvml), each scenario in its
own process: what every served call answers at a given trace time, against the trace's records."""

from __future__ import annotations

import os
import re

import pytest

from .nvml_helpers import SAMPLES, probe, recorded_at

pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(
    os.path.dirname(__file__), "..", "..", "telemrec", "emulate", "libnvidia-ml.so.1")) and
    not os.environ.get("TELEMREC_REQUIRE_COMPILED"), reason="replay library not built (no C compiler)")

NOT_SUPPORTED, NOT_FOUND, INVALID, UNINITIALIZED = {"error": 3}, {"error": 6}, {"error": 2}, {"error": 1}

READINGS = '''
for i in range(N.nvmlDeviceGetCount()):
    h = N.nvmlDeviceGetHandleByIndex(i)
    out[i] = {
        "util": call("nvmlDeviceGetUtilizationRates", h),
        "mem2": call("nvmlDeviceGetMemoryInfo", h, version=N.nvmlMemory_v2),
        "mem1": call("nvmlDeviceGetMemoryInfo", h),
        "temp": call("nvmlDeviceGetTemperature", h, N.NVML_TEMPERATURE_GPU),
        "tempv": call("nvmlDeviceGetTemperatureV", h, N.NVML_TEMPERATURE_GPU),
        "power": call("nvmlDeviceGetPowerUsage", h),
        "enforced": call("nvmlDeviceGetEnforcedPowerLimit", h),
        "limit": call("nvmlDeviceGetPowerManagementLimit", h),
        "energy": call("nvmlDeviceGetTotalEnergyConsumption", h),
        "sm": call("nvmlDeviceGetClockInfo", h, N.NVML_CLOCK_SM),
        "memclk": call("nvmlDeviceGetClockInfo", h, N.NVML_CLOCK_MEM),
        "clock": call("nvmlDeviceGetClock", h, N.NVML_CLOCK_SM, N.NVML_CLOCK_ID_CURRENT),
        "graphics": call("nvmlDeviceGetClockInfo", h, N.NVML_CLOCK_GRAPHICS),
        "reasons": call("nvmlDeviceGetCurrentClocksEventReasons", h),
        "throttle": call("nvmlDeviceGetCurrentClocksThrottleReasons", h),
        "tx": call("nvmlDeviceGetPcieThroughput", h, N.NVML_PCIE_UTIL_TX_BYTES),
        "rx": call("nvmlDeviceGetPcieThroughput", h, N.NVML_PCIE_UTIL_RX_BYTES),
        "fan": call("nvmlDeviceGetFanSpeed", h),
        "fan2": call("nvmlDeviceGetFanSpeed_v2", h, 0),
        "fans": call("nvmlDeviceGetNumFans", h),
        "pstate": call("nvmlDeviceGetPerformanceState", h),
        "ecc": [call("nvmlDeviceGetTotalEccErrors", h, e, c) for e in (0, 1) for c in (0, 1)],
        "ecc_mode": call("nvmlDeviceGetEccMode", h),
        "fields": call("nvmlDeviceGetFieldValues", h, [83, 185, 190, 3, 4, 5, 6, 82, 91, 0, 5000]),
    }
    if isinstance(out[i]["fields"], list):
        out[i]["fields"] = [(v["fieldId"], v["nvmlReturn"], v["value"]["ullVal"] if v["valueType"] == 3
                             else v["value"]["uiVal"]) for v in out[i]["fields"]]
'''


def expect(fields: dict, error: str | None) -> dict:
    """What each call of READINGS answers for a GPU whose record in effect is ``fields``."""
    lost = re.search(r"\(NVML error (\d+)\)", error or "")
    if lost:
        return {"lost": int(lost[1])}

    def value(*names, shape=None):
        values = [fields.get(n) for n in names]
        if any(v is None for v in values):
            return NOT_SUPPORTED
        return shape(*values) if shape else values[0]

    ecc = [value(f"ecc.{kind}.{counter}") for kind in ("corrected", "uncorrected")
           for counter in ("volatile", "aggregate")]
    return {
        "util": value("utilization.gpu", "utilization.memory", shape=lambda g, m: {"gpu": g, "memory": m}),
        # recorded through v1 (a driver before R515): v2 is FUNCTION_NOT_FOUND, as that driver answered
        "mem2": {"error": 13} if fields.get("memory.reserved") is None and fields.get("memory.total") is not None
        else value("memory.total", "memory.reserved", "memory.free", "memory.used",
                   shape=lambda t, r, f, u: {"version": 0x02000028, "total": t, "reserved": r, "free": f, "used": u}),
        "mem1": value("memory.total", "memory.free", "memory.used", shape=lambda t, f, u: {
            "total": t, "free": f, "used": t - f if fields.get("memory.reserved") is not None else u}),
        "temp": value("temperature.gpu"), "tempv": value("temperature.gpu"),
        "power": value("power.usage"), "enforced": value("power.limit"), "limit": value("power.limit"),
        "energy": value("energy.total"), "sm": value("clocks.sm"), "memclk": value("clocks.mem"),
        "clock": value("clocks.sm"), "graphics": NOT_SUPPORTED,
        "reasons": value("clocks_event_reasons"), "throttle": value("clocks_event_reasons"),
        "tx": value("pcie.tx"), "rx": value("pcie.rx"),
        "fan": value("fan.speed"), "fan2": value("fan.speed"), "pstate": value("pstate"),
        "ecc": ecc,
        "fields": [[fid, 3 if v is NOT_SUPPORTED or v == NOT_SUPPORTED else 0, 0 if v == NOT_SUPPORTED else v]
                   for fid, v in ((83, value("energy.total")), (185, value("power.usage")),
                                  (190, value("power.limit")), (3, ecc[0]), (4, ecc[2]), (5, ecc[1]), (6, ecc[3]),
                                  (82, NOT_SUPPORTED), (91, NOT_SUPPORTED))] + [[0, 2, 0], [5000, 2, 0]],
    }


def check_readings(got: dict, trace: str, at: float, gpus: int, source: str = "nvml") -> None:
    for index in range(gpus):
        rec = recorded_at(trace, f"gpu{index}", at, source)
        want = expect(rec.fields, rec.error)
        mine = got[str(index)]
        if "lost" in want:
            gone = {"error": want["lost"]}
            assert {k: v for k, v in mine.items() if not (v == gone or v == [gone] * 4)} == {}
            continue
        fans = mine.pop("fans")
        assert fans == ({"error": 3} if rec.fields.get("fan.speed") is None else 1)
        ecc_mode = mine.pop("ecc_mode")
        assert ecc_mode == (NOT_SUPPORTED if want["ecc"][0] == NOT_SUPPORTED else [1, 1])
        for key, expected in want.items():
            assert mine[key] == expected, (index, key, at)


@pytest.mark.parametrize("at", [0.0, 4.7, 5.2, 12.1])
def test_every_reading_is_the_record_in_effect(rich_trace, tmp_path, at):
    """Utilization, memory (v1 and v2), temperature (both calls), power, limits, energy, clocks,
    clock event reasons, PCIe, fan, pstate, ECC and field values answer what the trace recorded at
    that time; None is NOT_SUPPORTED; a GPU recorded as lost answers GPU_IS_LOST to every call."""
    got = probe(rich_trace, READINGS, tmp_path, at=at)
    check_readings(got, rich_trace, at, gpus=3)


def test_identity_versions_and_handles(rich_trace, tmp_path):
    got = probe(rich_trace, '''
out["count"] = N.nvmlDeviceGetCount()
out["versions"] = [call("nvmlSystemGetDriverVersion"), call("nvmlSystemGetNVMLVersion"),
                   call("nvmlSystemGetCudaDriverVersion"), call("nvmlSystemGetCudaDriverVersion_v2")]
out["gpus"] = []
for i in range(out["count"]):
    h = N.nvmlDeviceGetHandleByIndex(i)
    uuid, pci = call("nvmlDeviceGetUUID", h), call("nvmlDeviceGetPciInfo", h)
    out["gpus"].append({
        "name": call("nvmlDeviceGetName", h), "uuid": uuid, "pci": pci, "minor": call("nvmlDeviceGetMinorNumber", h),
        "index": call("nvmlDeviceGetIndex", h),
        "by_uuid": call("nvmlDeviceGetIndex", N.nvmlDeviceGetHandleByUUID(uuid)),
        "by_uuid_lower": call("nvmlDeviceGetIndex", N.nvmlDeviceGetHandleByUUID(uuid.lower())),
        "by_pci": call("nvmlDeviceGetIndex", N.nvmlDeviceGetHandleByPciBusId(pci["busId"])),
        "by_short_pci": call("nvmlDeviceGetIndex", N.nvmlDeviceGetHandleByPciBusId(pci["busId"][4:])),
        "serial": call("nvmlDeviceGetSerial", h), "cc": call("nvmlDeviceGetCudaComputeCapability", h),
        "driver_model": call("nvmlDeviceGetDriverModel", h), "persistence": call("nvmlDeviceGetPersistenceMode", h),
    })
out["missing_uuid"] = call("nvmlDeviceGetHandleByUUID", "GPU-00000000-0000-0000-0000-000000000000")
out["missing_pci"] = call("nvmlDeviceGetHandleByPciBusId", "00000000:AA:00.0")
out["bad_index"] = call("nvmlDeviceGetHandleByIndex", 3)
out["not_exported"] = call("nvmlDeviceGetNvLinkState", N.nvmlDeviceGetHandleByIndex(0), 0)
''', tmp_path, at=1.0)
    from telemrec.trace import open_trace

    with open_trace(rich_trace) as t:
        identity = t.manifest["readers"][0]["identity"]
    assert got["count"] == 3
    assert got["versions"] == ["550.54.15", "12.550.54.15", 12040, 12040]
    for i, (gpu, info) in enumerate(zip(got["gpus"], identity["gpus"])):
        assert gpu["name"] == info["name"] and gpu["uuid"] == info["uuid"] and gpu["minor"] == info["minor_number"]
        assert gpu["pci"]["busId"] == info["pci_bus_id"]
        assert gpu["pci"]["busIdLegacy"] == info["pci_bus_id"][4:]
        assert gpu["pci"]["bus"] == int(info["pci_bus_id"].split(":")[1], 16)
        assert gpu["index"] == gpu["by_uuid"] == gpu["by_uuid_lower"] == gpu["by_pci"] == gpu["by_short_pci"] == i
        # recorded nowhere: NOT_SUPPORTED, as a driver that cannot tell
        assert gpu["serial"] == gpu["cc"] == gpu["driver_model"] == gpu["persistence"] == NOT_SUPPORTED
    assert got["missing_uuid"] == got["missing_pci"] == NOT_FOUND
    assert got["bad_index"] == INVALID
    assert got["not_exported"] == {"error": 13}  # FUNCTION_NOT_FOUND: not in the library


def test_mig_devices(rich_trace, tmp_path):
    got = probe(rich_trace, '''
gpu = N.nvmlDeviceGetHandleByIndex(0)
out["mode"] = call("nvmlDeviceGetMigMode", gpu)
out["slots"] = call("nvmlDeviceGetMaxMigDeviceCount", gpu)
out["migs"] = []
for slot in range(out["slots"]):
    try:
        mig = N.nvmlDeviceGetMigDeviceHandleByIndex(gpu, slot)
    except N.NVMLError as exc:
        out["migs"].append({"error": exc.value})
        continue
    parent = N.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
    out["migs"].append({
        "is_mig": call("nvmlDeviceIsMigDeviceHandle", mig), "gi": call("nvmlDeviceGetGpuInstanceId", mig),
        "ci": call("nvmlDeviceGetComputeInstanceId", mig), "uuid": call("nvmlDeviceGetUUID", mig),
        "name": call("nvmlDeviceGetName", mig), "mem": call("nvmlDeviceGetMemoryInfo", mig, version=N.nvmlMemory_v2),
        "parent": call("nvmlDeviceGetIndex", parent), "util": call("nvmlDeviceGetUtilizationRates", mig),
        "by_uuid": call("nvmlDeviceGetGpuInstanceId", N.nvmlDeviceGetHandleByUUID(call("nvmlDeviceGetUUID", mig))),
        "compute": call("nvmlDeviceGetComputeRunningProcesses", mig),
        "graphics": call("nvmlDeviceGetGraphicsRunningProcesses", mig),
    })
out["gpu_is_mig"] = call("nvmlDeviceIsMigDeviceHandle", gpu)
out["gpu_gi"] = call("nvmlDeviceGetGpuInstanceId", gpu)
out["not_mig"] = call("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", gpu)
plain_gpu = N.nvmlDeviceGetHandleByIndex(2)
out["plain"] = [call("nvmlDeviceGetMigMode", plain_gpu), call("nvmlDeviceGetMaxMigDeviceCount", plain_gpu)]
''', tmp_path, at=6.0)
    from telemrec.trace import open_trace

    with open_trace(rich_trace) as t:
        identity = t.manifest["readers"][0]["identity"]["gpus"][0]["mig_devices"]
    assert got["mode"] == [1, 1] and got["slots"] == 7
    assert [m.get("error") for m in got["migs"]] == [None, None, 6, 6, 6, 6, 6]  # empty slots: NOT_FOUND
    for mig, info in zip(got["migs"], identity):
        rec = recorded_at(rich_trace, info["entity"], 6.0).fields
        assert mig["is_mig"] == 1 and mig["parent"] == 0
        assert (mig["gi"], mig["ci"], mig["uuid"]) == (info["gpu_instance_id"], info["compute_instance_id"], info["uuid"])
        assert mig["mem"] == {"version": 0x02000028, "total": rec["memory.total"], "reserved": rec["memory.reserved"],
                              "free": rec["memory.free"], "used": rec["memory.used"]}
        assert mig["by_uuid"] == info["gpu_instance_id"]
        assert mig["name"] == "NVIDIA A100-SXM4-40GB MIG" and mig["util"] == NOT_SUPPORTED
    # each MIG device lists the processes of its GPU instance
    assert [p["pid"] for p in got["migs"][0]["compute"]] == [5001] and got["migs"][0]["graphics"] == []
    assert got["migs"][1]["compute"] == [] and [p["pid"] for p in got["migs"][1]["graphics"]] == [5002]
    assert got["gpu_is_mig"] == 0 and got["gpu_gi"] == NOT_SUPPORTED and got["not_mig"] == INVALID
    assert got["plain"] == [NOT_SUPPORTED, 0]


def test_running_processes_all_versions(rich_trace, tmp_path):
    got = probe(rich_trace, '''
class V1(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]
lib = N.nvmlLib
for i in range(2):
    h = N.nvmlDeviceGetHandleByIndex(i)
    out[i] = {kind: {v: call(f"nvmlDevice{kind}RunningProcesses{v}", h) for v in ("_v2", "_v3")}
              for kind in ("GetCompute", "GetGraphics")}
    count, buf = ctypes.c_uint(8), (V1 * 8)()
    rc = lib.nvmlDeviceGetComputeRunningProcesses(h, ctypes.byref(count), buf)
    out[i]["v1"] = [rc, [(buf[k].pid, buf[k].usedGpuMemory) for k in range(count.value)]]
    small = ctypes.c_uint(0)
    out[i]["size"] = [lib.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(small), None), small.value]
    out[i]["mps"] = call("nvmlDeviceGetMPSComputeRunningProcesses", h)
''', tmp_path, at=4.0)
    unavailable = 2**64 - 1
    gpu0, gpu1 = got["0"], got["1"]
    for version in ("_v2", "_v3"):
        assert gpu0["GetCompute"][version] == [{"computeInstanceId": 0, "gpuInstanceId": 1, "pid": 5001,
                                                "usedGpuMemory": 2 * 2**30}]
        assert gpu0["GetGraphics"][version] == [{"computeInstanceId": 0, "gpuInstanceId": 2, "pid": 5002,
                                                 "usedGpuMemory": 2**30}]
        # one process in both lists; one whose memory NVML could not tell (pynvml turns it into None)
        assert gpu1["GetCompute"][version] == [
            {"computeInstanceId": 2**32 - 1, "gpuInstanceId": 2**32 - 1, "pid": 6001, "usedGpuMemory": 4 * 2**30},
            {"computeInstanceId": 2**32 - 1, "gpuInstanceId": 2**32 - 1, "pid": 6002, "usedGpuMemory": None}]
        assert [p["pid"] for p in gpu1["GetGraphics"][version]] == [6001]
    assert gpu0["v1"] == [0, [[5001, 2 * 2**30]]]
    assert gpu1["v1"] == [0, [[6001, 4 * 2**30], [6002, unavailable]]]
    assert gpu0["size"] == [7, 1] and gpu1["size"] == [7, 2]  # INSUFFICIENT_SIZE and the count needed
    assert gpu0["mps"] == NOT_SUPPORTED


def test_processes_change_over_time(rich_trace, tmp_path):
    code = 'out["pids"] = [p.pid for p in N.nvmlDeviceGetComputeRunningProcesses(N.nvmlDeviceGetHandleByIndex(1))]'
    assert probe(rich_trace, code, tmp_path / "a", at=1.0)["pids"] == [6001]
    assert probe(rich_trace, code, tmp_path / "b", at=2.6)["pids"] == [6001, 6002]
    assert probe(rich_trace, code, tmp_path / "c", at=6.6)["pids"] == [6001]


def test_not_recorded_processes_are_not_supported(tmp_path):
    from .nvml_helpers import write_nvml_trace
    from telemrec.testing.fake_nvml import training_job

    trace = write_nvml_trace(str(tmp_path / "noproc.h5"), training_job(1), ticks=4, options={"processes": "0"})
    got = probe(trace, 'out["p"] = call("nvmlDeviceGetComputeRunningProcesses", N.nvmlDeviceGetHandleByIndex(0))',
                tmp_path / "r", at=1.0)
    assert got["p"] == NOT_SUPPORTED


def test_errors_before_init_after_shutdown_and_on_bad_arguments(rich_trace, tmp_path):
    got = probe(rich_trace, '''
lib = N.nvmlLib if N.nvmlLib else None
N.nvmlInit(); lib = N.nvmlLib; N.nvmlShutdown()
count = ctypes.c_uint(0)
out["before"] = lib.nvmlDeviceGetCount_v2(ctypes.byref(count))
out["shutdown_unbalanced"] = lib.nvmlShutdown()
out["init"] = [lib.nvmlInit_v2(), lib.nvmlInitWithFlags(0), lib.nvmlShutdown(), lib.nvmlDeviceGetCount_v2(ctypes.byref(count)), count.value]
handle = ctypes.c_void_p()
lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle))
temp = ctypes.c_uint()
out["bogus_handle"] = lib.nvmlDeviceGetTemperature(ctypes.c_void_p(handle.value + 8), 0, ctypes.byref(temp))
out["bad_sensor"] = lib.nvmlDeviceGetTemperature(handle, 1, ctypes.byref(temp))
mem = N.c_nvmlMemory_v2_t(); mem.version = 0x01000028
out["bad_version"] = lib.nvmlDeviceGetMemoryInfo_v2(handle, ctypes.byref(mem))
name = ctypes.create_string_buffer(4)
out["small_buffer"] = lib.nvmlDeviceGetName(handle, name, 4)
lib.nvmlErrorString.restype = ctypes.c_char_p
out["strings"] = [lib.nvmlErrorString(c).decode() for c in (0, 3, 15, 999)]
''', tmp_path, at=1.0, init=False)
    assert got["before"] == 1 and got["shutdown_unbalanced"] == 1  # UNINITIALIZED
    assert got["init"] == [0, 0, 0, 0, 3]  # two inits, one shutdown: still initialized
    assert got["bogus_handle"] == got["bad_sensor"] == 2
    assert got["bad_version"] == 25 and got["small_buffer"] == 7
    assert got["strings"] == ["Success", "Not Supported", "GPU is lost", "Unknown Error"]


def test_window_start_end_and_loops(training_trace, tmp_path):
    """--start moves trace time 0; a loop pass continues counters from where the last one ended; after
    the last pass the last sample holds."""
    code = '''
h = N.nvmlDeviceGetHandleByIndex(0)
out["energy"] = N.nvmlDeviceGetTotalEnergyConsumption(h)
out["power"] = N.nvmlDeviceGetPowerUsage(h)
'''
    first = recorded_at(training_trace, "gpu0", 0.0).fields
    at_5 = recorded_at(training_trace, "gpu0", 5.0).fields
    last = recorded_at(training_trace, "gpu0", 100.0).fields
    assert probe(training_trace, code, tmp_path / "s", at=0.2, start="+5s") == {
        "energy": at_5["energy.total"], "power": at_5["power.usage"]}
    # one pass spans 14.5 s of samples plus one 0.5 s interval
    second = probe(training_trace, code, tmp_path / "l", at=15.0 + 0.2, loop=3)
    rise = last["energy.total"] - first["energy.total"]
    assert second == {"energy": first["energy.total"] + rise + round(rise / 29), "power": first["power.usage"]}
    assert probe(training_trace, code, tmp_path / "e", at=1000.0, loop=3) == {
        "energy": last["energy.total"] + 2 * (rise + round(rise / 29)), "power": last["power.usage"]}
    at_2 = recorded_at(training_trace, "gpu0", 2.0).fields
    assert probe(training_trace, code, tmp_path / "w", at=50.0, end="+2.2s") == {
        "energy": at_2["energy.total"], "power": at_2["power.usage"]}


def test_dcgmi_trace_through_the_field_mapping(tmp_path):
    """A dcgmi trace: the DCGM fields that have an NVML counterpart, converted to NVML's units; GPUs
    named by stable placeholders (the trace holds no names or UUIDs)."""
    trace = os.path.join(SAMPLES, "dcgmi_synthetic.h5")
    code = READINGS + '''
out["ids"] = [[call("nvmlDeviceGetName", h), call("nvmlDeviceGetUUID", h), call("nvmlDeviceGetPciInfo", h),
               call("nvmlDeviceGetComputeRunningProcesses", h), call("nvmlDeviceGetMigMode", h),
               call("nvmlDeviceGetPcieReplayCounter", h),
               [(v.nvmlReturn, v.value.uiVal) for v in N.nvmlDeviceGetFieldValues(h, [82, 94])]]
              for h in map(N.nvmlDeviceGetHandleByIndex, range(N.nvmlDeviceGetCount()))]
out["versions"] = [call("nvmlSystemGetDriverVersion"), call("nvmlSystemGetCudaDriverVersion")]
'''
    got = probe(trace, code, tmp_path / "a", at=7.3)
    again = probe(trace, code, tmp_path / "b", at=7.3)
    assert got["ids"] == again["ids"]
    ids = got.pop("ids")
    assert got.pop("versions") == [NOT_SUPPORTED, NOT_SUPPORTED]
    assert len(ids) == 4
    for index, (name, uuid, pci, procs, mig, replay, fields) in enumerate(ids):
        rec = recorded_at(trace, f"gpu{index}", 7.3, "dcgmi").fields
        assert name == "NVIDIA GPU (replayed)" and re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", uuid)
        assert pci == procs == mig == NOT_SUPPORTED
        assert replay == rec["DCGM_FI_DEV_PCIE_REPLAY_TOTAL"]
        assert fields == [[0, rec["DCGM_FI_DEV_MEMORY_TEMP_CELSIUS"]], [0, rec["DCGM_FI_DEV_PCIE_REPLAY_TOTAL"]]]
    assert len({i[1] for i in ids}) == 4
    for index in range(4):
        rec = recorded_at(trace, f"gpu{index}", 7.3, "dcgmi").fields
        mib = 2**20
        as_nvml = {
            "utilization.gpu": rec["DCGM_FI_DEV_GPU_UTIL_RATIO"], "utilization.memory": rec["DCGM_FI_DEV_MEM_COPY_UTIL"],
            "memory.free": rec["DCGM_FI_DEV_FB_FREE"] * mib, "memory.used": rec["DCGM_FI_DEV_FB_USED"] * mib,
            "memory.reserved": rec["DCGM_FI_DEV_FB_RESERVED"] * mib,
            "memory.total": (rec["DCGM_FI_DEV_FB_FREE"] + rec["DCGM_FI_DEV_FB_USED"] + rec["DCGM_FI_DEV_FB_RESERVED"]) * mib,
            "temperature.gpu": rec["DCGM_FI_DEV_GPU_TEMP_CELSIUS"],
            "power.usage": round(rec["DCGM_FI_DEV_BOARD_POWER_WATTS"] * 1000),
            "energy.total": rec["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"],
            "clocks.sm": rec["DCGM_FI_DEV_SM_CLOCK"], "clocks.mem": rec["DCGM_FI_DEV_MEM_CLOCK"],
            # DCGM's PCIe rates are bytes/s, NVML's KB/s
            "pcie.tx": None if rec["DCGM_FI_PROF_PCIE_TX_BYTES"] is None else round(rec["DCGM_FI_PROF_PCIE_TX_BYTES"] / 1024),
            "pcie.rx": None if rec["DCGM_FI_PROF_PCIE_RX_BYTES"] is None else round(rec["DCGM_FI_PROF_PCIE_RX_BYTES"] / 1024),
        }
        want = expect(as_nvml, None)
        for key, expected in want.items():
            if key != "fields":
                assert got[str(index)][key] == expected, (index, key)


def test_the_docs_list_every_exported_function():
    """docs/replay/nvml.md names exactly the functions the library exports, and each one resolves."""
    import subprocess
    import sys

    from pathlib import Path

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    source = "".join(Path(root, "telemrec", "emulate", name).read_text()
                     for name in ("nvml_replay.c", "nvml_replay_queries.c"))
    exported = set(re.findall(r"EXPORT [\w ]+?\*?\s*(nvml\w+)\s*\(", source))
    exported |= {name + suffix for name in re.findall(r"PROCESS_CALLS\((nvml\w+)", source) for suffix in ("", "_v2", "_v3")}
    exported |= set(re.findall(r"NOT_RECORDED\((nvml\w+)", source))
    documented = set(re.findall(r"`(nvml[A-Z]\w+)`", Path(root, "docs", "replay", "nvml.md").read_text()))
    assert exported == documented
    assert len(exported) == 95
    # in another process: once loaded here, pynvml's dlopen("libnvidia-ml.so.1") would find it by soname
    check = ("import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); "
             "print([n for n in sys.argv[2:] if not hasattr(lib, n)], hasattr(lib, 'replay_now'))")
    proc = subprocess.run([sys.executable, "-c", check, os.path.join(root, "telemrec", "emulate", "libnvidia-ml.so.1"),
                           *sorted(exported)], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == ["[]", "False"]  # all resolve; nothing but NVML entry points is exported


def test_without_a_timeline_nvml_init_fails_as_without_a_driver(tmp_path):
    """Outside `telemrec replay` (no timeline, or a file that is not one) nvmlInit answers
    DRIVER_NOT_LOADED and says why on stderr."""
    import subprocess
    import sys

    from telemrec.emulate.nvml import prepare

    prepared = prepare(os.path.join(SAMPLES, "nvml_synthetic.h5"), str(tmp_path), speed=1)
    from pathlib import Path

    whole = Path(prepared.env["TELEMREC_NVML_TIMELINE"]).read_bytes()
    (tmp_path / "truncated.bin").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "bogus.bin").write_bytes(b"x" * 4096)
    code = "import pynvml as N\ntry:\n    N.nvmlInit()\nexcept N.NVMLError as e:\n    print(e.value)"
    env = {k: v for k, v in os.environ.items() if k != "TELEMREC_NVML_TIMELINE"}
    env["LD_LIBRARY_PATH"] = str(tmp_path)
    for timeline, reason in ((None, "not set"), (str(tmp_path / "bogus.bin"), "not a telemrec NVML timeline"),
                             (str(tmp_path / "missing.bin"), "No such file"),
                             (str(tmp_path / "truncated.bin"), "outside the file")):
        if timeline:
            env["TELEMREC_NVML_TIMELINE"] = timeline
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip() == "9" and reason in proc.stderr, proc.stderr


def test_dcgmi_gpu_instances_become_mig_devices(tmp_path, cli):
    """dcgmi's GPU-I rows (mig:<gpu>:<gi>) are MIG devices with their framebuffer as memory; the
    compute instance is the first GPU-CI row under them."""
    capture = os.path.join(os.path.dirname(__file__), "..", "fixtures", "dcgmi", "dmon_mig_2gpu.txt")
    trace = str(tmp_path / "mig.h5")
    cli("record", "-r", "dcgmi", "-s", capture, "-i", "0.05", "-d", "0.5", "-o", trace, check=True)
    got = probe(trace, '''
for i in range(N.nvmlDeviceGetCount()):
    h = N.nvmlDeviceGetHandleByIndex(i)
    out[i] = [call("nvmlDeviceGetMigMode", h)]
    for slot in range(N.nvmlDeviceGetMaxMigDeviceCount(h)):
        try:
            m = N.nvmlDeviceGetMigDeviceHandleByIndex(h, slot)
        except N.NVMLError as exc:
            out[i].append(exc.value)
            continue
        out[i].append([call("nvmlDeviceGetGpuInstanceId", m), call("nvmlDeviceGetComputeInstanceId", m),
                       call("nvmlDeviceGetMemoryInfo", m, version=N.nvmlMemory_v2)])
''', tmp_path / "r", at=0.0)
    mib = 2**20

    def memory(entity):
        f = recorded_at(trace, entity, 0.0, "dcgmi").fields
        used, free, reserved = (f[f"DCGM_FI_DEV_FB_{k}"] * mib for k in ("USED", "FREE", "RESERVED"))
        return {"version": 0x02000028, "total": used + free + reserved, "reserved": reserved, "free": free, "used": used}

    assert got["0"] == [[1, 1], [0, 0, memory("mig:0:0")], [1, 1, memory("mig:0:1")], 6, 6, 6, 6, 6]
    assert got["1"] == [[1, 1], [8, 8, memory("mig:1:8")], 6, 6, 6, 6, 6, 6]


def test_window_deep_into_a_trace(tmp_path):
    """--start far into a trace reads from a minute before it; a GPU silent in that minute still
    answers its last earlier sample. An imported trace serves placeholders for names and UUIDs."""
    from telemrec.record import RawRecord
    from telemrec.trace import TraceWriter
    from telemrec.trace.importer import import_manifest

    trace = str(tmp_path / "long.h5")
    writer = TraceWriter(trace, import_manifest("test"))
    for i in range(400):  # 200 s at 0.5 s; gpu1 reports only in the first 10 s and from 195 s on
        t = i * 500_000_000
        records = [RawRecord(10**12 + t, 1_795_000_000 * 10**9 + t, "gpu0", {"power.usage": 1000 + i}, "nvml", "")]
        if i < 20 or i >= 390:
            records.append(RawRecord(10**12 + t + 1000, 1_795_000_000 * 10**9 + t + 1000, "gpu1",
                                     {"power.usage": 5000 + i}, "nvml", ""))
        writer.write(records)
    writer.close()
    code = '''
out["power"] = [N.nvmlDeviceGetPowerUsage(N.nvmlDeviceGetHandleByIndex(i)) for i in range(2)]
out["names"] = [N.nvmlDeviceGetName(N.nvmlDeviceGetHandleByIndex(i)) for i in range(2)]
out["uuids"] = [N.nvmlDeviceGetUUID(N.nvmlDeviceGetHandleByIndex(i)) for i in range(2)]
'''
    got = probe(trace, code, tmp_path / "a", at=0.1, start="+150.2s")
    assert got["power"] == [1000 + 300, 5000 + 19]
    assert got["names"] == ["NVIDIA GPU (replayed)"] * 2 and len(set(got["uuids"])) == 2
    assert probe(trace, code, tmp_path / "b", at=0.1, start="+196.2s")["power"] == [1000 + 392, 5000 + 392]

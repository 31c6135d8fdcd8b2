"""The nvml reader against the scripted pynvml fake (and the real pynvml where it matters)."""

from __future__ import annotations

import ctypes.util
import inspect
import json

import pynvml
import pytest

from telemrec.errors import ReaderUnavailableError, UsageError
from telemrec.readers.nvml import CAPS, NvmlReader, bindings_problem
from telemrec.record import ReaderConfig, validate_record
from telemrec.testing import ReaderConformance
from telemrec.testing.fake_nvml import (
    GIB, DeviceSpec, FakeNvml, ManualClock, MigSpec, Phase, ProcessSpec, training_job,
)


class TestNvmlConformance(ReaderConformance):
    def make_reader(self):
        return NvmlReader(nvml=FakeNvml(training_job(2), seed=3), environ={})

    def make_config(self):
        return ReaderConfig(interval=0.05)

    def make_failing_config(self):
        return ReaderConfig(interval=0.05, options={"gpus": "GPU-00000000-no-such-gpu"})


# -- helpers ----------------------------------------------------------------------------------
def opened(devices, *, environ=None, options=None, clock=None, **fake_kwargs):
    clock = clock or ManualClock()
    fake = FakeNvml(devices, clock=clock, **fake_kwargs)
    reader = NvmlReader(nvml=fake, environ={} if environ is None else environ)
    reader.open(ReaderConfig(interval=1.0, options=options or {}))
    return reader, fake, clock


def by_entity(records):
    out = {}
    for rec in records:
        validate_record(rec)
        assert rec.entity not in out, f"entity {rec.entity} twice in one tick"
        out[rec.entity] = rec
    return out


def entities(reader):
    return sorted(by_entity(reader.read()))


# -- values --------------------------------------------------------------------------------------
def test_fields_follow_the_script():
    devices = training_job(2)
    reader, fake, clock = opened(devices, seed=11)
    scripted = ["utilization.gpu", "utilization.memory", "memory.used", "temperature.gpu", "power.usage",
                "clocks.sm", "clocks.mem", "pcie.tx", "pcie.rx", "clocks_event_reasons", "pstate"]
    for t in (0.0, 2.5, 7.3, 12.0, 40.0):
        clock.now = t
        recs = by_entity(reader.read())
        for i, spec in enumerate(devices):
            fields = recs[f"gpu{i}"].fields
            assert recs[f"gpu{i}"].error is None
            for name in scripted:
                assert fields[name] == fake.value(i, name, t), (t, name)
            assert fields["energy.total"] == fake.energy(i, t)
            assert fields["memory.total"] == spec.memory_total
            assert fields["memory.reserved"] == spec.memory_reserved
            assert fields["memory.free"] == spec.memory_total - spec.memory_reserved - fields["memory.used"]
            assert fields["power.limit"] == spec.power_limit
            assert fields["ecc.corrected.aggregate"] == 2 and fields["ecc.uncorrected.volatile"] == 0
            assert fields["fan.speed"] is None  # training_job's SXM boards have no fan
            assert all(type(v) is int for k, v in fields.items() if k != "fan.speed")
    reader.close()


def test_script_phases_show_idle_loading_training():
    reader, fake, clock = opened(training_job(1))
    readings = {}
    for t in (1.0, 10.0, 30.0):
        clock.now = t
        readings[t] = by_entity(reader.read())["gpu0"].fields
    assert readings[1.0]["utilization.gpu"] == 0 and readings[1.0]["clocks_event_reasons"] == 0x1
    assert 0 < readings[10.0]["utilization.gpu"] < 50  # ramping up while loading
    assert readings[30.0]["utilization.gpu"] > 85 and readings[30.0]["power.usage"] > 250_000
    assert readings[1.0]["memory.used"] < readings[10.0]["memory.used"] < readings[30.0]["memory.used"]
    reader.close()


def test_energy_integrates_power_and_only_grows():
    clock = ManualClock()
    fake = FakeNvml(training_job(1), clock=clock, seed=5)
    energies = [fake.energy(0, t / 4) for t in range(0, 200)]
    assert energies == sorted(energies)
    # over the steady training phase energy rises by about 330 W x 10 s = 3.3 MJ... in millijoules
    gained = fake.energy(0, 40.0) - fake.energy(0, 30.0)
    assert 3_100_000 < gained < 3_500_000
    mean_power = sum(fake.value(0, "power.usage", 30.0 + k * 0.1) for k in range(100)) / 100
    assert gained == pytest.approx(mean_power * 10.0, rel=1e-3)


def test_fake_is_deterministic_given_seed_and_clock():
    first, second, other = (FakeNvml(training_job(2), seed=s, clock=ManualClock()) for s in (1, 1, 2))
    times = [0.05 * k for k in range(400)]
    a = [(first.value(1, "power.usage", t), first.energy(1, t)) for t in times]
    b = [(second.value(1, "power.usage", t), second.energy(1, t)) for t in reversed(times)][::-1]
    assert a == b
    assert a != [(other.value(1, "power.usage", t), other.energy(1, t)) for t in times]
    assert first.nvmlDeviceGetUUID.__self__ is first  # bound methods, module-like
    first.nvmlInit()
    second.nvmlInit()
    assert first.nvmlDeviceGetUUID(first.nvmlDeviceGetHandleByIndex(0)) == \
        second.nvmlDeviceGetUUID(second.nvmlDeviceGetHandleByIndex(0))


# -- N/A handling -----------------------------------------------------------------------------
def test_unsupported_calls_give_none_and_are_not_retried():
    spec = DeviceSpec(unsupported={
        "nvmlDeviceGetTotalEnergyConsumption": pynvml.NVML_ERROR_NOT_SUPPORTED,
        "nvmlDeviceGetPcieThroughput": pynvml.NVML_ERROR_NO_PERMISSION,
        "nvmlDeviceGetFanSpeed": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        "nvmlDeviceGetTotalEccErrors": pynvml.NVML_ERROR_NOT_SUPPORTED,
    })
    reader, fake, clock = opened([spec])
    for _ in range(5):
        clock.advance(1.0)
        fields = by_entity(reader.read())["gpu0"].fields
        for name in ("energy.total", "pcie.tx", "pcie.rx", "fan.speed", "ecc.corrected.volatile",
                     "ecc.uncorrected.volatile", "ecc.corrected.aggregate", "ecc.uncorrected.aggregate"):
            assert name in fields and fields[name] is None, name
        assert fields["power.usage"] > 0 and fields["temperature.gpu"] > 0
    assert fake.call_count("nvmlDeviceGetTotalEnergyConsumption", 0) == 1
    assert fake.call_count("nvmlDeviceGetPcieThroughput", 0) == 2  # tx and rx, once each
    assert fake.call_count("nvmlDeviceGetFanSpeed", 0) == 1
    assert fake.call_count("nvmlDeviceGetTotalEccErrors", 0) == 4
    assert fake.call_count("nvmlDeviceGetPowerUsage", 0) == 5
    assert "gpu0 nvmlDeviceGetTotalEnergyConsumption" in reader.unsupported_calls
    reader.close()


def test_fallbacks_to_older_calls():
    spec = DeviceSpec(unsupported={"nvmlDeviceGetMemoryInfo_v2": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
                                   "nvmlDeviceGetEnforcedPowerLimit": pynvml.NVML_ERROR_NOT_SUPPORTED},
                      power_limit=250_000)
    reader, fake, clock = opened([spec], missing_functions=["nvmlDeviceGetCurrentClocksEventReasons"])
    for _ in range(3):
        clock.advance(1.0)
        fields = by_entity(reader.read())["gpu0"].fields
        assert fields["memory.reserved"] is None  # v1 has no reserved figure
        assert fields["memory.used"] == fields["memory.total"] - fields["memory.free"]
        assert fields["memory.used"] == fake.value(0, "memory.used") + spec.memory_reserved
        assert fields["power.limit"] == 250_000
        assert fields["clocks_event_reasons"] == fake.value(0, "clocks_event_reasons")
    assert fake.call_count("nvmlDeviceGetMemoryInfo_v2", 0) == 1
    assert fake.call_count("nvmlDeviceGetEnforcedPowerLimit", 0) == 1
    assert fake.call_count("nvmlDeviceGetPowerManagementLimit", 0) == 3
    assert fake.call_count("nvmlDeviceGetCurrentClocksThrottleReasons", 0) == 3
    reader.close()


def test_unknown_pstate_is_none_not_a_number():
    phases = (Phase("odd", 1e9, {"pstate": 32}),)
    reader, fake, clock = opened([DeviceSpec(phases=phases)])
    assert by_entity(reader.read())["gpu0"].fields["pstate"] is None
    reader.close()


def test_transient_error_sets_record_error_and_is_retried():
    spec = DeviceSpec(unsupported={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_TIMEOUT})
    reader, fake, clock = opened([spec])
    for _ in range(3):
        rec = by_entity(reader.read())["gpu0"]
        assert rec.fields["power.usage"] is None and rec.fields["temperature.gpu"] is not None
        assert "nvmlDeviceGetPowerUsage" in rec.error and "Timeout" in rec.error
    assert fake.call_count("nvmlDeviceGetPowerUsage", 0) == 3
    reader.close()


def test_lost_gpu_gives_error_records_not_a_crash():
    devices = training_job(2)
    devices[1] = DeviceSpec(lost_after=10.0, processes=devices[1].processes)
    reader, fake, clock = opened(devices)
    clock.now = 6.0
    before = by_entity(reader.read())
    assert before["gpu1"].error is None and "gpu1/pid:4243" in before
    for t in (10.0, 11.0):
        clock.now = t
        recs = by_entity(reader.read())
        assert recs["gpu0"].error is None and recs["gpu0"].fields["power.usage"] > 0
        assert "GPU is lost" in recs["gpu1"].error
        assert "gpu1/pid:4243" not in recs
    reader.close()


# -- processes ----------------------------------------------------------------------------------
def test_processes_appear_disappear_and_keep_unknown_memory_as_none():
    spec = DeviceSpec(processes=(
        ProcessSpec(pid=100, kind="compute", used_memory=3 * GIB, start=0.0, end=5.0),
        ProcessSpec(pid=200, kind="graphics", used_memory=None, start=2.0),
        ProcessSpec(pid=300, kind="compute", used_memory=GIB, start=2.0),
        ProcessSpec(pid=300, kind="graphics", used_memory=GIB, start=2.0),
    ))
    reader, fake, clock = opened([spec])
    assert entities(reader) == ["gpu0", "gpu0/pid:100"]
    clock.now = 3.0
    recs = by_entity(reader.read())
    assert sorted(recs) == ["gpu0", "gpu0/pid:100", "gpu0/pid:200", "gpu0/pid:300"]
    assert recs["gpu0/pid:100"].fields == {"pid": 100, "used_gpu_memory": 3 * GIB, "type": "compute",
                                           "gpu_index": 0, "gpu_instance_id": None}
    assert recs["gpu0/pid:200"].fields["used_gpu_memory"] is None  # not 0
    assert recs["gpu0/pid:200"].fields["type"] == "graphics"
    assert recs["gpu0/pid:300"].fields["type"] == "compute+graphics"
    assert recs["gpu0/pid:300"].fields["used_gpu_memory"] == GIB
    clock.now = 6.0
    assert "gpu0/pid:100" not in entities(reader)
    reader.close()


def test_process_call_missing_from_the_driver_is_given_up():
    # an old driver without the _v3 symbol: pynvml raises NVMLLibraryMismatchError, not an NVMLError
    spec = DeviceSpec(processes=(ProcessSpec(pid=7, kind="graphics"),),
                      unsupported={"nvmlDeviceGetComputeRunningProcesses": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND})
    reader, fake, clock = opened([spec])
    for _ in range(3):
        assert entities(reader) == ["gpu0", "gpu0/pid:7"]
    assert fake.call_count("nvmlDeviceGetComputeRunningProcesses", 0) == 1
    assert fake.call_count("nvmlDeviceGetGraphicsRunningProcesses", 0) == 3
    reader.close()


def test_options_turn_off_processes_and_pcie():
    reader, fake, clock = opened(training_job(1), options={"processes": "0", "pcie": "false"})
    clock.now = 20.0
    recs = by_entity(reader.read())
    assert list(recs) == ["gpu0"]
    assert "pcie.tx" not in recs["gpu0"].fields
    assert fake.call_count("nvmlDeviceGetPcieThroughput", 0) == 0
    assert fake.call_count("nvmlDeviceGetComputeRunningProcesses", 0) == 0
    reader.close()


# -- MIG --------------------------------------------------------------------------------------------
def mig_gpu(**kwargs):
    return DeviceSpec(
        mig_capable=True, mig_enabled=True,
        mig_devices=(MigSpec(1, memory_total=10 * GIB, memory_used=2 * GIB, profile="2g.10gb"),
                     MigSpec(2, memory_total=20 * GIB, memory_used=5 * GIB, memory_reserved=GIB, profile="3g.20gb")),
        processes=(ProcessSpec(pid=11, used_memory=2 * GIB, gpu_instance_id=1),
                   ProcessSpec(pid=22, used_memory=None, gpu_instance_id=2)),
        **kwargs)


def test_mig_instances_are_entities_with_memory_fields():
    reader, fake, clock = opened([mig_gpu(), DeviceSpec()])
    recs = by_entity(reader.read())
    assert sorted(recs) == ["gpu0", "gpu0/pid:11", "gpu0/pid:22", "gpu1", "mig:0:1", "mig:0:2"]
    assert recs["mig:0:1"].fields == {"memory.total": 10 * GIB, "memory.used": 2 * GIB,
                                      "memory.free": 8 * GIB, "memory.reserved": 0}
    assert recs["mig:0:2"].fields["memory.free"] == 14 * GIB
    assert recs["gpu0"].fields["utilization.gpu"] is None  # NVML has no utilization in MIG mode
    assert recs["gpu0"].fields["power.usage"] > 0
    assert recs["gpu0/pid:11"].fields["gpu_instance_id"] == 1
    assert recs["gpu0/pid:22"].fields["used_gpu_memory"] is None
    identity = reader.identity()
    assert identity["gpus"][0]["mig_mode"] is True and identity["gpus"][1]["mig_mode"] is None
    migs = identity["gpus"][0]["mig_devices"]
    assert [m["entity"] for m in migs] == ["mig:0:1", "mig:0:2"]
    assert all(m["uuid"].startswith("MIG-") for m in migs)
    reader.close()


def test_mig_processes_fall_back_to_per_instance_queries():
    spec = mig_gpu(unsupported={"nvmlDeviceGetComputeRunningProcesses": pynvml.NVML_ERROR_NO_PERMISSION})
    reader, fake, clock = opened([spec])
    for _ in range(2):
        recs = by_entity(reader.read())
        assert recs["gpu0/pid:11"].fields["gpu_instance_id"] == 1
        assert recs["gpu0/pid:22"].fields["gpu_instance_id"] == 2
    assert fake.call_count("nvmlDeviceGetComputeRunningProcesses", 0) == 1
    assert fake.call_count("nvmlDeviceGetComputeRunningProcesses", (0, 1)) == 2
    reader.close()


# -- GPU selection ------------------------------------------------------------------------------------
FOUR = [DeviceSpec(minor_number=m) for m in (0, 1, 2, 3)]


def selected(environ, options=None, devices=FOUR):
    reader, fake, clock = opened(devices, environ=environ, options=options)
    try:
        return [e for e in entities(reader) if "/" not in e], reader.identity()["selection"]
    finally:
        reader.close()


def uuid_of(index, devices=FOUR):
    fake = FakeNvml(devices, clock=ManualClock())
    fake.nvmlInit()
    return fake.nvmlDeviceGetUUID(fake.nvmlDeviceGetHandleByIndex(index))


@pytest.mark.parametrize("environ, expected, by", [
    ({}, ["gpu0", "gpu1", "gpu2", "gpu3"], "all"),
    ({"CUDA_VISIBLE_DEVICES": "2"}, ["gpu2"], "CUDA_VISIBLE_DEVICES"),
    ({"CUDA_VISIBLE_DEVICES": "3,1"}, ["gpu1", "gpu3"], "CUDA_VISIBLE_DEVICES"),
    ({"CUDA_VISIBLE_DEVICES": "0,9,1"}, ["gpu0"], "CUDA_VISIBLE_DEVICES"),  # CUDA stops at the first bad entry
    ({"CUDA_VISIBLE_DEVICES": "1", "SLURM_JOB_GPUS": "3"}, ["gpu1"], "CUDA_VISIBLE_DEVICES"),
    ({"NVIDIA_VISIBLE_DEVICES": "2", "SLURM_JOB_GPUS": "3"}, ["gpu2"], "NVIDIA_VISIBLE_DEVICES"),
    ({"NVIDIA_VISIBLE_DEVICES": "all", "SLURM_JOB_GPUS": "3"}, ["gpu3"], "SLURM_JOB_GPUS"),
    ({"SLURM_STEP_GPUS": "0", "SLURM_JOB_GPUS": "0-3"}, ["gpu0"], "SLURM_STEP_GPUS"),
    ({"SLURM_JOB_GPUS": "1-2"}, ["gpu1", "gpu2"], "SLURM_JOB_GPUS"),
    ({"SLURM_JOB_GPUS": "7"}, ["gpu0", "gpu1", "gpu2", "gpu3"], "all"),  # names nothing here: falls through
])
def test_environment_selects_gpus(environ, expected, by):
    chosen, selection = selected(environ)
    assert chosen == expected and selection["by"] == by


def test_cuda_visible_devices_by_uuid_and_unique_prefix():
    full, prefix = uuid_of(3), uuid_of(1)[:12]
    assert selected({"CUDA_VISIBLE_DEVICES": f"{full},{prefix}"})[0] == ["gpu1", "gpu3"]
    # a prefix shared by every GPU names none of them: CUDA stops there
    with pytest.raises(ReaderUnavailableError, match="selects none"):
        selected({"CUDA_VISIBLE_DEVICES": "GPU-"})


def test_slurm_ids_are_device_minor_numbers_not_nvml_indices():
    # under cgroups the job sees physical GPUs 5 and 7 as NVML indices 0 and 1
    devices = [DeviceSpec(minor_number=5), DeviceSpec(minor_number=7)]
    assert selected({"SLURM_JOB_GPUS": "7"}, devices=devices)[0] == ["gpu1"]
    assert selected({"SLURM_STEP_GPUS": "5,7", "SLURM_JOB_GPUS": "5"}, devices=devices)[0] == ["gpu0", "gpu1"]


def test_mig_uuids_select_a_gpu_and_only_those_instances():
    devices = [DeviceSpec(), mig_gpu()]
    reader, fake, clock = opened(devices, environ={})
    mig_uuids = {m["entity"]: m["uuid"] for m in reader.identity()["gpus"][1]["mig_devices"]}
    gpu_uuid = reader.identity()["gpus"][1]["uuid"]
    reader.close()
    for value in (mig_uuids["mig:1:2"], f"MIG-{gpu_uuid}/2/0"):
        reader, _, _ = opened(devices, environ={"CUDA_VISIBLE_DEVICES": value})
        recs = by_entity(reader.read())
        assert {e for e in recs if "/" not in e} == {"gpu1", "mig:1:2"}
        assert [m["entity"] for m in reader.identity()["gpus"][0]["mig_devices"]] == ["mig:1:2"]
        reader.close()


def test_empty_cuda_visible_devices_means_no_gpu_unless_all_gpus():
    with pytest.raises(ReaderUnavailableError) as info:
        selected({"CUDA_VISIBLE_DEVICES": ""})
    assert "all_gpus" in info.value.remediation
    for flag in ("1", "true", "Yes", True, 1):
        chosen, selection = selected({"CUDA_VISIBLE_DEVICES": ""}, {"all_gpus": flag})
        assert chosen == ["gpu0", "gpu1", "gpu2", "gpu3"] and selection["by"] == "all_gpus"
    chosen, _ = selected({"CUDA_VISIBLE_DEVICES": "1"}, {"all_gpus": "0"})
    assert chosen == ["gpu1"]


def test_gpus_option_overrides_everything():
    chosen, selection = selected({"CUDA_VISIBLE_DEVICES": "0"}, {"gpus": f"3,{uuid_of(2)}", "all_gpus": "1"})
    assert chosen == ["gpu2", "gpu3"] and selection == {"by": "gpus", "value": f"3,{uuid_of(2)}"}
    assert selected({}, {"gpus": [1]})[0] == ["gpu1"]
    with pytest.raises(ReaderUnavailableError, match="9"):
        selected({}, {"gpus": "0,9"})


@pytest.mark.parametrize("options, source", [
    ({"all_gpus": "maybe"}, None), ({"all-gpus": "1"}, None), ({"gpus": 1.5}, None), ({}, "http://x"),
])
def test_bad_options_are_usage_errors(options, source):
    reader = NvmlReader(nvml=FakeNvml(FOUR, clock=ManualClock()), environ={})
    with pytest.raises(UsageError) as info:
        reader.open(ReaderConfig(source=source, options=options))
    assert info.value.remediation
    reader.close()


# -- lifecycle, identity, caps ----------------------------------------------------------------------------
def test_identity_for_the_manifest_and_shutdown_on_close():
    reader, fake, clock = opened(training_job(2), environ={"CUDA_VISIBLE_DEVICES": "1"})
    identity = json.loads(json.dumps(reader.identity()))
    assert identity["driver_version"] == "550.54.15" and identity["nvml_version"] == "12.550.54.15"
    assert identity["cuda_driver_version"] == "12.4" and identity["gpu_count"] == 2
    assert identity["selection"] == {"by": "CUDA_VISIBLE_DEVICES", "value": "1"}
    (gpu,) = identity["gpus"]
    assert gpu["index"] == 1 and gpu["name"] == "NVIDIA A100-SXM4-40GB"
    assert gpu["uuid"].startswith("GPU-") and gpu["pci_bus_id"] == "00000000:0F:00.0"
    assert gpu["memory_total_bytes"] == 40 * GIB and gpu["mig_mode"] is None
    assert reader.source_version == "12.550.54.15"
    assert all(rec.source_version == "12.550.54.15" and rec.source == "nvml" for rec in reader.read())
    assert fake.initialized
    reader.close()
    assert not fake.initialized and fake.call_count("nvmlShutdown") == 1


def test_init_failures_are_unavailable_errors_with_remediation():
    for code, words in ((pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "driver is not loaded"),
                        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "libnvidia-ml.so.1"),
                        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "differ in version"),
                        (pynvml.NVML_ERROR_UNKNOWN, "nvmlInit failed")):
        fake = FakeNvml(FOUR, init_error=code)
        reader = NvmlReader(nvml=fake, environ={})
        with pytest.raises(ReaderUnavailableError, match=words) as info:
            reader.open(ReaderConfig())
        assert info.value.remediation and info.value.nvml_error == code
        reader.close()
        ok, reason = NvmlReader.availability(nvml=FakeNvml(FOUR, init_error=code))
        assert not ok and words in reason


def test_no_gpu_and_lost_gpu_at_open():
    fake = FakeNvml([])
    assert NvmlReader.availability(nvml=fake) == (False, "NVML (driver 550.54.15) sees no GPU")
    assert not fake.initialized
    reader = NvmlReader(nvml=fake, environ={})
    with pytest.raises(ReaderUnavailableError, match="no GPU"):
        reader.open(ReaderConfig())
    assert not fake.initialized  # shut down after the failed open
    assert NvmlReader.availability(nvml=FakeNvml(FOUR)) == (True, "4 GPU(s), driver 550.54.15")

    reader, fake, clock = opened([DeviceSpec(lost_after=0.0), DeviceSpec()])
    assert entities(reader) == ["gpu1"]
    assert reader.identity()["inaccessible"] == [{"index": 0, "error": "GPU is lost"}]
    reader.close()


def test_caps_declare_the_fixed_fields_units_and_counters():
    fixed = {"utilization.gpu", "utilization.memory", "memory.total", "memory.used", "memory.free",
             "memory.reserved", "temperature.gpu", "power.usage", "power.limit", "energy.total", "clocks.sm",
             "clocks.mem", "pcie.tx", "pcie.rx", "clocks_event_reasons", "ecc.corrected.volatile",
             "ecc.uncorrected.volatile", "ecc.corrected.aggregate", "ecc.uncorrected.aggregate", "fan.speed",
             "pstate", "pid", "used_gpu_memory", "type", "gpu_index", "gpu_instance_id"}
    assert CAPS.fields == fixed
    assert CAPS.units["memory.used"] == "bytes" and CAPS.units["power.usage"] == "milliwatts"
    assert CAPS.units["energy.total"] == "millijoules" and CAPS.units["clocks.sm"] == "megahertz"
    assert CAPS.units["pcie.rx"] == "kilobytes_per_second" and CAPS.units["temperature.gpu"] == "celsius"
    assert CAPS.units["utilization.gpu"] == "percent" and CAPS.units["used_gpu_memory"] == "bytes"
    assert CAPS.counters == {"energy.total", "ecc.corrected.volatile", "ecc.uncorrected.volatile",
                             "ecc.corrected.aggregate", "ecc.uncorrected.aggregate"}
    assert set(CAPS.descriptions) == fixed


# -- the bindings -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("installed, problem", [
    ({"nvidia-ml-py": "13.615.71"}, None),
    ({"nvidia-ml-py": "13.580.82", "pynvml": "13.0.1"}, None),  # deprecated wrapper over nvidia-ml-py
    ({"nvidia-ml-py": "12.535.133", "pynvml": "11.5.0"}, "legacy `pynvml` distribution 11.5.0"),
    ({"pynvml": "11.4.1"}, "nvidia-ml-py is missing"),
    ({"pynvml": "12.0.0"}, "without nvidia-ml-py"),
    ({}, "nvidia-ml-py is not installed"),
])
def test_legacy_pynvml_detection(installed, problem):
    found = bindings_problem(installed.get)
    if problem is None:
        assert found is None
    else:
        assert problem in found[0] and "pip" in found[1]


def test_legacy_pynvml_blocks_open_and_availability():
    legacy = {"pynvml": "11.5.0", "nvidia-ml-py": "12.535.133"}.get
    ok, reason = NvmlReader.availability(version_of=legacy)
    assert not ok and "legacy `pynvml`" in reason and "pip uninstall -y pynvml" in reason
    reader = NvmlReader(version_of=legacy)
    with pytest.raises(ReaderUnavailableError, match="legacy") as info:
        reader.open(ReaderConfig())
    assert "pip uninstall -y pynvml" in info.value.remediation
    reader.close()


def test_real_pynvml_on_this_machine():
    ok, reason = NvmlReader.availability()
    reader = NvmlReader()
    if ctypes.util.find_library("nvidia-ml") is None:  # the case on GPU-less CI machines
        assert not ok and "libnvidia-ml.so.1 was not found" in reason
        with pytest.raises(ReaderUnavailableError) as info:
            reader.open(ReaderConfig())
        assert info.value.nvml_error == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
        assert "nvidia-smi" in info.value.remediation
    elif ok:
        reader.open(ReaderConfig(options={"all_gpus": 1}))
        assert reader.read()
    else:
        with pytest.raises(ReaderUnavailableError):
            reader.open(ReaderConfig())
    reader.close()
    reader.close()


# -- the fake's faithfulness to pynvml ---------------------------------------------------------------------
def test_fake_functions_have_pynvml_signatures():
    fake = FakeNvml(FOUR)
    names = [n for n in dir(FakeNvml) if n.startswith("nvml") and callable(getattr(FakeNvml, n))]
    assert len(names) > 35
    for name in names:
        real = inspect.signature(getattr(pynvml, name))
        assert list(inspect.signature(getattr(fake, name)).parameters) == list(real.parameters), name


def test_fake_returns_pynvml_types_and_raises_pynvml_errors():
    fake = FakeNvml([DeviceSpec(unsupported={"nvmlDeviceGetFanSpeed": pynvml.NVML_ERROR_NOT_SUPPORTED}),
                     mig_gpu()])
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(fake.nvmlDeviceGetMemoryInfo(handle), pynvml.c_nvmlMemory_t)
    assert isinstance(fake.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2), pynvml.c_nvmlMemory_v2_t)
    assert isinstance(fake.nvmlDeviceGetUtilizationRates(handle), pynvml.c_nvmlUtilization_t)
    assert isinstance(fake.nvmlDeviceGetPciInfo(handle).busId, str)
    assert isinstance(fake.nvmlDeviceGetName(handle), str)
    with pytest.raises(pynvml.NVMLError_NotSupported) as info:
        fake.nvmlDeviceGetFanSpeed(handle)
    assert info.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED and str(info.value) == "Not Supported"
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetHandleByIndex(5)
    mig_parent = fake.nvmlDeviceGetHandleByIndex(1)
    assert fake.nvmlDeviceGetMigMode(mig_parent) == [pynvml.NVML_DEVICE_MIG_ENABLE] * 2
    mig = fake.nvmlDeviceGetMigDeviceHandleByIndex(mig_parent, 0)
    assert fake.nvmlDeviceGetGpuInstanceId(mig) == 1
    with pytest.raises(pynvml.NVMLError_NotFound):
        fake.nvmlDeviceGetMigDeviceHandleByIndex(mig_parent, 5)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetTemperature(mig, pynvml.NVML_TEMPERATURE_GPU)
    procs = fake.nvmlDeviceGetComputeRunningProcesses(mig_parent)
    assert isinstance(procs[0], pynvml.nvmlFriendlyObject)
    assert [(p.pid, p.usedGpuMemory, p.gpuInstanceId) for p in procs] == [(11, 2 * GIB, 1), (22, None, 2)]
    fake.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake.nvmlShutdown()
    missing = FakeNvml(FOUR, missing_functions=["nvmlDeviceGetCurrentClocksEventReasons"])
    assert not hasattr(missing, "nvmlDeviceGetCurrentClocksEventReasons")

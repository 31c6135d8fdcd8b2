"""What the cjm monitors serve, checked in the suite's own Python (no cjm needed): the replay
clock, config handling, the JSON-safe payload, the live sampler, and the import guard."""

import json
import math
import sys

import numpy as np
import pytest

from telemrec.analysis.snapshots import LiveSampler, snapshot
from telemrec.errors import IntegrationUnavailableError, ReplayError, TraceNotFoundError, UsageError
from telemrec.integrations import require
from telemrec.integrations._cjm_sources import (LIVE, REPLAY, TRACE_ENV, LiveSource, ReplaySource, json_safe,
                                               payload)
from telemrec.record import RawRecord
from telemrec.trace import open_trace

S = 10**9
GIB = 1 << 30


class Clock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


def span(path):
    with open_trace(path) as trace:
        return trace.time_span()


def test_json_safe_turns_nan_into_none_everywhere():
    value = {"a": math.nan, "b": [1.0, float("inf"), {"c": np.float64("nan"), "d": np.int64(3)}], "e": "x"}
    assert json_safe(value) == {"a": None, "b": [1.0, None, {"c": None, "d": 3}], "e": "x"}
    assert type(json_safe(np.float32(1.5))) is float


def test_payload_of_a_gpu_only_trace_is_valid_json(sample):
    with open_trace(sample("nvml_synthetic.h5")) as trace:
        system, processes = payload(snapshot(trace))
    json.dumps([system, processes], allow_nan=False)
    assert system["memory_total_mb"] is None and system["cpu_percent"] is None
    assert system["gpu_total_memory_mb"] == 81920.0 and len(system["details"]["gpus"]) == 2


def test_replay_plays_at_speed_and_holds_the_end(sample):
    path = sample("psutil_workload.h5")
    first, last = span(path)
    clock = Clock()
    source = ReplaySource(clock=clock, environ={})
    source.configure({"trace": path, "speed": 10})
    assert source.instant() == (first, 0, False)
    clock.now = 1 * S                   # one real second at speed 10: ten seconds in
    status, processes = source.snapshot()
    assert status["details"]["replay"]["at_wall_ns"] == first + 10 * S
    with open_trace(path) as trace:
        assert (status, processes) == payload(snapshot(trace, at=first + 10 * S),
                                              {"replay": status["details"]["replay"]})
    clock.now = 60 * S                  # long past the end: the last instant, and it says so
    assert source.instant() == (last, 0, True)
    assert source.snapshot()[0]["details"]["replay"]["ended"] is True


def test_replay_loops_from_start(sample):
    path = sample("psutil_workload.h5")
    first, last = span(path)
    clock = Clock()
    source = ReplaySource(clock=clock, environ={})
    source.configure({"trace": path, "speed": 1, "start": "+5s", "loop": True})
    period = last - (first + 5 * S) + S // 2     # the trace's interval is 0.5 s
    clock.now = period + 2 * S
    assert source.instant() == (first + 7 * S, 1, False)


def test_speed_zero_holds_the_node_at_start(sample):
    path = sample("psutil_workload.h5")
    first, _ = span(path)
    clock = Clock()
    source = ReplaySource(clock=clock, environ={})
    source.configure({"trace": path, "speed": 0, "start": "+3s"})
    clock.now = 100 * S
    assert source.instant() == (first + 3 * S, 0, False)
    assert source.config == {"trace": path, "speed": 0.0, "start": "+3s", "loop": False}


def test_the_manifests_default_trace_comes_from_the_environment(sample):
    path = sample("nvml_synthetic.h5")
    source = ReplaySource(environ={TRACE_ENV: path})
    system, _ = source.snapshot()        # never initialized: plays the default
    assert system["details"]["replay"]["trace"] == path
    schema = REPLAY.schema({TRACE_ENV: path})
    assert schema["properties"]["trace"]["default"] == path and "required" not in schema
    assert REPLAY.schema({})["required"] == ["trace"]
    source.close()
    assert source.snapshot()[0]["gpu_type"] == "NVIDIA"   # a closed source opens again with its config


@pytest.mark.parametrize("config, error, words", [
    ({}, UsageError, "no trace to play"),
    ({"trace": "/nonexistent/run.h5"}, TraceNotFoundError, "/nonexistent/run.h5"),
    ({"trace": "T", "colour": "red"}, UsageError, "unknown config keys ['colour']"),
    ({"trace": "T", "speed": "max"}, UsageError, "'max' has no meaning"),
    ({"trace": "T", "speed": -1}, UsageError, "speed must lie between"),
    ({"trace": "T", "loop": "yes"}, UsageError, "loop must be true or false"),
    ({"trace": "T", "start": "+1h"}, ReplayError, "lies outside the trace"),
    ({"trace": "T", "start": "yesterday"}, UsageError, "neither ISO 8601"),
])
def test_bad_replay_configs_are_refused_clearly(sample, config, error, words):
    config = {k: sample("psutil_workload.h5") if v == "T" else v for k, v in config.items()}
    with pytest.raises(error) as info:
        ReplaySource(environ={}).configure(config)
    assert words in str(info.value)


class FakeReader:
    def __init__(self, batches, identity=None):
        self.batches, self.identity_ = list(batches), identity or {}
        self.opened = self.closed = 0

    def open(self, config):
        self.opened += 1

    def read(self):
        return self.batches.pop(0)

    def identity(self):
        return self.identity_

    def close(self):
        self.closed += 1


def system(t, user, idle):
    return RawRecord(t, t, "system", {"cpu_times.user": user, "cpu_times.idle": idle, "virtual_memory.total": 8 * GIB,
                                      "virtual_memory.used": 2 * GIB, "virtual_memory.available": 6 * GIB},
                     "psutil", "7")


def gpu(t, util):
    return RawRecord(t, t, "gpu0", {"utilization.gpu": util, "memory.used": GIB, "memory.free": None,
                                    "memory.total": 4 * GIB}, "nvml", "1")


def test_live_sampler_measures_cpu_since_the_previous_call():
    ps = FakeReader([[system(1, 10.0, 90.0)], [system(2, 10.5, 90.5)], [system(3, 11.5, 90.5)]])
    nv = FakeReader([[gpu(2, 30)], [gpu(3, None)]], identity={"gpus": [{"index": 0, "name": "T4"}]})
    with LiveSampler(0.0, psutil_reader=ps, nvml_reader=nv) as sampler:
        assert sampler.snapshot().system.cpu_percent == pytest.approx(50.0)    # two readings, first call
        second = sampler.snapshot().system                                     # one reading, since the first call
        assert second.cpu_percent == pytest.approx(100.0)
        assert math.isnan(second.gpu_load_percent) and math.isnan(second.gpu_free_memory_mb)
    assert ps.opened == nv.opened == 1 and ps.closed == nv.closed == 1


def test_live_source_serves_none_for_what_nvml_did_not_say():
    ps = FakeReader([[system(1, 10.0, 90.0)], [system(2, 10.5, 90.5)]])
    nv = FakeReader([[gpu(2, None)]], identity={"gpus": [{"index": 0, "name": "T4"}]})
    made = []

    def factory(interval, nvml):
        made.append((interval, nvml))
        return LiveSampler(interval, psutil_reader=ps, nvml_reader=nv)

    source = LiveSource(sampler_factory=factory)
    source.configure({"interval": 0.0, "nvml": True})
    system_, processes = source.snapshot()
    assert made == [(0.0, True)]
    assert system_["gpu_load_percent"] is None and system_["gpu_free_memory_mb"] is None
    assert system_["details"]["gpus"][0]["utilization_percent"] is None and system_["gpu_type"] == "NVIDIA"
    json.dumps(system_, allow_nan=False)
    source.close()
    assert ps.closed == 1
    with pytest.raises(UsageError, match="interval must be"):
        source.configure({"interval": -1})
    with pytest.raises(UsageError, match="unknown config keys"):
        source.configure({"gpus": "all"})
    assert LIVE.schema()["properties"]["nvml"]["default"] is True


def test_require_names_the_extra():
    with pytest.raises(IntegrationUnavailableError) as info:
        require("telemrec_no_such_module", extra="cjm", package="cjm-infra-plugin-system")
    assert isinstance(info.value, ImportError) and "pip install 'telemrec[cjm]'" in str(info.value)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="this Python can run cjm")
def test_cjm_plugins_need_python_312_and_say_so():
    with pytest.raises(IntegrationUnavailableError) as info:
        import telemrec.integrations.cjm  # noqa: F401
    assert "Python >= 3.12" in str(info.value) and "telemrec[cjm]" in str(info.value)

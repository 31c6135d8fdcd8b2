"""The pieces under the emulators: TracePlayer (trace time from a clock, stepping, priming, loops) and
the exposition name, label and value rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemrec.emulate._exposition import entity_label_pairs, go_float, label_name, metric_name, split_series
from telemrec.emulate._gpus import dcgm_values, gpu_entity, gpu_identity
from telemrec.emulate._timeline import TracePlayer
from telemrec.emulate.openmetrics import entity_labels
from telemrec.readers.prometheus import _entity_name, format_series
from telemrec.record import RawRecord
from telemrec.trace import open_trace

from .conftest import ticks_of, trace_records

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus"


class Clock:
    def __init__(self, now: int = 10**12):
        self.now = now

    def __call__(self) -> int:
        return self.now


def _power(player, gpu="gpu0"):
    return player.latest[("dcgmi", gpu)].fields["DCGM_FI_DEV_BOARD_POWER_WATTS"]


def test_paced_player_shows_the_record_due_at_start_plus_elapsed_times_speed(sample):
    path = sample("v2/dcgmi_synthetic")
    ticks = ticks_of(trace_records(path))
    clock = Clock()
    with open_trace(path) as trace:
        player = TracePlayer(trace, speed="2", epoch_ns=clock.now, clock=clock)
        player.advance()
        assert _power(player) == ticks[0]["gpu0"].fields["DCGM_FI_DEV_BOARD_POWER_WATTS"]
        clock.now += int(2.6e9)  # 2.6 s x 2 = 5.2 s of trace time: ten 0.5 s ticks later
        player.advance()
        assert _power(player) == ticks[10]["gpu0"].fields["DCGM_FI_DEV_BOARD_POWER_WATTS"]
        assert 0 < player.seconds_until_next() <= 0.25
        clock.now += 10**12
        player.advance()
        assert player.finished and _power(player) == ticks[-1]["gpu0"].fields["DCGM_FI_DEV_BOARD_POWER_WATTS"]
        assert player.advance() is False and player.seconds_until_next() is None


def test_stepping_takes_one_recorded_tick_each_time_and_loops(sample):
    path = sample("v2/nvml_synthetic")   # per-GPU stamps: a tick is not one instant
    records = trace_records(path)
    ticks = ticks_of(records)
    with open_trace(path) as trace:
        player = TracePlayer(trace, speed="max", loop="2")
        seen = []
        while player.advance():
            seen.append({e: r.fields for (_, e), r in player.latest.items()})
    assert len(seen) == 2 * len(ticks)
    assert seen[0] == {e: r.fields for e, r in ticks[0].items()}
    assert seen[len(ticks)] == {**seen[len(ticks) - 1], **{e: r.fields for e, r in ticks[0].items()}}


def test_start_lands_on_a_populated_node(sample):
    """--start in the middle: entities that reported just before it are there from the first moment."""
    path = sample("v2/psutil_workload")
    with open_trace(path) as trace:
        first, _ = trace.time_span()
        player = TracePlayer(trace, speed="max", start="+5s")
        assert {e for _, e in player.latest} >= {"system", "cpu0", "cpu1"}   # before any advance()
        assert all(r.wall_ns < first + 5 * 10**9 for r in player.latest.values())


def test_player_selection_and_errors(sample):
    from telemrec.errors import ReplayError, UsageError

    with open_trace(sample("v2/dcgmi_synthetic")) as trace:
        player = TracePlayer(trace, speed="max", entities="gpu1", fields="DCGM_FI_DEV_FB_*")
        player.advance()
        assert list(player.latest) == [("dcgmi", "gpu1")]
        assert set(player.latest[("dcgmi", "gpu1")].fields) == {"DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED",
                                                                 "DCGM_FI_DEV_FB_RESERVED"}
        with pytest.raises(ReplayError):
            TracePlayer(trace, entities="gpu9")
        with pytest.raises(UsageError):
            TracePlayer(trace, loop="sometimes")


def test_nvml_records_in_dcgm_units():
    rec = RawRecord(1, 1, "gpu0", {"power.usage": 56284, "memory.used": 3 * 2**20 + 5, "utilization.gpu": None,
                                   "energy.total": 8381, "pstate": 0, "name": "x"}, "nvml")
    assert dcgm_values(rec) == {155: 56.284, 252: 3, 203: None, 156: 8381, 190: 0}
    dcgmi = RawRecord(1, 1, "gpu0", {"DCGM_FI_DEV_BOARD_POWER_WATTS": 1.5, "DCGM_FI_DEV_POWER_USAGE": 2.0,
                                     "dcgm_field_4242": 7}, "dcgmi")
    assert dcgm_values(dcgmi) == {155: 2.0, 4242: 7}  # the old name is the same field (last one wins)


def test_gpu_entities_and_placeholder_identity():
    assert gpu_entity("gpu3").group == "GPU"
    mig = gpu_entity("mig:3:25:26")
    assert (mig.group, mig.gpu, mig.instance, mig.compute, mig.entity_id) == ("GPU-CI", 3, 25, 26, 26)
    assert gpu_entity("mig:?:25").gpu is None and gpu_entity("gpu0/pid:1") is None
    a = gpu_identity({"host": {"hostname": "n1"}}, [0, 1])
    b = gpu_identity({"host": {"hostname": "n1"}}, [0, 1])
    assert a == b and a[0].uuid != a[1].uuid and not a[0].recorded
    assert gpu_identity({"host": {"hostname": "n2"}}, [0])[0].uuid != a[0].uuid


def test_go_float_prints_what_node_exporter_printed():
    values = [line.rsplit(" ", 1)[1] for line in (FIXTURES / "node_exporter_1.5.0_debian.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    assert len(values) > 500
    assert [go_float(float(v)) for v in values] == values
    assert [go_float(v) for v in (1e6, 123456.0, 0.0001, 1e-5, -0.0, float("nan"), float("-inf"))] == [
        "1e+06", "123456", "0.0001", "1e-05", "-0", "NaN", "-Inf"]


def test_names_and_labels_are_sanitised_and_split():
    assert metric_name("power.usage") == "power_usage" and metric_name("9lives") == "_9lives"
    assert metric_name("ok_name:x") == "ok_name:x"
    assert label_name("__reserved") == "_reserved" and label_name("a-b") == "a_b" and label_name("1x") == "_1x"
    assert entity_labels("psutil", "disk:vda") == (("disk", "vda"),)
    assert entity_labels("nvml", "gpu0/pid:4242") == (("gpu", "0"), ("pid", "4242"))
    assert entity_labels("dcgmi", "mig:0:1:2") == (("gpu", "0"), ("GPU_I_ID", "1"), ("GPU_CI_ID", "2"))
    assert entity_labels("psutil", "cpu12") == (("cpu", "12"),)
    assert entity_labels("psutil", "system") == (("entity", "system"),)
    assert split_series('node_cpu_seconds_total{mode="idle"}') == ("node_cpu_seconds_total", (("mode", "idle"),))
    assert split_series(format_series("my.metric", [("a", 'x"y')])) == ("my.metric", (("a", 'x"y'),))
    assert split_series("cpu_times.user") == ("cpu_times.user", ())


@pytest.mark.parametrize("pairs", [[("gpu", "0"), ("UUID", "GPU-abc")], [("device", "a,b"), ("x", 'q"uo\\te')],
                                   [("cpu", "")]])
def test_prometheus_entity_names_read_back_into_labels(pairs):
    assert entity_label_pairs(_entity_name(pairs)) == tuple(pairs)

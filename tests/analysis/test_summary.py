import json

import numpy as np
import pytest

from telemrec.analysis import summarize

from .conftest import MIB, N


def test_fields_table(node_trace):
    s = summarize(node_trace)
    f = s.fields.set_index(["source", "entity", "field"])
    util = f.loc[("nvml", "gpu1", "utilization.gpu")]
    assert (util["min"], util["mean"], util["p50"], util["p95"], util["max"]) == (80.0, 80.0, 80.0, 80.0, 80.0)
    assert util["samples"] == N and util["unit"] == "percent"
    temp = f.loc[("nvml", "gpu0", "temperature.gpu")]
    assert temp["n/a"] == 1 and temp["samples"] == N - 1
    read = f.loc[("psutil", "disk:sda", "disk_io_counters.read_bytes")]
    assert read["unit"] == "bytes/s" and read["mean"] == pytest.approx(MIB)    # counters as rates
    assert s.info["host"] == "node-a" and s.info["closed_cleanly"]


def test_gpus_energy_and_busy_time(node_trace):
    g = summarize(node_trace).gpus.set_index("gpu")
    assert g.loc["gpu0", "busy_s"] == pytest.approx(N)
    assert g.loc["gpu0", "util_weighted_s"] == pytest.approx(N * 0.5)
    assert g.loc["gpu0", "energy_j"] == pytest.approx((N - 1) * 300)      # the counter's increase
    assert g.loc["gpu1", "energy_j"] == pytest.approx((N - 2) * 300)      # its reset is skipped
    assert g.loc["gpu1", "peak_mem_gib"] == pytest.approx(4.0)
    assert g.loc["gpu0", "energy_from"] == "counter"


def test_memory_processes_and_gaps(node_trace):
    s = summarize(node_trace)
    assert s.memory["peak_used_gib"] == pytest.approx(4 + (N - 1) / 10, abs=1e-6)
    assert s.memory["total_gib"] == 16.0
    assert s.processes.iloc[0]["pid"] == "100" and s.processes.iloc[0]["peak_rss_gib"] == 1.0
    gaps = s.gaps.set_index("reader")
    assert gaps.loc["psutil", "missed"] == 1 and gaps.loc["nvml", "missed"] == 0
    assert gaps.loc["psutil", "holes"] == 1 and gaps.loc["psutil", "longest_hole_s"] == pytest.approx(2.0)
    assert gaps.loc["psutil", "missing_s"] == pytest.approx(1.0)


def test_text_and_json(node_trace):
    s = summarize(node_trace, entities=["gpu*"])
    text = s.to_text()
    assert "gpu0" in text and "energy_j" in text and "missed" in text
    data = json.loads(s.to_json())
    assert data["info"]["host"] == "node-a"
    assert all(r["entity"].startswith("gpu") for r in data["fields"])


def test_power_integration_when_there_is_no_energy_counter(node_trace):
    g = summarize(node_trace, fields=["power.usage", "utilization.gpu"]).gpus.set_index("gpu")
    assert g.loc["gpu0", "energy_from"] == "power x time"
    assert g.loc["gpu0", "energy_j"] == pytest.approx(N * 300.0)
    assert np.isnan(g.loc["gpu0", "peak_mem_gib"])

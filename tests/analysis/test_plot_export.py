import json
import os

import pandas as pd
import pytest

from telemrec.analysis import export, load, plot_trace
from telemrec.errors import UsageError
from telemrec.record import RawRecord
from telemrec.trace import TraceWriter

from .conftest import N


def test_plot_writes_a_png(node_trace, tmp_path):
    out = plot_trace(node_trace, tmp_path / "node.png")
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(out) > 20_000


def test_plot_refuses_a_trace_without_host_or_gpu_data(tmp_path):
    path = str(tmp_path / "other.h5")
    w = TraceWriter(path, {"readers": []})
    w.write([RawRecord(1, 1, "x", {"v": 1.0}, "prometheus", "1")])
    w.close()
    with pytest.raises(UsageError, match="nothing to plot"):
        plot_trace(path, tmp_path / "x.png")


def test_csv_export_with_units_sidecar(node_trace, tmp_path):
    out = export(node_trace, "csv", tmp_path / "t.csv", entities="gpu0", rates=True)
    table = pd.read_csv(out)
    assert table.columns[0] == "time" and "nvml/gpu0/utilization.gpu" in table.columns
    assert len(table) == N
    with open(f"{out}.meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    assert meta["units"]["nvml"]["energy.total"] == "millijoules/s" and meta["rates"] is True


def test_parquet_export_round_trip(node_trace, tmp_path):
    out = export(node_trace, "parquet", tmp_path / "t.parquet", entities=["cpu*"])
    table = pd.read_parquet(out)
    frame = load(node_trace, entities=["cpu*"])
    assert list(table.columns[1:]) == ["/".join(c) for c in frame.columns]
    assert (table.iloc[:, 1:].to_numpy() == frame.to_numpy()).sum() == frame.notna().sum().sum()
    assert json.loads(table.attrs["telemrec"])["units"]["psutil"]["cpu_times.user"] == "seconds"


def test_long_export(node_trace, tmp_path):
    out = export(node_trace, "csv", tmp_path / "long.csv", form="long", entities="gpu1", fields="power.usage")
    table = pd.read_csv(out)
    assert list(table.columns) == ["time", "source", "entity", "field", "value", "none"] and len(table) == N


def test_export_refuses_unknown_format_and_selected_jumper(node_trace, tmp_path):
    with pytest.raises(UsageError):
        export(node_trace, "xlsx", tmp_path / "x")
    with pytest.raises(UsageError):
        export(node_trace, "jumper", tmp_path / "j", entities="gpu0")

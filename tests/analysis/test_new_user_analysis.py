"""What a new user hit in analysis: error records nobody mentioned, summary's numbers and states,
and `load` arguments the command line takes but Python did not."""

import math
import subprocess
import sys
import time

import pandas as pd
import pytest

from telemrec.analysis import load, summarize
from telemrec.analysis.errors import describe, error_records
from telemrec.analysis.summary import _fmt, _table
from telemrec.errors import UsageError
from telemrec.record import RawRecord
from telemrec.testing import assert_frames_identical
from telemrec.trace import TraceWriter

from .conftest import T0_MONO, T0_WALL, S


def _exporter_down_trace(path) -> str:
    """psutil records, and an exporter that was never reachable: prometheus records are all errors."""
    writer = TraceWriter(str(path), {"readers": [], "interval_seconds": 1.0})
    for i in range(6):
        writer.write([RawRecord(T0_MONO + i * S, T0_WALL + i * S, "system", {"load": 1.0}, "psutil", "7"),
                      RawRecord(T0_MONO + i * S, T0_WALL + i * S, "scrape", {"up": 0}, "prometheus", "",
                                "connect: connection refused by http://127.0.0.1:9/metrics")])
    writer.close()
    return str(path)


def test_error_records_are_counted_per_reader(tmp_path):
    errors = error_records(_exporter_down_trace(tmp_path / "t.h5"))
    assert (errors["prometheus"].records, errors["prometheus"].error_records) == (6, 6)
    assert (errors["psutil"].records, errors["psutil"].error_records) == (6, 0)
    assert describe(errors["prometheus"]) == (
        "prometheus: 6 of 6 records carry an error (first 2023-11-14T22:13:20Z scrape: connect: connection refused "
        "by http://127.0.0.1:9/metrics)")


def test_info_summary_and_check_report_error_records(tmp_path, cli):
    path = str(tmp_path / "down.h5")  # what the user ran: an exporter nobody listens for
    proc = cli("record", "-r", "prometheus", "-s", "http://127.0.0.1:9/metrics", "-r", "psutil", "-i", "0.2",
               "-d", "1", "-o", path)
    assert proc.returncode == 0, proc.stderr
    n = error_records(path)["prometheus"].records
    assert n >= 3 and error_records(path)["prometheus"].error_records == n
    info = cli("info", path)
    assert f"errors       prometheus: {n} of {n} records carry an error (first " in info.stdout
    check = cli("check", path)
    assert check.returncode == 0, check.stdout
    assert f"errors: prometheus: {n} of {n} records carry an error" in check.stdout and "valid" in check.stdout
    text = cli("summary", path).stdout
    assert "errors (records that carry an error)" in text and "connection refused" in text
    rows = {r["source"]: r for r in summarize(path).to_dict()["errors"]}
    assert rows["prometheus"]["error_records"] == n and rows["psutil"]["error_records"] == 0


def test_a_clean_trace_says_so(node_trace, cli):
    info = cli("info", node_trace).stdout
    assert "errors       none (no record carries an error)" in info
    assert "source=None" not in info and "reader       psutil: psutil source=- " in info
    assert "errors" not in cli("check", node_trace).stdout.replace("0 errors", "")


@pytest.mark.parametrize("value,text", [
    (4_194_304.0, "4,194,304"), (2.59e10, "25,900,000,000"), (0.0007, "0.000700"), (0.00071234, "0.000712"),
    (1234.5, "1,234.50"), (0.75, "0.75"), (0.0, "0"), (-0.0123, "-0.01"), (1e-12, "0.000000000001"),
    (3e-15, "3e-15"), (float("nan"), "-"), (7, "7"), (12345678, "12,345,678"), (None, "-"),
])
def test_summary_numbers_have_one_notation(value, text):
    assert _fmt(value) == text


def test_a_row_reaching_a_hundred_thousand_has_no_decimals():
    frame = pd.DataFrame([("power.usage", 55_282.0, 201_835.4), ("temp", 31.0, 51.1)], columns=["field", "min", "max"])
    assert _table(frame).splitlines()[1].split() == ["power.usage", "55,282", "201,835"]
    assert _table(frame).splitlines()[2].split() == ["temp", "31.00", "51.10"]


def test_summary_text_of_the_gpu_samples_has_no_exponent_and_no_false_zero(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "sample_traces" / "v2"
    for name in ("nvml_synthetic.h5", "dcgmi_synthetic.h5", "psutil_workload.h5"):
        text = summarize(root / name).to_text(max_fields=None)
        assert "e+" not in text, name
    writer = TraceWriter(str(tmp_path / "small.h5"), {"readers": [], "interval_seconds": 1.0})
    writer.write([RawRecord(T0_MONO + i * S, T0_WALL + i * S, "scrape", {"seconds": 0.0007}, "prometheus")
                  for i in range(5)])
    writer.close()
    row = summarize(tmp_path / "small.h5").to_text().splitlines()[-1].split()
    assert row[-5:] == ["0.000700"] * 5


def test_summary_of_a_selection_that_matches_nothing_is_an_error(node_trace, cli):
    with pytest.raises(UsageError, match="nothing in .* matches"):
        summarize(node_trace, fields="nosuchfield")
    with pytest.raises(UsageError):
        load(node_trace, fields="nosuchfield")
    proc = cli("summary", node_trace, "-f", "nosuchfield")
    assert proc.returncode == 2 and "telemrec: error: nothing in" in proc.stderr


def test_a_live_trace_is_in_progress_for_info_and_summary(tmp_path, cli):
    path = tmp_path / "live.h5"
    script = ("import sys, time; from telemrec.trace import TraceWriter; from telemrec.record import RawRecord\n"
              f"w = TraceWriter({str(path)!r}, {{'readers': []}})\n"
              "w.write([RawRecord(1, 1_700_000_000_000_000_000 + i, 'system', {'v': i}, 'psutil') for i in range(5)])\n"
              "w.flush(); print('flushed', flush=True); time.sleep(60)\n")
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "flushed"
        summary = cli("summary", str(path)).stdout
        assert "recording  recording in progress;" in summary and "NOT closed" not in summary
        assert "recording in progress" in cli("info", str(path)).stdout
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()


def test_load_of_an_empty_list_is_a_usage_error():
    with pytest.raises(UsageError, match="no trace to load"):
        load([])


@pytest.mark.parametrize("text,python", [
    ("+5s", pd.Timedelta("5s")), ("+2.5s", pd.Timedelta("2.5s")), ("-3s", pd.Timedelta("-3s")),
    ("+1min", pd.Timedelta("1min")),
])
def test_load_takes_the_command_lines_offsets(node_trace, text, python):
    assert_frames_identical(load(node_trace, start=text), load(node_trace, start=python))
    assert_frames_identical(load(node_trace, end=text), load(node_trace, end=python))


def test_minus_zero_is_the_last_sample_and_a_bad_offset_is_refused(node_trace):
    last = load(node_trace, start="-0s")
    assert len(last) == 1 and last.index[0] == load(node_trace).index[-1]
    for bad in ("+5 parsecs", "+", "", "-x"):
        with pytest.raises(UsageError):
            load(node_trace, start=bad)


def test_an_undecodable_command_line_loads_as_recorded(tmp_path):
    # psutil keeps a command line that is not UTF-8 with surrogateescape; pandas' str dtype cannot hold it
    path = str(tmp_path / "t.h5")
    writer = TraceWriter(path, {"readers": []})
    writer.write([RawRecord(T0_MONO + i, T0_WALL + i, "pid:1", {"cmdline": "python caf\udce9.py", "rss": 1},
                            "psutil", "", "read: \udcff" if i else None) for i in range(3)])
    writer.close()
    assert load(path)[("psutil", "pid:1", "cmdline")].tolist() == ["python caf\udce9.py"] * 3
    long = load(path, form="long")
    assert long["text"].dropna().tolist() == ["python caf\udce9.py"] * 3
    assert error_records(path)["psutil"].error_records == 2

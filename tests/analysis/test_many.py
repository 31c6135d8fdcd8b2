"""Many traces: keyed by trace (never merged or dropped), the dask engine equal to pandas, and
the summary per host and overall."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from telemrec.analysis import load
from telemrec.analysis.jobsummary import summarize_traces
from telemrec.errors import UsageError

from .conftest import N, build_node_trace

pytest.importorskip("dask.dataframe")


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """node-a twice (two runs 100 s apart), node-b once, and a byte copy of node-a's first run."""
    d = tmp_path_factory.mktemp("many")
    build_node_trace(d / "a1.h5", host="node-a")
    build_node_trace(d / "a2.h5", host="node-a", wall_shift=100 * 10**9)
    build_node_trace(d / "b.h5", host="node-b", wall_shift=300_000_000)
    shutil.copy(d / "a1.h5", d / "copy_of_a1.h5")
    return d


def test_a_copy_is_a_second_trace_not_a_duplicate(traces):
    one = load(traces / "a1.h5")
    both = load([traces / "a1.h5", traces / "copy_of_a1.h5"])
    assert len(both) == 2 * len(one)
    keys = list(both.index.get_level_values("trace").unique())
    assert len(keys) == 2 and keys[1] == keys[0] + "#2"
    for key in keys:
        pd.testing.assert_frame_equal(both.xs(("node-a", key), level=["host", "trace"]), one, check_like=False)
    long = load([traces / "a1.h5", traces / "copy_of_a1.h5"], form="long")
    assert len(long) == 2 * len(load(traces / "a1.h5", form="long"))


def test_two_runs_on_one_node_stay_two_series(traces):
    df = load([traces / "a1.h5", traces / "a2.h5"], entities="gpu0", fields="utilization.gpu")
    per_trace = df.groupby(level="trace").size()
    assert list(per_trace) == [N, N]
    assert df.attrs["traces"][0]["trace_id"] != df.attrs["traces"][1]["trace_id"]
    assert [t["trace"] for t in df.attrs["traces"]] == list(per_trace.index)


def _equal_to_pandas(paths, **kw):
    ddf = load(paths, engine="dask", **kw)
    assert ddf.known_divisions
    pdf = load(paths, form="long", **kw)
    got = ddf.compute()
    assert ddf.npartitions == got["trace"].nunique()  # one per trace that has rows in the selection
    pd.testing.assert_frame_equal(got, pdf)
    assert got.attrs == pdf.attrs
    pd.testing.assert_frame_equal(ddf._meta, pdf.iloc[:0], check_index_type=False)
    return got


def test_dask_equals_pandas(traces):
    paths = sorted(str(p) for p in traces.glob("*.h5"))
    _equal_to_pandas(paths)
    _equal_to_pandas(paths, rates=True, entities=["gpu*", "disk:*"])
    _equal_to_pandas(paths, fields=["name", "_wall_ns", "utilization.gpu"], start=pd.Timedelta("3s"),
                     end=pd.Timedelta("9s"))


def test_dask_partitions_by_time_range(traces):
    paths = sorted(str(p) for p in traces.glob("*.h5"))
    ddf = load(paths, engine="dask", split="5s", rates=True)
    assert ddf.npartitions == 4 * len(paths)             # 20 s traces in 5 s ranges
    pdf = load(paths, form="long", rates=True)
    got = ddf.compute()
    pd.testing.assert_frame_equal(got, pdf)              # rates across the range boundaries too
    assert got.attrs == pdf.attrs
    bounded = load(paths, engine="dask", split="4s", start=pd.Timedelta("3s"), end=pd.Timedelta("13s"))
    pd.testing.assert_frame_equal(bounded.compute(), load(paths, form="long", start=pd.Timedelta("3s"),
                                                          end=pd.Timedelta("13s")))
    with pytest.raises(UsageError, match="split"):
        load(paths, engine="dask", split="-1h")
    with pytest.raises(UsageError, match="split"):
        load(paths, split="1h")


def test_dask_on_a_distributed_cluster(traces):
    pytest.importorskip("distributed")
    script = os.path.join(os.path.dirname(__file__), "dask_cluster_check.py")
    proc = subprocess.run([sys.executable, script, str(traces)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["equal"] and found["summary_equal"]
    assert len(found["worker_pids"]) == 1 and found["pid"] not in found["worker_pids"]
    assert len(found["cli"]["traces"]) == 4, found["cli"]


def test_the_summary_per_host_and_overall(traces):
    s = summarize_traces(str(traces / "*.h5"))
    assert list(s.traces["host"]) == ["node-a", "node-a", "node-b", "node-a"]  # a1, a2, b, copy_of_a1
    util = s.overall.set_index(["source", "field"]).loc[("nvml", "utilization.gpu")]
    assert util["hosts"] == 2 and util["samples"] == 4 * 2 * N
    assert util["mean"] == pytest.approx(65.0) and util["max"] == 80.0  # gpu0 at 50 %, gpu1 at 80 %
    per_host = s.hosts.set_index(["host", "source", "field"])
    assert per_host.loc[("node-b", "nvml", "utilization.gpu"), "samples"] == 2 * N
    assert per_host.loc[("node-a", "nvml", "temperature.gpu"), "n/a"] == 3  # the N/A at tick 3, in 3 traces
    json.loads(s.to_json())


def test_the_cli_summarises_a_directory(traces, cli):
    proc = cli("summary", str(traces), "-e", "gpu*", check=True)
    assert "4 traces from 2 hosts" in proc.stdout and "per host" in proc.stdout
    each = cli("summary", str(traces), "--each", check=True).stdout
    assert each.count("trace      ") == 4


def test_dask_bad_arguments_and_missing_extra(traces):
    with pytest.raises(UsageError, match="long form"):
        load(traces, engine="dask", form="wide")
    with pytest.raises(UsageError, match="engine"):
        load(traces, engine="spark")
    code = ("import sys; sys.modules['dask'] = None\n"
            "from telemrec.errors import MissingDependencyError\nimport telemrec\n"
            f"try:\n    telemrec.load({str(traces)!r}, engine='dask')\n"
            "except MissingDependencyError as e:\n    print('extra', e.extra, e.remediation)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "extra dask pip install 'telemrec[dask]'" in out.stdout, out.stderr

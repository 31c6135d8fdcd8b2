import numpy as np
import pandas as pd
import pytest

from telemrec.analysis import load
from telemrec.errors import UsageError

from .conftest import GIB, MIB, MISSED, N, NVML_DELAY, RESET, S, T0_WALL, build_node_trace


def at(series: pd.Series, tick: int):
    """The value of the row of tick ``tick`` (rows are labelled by time, not position)."""
    hit = series[series.index.floor("1s") == pd.Timestamp(T0_WALL + tick * S, unit="ns", tz="UTC")]
    assert len(hit) == 1
    return hit.iloc[0]


def test_wide_frame_shape_index_and_columns(node_trace):
    df = load(node_trace)
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert df.index.name == "time"
    assert list(df.columns.names) == ["source", "entity", "field"]
    assert len(df) == N                    # one row per tick: psutil and nvml share rows
    assert df.attrs["align"] == "tick"
    # entities in natural order, fields in recorded order
    cpus = [e for e in df["psutil"].columns.get_level_values("entity").unique() if e.startswith("cpu")]
    assert cpus == ["cpu0", "cpu1", "cpu2", "cpu3"]
    assert df[("nvml", "gpu1", "utilization.gpu")].iloc[0] == 80.0
    # the row time is the tick's grid instant on the wall clock
    assert abs(df.index[0].value - T0_WALL) < 1000


def test_missed_tick_leaves_psutil_columns_empty(node_trace):
    df = load(node_trace)
    row = df.iloc[MISSED]
    assert np.isnan(row[("psutil", "system", "virtual_memory.used")])
    assert row[("nvml", "gpu0", "utilization.gpu")] == 50.0


def test_exact_alignment_interleaves_readers(node_trace):
    df = load(node_trace, align="exact")
    assert df.attrs["align"] == "exact"
    assert len(df) == 2 * N - 1           # psutil and nvml stamps differ; psutil missed one tick
    first_nvml = df[("nvml", "gpu0", "utilization.gpu")].dropna().index[0]
    assert first_nvml.value == T0_WALL + NVML_DELAY + 55


def test_no_tick_tables_falls_back_to_exact(tmp_path):
    path = build_node_trace(tmp_path / "noticks.h5", ticks=False)
    assert load(path).attrs["align"] == "exact"


def test_none_stays_missing_and_differs_from_zero(node_trace):
    df = load(node_trace, entities="gpu0", fields="temperature.gpu")
    temp = df[("nvml", "gpu0", "temperature.gpu")]
    assert np.isnan(at(temp, 3)) and at(temp, 2) == 40.0
    long = load(node_trace, entities="gpu0", fields="temperature.gpu", form="long")
    assert long["none"].sum() == 1
    assert long.loc[long["none"], "value"].isna().all()
    assert len(long) == N                  # a None is a recorded value, absent fields are not


def test_selection_globs_and_readers(node_trace):
    df = load(node_trace, readers="nvml", entities=["gpu*"], fields=["utilization.*"])
    assert set(df.columns.get_level_values("entity")) == {"gpu0", "gpu1"}
    assert set(df.columns.get_level_values("field")) == {"utilization.gpu", "utilization.memory"}
    only_psutil = load(node_trace, readers="psutil", entities="system")
    assert set(only_psutil.columns.get_level_values("source")) == {"psutil"}


def test_selection_that_matches_nothing_is_an_error(node_trace):
    with pytest.raises(UsageError, match="matches"):
        load(node_trace, entities="nope*")


def test_time_range_reads_the_half_open_interval(node_trace):
    start = pd.Timestamp(T0_WALL + 5 * S, unit="ns", tz="UTC")
    end = pd.Timestamp(T0_WALL + 10 * S, unit="ns", tz="UTC")
    df = load(node_trace, entities="gpu0", start=start, end=end)
    assert len(df) == 5
    by_offset = load(node_trace, entities="gpu0", start=pd.Timedelta("5s"), end=pd.Timedelta("10s"))
    pd.testing.assert_frame_equal(df, by_offset)
    by_epoch = load(node_trace, entities="gpu0", start=(T0_WALL + 5 * S) / 1e9, end=T0_WALL + 10 * S)
    pd.testing.assert_frame_equal(df, by_epoch)
    naive_iso = load(node_trace, entities="gpu0", start=start.tz_localize(None).isoformat(), end=end)
    pd.testing.assert_frame_equal(df, naive_iso)


def test_a_negative_offset_counts_back_from_the_last_sample(node_trace):
    whole = load(node_trace, entities="gpu0")
    last = int(whole.index.asi8[-1])
    tail = load(node_trace, entities="gpu0", start=pd.Timedelta("-3s"))
    pd.testing.assert_frame_equal(tail, whole[whole.index.asi8 >= last - 3 * S])
    assert 3 <= len(tail) <= 4
    head = load(node_trace, entities="gpu0", end=pd.Timedelta("-3s"))
    assert len(head) + len(tail) == len(whole)


def test_rates_turn_counters_into_per_second_with_reset_as_nan(node_trace):
    df = load(node_trace, entities="disk:sda", rates=True)
    read = df[("psutil", "disk:sda", "disk_io_counters.read_bytes")]
    write = df[("psutil", "disk:sda", "disk_io_counters.write_bytes")]
    assert len(df) == N - 1                     # psutil missed a tick
    assert np.isnan(at(read, 0))
    assert read.iloc[1:].round(6).eq(MIB).all()
    assert np.isnan(at(write, RESET))           # the reset: unknown, not clamped to 0
    assert at(write, RESET + 1) == pytest.approx(2 * MIB)
    # across the missed tick the rate is the mean over the two intervals
    assert at(read, MISSED + 1) == pytest.approx(MIB)
    assert df.attrs["units"]["psutil"]["disk_io_counters.read_bytes"] == "bytes/s"
    assert df.attrs["units"]["psutil"]["disk_io_counters.read_count"] == "1/s"
    assert df.attrs["rates"] is True


def test_units_descriptions_counters_travel_in_attrs(node_trace):
    df = load(node_trace, entities=["cpu0", "gpu0"])
    assert df.attrs["units"]["nvml"]["power.usage"] == "milliwatts"
    assert df.attrs["units"]["psutil"]["cpu_times.user"] == "seconds"
    assert df.attrs["descriptions"]["psutil"]["cpu_times.user"].startswith("CPU time")
    assert "energy.total" in df.attrs["counters"]["nvml"]
    assert df.attrs["traces"][0]["host"] == "node-a"


def test_text_fields_become_object_columns(node_trace):
    df = load(node_trace, entities="pid:*", fields=["levels", "memory_info.rss"])
    levels = df[("psutil", "pid:200", "levels")]
    assert at(levels, 6) == "user"
    assert pd.isna(at(levels, 0))           # pid 200 did not exist yet
    assert df[("psutil", "pid:100", "memory_info.rss")].iloc[0] == GIB
    long = load(node_trace, entities="pid:100", fields="levels", form="long")
    assert set(long["text"]) == {"process user"} and long["value"].isna().all()


def test_meta_columns_on_request(node_trace):
    df = load(node_trace, entities="gpu0", fields=["utilization.gpu", "_wall_ns", "_error"])
    wall = df[("nvml", "gpu0", "_wall_ns")]
    assert wall.iloc[0] == pytest.approx(T0_WALL + NVML_DELAY + 55, abs=256)   # float64 holds ns to ~256 ns
    assert df[("nvml", "gpu0", "_error")].isna().all()


def test_long_form_is_sorted_and_categorical(node_trace):
    long = load(node_trace, entities=["gpu1", "cpu2"], form="long")
    assert list(long.columns) == ["time", "source", "entity", "field", "value", "none"]
    assert long["time"].is_monotonic_increasing
    assert isinstance(long["field"].dtype, pd.CategoricalDtype)
    energy = long[(long.entity == "gpu1") & (long.field == "energy.total")]
    assert len(energy) == N


def test_resample_bins_rows(node_trace):
    df = load(node_trace, entities=["gpu0", "disk:sda"], resample="5s", align="exact")
    assert len(df) == N // 5
    assert df[("nvml", "gpu0", "utilization.gpu")].eq(50.0).all()
    # raw counters keep the bin's last value, not a mean
    last = df[("psutil", "disk:sda", "disk_io_counters.read_count")].iloc[0]
    assert last == 5000 + 4 * 10


def test_many_traces_are_keyed_by_host_and_trace(node_trace, node_trace_b, tmp_path):
    df = load([node_trace, node_trace_b], entities="gpu0", fields="utilization.gpu")
    assert list(df.index.names) == ["host", "trace", "time"]
    assert list(df.columns.names) == ["source", "entity", "field"]
    assert list(df.index.get_level_values("host").unique()) == ["node-a", "node-b"]
    assert len(df) == 2 * N               # every row of each trace, under its own key
    gridded = load([node_trace, node_trace_b], entities="gpu0", fields="utilization.gpu", resample="1s")
    side_by_side = gridded[("nvml", "gpu0", "utilization.gpu")].unstack(["host", "trace"])
    assert len(side_by_side) == N and side_by_side.notna().all().all()   # resampled hosts share rows
    long = load([node_trace, node_trace_b], entities="gpu0", fields="utilization.gpu", form="long")
    assert set(long["host"]) == {"node-a", "node-b"}
    assert [t["host"] for t in df.attrs["traces"]] == ["node-a", "node-b"]
    assert [t["trace"] for t in df.attrs["traces"]] == list(df.index.get_level_values("trace").unique())


def test_directory_and_glob(node_trace, tmp_path):
    d = tmp_path / "traces"
    d.mkdir()
    build_node_trace(d / "a.h5", host="h1", n=4)
    build_node_trace(d / "b.h5", host="h2", n=4)
    by_dir = load(str(d), entities="gpu0", fields="utilization.gpu")
    by_glob = load(str(d / "*.h5"), entities="gpu0", fields="utilization.gpu")
    pd.testing.assert_frame_equal(by_dir, by_glob)
    assert set(by_dir.index.get_level_values("host")) == {"h1", "h2"}


def test_bad_arguments(node_trace):
    with pytest.raises(UsageError):
        load(node_trace, form="tall")
    with pytest.raises(UsageError):
        load(node_trace, align="nearest")
    with pytest.raises(UsageError):
        load(node_trace, form="long", resample="1s")
    with pytest.raises(UsageError):
        load(node_trace, start="not a time")


def test_a_negative_offset_on_a_trace_without_samples_is_no_bound(tmp_path):
    from telemrec.trace import TraceWriter
    from telemrec.trace.importer import import_manifest

    path = tmp_path / "empty.h5"
    writer = TraceWriter(path, import_manifest("test"))
    writer.close()
    assert load(path, start=pd.Timedelta("-5min")).empty

"""`export --format hdf5`: a plain HDF5 file that h5py, h5dump and MATLAB read without telemrec."""

import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from telemrec.analysis import export, load
from telemrec.errors import UsageError

SAMPLES = Path(__file__).resolve().parents[2] / "sample_traces" / "v2"


def _dataset_path(column) -> str:
    return "/".join(str(p).replace("%", "%25").replace("/", "%2F") for p in column)


@pytest.mark.parametrize("rates", [False, True])
def test_every_column_of_load_is_a_dataset_on_the_time_axis(node_trace, tmp_path, rates):
    out = export(node_trace, "hdf5", tmp_path / "plain.h5", rates=rates)
    frame = load(node_trace, rates=rates)
    with h5py.File(out, "r") as h5:
        np.testing.assert_array_equal(h5["time_ns"][()], frame.index.as_unit("ns").asi8)
        np.testing.assert_allclose(h5["time"][()], frame.index.as_unit("ns").asi8 / 1e9)
        assert h5["time"].attrs["units"] == "seconds since 1970-01-01 00:00:00 UTC"
        assert h5.attrs["rates"] == rates and json.loads(h5.attrs["traces"])[0]["host"] == "node-a"
        for column in frame.columns:
            ds = h5[_dataset_path(column)]
            assert (ds.attrs["source"], ds.attrs["entity"], ds.attrs["field"]) == column
            assert ds.dims[0][0].name == "/time"
            values = frame[column]
            if values.dtype.kind == "f":
                got = ds[()].astype(np.float64)
                np.testing.assert_array_equal(got, values.to_numpy())
                assert ds.dtype == (np.int64 if values.notna().all() and (values % 1 == 0).all() else np.float64)
            else:
                assert [v.decode() for v in ds[()]] == [v if isinstance(v, str) else "" for v in values]
        units = h5["nvml/gpu0/energy.total"].attrs["units"]
        assert units == ("millijoules/s" if rates else "millijoules")
        assert h5["nvml/gpu0/energy.total"].attrs["counter"]
        assert h5["nvml/gpu0/memory.used"].dtype == np.int64 and h5["nvml/gpu0/memory.used"].attrs["units"] == "bytes"
        assert h5["nvml/gpu0/temperature.gpu"].dtype == np.float64  # None at tick 3: NaN there


def test_names_with_slashes_and_several_hosts(node_trace, node_trace_b, tmp_path):
    out = export(SAMPLES / "node_exporter.h5", "hdf5", tmp_path / "ne.h5", entities="device=/dev/vda")
    with h5py.File(out, "r") as h5:
        group = h5["prometheus/device=%2Fdev%2Fvda"]
        ds = group['node_filesystem_avail_bytes{fstype="ext4",mountpoint="%2F"}']
        assert ds.attrs["field"] == 'node_filesystem_avail_bytes{fstype="ext4",mountpoint="/"}'
        assert ds.attrs["entity"] == "device=/dev/vda" and ds.attrs["units"] == "bytes"
    both = export([node_trace, node_trace_b], "hdf5", tmp_path / "both.h5", entities="gpu0", fields="power.usage")
    frame = load([node_trace, node_trace_b], entities="gpu0", fields="power.usage")
    with h5py.File(both, "r") as h5:
        assert sorted(h5) == ["node-a", "node-b"]
        for (host, trace), part in frame.groupby(level=["host", "trace"]):
            group = h5[f"{host}/{trace}"]
            assert group.attrs["host"] == host and group.attrs["trace"] == trace
            assert group.attrs["path"].endswith(f"{host}.h5")
            times = part.index.get_level_values("time").as_unit("ns").asi8
            np.testing.assert_array_equal(group["time_ns"][()], times)
            ds = group["nvml/gpu0/power.usage"]
            np.testing.assert_array_equal(ds[()], part[("nvml", "gpu0", "power.usage")].to_numpy())
            assert ds.dims[0][0].name == f"/{host}/{trace}/time"
        # node-b starts 300 ms later: each trace keeps its own time axis
        a, b = (h5[f"{host}"][next(iter(h5[host]))]["time_ns"][0] for host in ("node-a", "node-b"))
        assert b - a == 300_000_000


def test_h5dump_reads_units_and_the_dimension_scale(node_trace, tmp_path):
    out = export(node_trace, "hdf5", tmp_path / "plain.h5", entities="gpu0", fields="power.usage")
    dump = subprocess.run(["h5dump", "-A", out], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    text = dump.stdout
    assert 'DATASET "power.usage"' in text and '"milliwatts"' in text
    assert 'ATTRIBUTE "CLASS"' in text and '"DIMENSION_SCALE"' in text
    assert '"seconds since 1970-01-01 00:00:00 UTC"' in text
    listing = subprocess.run(["h5ls", "-r", out], capture_output=True, text=True, timeout=60).stdout
    assert listing.split("\n")[3].split() == ["/nvml/gpu0/power.usage", "Dataset", "{20}"]


def test_cli_export_and_refusals(node_trace, tmp_path, cli):
    proc = cli("export", node_trace, "--format", "hdf5", "-o", str(tmp_path / "c.h5"), "-e", "cpu*")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "c.h5", "r") as h5:
        assert sorted(h5["psutil"]) == ["cpu0", "cpu1", "cpu2", "cpu3"]
    for args in (["-o", "-"], ["-o", str(tmp_path / "l.h5"), "--form", "long"]):
        bad = cli("export", node_trace, "--format", "hdf5", *args)
        assert bad.returncode == 2 and "wide form" in bad.stderr
    with pytest.raises(UsageError):
        export(node_trace, "hdf5", "-")

"""`telemrec export --format openmetrics`: promtool backfills every sample trace, and a real Prometheus
answers a query at the trace's time with the trace's value."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from telemrec.emulate.openmetrics import export_openmetrics
from telemrec.errors import TelemrecWarning

from .conftest import SAMPLES, invoke, trace_records
from .prom import Prometheus, binary

TRACES = sorted(p.relative_to(SAMPLES).with_suffix("").as_posix() for p in SAMPLES.glob("v*/*.h5"))


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory, sample):
    """Every sample trace exported and backfilled by promtool into one TSDB, served by one Prometheus."""
    root = tmp_path_factory.mktemp("om")
    data = root / "data"
    exports, blocks = {}, {}
    for name in TRACES:
        out = root / (name.replace("/", "_") + ".om")
        stats = export_openmetrics(sample(name), str(out))
        proc = subprocess.run([binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(out), str(data)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"promtool rejected {name}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        exports[name] = (out, stats)
        blocks[name] = proc.stdout
    prom = Prometheus(root, data=data)
    try:
        yield prom, exports, blocks
    finally:
        prom.stop()


@pytest.mark.parametrize("name", TRACES)
def test_promtool_backfills_every_sample_of_every_sample_trace(backfilled, name):
    _, exports, blocks = backfilled
    _, stats = exports[name]
    rows = [line.split() for line in blocks[name].splitlines() if re.match(r"[0-9A-Z]{26}\s", line)]
    assert rows and sum(int(r[4]) for r in rows) == stats.samples and stats.dropped == 0
    assert max(int(r[6]) for r in rows) <= stats.series


def _at(prom, promql, wall_ns):
    """The value a query at the record's time returns (Prometheus keeps milliseconds)."""
    result = prom.query(promql, at=(wall_ns // 1_000_000) / 1000)
    assert len(result) == 1, (promql, result)
    return float(result[0]["value"][1])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_query_at_the_traces_time_returns_the_traces_value(backfilled, sample, version):
    prom = backfilled[0]
    checks = [
        ("dcgmi_synthetic", "gpu2", "DCGM_FI_DEV_BOARD_POWER_WATTS", 'DCGM_FI_DEV_BOARD_POWER_WATTS{gpu="2"}'),
        ("dcgmi_synthetic", "gpu0", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
         'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total{gpu="0"}'),                    # a counter gains _total
        ("nvml_synthetic", "gpu1", "power.usage", 'nvml_power_usage{gpu="1"}'),   # names sanitised
        ("nvml_synthetic", "gpu0/pid:4242", "used_gpu_memory", 'nvml_used_gpu_memory{gpu="0",pid="4242"}'),
        ("node_exporter", "cpu=1", 'node_cpu_seconds_total{mode="user"}',
         'node_cpu_seconds_total{cpu="1",mode="user"}'),
        ("node_exporter", "system", "go_gc_duration_seconds_count", "go_gc_duration_seconds_count"),
        ("psutil_workload", "cpu1", "cpu_times.user", 'psutil_cpu_times_user_total{cpu="1"}'),
        ("psutil_workload", "disk:vda", "disk_io_counters.write_bytes",
         'psutil_disk_io_counters_write_bytes_total{disk="vda"}'),
        ("psutil_workload", "system", "virtual_memory.available", 'psutil_virtual_memory_available{entity="system"}'),
    ]
    for trace, entity, key, promql in checks:
        records = [r for r in trace_records(sample(f"{version}/{trace}"), entities=[entity])
                   if r.fields.get(key) is not None]
        for rec in (records[0], records[len(records) // 2], records[-1]):
            assert _at(prom, promql, rec.wall_ns) == float(rec.fields[key]), (trace, promql, rec.wall_ns)


def test_the_file_is_openmetrics_with_the_traces_own_timestamps(backfilled, sample):
    _, exports, _ = backfilled
    out, stats = exports["v2/nvml_synthetic"]
    text = out.read_text()
    assert text.endswith("\n# EOF\n") and text.count("# EOF") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}  # prometheus_client's strict parser
    assert families["nvml_energy"].type == "counter"              # from the recorded caps
    assert families["nvml_power_usage"].type == "gauge"
    assert "milliwatts" in families["nvml_power_usage"].documentation
    rec = trace_records(sample("v2/nvml_synthetic"), entities=["gpu1"])[3]
    stamp = f"{rec.wall_ns // 10**9}.{rec.wall_ns % 10**9:09d}"
    assert f'nvml_energy_total{{gpu="1"}} {rec.fields["energy.total"]} {stamp}\n' in text
    assert stats.series == sum(len({tuple(sorted(s.labels.items())) for s in f.samples}) for f in families.values())


def test_every_export_parses_with_prometheus_clients_parser(backfilled):
    _, exports, _ = backfilled
    for name, (out, stats) in exports.items():
        families = list(text_string_to_metric_families(out.read_text()))
        assert sum(len(f.samples) for f in families) == stats.samples, name


def test_samples_prometheus_cannot_keep_are_left_out_and_counted(tmp_path):
    base = 1_700_000_000 * 10**9
    stamps = [base, base + 300_000, base - 10**9, base + 2 * 10**9]  # same ms; a clock step back; later
    lines = [json.dumps({"mono_ns": i, "wall_ns": w, "entity": "gpu0", "source": "probe", "source_version": "1",
                         "fields": {"x.y": float(i), "name": "str", "none": None}, "error": None})
             for i, w in enumerate(stamps)]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    trace = tmp_path / "t.h5"
    assert invoke("import", tmp_path / "r.jsonl", "-o", trace)[0] == 0
    with pytest.warns(TelemrecWarning, match="2 of 4 samples left out"):
        stats = export_openmetrics(str(trace), str(tmp_path / "t.om"))
    assert (stats.samples, stats.dropped, stats.series) == (2, 2, 1)
    text = (tmp_path / "t.om").read_text()
    assert ('probe_x_y{gpu="0"} 0.0 1700000000.000000000\nprobe_x_y{gpu="0"} 3.0 1700000002.000000000\n'
            in text)
    assert "name" not in text and "none" not in text


def test_export_openmetrics_cli_selection_and_errors(sample, tmp_path):
    out = tmp_path / "sel.om"
    code, output = invoke("export", sample("v2/psutil_workload"), "--format", "openmetrics", "-o", out,
                          "-e", "cpu*", "-f", "cpu_times.idle", "--start", "+5s", "--end", "+6s")
    assert code == 0, output
    series = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert len(series) == 4 and all(line.startswith("psutil_cpu_times_idle_total{cpu=") for line in series)
    for args, message in [(("-o", "-"), "writes a file"), (("-o", tmp_path / "x.om", "-r", "nvml"), "no reader"),
                          (("-o", tmp_path / "y.om", "--resample", "10s"), "does not apply")]:
        code, output = invoke("export", sample("v2/psutil_workload"), "--format", "openmetrics", *args)
        assert code == 2 and message in output, output
    assert not list(tmp_path.glob("[xy].om*"))
    code, output = invoke("export", sample("v2/psutil_workload"), "--format", "openmetrics", "-o", out)
    assert code == 2 and "already exists" in output


def test_two_fields_that_sanitise_alike_stay_two_series(tmp_path):
    line = {"mono_ns": 1, "wall_ns": 1_700_000_000 * 10**9, "entity": "system", "source": "probe",
            "source_version": "1", "fields": {"a.b": 1.0, "a_b": 2.0}, "error": None}
    (tmp_path / "r.jsonl").write_text(json.dumps(line) + "\n")
    assert invoke("import", tmp_path / "r.jsonl", "-o", tmp_path / "t.h5")[0] == 0
    export_openmetrics(str(tmp_path / "t.h5"), str(tmp_path / "t.om"))
    families = list(text_string_to_metric_families((tmp_path / "t.om").read_text()))
    labels = [s.labels for f in families for s in f.samples]
    assert len(labels) == 2 and labels[0] != labels[1]

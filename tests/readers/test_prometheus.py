"""The prometheus reader: text-format parsing, entity/field mapping, error paths over real HTTP."""

from __future__ import annotations

import json
import math
import re
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemrec.errors import SourceError, SourceParseError, UsageError
from telemrec.readers.prometheus import (
    PrometheusReader,
    format_series,
    http_fetch,
    parse_exposition,
    parse_labels,
)
from telemrec.readers.registry import get_reader
from telemrec.record import ReaderConfig
from telemrec.testing import ReaderConformance
from telemrec.testing.fake_exporter import FakeExporter

FIXTURES = Path(__file__).parent.parent / "fixtures" / "prometheus"
KP_SAMPLE = FIXTURES / "kempnerpulse_sample.txt"
DCGM_8GPU = FIXTURES / "dcgm_exporter_8gpu.txt"
DCGM_MIG = FIXTURES / "dcgm_exporter_mig.txt"
NODE_EXPORTER = FIXTURES / "node_exporter_1.5.0_debian.txt"
EDGE_CASES = FIXTURES / "edge_cases.txt"
ALL_FIXTURES = [KP_SAMPLE, DCGM_8GPU, DCGM_MIG, NODE_EXPORTER, EDGE_CASES]


def scrape_text(text: str | bytes, **options) -> dict[str, dict]:
    """One scrape of ``text`` through an injected fetch; {entity: record}."""
    body = text.encode() if isinstance(text, str) else text
    reader = PrometheusReader(fetch=lambda url, timeout, max_bytes: body)
    reader.open(ReaderConfig(source="http://exporter.invalid/metrics", options=options))
    return {rec.entity: rec for rec in reader.read()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestPrometheusConformance(ReaderConformance):
    @pytest.fixture(autouse=True)
    def _exporter(self):
        with FakeExporter([DCGM_8GPU.read_bytes(), EDGE_CASES.read_bytes()]) as exporter:
            self.exporter = exporter
            yield

    def make_reader(self):
        return PrometheusReader()

    def make_config(self):
        return ReaderConfig(source=self.exporter.url, interval=0.05)

    def make_failing_config(self):
        return ReaderConfig(source=str(FIXTURES / "no-such-capture.txt"))


# -- the text format ------------------------------------------------------------------------
def test_label_escapes_are_decoded_and_keys_re_escaped():
    recs = scrape_text(EDGE_CASES.read_text())
    fields = recs["system"].fields
    key = r'escaped_total{multi="line1\nline2",path="C:\\dir\\file",quote="say \"hi\""}'
    assert fields[key] == 3.0
    assert parse_labels(r'path="C:\\dir\\file",quote="say \"hi\"",multi="line1\nline2"') == [
        ("path", "C:\\dir\\file"), ("quote", 'say "hi"'), ("multi", "line1\nline2")]


def test_empty_label_values_are_absent_labels():
    fields = scrape_text(EDGE_CASES.read_text())["system"].fields
    assert fields['escaped_total{multi="x",path="/tmp"}'] == 4.0


def test_help_escapes_reach_caps_descriptions():
    reader = PrometheusReader(fetch=lambda *a: EDGE_CASES.read_bytes())
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    reader.read()
    key = r'escaped_total{multi="x",path="/tmp"}'
    assert reader.caps.descriptions[key] == "A counter whose help has a backslash \\ and a newline \n inside."


def test_sample_timestamps_become_int_fields():
    fields = scrape_text(EDGE_CASES.read_text())["system"].fields
    assert fields['temperature_celsius{sensor="a"}'] == 21.5
    ts = fields['temperature_celsius{sensor="a"}@timestamp_ms']
    assert type(ts) is int and ts == 1700000000123
    assert fields['temperature_celsius{sensor="b"}@timestamp_ms'] == -1000
    assert 'temperature_celsius{sensor="c"}@timestamp_ms' not in fields


def test_nan_inf_and_exact_floats_are_kept():
    fields = scrape_text(EDGE_CASES.read_text())["system"].fields
    assert math.isnan(fields['temperature_celsius{sensor="c"}'])
    assert fields['temperature_celsius{sensor="d"}'] == math.inf
    assert fields['temperature_celsius{sensor="e"}'] == -math.inf
    assert fields["huge_value"] == 1.7976931348623157e308
    assert fields["tiny_value"] == 5e-324
    assert math.copysign(1.0, fields["negative_zero"]) == -1.0
    assert fields["big_integer"] == float(18446744073709551615)
    assert all(type(v) is float for k, v in fields.items() if "@" not in k)


def test_histogram_and_summary_counters_units_and_descriptions():
    reader = PrometheusReader(fetch=lambda *a: EDGE_CASES.read_bytes())
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    reader.read()
    caps = reader.caps
    for key in ('rpc_duration_seconds_bucket{le="0.05"}', 'rpc_duration_seconds_bucket{le="+Inf"}',
                "rpc_duration_seconds_sum", "rpc_duration_seconds_count",
                "request_size_bytes_sum", "request_size_bytes_count", "plain_counter"):
        assert key in caps.counters, key
    assert 'request_size_bytes{quantile="0.99"}' not in caps.counters  # quantiles are gauges
    assert 'temperature_celsius{sensor="a"}' not in caps.counters
    assert 'untyped_thing{a="1"}' not in caps.counters
    assert caps.units["rpc_duration_seconds_sum"] == "seconds"
    assert "rpc_duration_seconds_count" not in caps.units  # a count of observations
    assert caps.units['request_size_bytes{quantile="0.5"}'] == "bytes"
    assert caps.units['temperature_celsius{sensor="a"}@timestamp_ms'] == "milliseconds"
    assert caps.descriptions['rpc_duration_seconds_bucket{le="0.1"}'] == "RPC latency."
    assert caps.dynamic_fields


def test_whitespace_trailing_comma_and_utf8_names():
    recs = scrape_text(EDGE_CASES.read_text())
    assert recs["system"].fields['spaced_metric{a="1",b="2"}'] == 12.0
    assert recs["cpu=1"].fields['{"dotted.metric.name","label.with.dots"="v"}'] == 9.0


@pytest.mark.parametrize("line, why", [
    ("foo", "not a sample line"),
    ("foo{a=\"1\"}", "not a sample line"),
    ("foo abc", "bad value"),
    ("foo 1_000", "bad value"),
    ("foo 1 2.5", "not a sample line"),
    ("foo 1 2 3", "not a sample line"),
    ('foo{a="1} 1', "not a sample line"),
    ('foo{a="\\t"} 1', "not a sample line"),
    ("foo{a=1} 1", "not a sample line"),
    ('foo{1a="x"} 1', "not a sample line"),
    ('foo{,} 1', "not a sample line"),
    ("1foo 1", "not a sample line"),
    ("<html><body>Not Found</body></html>", "not a sample line"),
    ("foo 1 99999999999999999999", "timestamp outside int64"),
    ("# TYPE foo gauges", "unknown metric type"),
    ("# TYPE foo gauge\n# TYPE foo counter", "second TYPE line"),
])
def test_malformed_lines_are_rejected_with_the_line_number(line, why):
    with pytest.raises(SourceParseError) as info:
        parse_exposition("ok 1\n" + line + "\n")
    assert why in info.value.message
    assert info.value.message.startswith(f"line {2 + line.count(chr(10))}:")
    assert info.value.remediation


def test_duplicate_label_names_are_rejected():
    with pytest.raises(SourceParseError):
        parse_labels('a="1",a="2"')
    rec = scrape_text('foo{a="1",a="2"} 1\n')["scrape"]
    assert rec.error.startswith("parse: duplicate label") and rec.fields["up"] == 0


def test_comments_blank_lines_and_missing_final_newline_are_fine():
    exposition = parse_exposition("# just a comment\n\n#\n  \nfoo 1\r\n# EOF\nbar{x=\"y\"} 2")
    assert [(n, v) for n, _, v, _ in exposition.samples] == [("foo", 1.0), ("bar", 2.0)]


def test_format_series_is_canonical():
    assert format_series("m", [("b", "2"), ("a", 'x"y\\z\nw')]) == 'm{a="x\\"y\\\\z\\nw",b="2"}'
    assert format_series("m", []) == "m"
    assert format_series("my.metric", [("a", "1")]) == '{"my.metric",a="1"}'
    assert format_series("m", [("label.dots", "1")]) == 'm{"label.dots"="1"}'


_label_names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}", fullmatch=True)
_label_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


def _escape(value: str) -> str:
    out = []
    for ch in value:
        out.append({"\\": "\\\\", '"': '\\"', "\n": "\\n"}.get(ch, ch))
    return "".join(out)


@settings(max_examples=200, deadline=None)
@given(labels=st.dictionaries(_label_names, _label_values, max_size=4),
       value=st.floats(allow_nan=True, allow_infinity=True),
       timestamp=st.one_of(st.none(), st.integers(-(2**62), 2**62)))
def test_parser_matches_prometheus_client_on_random_lines(labels, value, timestamp):
    from prometheus_client.parser import text_string_to_metric_families

    label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    line = f"metric{{{label_text}}} {value!r}" + (f" {timestamp}" if timestamp is not None else "")
    ours = parse_exposition(line + "\n").samples
    (family,) = text_string_to_metric_families(line + "\n")
    (theirs,) = family.samples
    (name, label_block, parsed, ts) = ours[0]
    assert dict(parse_labels(label_block)) == {k: v for k, v in theirs.labels.items() if v != ""}
    assert (math.isnan(parsed) and math.isnan(theirs.value)) or parsed == theirs.value
    assert math.copysign(1.0, parsed) == math.copysign(1.0, value) or math.isnan(value)
    assert ts == timestamp
    if timestamp is not None and abs(timestamp) < 2**52:
        assert round(theirs.timestamp * 1000) == timestamp


@settings(max_examples=100, deadline=None)
@given(labels=st.dictionaries(_label_names, _label_values.filter(bool), min_size=1, max_size=4))
def test_canonical_keys_parse_back_to_the_same_labels(labels):
    key = format_series("m", labels.items())
    (name, label_block, value, _), = parse_exposition(key + " 1\n").samples
    assert name == "m" and value == 1.0
    assert dict(parse_labels(label_block)) == labels


def _declared_types(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.name)
def test_parser_agrees_with_prometheus_client_on_fixtures(path):
    """Same samples as prometheus-client, once its counter renaming (``foo`` -> ``foo_total``),
    int conversion and float-seconds timestamps are undone."""
    from prometheus_client.parser import text_string_to_metric_families

    text = path.read_text()
    declared = _declared_types(text)
    theirs = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if family.type == "counter" and family.name in declared and family.name + "_total" not in declared:
                name = family.name  # prometheus-client appended _total to a counter declared without it
            ts = None if s.timestamp is None else round(s.timestamp * 1000)
            theirs.append((name, {k: v for k, v in s.labels.items() if v}, float(s.value), ts))
    ours = [(n, dict(parse_labels(lb)), v, ts) for n, lb, v, ts in parse_exposition(text).samples]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a[0] == b[0] and a[1] == b[1] and a[3] == b[3]
        assert a[2] == b[2] or (math.isnan(a[2]) and math.isnan(b[2]))


def test_counters_declared_without_total_keep_their_name():
    reader = PrometheusReader(fetch=lambda *a: DCGM_8GPU.read_bytes())
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    recs = {r.entity: r for r in reader.read()}
    gpu0 = next(r for e, r in recs.items() if e.startswith("gpu=0,"))
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in gpu0.fields
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in reader.caps.counters
    assert "DCGM_FI_DEV_POWER_USAGE" not in reader.caps.counters
    assert reader.caps.descriptions["DCGM_FI_DEV_POWER_USAGE"] == "Power draw (in W)."


# -- entities, keys, identity ---------------------------------------------------------------
def test_kempnerpulse_sample():
    reader = PrometheusReader(fetch=lambda *a: KP_SAMPLE.read_bytes())
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    recs = {r.entity: r for r in reader.read()}
    assert list(recs) == ["gpu=0,UUID=GPU-aaa", "gpu=1,UUID=GPU-bbb", "system", "scrape"]
    assert dict(recs["gpu=0,UUID=GPU-aaa"].fields) == {
        "DCGM_FI_PROF_SM_ACTIVE": 0.95, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": 0.48, "DCGM_FI_DEV_POWER_USAGE": 351.0}
    assert dict(recs["gpu=1,UUID=GPU-bbb"].fields) == {"DCGM_FI_PROF_SM_ACTIVE": 0.97, "DCGM_FI_DEV_FB_USED": 12050.0}
    assert dict(recs["system"].fields) == {"some_bare_metric": 42.0}
    assert recs["scrape"].fields["scrape.samples"] == 6 and recs["scrape"].error is None
    assert reader.identity()["entities"] == {
        "gpu=0,UUID=GPU-aaa": {"Hostname": "node01", "modelName": "NVIDIA H100 80GB HBM3"},
        "gpu=1,UUID=GPU-bbb": {"modelName": "NVIDIA H100 80GB HBM3"},
    }
    assert reader.caps.descriptions["DCGM_FI_PROF_SM_ACTIVE"] == "SM active ratio"
    json.dumps(reader.identity())


def test_mig_instances_on_one_gpu_stay_apart():
    reader = PrometheusReader(fetch=lambda *a: DCGM_MIG.read_bytes())
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    recs = {r.entity: r for r in reader.read()}
    uuid0 = "GPU-00000000-1111-2222-3333-444444444440"
    mig = [f"gpu=0,UUID={uuid0},GPU_I_ID={i},device=nvidia0" for i in (1, 2, 9)]
    assert set(mig) < set(recs)
    assert "gpu=1,UUID=GPU-00000001-1111-2222-3333-444444444441,device=nvidia1" in recs
    assert len({e for e in recs if e.startswith("gpu=0,")}) == 3
    assert recs[mig[0]].fields["DCGM_FI_DEV_SM_CLOCK"] == 1410.0
    assert recs[mig[1]].fields["DCGM_FI_DEV_SM_CLOCK"] == 1980.0
    assert set(recs[mig[0]].fields) == set(recs[mig[2]].fields)
    entities = reader.identity()["entities"]
    assert entities[mig[0]]["GPU_I_PROFILE"] == "3g.40gb" and entities[mig[2]]["GPU_I_PROFILE"] == "1g.10gb"


def test_dcgm_labels_go_to_identity_not_to_fields():
    reader = PrometheusReader(fetch=lambda *a: DCGM_8GPU.read_bytes())
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    recs = [r for r in reader.read() if r.entity != "scrape"]
    assert len(recs) == 8
    for rec in recs:
        assert not any("modelName" in k or "Hostname" in k or "pci_bus_id" in k for k in rec.fields)
        assert 'DCGM_FI_DEV_XID_ERRORS{err_code="0",err_msg="No Error"}' in rec.fields
    entities = reader.identity()["entities"]
    assert entities["gpu=3,UUID=GPU-00000003-1111-2222-3333-444444444443,device=nvidia3"] == {
        "DCGM_FI_DRIVER_VERSION": "550.54.15", "Hostname": "node01",
        "modelName": "NVIDIA H100 80GB HBM3", "pci_bus_id": "00000000:48:00.0"}


def test_node_exporter_capture_maps_cpus_to_entities():
    reader = PrometheusReader(fetch=lambda *a: NODE_EXPORTER.read_bytes())
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    recs = {r.entity: r for r in reader.read()}
    assert recs["cpu=0"].fields['node_cpu_seconds_total{mode="idle"}'] == 386.99
    assert 'node_cpu_seconds_total{mode="idle"}' in reader.caps.counters
    assert reader.caps.units['node_cpu_seconds_total{mode="idle"}'] == "seconds"
    assert reader.caps.units["node_memory_MemTotal_bytes"] == "bytes"
    assert "node_memory_MemTotal_bytes" not in reader.caps.counters
    assert reader.source_version == "node_exporter 1.5.0"
    assert all(r.source_version == "node_exporter 1.5.0" for r in recs.values())


def test_one_record_per_entity_stamped_when_the_scrape_starts():
    calls = []

    def slow_fetch(url, timeout, max_bytes):
        calls.append((time.monotonic_ns(), time.time_ns()))
        time.sleep(0.05)
        return DCGM_8GPU.read_bytes()

    reader = PrometheusReader(fetch=slow_fetch)
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    records = reader.read()
    assert len({r.entity for r in records}) == len(records) == 9
    assert len({(r.mono_ns, r.wall_ns) for r in records}) == 1
    assert records[0].mono_ns <= calls[0][0] and records[0].wall_ns <= calls[0][1]
    assert calls[0][0] - records[0].mono_ns < 20_000_000


def test_entity_labels_option_order_quoting_and_system():
    text = ('a{cpu="1",gpu="0"} 1\nb{device="x,y"} 2\nc{gpu=""} 3\nd{instance="n1:9100",job="node"} 4\n')
    recs = scrape_text(text)
    assert set(recs) == {"gpu=0,cpu=1", 'device="x,y"', "system", "scrape"}
    assert recs["system"].fields == {"c": 3.0, 'd{instance="n1:9100",job="node"}': 4.0}
    recs = scrape_text(text, entity_labels="instance, cpu")
    assert set(recs) == {"cpu=1", "system", "instance=n1:9100", "scrape"}
    assert recs["cpu=1"].fields == {'a{gpu="0"}': 1.0}
    assert recs["instance=n1:9100"].fields == {'d{job="node"}': 4.0}


def test_identity_label_that_varies_within_a_scrape_stays_in_keys():
    text = 'm1{gpu="0",Hostname="a"} 1\nm2{gpu="0",Hostname="b"} 2\nm1{gpu="1",Hostname="a"} 3\n'
    reader = PrometheusReader(fetch=lambda *a: text.encode())
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    recs = {r.entity: r for r in reader.read()}
    assert recs["gpu=0"].fields == {'m1{Hostname="a"}': 1.0, 'm2{Hostname="b"}': 2.0}
    assert recs["gpu=1"].fields == {"m1": 3.0}
    target = next(iter(reader.identity()["targets"].values()))
    assert target["varying_identity_labels"] == {"gpu=0": ["Hostname"]}
    assert reader.identity()["entities"]["gpu=1"] == {"Hostname": "a"}


def test_identity_label_that_changes_between_scrapes_moves_into_keys():
    bodies = iter([b'm{gpu="0",modelName="A"} 1\n', b'm{gpu="0",modelName="B"} 2\n', b'm{gpu="0",modelName="B"} 3\n'])
    reader = PrometheusReader(fetch=lambda *a: next(bodies))
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    first, second, third = ({r.entity: r for r in reader.read()}["gpu=0"] for _ in range(3))
    assert first.fields == {"m": 1.0}
    assert second.fields == {'m{modelName="B"}': 2.0}
    assert third.fields == {'m{modelName="B"}': 3.0}
    assert reader.identity()["entities"]["gpu=0"] == {"modelName": "A"}  # what the first record meant


def test_identity_label_present_on_only_some_series_cannot_collide():
    recs = scrape_text('m{gpu="0",modelName="X"} 1\nm{gpu="0"} 2\n')
    assert recs["gpu=0"].fields == {'m{modelName="X"}': 1.0, "m": 2.0}


def test_a_repeated_series_keeps_the_first_sample_and_is_counted():
    recs = scrape_text('m{cpu="0",mode="idle"} 1\nm{mode="idle",cpu="0"} 2\n')
    assert recs["cpu=0"].fields == {'m{mode="idle"}': 1.0}
    assert recs["scrape"].fields["scrape.duplicate_series"] == 1


def test_a_repeated_series_with_identity_labels_does_not_demote_them():
    reader = PrometheusReader(fetch=lambda *a: b'm{gpu="0",modelName="X"} 1\nm{modelName="X",gpu="0"} 2\n')
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    recs = {r.entity: r for r in reader.read()}
    assert recs["gpu=0"].fields == {"m": 1.0}
    assert recs["scrape"].fields["scrape.duplicate_series"] == 1
    assert next(iter(reader.identity()["targets"].values()))["varying_identity_labels"] == {}


def test_empty_exposition_is_a_successful_scrape():
    recs = scrape_text("")
    assert list(recs) == ["scrape"]
    assert recs["scrape"].fields["up"] == 1 and recs["scrape"].fields["scrape.samples"] == 0


# -- error paths over real HTTP ---------------------------------------------------------------
def open_reader(source, **options) -> PrometheusReader:
    reader = PrometheusReader()
    reader.open(ReaderConfig(source=source, options=options))
    return reader


def only_scrape(records) -> dict:
    assert [r.entity for r in records] == ["scrape"]
    rec = records[0]
    assert rec.fields["up"] == 0 and rec.fields["scrape.samples"] is None
    return rec


def test_connection_refused_is_a_recorded_gap_and_the_reader_keeps_going():
    reader = open_reader(f"http://127.0.0.1:{free_port()}/metrics")
    for _ in range(2):
        rec = only_scrape(reader.read())
        assert rec.error.startswith("connect: connection refused")


def test_slow_server_times_out():
    with FakeExporter(KP_SAMPLE.read_bytes(), delay=5.0) as exporter:
        reader = open_reader(exporter.url, timeout=0.2)
        started = time.monotonic()
        rec = only_scrape(reader.read())
        assert time.monotonic() - started < 2.0
    assert rec.error.startswith("timeout:")
    assert 0.15 < rec.fields["scrape.duration_seconds"] < 2.0


def test_trickling_server_hits_the_total_deadline():
    body = DCGM_8GPU.read_bytes()[:4096]
    with FakeExporter(body, trickle=0.05) as exporter:  # 64 pieces, ~3 s in all
        rec = only_scrape(open_reader(exporter.url, timeout=0.4).read())
    assert rec.error.startswith("timeout:")
    assert rec.fields["scrape.duration_seconds"] < 1.5


@pytest.mark.parametrize("gzip, send_length", [(False, True), (False, False), (True, True)])
def test_oversize_body_is_refused(gzip, send_length):
    body = DCGM_8GPU.read_bytes()
    with FakeExporter(body, gzip=gzip, send_length=send_length) as exporter:
        reader = open_reader(exporter.url, max_bytes=20_000)
        rec = only_scrape(reader.read())
        assert rec.error.startswith("oversize:")
        ok = open_reader(exporter.url).read()
    assert ok[-1].fields["up"] == 1 and ok[-1].fields["scrape.bytes"] == len(body)


def test_gzip_is_requested_and_decoded():
    with FakeExporter(DCGM_8GPU.read_bytes(), gzip=True) as exporter:
        assert http_fetch(exporter.url, 2.0, 1 << 20) == DCGM_8GPU.read_bytes()
        headers = exporter.request_headers[-1]
    assert "gzip" in headers["Accept-Encoding"] and "version=0.0.4" in headers["Accept"]


def test_malformed_body_becomes_a_parse_error_then_recovers():
    with FakeExporter(["ok 1\nfoo{bar} 1\n", b"\xff\xfe", KP_SAMPLE.read_bytes()]) as exporter:
        reader = open_reader(exporter.url)
        bad = only_scrape(reader.read())
        assert bad.error == "parse: line 2: not a sample line: 'foo{bar} 1'"
        assert bad.fields["scrape.bytes"] == 16
        assert only_scrape(reader.read()).error.startswith("parse: body is not UTF-8")
        good = reader.read()
    assert good[-1].fields["up"] == 1 and len(good) == 4


def test_http_500_is_recorded_and_the_reader_recovers():
    with FakeExporter("An error has occurred while serving metrics:\n\ncollection failed", status=500) as exporter:
        reader = open_reader(exporter.url)
        rec = only_scrape(reader.read())
        exporter.configure(KP_SAMPLE.read_bytes(), status=200)
        recovered = reader.read()
    assert rec.error.startswith("http: HTTP 500") and "collection failed" in rec.error
    assert recovered[-1].fields["up"] == 1 and recovered[-1].error is None


def test_http_404_names_the_status():
    with FakeExporter(KP_SAMPLE.read_bytes()) as exporter:
        rec = only_scrape(open_reader(exporter.url.replace("/metrics", "/nope")).read())
    assert rec.error.startswith("http: HTTP 404")


def test_an_injected_fetch_that_raises_anything_is_a_gap():
    def broken(url, timeout, max_bytes):
        raise RuntimeError("boom")

    reader = PrometheusReader(fetch=broken)
    reader.open(ReaderConfig(source="http://x.invalid/metrics"))
    assert only_scrape(reader.read()).error == "fetch: RuntimeError: boom"
    assert only_scrape(reader.read()).error == "fetch: RuntimeError: boom"


def test_credentials_in_the_url_are_sent_but_never_recorded():
    with FakeExporter(KP_SAMPLE.read_bytes()) as exporter:
        url = exporter.url.replace("http://", "http://user:s3cret@")
        reader = open_reader(url)
        assert reader.read()[-1].fields["up"] == 1
        assert exporter.request_headers[-1]["Authorization"] == "Basic dXNlcjpzM2NyZXQ="
    assert "s3cret" not in json.dumps(reader.identity())
    with FakeExporter("", status=503) as exporter:
        url = exporter.url.replace("http://", "http://user:s3cret@")
        assert "s3cret" not in only_scrape(open_reader(url).read()).error


# -- file sources and open() ---------------------------------------------------------------------
def test_file_source_is_re_read_every_tick(tmp_path):
    path = tmp_path / "scrape.prom"
    path.write_text("m 1\n")
    reader = open_reader(str(path))
    assert reader.read()[0].fields == {"m": 1.0}
    path.write_text("m 2\n")
    assert reader.read()[0].fields == {"m": 2.0}
    path.unlink()
    rec = only_scrape(reader.read())
    assert rec.error.startswith("file: cannot read")


def test_file_source_once_is_finite():
    reader = open_reader(str(KP_SAMPLE), once=True)
    assert len(reader.read()) == 4
    assert reader.read() is None
    reader.close()
    reader = PrometheusReader()
    reader.open(ReaderConfig(source=str(KP_SAMPLE), interval=0.01, options={"once": True}))
    assert [r.entity for r in reader.stream()][-1] == "scrape"


def test_oversize_file(tmp_path):
    path = tmp_path / "big.prom"
    path.write_text("m 1\n" * 100)
    assert only_scrape(open_reader(str(path), max_bytes=100).read()).error.startswith("oversize:")


@pytest.mark.parametrize("source, error", [
    (None, UsageError),
    ("", UsageError),
    ("ftp://host/metrics", UsageError),
    ("http:///metrics", UsageError),
    ("http://host:notaport/metrics", UsageError),
    ("/no/such/file.prom", SourceError),
    (str(FIXTURES), SourceError),
])
def test_bad_sources_fail_at_open_with_a_hint(source, error):
    with pytest.raises(error) as info:
        PrometheusReader().open(ReaderConfig(source=source))
    assert info.value.remediation


@pytest.mark.parametrize("options", [
    {"timeout": 0}, {"timeout": "soon"}, {"timeout": "inf"}, {"max_bytes": 1.5}, {"max_bytes": "1e6"},
    {"max_bytes": -1}, {"max_bytes": True}, {"once": "maybe"}, {"entity_labels": 5}, {"identity_labels": [""]},
    {"timout": 5},
])
def test_bad_options_are_usage_errors(options):
    with pytest.raises(UsageError) as info:
        PrometheusReader().open(ReaderConfig(source=str(KP_SAMPLE), options=options))
    assert info.value.remediation


def test_cli_style_string_options_are_parsed():
    reader = open_reader(str(KP_SAMPLE), timeout="0.5", max_bytes="100000", once="true",
                         entity_labels="UUID", identity_labels="modelName")
    recs = {r.entity: r for r in reader.read()}
    assert set(recs) == {"UUID=GPU-aaa", "UUID=GPU-bbb", "system", "scrape"}
    assert 'DCGM_FI_PROF_SM_ACTIVE{Hostname="node01",gpu="0"}' in recs["UUID=GPU-aaa"].fields
    assert reader.read() is None


def test_an_unreachable_url_does_not_fail_open():
    reader = open_reader(f"http://127.0.0.1:{free_port()}/metrics")
    assert reader.is_open
    assert reader.identity()["targets"]


def test_registry_and_availability():
    assert get_reader("prometheus") is PrometheusReader
    assert PrometheusReader.availability() == (True, "")

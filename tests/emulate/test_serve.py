"""`telemrec serve`: a real Prometheus scrapes traces served as their exporters did, and PromQL
returns the trace's values; KempnerPulse's prometheus backend reads the endpoint; a prometheus-
reader trace comes back as the exposition it recorded."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from telemrec.readers.prometheus import parse_exposition, parse_labels
from telemrec.trace import open_trace

from .conftest import invoke
from .prom import Prometheus

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus"
START = 10.0  # seconds into each trace; speed 0.001 holds that instant for the whole module


class Served:
    """``telemrec serve`` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, trace: str, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "telemrec", "serve", trace, "--listen", "127.0.0.1:0",
                                      *args], stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert m, f"serve did not start: {line}{self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.port = int(m.group(1))
        self.target = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.target}/metrics"

    def get(self) -> str:
        with urllib.request.urlopen(self.url, timeout=10) as resp:
            assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            return resp.read().decode()

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.terminate()
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


def expected_state(path: str, start_s: float = START, slack_s: float = 0.05) -> dict:
    """What each entity last reported when the replay began (the first records at or after
    first + start_s, and anything up to slack_s of trace time later)."""
    with open_trace(path) as trace:
        first, _ = trace.time_span()
        records = list(trace.records())
    t0 = min(r.wall_ns for r in records if r.wall_ns >= first + int(start_s * 1e9))
    state = {}
    for rec in records:
        if rec.wall_ns <= t0 + int(slack_s * 1e9):
            state[(rec.source, rec.entity)] = rec.fields
    return state


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, sample):
    """Four traces served at trace time +10 s (speed 0.001) and one Prometheus scraping them all."""
    traces = {job: sample(f"v2/{name}") for job, name in (("dcgmi", "dcgmi_synthetic"), ("nvml", "nvml_synthetic"),
                                                           ("node", "node_exporter"), ("psutil", "psutil_workload"))}
    servers = {job: Served(path, "--speed", "0.001", "--start", f"+{START:g}s") for job, path in traces.items()}
    prom = None
    try:
        prom = Prometheus(tmp_path_factory.mktemp("prom"), {job: s.target for job, s in servers.items()})
        assert len(prom.wait_for("up == 1", 4)) == 4, prom.query("up")
        prom.wait_for('{job="nvml",__name__=~"DCGM_.*"}', 2)
        yield prom, servers, traces
    finally:
        if prom is not None:
            prom.stop()
        for s in servers.values():
            s.stop()


def _one(prom, promql) -> float:
    result = prom.query(promql)
    assert len(result) == 1, (promql, result)
    return float(result[0]["value"][1])


def _values(result) -> dict:
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("job", "instance"))): float(r["value"][1])
            for r in result}


def test_prometheus_scrapes_a_dcgmi_trace_as_dcgm_exporter(scraped):
    prom, _, traces = scraped
    state = expected_state(traces["dcgmi"])
    power = {dict(k)["gpu"]: v for k, v in _values(prom.query('DCGM_FI_DEV_POWER_USAGE{job="dcgmi"}')).items()}
    assert power == {str(g): state[("dcgmi", f"gpu{g}")]["DCGM_FI_DEV_BOARD_POWER_WATTS"] for g in range(4)}
    nvlink = prom.query('DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{job="dcgmi",gpu="2"}')  # the legacy name of field 449
    assert float(nvlink[0]["value"][1]) == state[("dcgmi", "gpu2")]["DCGM_FI_DEV_NVLINK_THROUGHPUT_TOTAL"]
    labels = nvlink[0]["metric"]
    assert labels["device"] == "nvidia2" and labels["Hostname"] == "vm" and labels["UUID"].startswith("GPU-")
    assert "modelName" in labels
    assert (_one(prom, 'DCGM_FI_PROF_SM_ACTIVE{job="dcgmi",gpu="1"}')
            == state[("dcgmi", "gpu1")]["DCGM_FI_PROF_SM_UTIL_RATIO"])


def test_prometheus_scrapes_an_nvml_trace_as_dcgm_exporter(scraped):
    prom, _, traces = scraped
    state = expected_state(traces["nvml"])
    with open_trace(traces["nvml"]) as trace:
        gpus = {g["index"]: g for g in trace.manifest["gpus"]}
    for r in prom.query('DCGM_FI_DEV_POWER_USAGE{job="nvml"}'):
        g = int(r["metric"]["gpu"])
        assert float(r["value"][1]) == state[("nvml", f"gpu{g}")]["power.usage"] / 1000
        assert r["metric"]["UUID"] == gpus[g]["uuid"] and r["metric"]["modelName"] == gpus[g]["name"]
        assert r["metric"]["pci_bus_id"] == gpus[g]["pci_bus_id"] and r["metric"]["DCGM_FI_DRIVER_VERSION"]
    used = _values(prom.query('DCGM_FI_DEV_FB_USED{job="nvml"}'))
    assert sorted(used.values()) == sorted(state[("nvml", f"gpu{g}")]["memory.used"] // 2**20 for g in gpus)


def test_prometheus_scrapes_a_prometheus_trace_as_it_was_scraped(scraped):
    prom, _, traces = scraped
    state = expected_state(traces["node"])
    assert (_one(prom, 'node_cpu_seconds_total{job="node",cpu="1",mode="idle"}')
            == state[("prometheus", "cpu=1")]['node_cpu_seconds_total{mode="idle"}'])
    assert (_one(prom, 'node_memory_MemTotal_bytes{job="node"}')
            == state[("prometheus", "system")]["node_memory_MemTotal_bytes"])
    # metadata came back too: HELP and TYPE as node_exporter declared them
    with urllib.request.urlopen(f"{prom.url}/api/v1/metadata?metric=node_cpu_seconds_total", timeout=10) as resp:
        meta = resp.read().decode()
    assert '"type":"counter"' in meta and "Seconds the CPUs spent in each mode." in meta


def test_prometheus_scrapes_a_psutil_trace_under_node_exporter_names(scraped):
    prom, _, traces = scraped
    state = expected_state(traces["psutil"])
    assert (_one(prom, 'node_cpu_seconds_total{job="psutil",cpu="1",mode="user"}')
            == state[("psutil", "cpu1")]["cpu_times.user"])
    assert (_one(prom, 'node_memory_MemAvailable_bytes{job="psutil"}')
            == state[("psutil", "system")]["virtual_memory.available"])
    assert _one(prom, 'node_disk_io_time_seconds_total{job="psutil",device="vda"}') == pytest.approx(
        state[("psutil", "disk:vda")]["disk_io_counters.busy_time"] / 1000)


def test_kempnerpulse_prometheus_backend_reads_the_endpoint(scraped):
    _, servers, traces = scraped
    state = expected_state(traces["dcgmi"])
    with subprocess.Popen([sys.executable, "-m", "kempnerpulse", "--backend", "prometheus", "--source",
                           servers["dcgmi"].url, "--export", "all"], stdout=subprocess.PIPE, text=True) as kp:
        lines = [kp.stdout.readline() for _ in range(5)]  # header and one scrape of 4 GPUs
        kp.terminate()
        kp.wait(timeout=20)
    rows = list(csv.DictReader(io.StringIO("".join(lines))))
    assert [r["gpu_id"] for r in rows] == ["0", "1", "2", "3"]
    for row in rows:
        fields = state[("dcgmi", f"gpu{row['gpu_id']}")]
        assert float(row["power_w"]) == pytest.approx(fields["DCGM_FI_DEV_BOARD_POWER_WATTS"], abs=5e-5)
        assert float(row["mem_used_mib"]) == fields["DCGM_FI_DEV_FB_USED"]
        assert float(row["sm_active_pct"]) == pytest.approx(100 * fields["DCGM_FI_PROF_SM_UTIL_RATIO"], abs=0.006)
        assert float(row["nvlink_gbps"]) == pytest.approx(fields["DCGM_FI_DEV_NVLINK_THROUGHPUT_TOTAL"] * 1e6 / 1e9,
                                                          abs=5e-5)


# -- without Prometheus ------------------------------------------------------------------------------

def _parsed(text: str):
    expo = parse_exposition(text)
    samples = {(n, frozenset(parse_labels(labels)), v) for n, labels, v, _ in expo.samples}
    return samples, expo.types, expo.helps


@pytest.mark.parametrize("fixture", ["node_exporter_1.5.0_debian.txt", "dcgm_exporter_mig.txt"])
def test_a_recorded_scrape_is_served_back_as_it_was(tmp_path, fixture):
    """Record an exposition with the prometheus reader, serve the trace: the same samples (names,
    labels, values), the same TYPE and HELP for every family."""
    trace = tmp_path / "t.h5"
    code, output = invoke("record", "--reader", "prometheus", "--source", FIXTURES / fixture, "-O", "once=true",
                          "--interval", "0.1", "-q", "-o", trace)
    assert code == 0, output
    server = Served(str(trace), "--speed", "max")
    try:
        served = server.get()
        server.proc.wait(timeout=30)  # one recorded tick: served once, then the replay is over by itself
    finally:
        code, err = server.stop()
    original = _parsed((FIXTURES / fixture).read_text())
    again = _parsed(served)
    assert again[0] == original[0]
    assert again[1] == original[1]
    assert again[2] == original[2]
    assert code == 0 and "served 1 scrape" in err


def test_speed_max_serves_one_recorded_tick_per_scrape(sample):
    path = sample("v2/dcgmi_synthetic")
    with open_trace(path) as trace:
        power = [r.fields["DCGM_FI_DEV_BOARD_POWER_WATTS"] for r in trace.records(entities=["gpu0"])]
    server = Served(path, "--speed", "max", "--start", "+20s", "--end", "+22s")
    try:
        seen = []
        for _ in range(4):
            m = re.search(r'DCGM_FI_DEV_POWER_USAGE\{gpu="0",[^}]*\} (\S+)', server.get())
            seen.append(float(m.group(1)))
    finally:
        code, _ = server.stop()
    first = power.index(seen[0])
    assert seen == power[first:first + 4] and code == 0


def test_serve_reports_bad_use(sample, tmp_path):
    cases = [(("serve", sample("v2/dcgmi_synthetic"), "--listen", "localhost"), "is not HOST:PORT"),
             (("serve", sample("v2/dcgmi_synthetic"), "--listen", "127.0.0.1:70000"), "out of range"),
             (("serve", sample("v2/dcgmi_synthetic"), "--speed", "fast-ish"), "not a number"),
             (("serve", sample("v2/psutil_workload"), "-e", "pid:*"), "has an exporter to stand in for"),
             (("serve", tmp_path / "missing.h5"), "missing.h5")]
    for args, message in cases:
        code, output = invoke(*args)
        assert code == 2 and message in output and "Traceback" not in output, (args, output)
    busy = Served(sample("v2/dcgmi_synthetic"), "--speed", "0.001")
    try:
        code, output = invoke("serve", sample("v2/dcgmi_synthetic"), "--listen", busy.target)
        assert code == 2 and "cannot listen" in output
    finally:
        busy.stop()

"""Integration: the prometheus reader against a real prometheus-node-exporter on 127.0.0.1.

The binary comes from the Debian package (`.ci/debian_packages.sh` installs it). In CI (CI=true)
a missing binary fails the test; elsewhere it skips. TELEMREC_NODE_EXPORTER may name another
node_exporter binary.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from telemrec.readers.prometheus import PrometheusReader
from telemrec.record import ReaderConfig

pytestmark = pytest.mark.integration

INSTALL_HINT = "install it with `bash .ci/debian_packages.sh` (Debian package prometheus-node-exporter)"


def _binary() -> str:
    candidates = [os.environ.get("TELEMREC_NODE_EXPORTER", ""), shutil.which("prometheus-node-exporter") or "",
                  "/usr/bin/prometheus-node-exporter", shutil.which("node_exporter") or ""]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    message = f"prometheus-node-exporter binary not found; {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_serving(url: str, proc: subprocess.Popen, log_path) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"node_exporter did not serve {url} within 15 s; log:\n{log_path.read_text()[-2000:]}")


@pytest.fixture
def node_exporter(tmp_path):
    binary = _binary()
    textfile_dir = tmp_path / "textfile"
    textfile_dir.mkdir()
    for _ in range(3):  # the free port may be taken between probing and binding
        port = _free_port()
        log_path = tmp_path / f"node_exporter.{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [binary, f"--web.listen-address=127.0.0.1:{port}",
                 f"--collector.textfile.directory={textfile_dir}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            if _wait_until_serving(url, proc, log_path):
                yield url
                return
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    raise AssertionError(f"node_exporter exited at start three times; last log:\n{log_path.read_text()[-2000:]}")


def test_two_ticks_from_a_real_node_exporter(node_exporter):
    reader = PrometheusReader()
    reader.open(ReaderConfig(source=node_exporter, interval=0.2))
    try:
        ticks = []
        for _ in range(2):
            ticks.append({rec.entity: rec for rec in reader.read()})
            time.sleep(0.2)
        caps = reader.caps
        identity = reader.identity()
    finally:
        reader.close()

    idle = 'node_cpu_seconds_total{mode="idle"}'
    for tick in ticks:
        scrape = tick["scrape"]
        assert scrape.error is None and scrape.fields["up"] == 1, scrape.error
        assert scrape.fields["scrape.samples"] > 100
        cpus = sorted(e for e in tick if e.startswith("cpu="))
        assert cpus, f"no cpu=N entity in {sorted(tick)}"
        assert "cpu=0" in cpus
        for entity in cpus:
            value = tick[entity].fields[idle]
            assert type(value) is float and value >= 0
        assert "system" in tick and "node_load1" in tick["system"].fields
        assert len({(r.mono_ns, r.wall_ns) for r in tick.values()}) == 1
        assert all(r.source_version.startswith("node_exporter ") for r in tick.values())

    first, second = ticks
    assert second["scrape"].mono_ns - first["scrape"].mono_ns >= 150_000_000
    for entity in (e for e in first if e.startswith("cpu=")):
        assert second[entity].fields[idle] >= first[entity].fields[idle]  # a counter, recorded raw

    assert idle in caps.counters
    assert caps.units[idle] == "seconds"
    assert caps.descriptions[idle].startswith("Seconds the CPUs spent in each mode")
    assert "node_load1" in caps.fields and "node_load1" not in caps.counters
    assert caps.dynamic_fields
    assert identity["targets"][node_exporter]["exporter"].startswith("node_exporter ")


def test_telemrec_record_records_a_node_exporter(node_exporter, tmp_path, cli):
    out = tmp_path / "ne.h5"
    proc = cli("record", "--reader", "prometheus", "--source", node_exporter, "-i", "0.5", "-d", "2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    from telemrec.trace import open_trace

    with open_trace(out) as trace:
        entities = {e for _, e in trace.entities()}
        assert "cpu=0" in entities and "scrape" in entities
        idle = [r.fields['node_cpu_seconds_total{mode="idle"}'] for r in trace.records(entities=["cpu=0"])]
        assert len(idle) >= 3 and idle == sorted(idle)
        caps = trace.caps()["prometheus"]
        assert "node_cpu_seconds_total{mode=\"idle\"}" in caps["counters"] or any(
            c.startswith("node_cpu_seconds_total") for c in caps["counters"])

"""Secrets on command lines stay out of traces: `telemrec record -- CMD --password X` keeps
neither X in the manifest nor in any process's cmdline, in the trace or in its journal;
--no-cmdline keeps no command line at all; the manifest says what was done."""

import json
import os
import signal
import subprocess
import sys
import time
import zlib

import pytest

from telemrec.testing.fake_exporter import FakeExporter
from telemrec.trace import open_trace
from telemrec.trace.journal import journal_path

TELEMREC = [sys.executable, "-m", "telemrec"]
SECRETS = ("hunter2", "tok-9f8e7d", "pw-in-url")
APP = "import sys, time\nopen(sys.argv[1], 'w').close()\ntime.sleep(float(sys.argv[2]))\n"


def _command(tmp_path, seconds):
    script = tmp_path / "app.py"
    script.write_text(APP)
    ready = tmp_path / "ready"
    return ready, [sys.executable, str(script), str(ready), str(seconds), "--password", SECRETS[0],
                   f"--api-key={SECRETS[1]}", f"https://me:{SECRETS[2]}@example.invalid/data"]


def everything(path) -> bytes:
    """The file's bytes and every zlib stream in it inflated (HDF5 chunks, journal frames, column streams)."""
    data = path.read_bytes()
    out = [data]
    for i in range(len(data) - 1):
        if data[i] == 0x78 and ((data[i] << 8) | data[i + 1]) % 31 == 0:
            try:
                out.append(zlib.decompressobj().decompress(data[i:], 1 << 26))
            except zlib.error:
                pass
    return b"".join(out)


def assert_no_secret(path, secrets=SECRETS):
    blob = everything(path)
    for secret in secrets:
        assert secret.encode() not in blob, f"{secret} in {path}"


def strings_of(trace) -> str:
    """The manifest and every string value of every record, as one text."""
    parts = [json.dumps(trace.manifest)]
    for rec in trace.records():
        parts += [v for v in rec.fields.values() if isinstance(v, str)]
        parts.append(rec.error or "")
    return "\n".join(parts)


def _record(tmp_path, *options, seconds=1.0):
    ready, argv = _command(tmp_path, seconds)
    out = tmp_path / "s.h5"
    proc = subprocess.run([*TELEMREC, "record", "-q", "-i", "0.1", "-O", "levels=system,process,user", *options,
                           "-o", str(out), "--", *argv], capture_output=True, text=True, timeout=120)
    return proc, out, argv


def test_secrets_on_the_command_line_are_nowhere_in_the_trace(tmp_path):
    proc, out, argv = _record(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_no_secret(out)
    with open_trace(out) as trace:
        text = strings_of(trace)
        m = trace.manifest
        cmdlines = {rec.fields.get("cmdline") for rec in trace.records() if rec.entity == f"pid:{m['command']['pid']}"}
    for secret in SECRETS:
        assert secret not in text
    assert m["command"]["argv"] == [*argv[:4], "--password", "***", "--api-key=***",
                                    "https://me:***@example.invalid/data"]
    assert " ".join(m["command"]["argv"]) in cmdlines  # the process record: the same redaction
    r = m["redaction"]
    assert r["command_lines"] == "redacted" and r["argv_values_redacted"] == 3
    assert r["argv_rules_matched"] == ["secret-options", "url-credentials"] and "secret-assignments" in r["rules"]
    assert r["process_cmdline"] == {"psutil": "redacted"} and r["marker"] == "***"
    check = subprocess.run([*TELEMREC, "check", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_journal_of_a_killed_recorder_holds_no_secret(tmp_path):
    ready, argv = _command(tmp_path, 60)
    out = tmp_path / "k.h5"
    proc = subprocess.Popen([*TELEMREC, "record", "-q", "-i", "0.05", "--flush-every", "0.1", "-O",
                             "levels=system,process,user", "-o", str(out), "--", *argv], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.6)  # a few flushes with the command's records
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    jpath = journal_path(str(out))
    assert os.path.exists(jpath) and not out.exists()
    assert_no_secret(type(out)(jpath))
    with open_trace(out, recover=False) as trace:  # read where it is
        text = strings_of(trace)
        assert any((rec.fields.get("cmdline") or "").endswith("--password *** --api-key=*** "
                                                          "https://me:***@example.invalid/data")
                   for rec in trace.records())
    for secret in SECRETS:
        assert secret not in text
    with open_trace(out):  # recovered: folded into the trace
        pass
    assert_no_secret(out)


def test_no_cmdline_keeps_no_command_line_at_all(tmp_path):
    proc, out, argv = _record(tmp_path, "--no-cmdline", seconds=0.5)
    assert proc.returncode == 0, proc.stderr
    assert_no_secret(out, (*SECRETS, "app.py"))
    with open_trace(out) as trace:
        m = trace.manifest
        assert not any("cmdline" in rec.fields for rec in trace.records())
        assert "cmdline" not in trace.manifest["readers"][0]["caps"]["fields"]
    assert "argv" not in m["command"] and m["command"]["exit_status"] == 0 and m["command"]["pid"] > 0
    assert m["redaction"]["command_lines"] == "dropped" and m["redaction"]["process_cmdline"] == {"psutil": "dropped"}
    assert m["redaction"]["argv_values_redacted"] == 0 and m["redaction"]["rules"] == []
    info = subprocess.run([*TELEMREC, "info", str(out)], capture_output=True, text=True)
    assert info.returncode == 0 and "not kept (--no-cmdline)" in info.stdout, info.stdout + info.stderr
    check = subprocess.run([*TELEMREC, "check", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_no_redact_keeps_command_lines_as_given(tmp_path):
    proc, out, argv = _record(tmp_path, "--no-redact", seconds=0.5)
    assert proc.returncode == 0, proc.stderr
    with open_trace(out) as trace:
        m = trace.manifest
        cmdlines = {rec.fields.get("cmdline") for rec in trace.records() if rec.entity == f"pid:{m['command']['pid']}"}
    assert m["command"]["argv"] == argv and " ".join(argv) in cmdlines
    assert m["redaction"] == {"command_lines": "unredacted", "rules": [], "marker": "***", "argv_values_redacted": 0,
                              "argv_rules_matched": [], "process_cmdline": {"psutil": "unredacted"},
                              "reader_values_redacted": 0}


def test_a_reader_option_that_would_record_command_lines_contradicts_no_cmdline(tmp_path):
    marker = tmp_path / "ran"
    proc = subprocess.run([*TELEMREC, "record", "--no-cmdline", "-O", "cmdline=unredacted", "-o",
                           str(tmp_path / "t.h5"), "--", "/bin/sh", "-c", f"touch {marker}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--no-cmdline and -O cmdline=unredacted contradict" in proc.stderr
    assert not marker.exists() and "Traceback" not in proc.stderr


def test_a_password_in_an_exporter_url_is_masked_in_the_manifest(tmp_path):
    out = tmp_path / "p.h5"
    with FakeExporter(b"# TYPE up gauge\nup 1\n") as exporter:
        url = exporter.url.replace("http://", "http://scraper:s3cr3t-pw@")
        proc = subprocess.run([*TELEMREC, "record", "-q", "-r", "prometheus", "-s", url, "-d", "0.4", "-i", "0.1",
                               "-o", str(out)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert exporter.request_headers[-1]["Authorization"].startswith("Basic ")  # it was used
    assert_no_secret(out, ("s3cr3t-pw",))
    with open_trace(out) as trace:
        m = trace.manifest
    assert m["readers"][0]["source"] == url.replace("s3cr3t-pw", "***")
    assert m["redaction"]["reader_values_redacted"] == 1 and m["command"] is None


@pytest.mark.parametrize("collector", ["procfs", "psutil"])
def test_the_recorder_s_own_command_line_is_redacted_at_the_user_level(tmp_path, collector):
    out = tmp_path / "u.h5"
    proc = subprocess.run([*TELEMREC, "record", "-q", "-d", "0.3", "-i", "0.1", "-O", "levels=user",
                           "-O", f"processes={collector}", "-t", "run=x", "-o", str(out), "--", sys.executable, "-c",
                           "import time; time.sleep(0.5)", "--token", SECRETS[1]],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert_no_secret(out, SECRETS[1:2])
    with open_trace(out) as trace:
        own = [rec.fields["cmdline"] for rec in trace.records()
               if "record" in (rec.fields.get("cmdline") or "") and "u.h5" in rec.fields["cmdline"]]
    assert own and all(c.endswith("time.sleep(0.5) --token ***") for c in own)

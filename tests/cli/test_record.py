"""`telemrec record`, `info`, `check` and `import` as a user runs them: real processes."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import pytest

from telemrec.jsonl import dumps_record
from telemrec.record import RawRecord, records_identical
from telemrec.recorder.paths import expand_output_path
from telemrec.trace import open_trace


def test_record_writes_a_trace_that_plain_h5py_info_and_check_accept(tmp_path, cli):
    out = tmp_path / "t.h5"
    proc = cli("record", "--reader", "psutil", "--interval", "0.1", "--duration", "2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as h5:
        assert h5.attrs["format"] == b"telemrec-trace"  # fixed-length: h5py reads bytes
    info = cli("info", str(out))
    assert info.returncode == 0 and "closed cleanly" in info.stdout and "bytes per value" in info.stdout
    check = cli("check", str(out))
    assert check.returncode == 0 and "valid" in check.stdout
    with open_trace(out) as trace:
        m = trace.manifest
        assert m["closed_cleanly"] and m["stop"]["reason"] == "duration reached"
        ticks = trace.ticks("psutil")
    assert 15 <= len(ticks["tick"]) <= 22
    sched = ticks["scheduled_mono_ns"]
    # a fixed grid of the monotonic clock: no drift, whatever each read cost
    assert all((b - a) % 100_000_000 == 0 for a, b in zip(sched, sched[1:]))
    assert sum(ticks["records"]) == m["stats"]["records"]


def test_record_runs_a_command_records_its_tree_and_exits_with_its_status(tmp_path, cli):
    out = tmp_path / "cmd.h5"
    script = "import subprocess,sys,time; c=subprocess.Popen(['sleep','1.2']); time.sleep(1.5); c.wait(); sys.exit(3)"
    proc = cli("record", "-r", "psutil", "-i", "0.1", "-o", str(out), "--", sys.executable, "-c", script)
    assert proc.returncode == 3, proc.stderr
    with open_trace(out) as trace:
        cmd = trace.manifest["command"]
        assert cmd["exit_status"] == 3 and cmd["argv"][0] == sys.executable
        pids = {e for s, e in trace.entities() if e.startswith("pid:")}
        assert f"pid:{cmd['pid']}" in pids
        assert len(pids) >= 2, "the command's child (sleep) belongs to its process tree"
        assert trace.manifest["stop"]["reason"] == "command exited"
        # the recorder's own cost: per tick in the tick table, and the reader's share in its collector record
        ticks = trace.ticks("psutil")
        done = ticks["status"] != 2
        assert done.any() and (ticks["cpu_ns"][done] > 0).all()
        cost = [r.fields for r in trace.records(entities=["collector"])]
        assert len(cost) == done.sum() and all(c["tick.cpu_seconds"] > 0 for c in cost)
        assert max(c["tick.processes"] for c in cost) >= 2
        assert trace.manifest["readers"][0]["identity"]["processes"] == "procfs"


def test_sigterm_stops_cleanly(tmp_path):
    out = tmp_path / "term.h5"
    proc = subprocess.Popen([sys.executable, "-m", "telemrec", "record", "-r", "psutil", "-i", "0.05", "-o", str(out)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(str(out) + ".journal") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read()
    proc.stderr.close()
    with open_trace(out) as trace:
        assert trace.closed_cleanly
        assert trace.manifest["stop"]["reason"] == "signal SIGTERM"
        assert trace.manifest["stats"]["records"] > 0


def test_output_patterns_expand_host_job_and_time(tmp_path, cli):
    env = {"SLURM_JOB_ID": "4242"}
    assert expand_output_path("run-%h-%j-%t.h5", wall_ns=0, environ=env, hostname="node7.cluster") == \
        "run-node7-4242-19700101T000000Z.h5"
    assert expand_output_path("%%j", environ={}) == "%j"
    assert expand_output_path("%j", environ={}) == "nojob"
    proc = cli("record", "-r", "psutil", "-d", "0.3", "-o", str(tmp_path / "j%j.h5"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "j4242.h5").exists()
    with open_trace(tmp_path / "j4242.h5") as trace:
        assert trace.manifest["slurm"]["job_id"] == "4242"
        assert trace.manifest["env"] == {"SLURM_JOB_ID": "4242"}


def test_bad_arguments_fail_with_a_hint_and_write_nothing(tmp_path, cli):
    cases = [
        ("record", "-r", "psutil", "-o", str(tmp_path / "missing" / "t.h5"), "-d", "1"),
        ("record", "-r", "nosuchreader", "-o", str(tmp_path / "t.h5"), "-d", "1"),
        ("record", "-r", "psutil", "-o", str(tmp_path / "t.h5"), "-i", "0"),
        ("record", "-r", "psutil", "-o", str(tmp_path / "t.h5"), "-O", "noequals"),
        ("record", "-r", "psutil", "-o", str(tmp_path / "t.h5"), "-d", "1", "-%x"),
        ("record", "-r", "psutil", "-o", str(tmp_path / "t%q.h5"), "-d", "1"),
        ("record", "-r", "psutil", "-o", str(tmp_path / "t.h5"), "--", "/no/such/command"),
    ]
    for args in cases:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("t*.h5*"))


def test_import_json_lines_exactly(tmp_path, cli):
    recs = [RawRecord(i, 10**18 + i, f"gpu{i % 2}", {"util": i / 8, "n": i, "na": None, "s": "x", "nan": float("nan")},
                      "ext", "2.1", None if i % 3 else "hiccup") for i in range(200)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(dumps_record(r) + "\n" for r in recs))
    proc = cli("import", str(src), "-o", str(tmp_path / "imp.h5"))
    assert proc.returncode == 0, proc.stderr
    with open_trace(tmp_path / "imp.h5") as trace:
        assert all(records_identical(a, b) for a, b in zip(recs, trace.records()))
        assert trace.manifest["start"]["wall_ns"] == 10**18
    proc = cli("import", "-", "-o", str(tmp_path / "stdin.h5"), input=src.read_text())
    assert proc.returncode == 0, proc.stderr
    assert cli("check", str(tmp_path / "stdin.h5")).returncode == 0


def test_import_rejects_bad_lines_and_leaves_nothing(tmp_path, cli):
    src = tmp_path / "bad.jsonl"
    good = dumps_record(RawRecord(1, 1, "e", {"v": 1}, "s"))
    src.write_text(good + "\n" + json.dumps({"mono_ns": 1}) + "\n")
    proc = cli("import", str(src), "-o", str(tmp_path / "bad.h5"))
    assert proc.returncode == 2 and "line 2" in proc.stderr and "missing keys" in proc.stderr
    assert not list(tmp_path.glob("bad.h5*"))
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    proc = cli("import", str(binary), "-o", str(tmp_path / "bin.h5"))
    assert proc.returncode == 2 and "UTF-8" in proc.stderr and not list(tmp_path.glob("bin.h5*"))
    proc = cli("import", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "x.h5"))
    assert proc.returncode == 2 and "hint" in proc.stderr


def test_check_reports_damage_with_exit_1(tmp_path, cli):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2000))
    proc = cli("check", str(bad))
    assert proc.returncode == 1 and "problem:" in proc.stdout


@pytest.mark.parametrize("opts,ok", [(["-O", "psutil.per_cpu=false"], True), (["-O", "per_cpu=false"], True)])
def test_reader_options_reach_the_reader(tmp_path, cli, opts, ok):
    proc = cli("record", "-r", "psutil", "-d", "0.3", "-o", str(tmp_path / "o.h5"), *opts)
    assert (proc.returncode == 0) == ok, proc.stderr
    with open_trace(tmp_path / "o.h5") as trace:
        assert not [e for _, e in trace.entities() if e.startswith("cpu")]


def test_several_readers_go_into_one_trace(tmp_path, cli):
    from pathlib import Path

    capture = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus" / "dcgm_exporter_8gpu.txt"
    out = tmp_path / "multi.h5"
    proc = cli("record", "-r", "psutil", "-r", "prometheus", "-s", "", "-s", str(capture), "-i", "0.2", "-d", "1",
               "-O", "psutil.per_cpu=false", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    with open_trace(out) as trace:
        assert set(trace.sources()) == {"psutil", "prometheus"}
        assert {r["label"] for r in trace.manifest["readers"]} == {"psutil", "prometheus"}
        assert set(trace.tick_labels()) == {"psutil", "prometheus"}

"""`telemrec record -- COMMAND` as a batch job lives it: checks before the command starts, the
command's exit status, SIGTERM passed on, and what the user is told (terminal and log)."""

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from telemrec.recorder.console import Console
from telemrec.recorder.recorder import ReaderCounts, RecorderStats
from telemrec.trace import open_trace

TELEMREC = [sys.executable, "-m", "telemrec"]


def _marker_command(marker, status=7):
    return ["/bin/sh", "-c", f"echo RAN > {marker}; exit {status}"]


@pytest.mark.parametrize("case", ["output exists", "unknown option", "reader unavailable", "reader without source",
                                  "journal left over"])
def test_nothing_runs_when_anything_is_wrong(tmp_path, cli, case):
    out = tmp_path / "t.h5"
    marker = tmp_path / "ran"
    args, env = ["-i", "0.2"], {}
    if case == "output exists":
        out.write_text("precious")
    elif case == "unknown option":
        args += ["-O", "bogus=1"]
    elif case == "reader unavailable":  # dcgmi is looked up on PATH: none here
        args += ["-r", "dcgmi"]
        env["PATH"] = str(tmp_path)
    elif case == "reader without source":
        args += ["-r", "prometheus"]
    elif case == "journal left over":
        (tmp_path / "t.h5.journal").write_bytes(b"TELEMREC-JOURNAL 1\n")
    start = time.monotonic()
    proc = cli("record", *args, "-o", str(out), "--", *_marker_command(marker), env=env)
    assert proc.returncode == 2, proc.stderr
    assert "telemrec: error:" in proc.stderr and "hint:" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists(), "the command ran although recording could not start"
    assert time.monotonic() - start < 30
    if case == "output exists":
        assert out.read_text() == "precious"
    else:
        assert not out.exists()


def test_the_command_status_is_returned_even_when_the_trace_cannot_be_written(tmp_path, cli):
    where = tmp_path / "out"
    where.mkdir()
    # the command removes the output directory: the journal cannot be folded into a trace there
    proc = cli("record", "-i", "0.1", "-o", str(where / "t.h5"), "--", "/bin/sh", "-c",
               f"sleep 0.5; rm -rf {where}; exit 7")
    assert proc.returncode == 7, proc.stderr
    assert "telemrec: error:" in proc.stderr and "Traceback" not in proc.stderr


CHECKPOINTING = """
import signal, sys, time
def checkpoint(signum, frame):
    time.sleep(1.5)  # writes a checkpoint
    open(sys.argv[1], "w").write(repr(time.time_ns()))
    sys.exit(5)
signal.signal(signal.SIGTERM, checkpoint)
open(sys.argv[1] + ".ready", "w").close()
while True:
    time.sleep(0.05)
"""


def _start(tmp_path, *args):
    script = tmp_path / "child.py"
    script.write_text(CHECKPOINTING)
    done = tmp_path / "done"
    proc = subprocess.Popen([*TELEMREC, "record", "-i", "0.1", *args, "-o", str(tmp_path / "t.h5"), "--",
                             sys.executable, str(script), str(done)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(str(done) + ".ready"):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.05)
    time.sleep(0.3)
    return proc, done


def test_sigterm_reaches_the_command_and_recording_covers_its_checkpoint(tmp_path):
    proc, done = _start(tmp_path)
    signalled = time.time_ns()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    assert done.exists(), "the command did not get SIGTERM"
    finished = int(done.read_text())
    with open_trace(tmp_path / "t.h5") as trace:
        m = trace.manifest
        assert m["closed_cleanly"] and m["stop"]["reason"] == "signal SIGTERM"
        assert m["command"]["exit_status"] == 5
        last = trace.time_span()[1]
    assert finished - signalled >= 1.4e9
    assert last >= finished - 0.3e9, "recording stopped before the command finished its checkpoint"
    assert "recording until the command exits" in err and "wrote " in err


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text("import signal, time, sys\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "open(sys.argv[1], 'w').close()\ntime.sleep(60)\n")
    ready = tmp_path / "ready"
    proc = subprocess.Popen([*TELEMREC, "record", "-i", "0.1", "--grace", "1", "-o", str(tmp_path / "t.h5"), "--",
                             sys.executable, str(script), str(ready)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL, err
    assert 0.9 <= time.monotonic() - start < 15
    assert "did not exit within --grace 1 s" in err
    with open_trace(tmp_path / "t.h5") as trace:
        assert trace.closed_cleanly and trace.manifest["command"]["exit_status"] == -signal.SIGKILL


def test_a_second_signal_stops_at_once(tmp_path):
    proc, done = _start(tmp_path, "--grace", "30")
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)   # not passed on: a terminal's Ctrl-C reaches the command itself
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - start < 10
    assert proc.returncode == 128 + signal.SIGKILL, err
    assert not done.exists()
    with open_trace(tmp_path / "t.h5") as trace:
        assert trace.closed_cleanly and trace.manifest["stop"]["reason"] == "signal SIGINT"


def test_piped_output_ends_with_one_summary_line(tmp_path, cli):
    proc = cli("record", "-i", "0.1", "-d", "0.5", "-o", str(tmp_path / "t.h5"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {tmp_path / 't.h5'}: ") and " ticks " in lines[0], lines
    assert "\r" not in proc.stderr
    quiet = cli("record", "-q", "-i", "0.1", "-d", "0.3", "-o", str(tmp_path / "q.h5"))
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_missed_ticks_are_reported_while_recording(tmp_path, cli):
    # at 1 kHz a psutil tick reading every process of the user (a few ms here) cannot keep up
    proc = cli("record", "-i", "0.001", "-d", "1.5", "-O", "levels=system,user", "-o", str(tmp_path / "t.h5"))
    assert proc.returncode == 0, proc.stderr
    warning = next(line for line in proc.stderr.splitlines() if "ticks missed" in line)
    assert warning.startswith("telemrec: warning: psutil: ") and "--interval 0.001 s" in warning
    assert proc.stderr.index("ticks missed") < proc.stderr.index("wrote ")


def test_an_unreachable_exporter_is_reported_live_and_counted(tmp_path, cli):
    proc = cli("record", "-r", "prometheus", "-s", "http://127.0.0.1:9/metrics", "-i", "0.2", "-d", "1",
               "-o", str(tmp_path / "t.h5"))
    assert proc.returncode == 0, proc.stderr
    assert "telemrec: warning: prometheus: records carry errors (scrape: " in proc.stderr
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("wrote ") and "error records: prometheus " in summary


def _stats(**per_reader):
    stats = RecorderStats()
    for label, counts in per_reader.items():
        stats.readers[label] = counts
    return stats


def test_console_warns_once_per_reader_and_again_for_missed_ticks_after_a_minute():
    out = io.StringIO()
    console = Console(out, tty=False)
    stats = _stats(prom=ReaderCounts(ticks=3, error_records=3, last_error="scrape: refused"),
                   psutil=ReaderCounts(ticks=10, missed_ticks=5, read_seconds=0.02))
    console.check(stats, 0.01, now=100.0)
    console.check(stats, 0.01, now=101.0)
    stats.readers["psutil"].missed_ticks = 9
    console.check(stats, 0.01, now=130.0)
    assert out.getvalue().count("records carry errors (scrape: refused)") == 1
    assert out.getvalue().count("ticks missed") == 1 and "slowest read took 0.02 s" in out.getvalue()
    console.check(stats, 0.01, now=161.0)
    assert out.getvalue().count("ticks missed") == 2 and "9 of 19 ticks missed" in out.getvalue()


def test_console_says_what_stopping_writes_and_for_how_long():
    out = io.StringIO()
    console = Console(out, tty=True)
    with console.phase(lambda: "writing t.h5: 1,234 values", every=0.05):
        time.sleep(0.3)
    text = out.getvalue()
    assert text.count("writing t.h5: 1,234 values") >= 3 and "s" in text.split("values")[-1]
    quiet = io.StringIO()
    with Console(quiet, tty=False).phase(lambda: "writing"):
        pass
    assert quiet.getvalue() == ""


def test_a_terminal_sees_progress_and_the_stopping_phase(tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen([*TELEMREC, "record", "-i", "0.1", "-d", "1", "-o", str(tmp_path / "t.h5")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=30) == 0
    text = seen.decode()
    assert "recording " in text and " ticks " in text
    assert f"writing {tmp_path / 't.h5'}: " in text and " values from a " in text
    assert text.rstrip().splitlines()[-1].lstrip("\r\x1b[K").startswith("wrote ")


def test_duration_ends_the_recording_not_the_command(tmp_path, cli):
    start = time.monotonic()
    proc = cli("record", "-i", "0.1", "-d", "0.5", "-o", str(tmp_path / "t.h5"), "--", "/bin/sh", "-c",
               "sleep 2.5; exit 3")
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - start >= 2.5
    assert "trace written; waiting for the command" in proc.stderr
    with open_trace(tmp_path / "t.h5") as trace:
        first, last = trace.time_span()
        assert trace.manifest["stop"]["reason"] == "duration reached" and (last - first) / 1e9 < 1.5

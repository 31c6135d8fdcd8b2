"""What a recorder leaves behind when it dies: the wrapped command ends with it (SIGTERM, the
grace, SIGKILL, as if the recorder had been sent SIGTERM), and the half-made journal of a
recorder killed while creating it is removed by the next recorder of that path."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from telemrec.recorder.session import RecordRequest, record

TELEMREC = [sys.executable, "-m", "telemrec"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # reparented, dead, not yet reaped
    except psutil.NoSuchProcess:
        return True


def _wait_for_child(recorder: subprocess.Popen, name: str) -> psutil.Process:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert recorder.poll() is None, recorder.stderr.read()
        for child in psutil.Process(recorder.pid).children():
            try:
                if child.name() == name:
                    return child
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    raise AssertionError(f"the recorder never ran {name}")


def _kill_recorder_and_time_the_command(tmp_path, *args, command, name):
    recorder = subprocess.Popen([*TELEMREC, "record", "-q", "-i", "0.1", *args, "-o", str(tmp_path / "t.h5"), "--",
                                 *command], stderr=subprocess.PIPE, text=True)
    child = _wait_for_child(recorder, name)
    time.sleep(0.3)
    try:
        recorder.send_signal(signal.SIGKILL)
        recorder.wait()
        killed = time.monotonic()
        while not _gone(child.pid) and time.monotonic() - killed < 20:
            time.sleep(0.02)
        return time.monotonic() - killed
    finally:
        recorder.stderr.close()
        if not _gone(child.pid):
            child.kill()


def test_a_sigkilled_recorder_takes_its_command_with_it(tmp_path):
    took = _kill_recorder_and_time_the_command(tmp_path, command=["sleep", "60"], name="sleep")
    assert took < 2, f"sleep 60 outlived its SIGKILLed recorder by {took:.1f} s"


def test_a_command_that_ignores_sigterm_gets_the_grace_then_sigkill(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n")
    os.symlink(sys.executable, tmp_path / "stubborn")
    took = _kill_recorder_and_time_the_command(tmp_path, "--grace", "1", command=[str(tmp_path / "stubborn"),
                                                                                   str(script)], name="stubborn")
    assert 0.9 <= took < 4, took


def test_the_watchdog_stands_down_when_the_recording_ends(tmp_path):
    result = record(RecordRequest(output=str(tmp_path / "t.h5"), interval=0.1, command=["true"]),
                    install_signals=False)
    assert result.exit_status == 0
    left = [p for p in psutil.Process().children() if "_watchdog.py" in " ".join(p.cmdline())]
    assert left == []


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("kind", [".journal.tmp-", ".tmp-"])
def test_temporaries_of_dead_recorders_are_removed_at_start_those_of_live_ones_kept(tmp_path, cli, kind):
    out = tmp_path / "t.h5"
    dead = tmp_path / f"t.h5{kind}{_dead_pid()}"
    live = tmp_path / f"t.h5{kind}{os.getpid()}"
    other = tmp_path / f"u.h5{kind}{_dead_pid()}"  # another output's: not this recorder's business
    for path in (dead, live, other):
        path.write_bytes(b"half a journal")
    proc = cli("record", "-q", "-d", "0.2", "-i", "0.1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not dead.exists() and live.exists() and other.exists()
    assert out.exists()

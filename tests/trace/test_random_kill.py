"""SIGKILL a real `telemrec record` at random moments, many times: every result must open."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from telemrec.errors import TraceNotFoundError
from telemrec.trace import open_trace

TRIALS = int(os.environ.get("TELEMREC_KILL_TRIALS", "20"))


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_trace_that_opens(tmp_path):
    rng = random.Random(int(os.environ.get("TELEMREC_KILL_SEED", "1807")))
    opened = 0
    nothing = 0
    for trial in range(TRIALS):
        out = tmp_path / f"k{trial}.h5"
        proc = subprocess.Popen(
            [sys.executable, "-m", "telemrec", "record", "-r", "psutil", "-i", "0.01", "--flush-every", "0.05",
             "-O", "levels=system,process", "-O", f"pid={os.getpid()}", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # some kills land during start-up, most while recording, some during a flush
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        try:
            trace = open_trace(out)
        except TraceNotFoundError:
            # killed before the journal existed: nothing was recorded, and nothing is half-written
            assert not any(p.name.startswith(out.name) and ".tmp-" not in p.name for p in tmp_path.iterdir())
            nothing += 1
            continue
        with trace:
            assert not trace.closed_cleanly
            records = sum(1 for _ in trace.records())
            assert records == trace.manifest["stats"]["records"]
            flushed_ticks = sum(len(trace.ticks(label)["tick"]) for label in trace.tick_labels())
            assert flushed_ticks >= 0
        opened += 1
    assert opened >= TRIALS * 0.6, f"only {opened}/{TRIALS} kills happened after recording started"

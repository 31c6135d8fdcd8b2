"""SIGKILL a real `telemrec record` at random moments, many times: every result must open.

The kills land while recording (between and during flushes, while segments are encoded,
merged and sealed: ``TELEMREC_SEAL_VALUES`` makes the recorder seal every few hundred
values) and during the stop (SIGTERM, then SIGKILL a few milliseconds into the fold).
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from telemrec.errors import TraceNotFoundError
from telemrec.trace import open_trace

TRIALS = int(os.environ.get("TELEMREC_KILL_TRIALS", "24"))


def _record(out, seal_values: int):
    env = dict(os.environ, TELEMREC_SEAL_VALUES=str(seal_values))
    return subprocess.Popen(
        [sys.executable, "-m", "telemrec", "record", "-r", "psutil", "-i", "0.01", "--flush-every", "0.05",
         "-O", "levels=system,process", "-O", f"pid={os.getpid()}", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_trace_that_opens(tmp_path):
    rng = random.Random(int(os.environ.get("TELEMREC_KILL_SEED", "1807")))
    opened = nothing = clean = 0
    for trial in range(TRIALS):
        out = tmp_path / f"k{trial}.h5"
        during_stop = trial % 3 == 2
        proc = _record(out, rng.choice([300, 3000, 1 << 21]))
        time.sleep(rng.uniform(0.2, 2.5))
        if during_stop:
            proc.send_signal(signal.SIGTERM)
            time.sleep(rng.uniform(0.0, 0.3))
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
            clean += trace.closed_cleanly
            assert trace.closed_cleanly or not during_stop or trace.recovered
            records = sum(1 for _ in trace.records())
            assert records == trace.manifest["stats"]["records"]
            ticks = sum(len(trace.ticks(label)["tick"]) for label in trace.tick_labels())
            assert ticks == trace.manifest["stats"]["ticks"] or trace.closed_cleanly
        assert not os.path.exists(f"{out}.journal"), "opening recovered the journal"
        opened += 1
    assert opened >= TRIALS * 0.6, f"only {opened}/{TRIALS} kills happened after recording started"

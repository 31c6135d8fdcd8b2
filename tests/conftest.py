import os
import subprocess
import sys

import pytest

from telemrec.record import RawRecord


def run_cli(*args, env=None, input=None, timeout=120, check=False):
    """Run `python -m telemrec ARGS` in a subprocess (a real process: signals, exit codes, stdout)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "telemrec", *args], capture_output=True, text=True,
                          env=full_env, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"telemrec {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cli():
    return run_cli


def make_records(n=100, entities=("gpu0", "gpu1"), source="fake"):
    out = []
    for i in range(n):
        for j, ent in enumerate(entities):
            out.append(RawRecord(1_000_000 + i * 10**8, 1_700_000_000 * 10**9 + i * 10**8, ent,
                                 {"util": float(i % 100) / 10, "mem": i * 1024 + j, "name": "H100"},
                                 source, "1.0"))
    return out


@pytest.fixture
def records_factory():
    return make_records

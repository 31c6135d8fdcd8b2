import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.join(ROOT, "sample_traces", "v2")


@pytest.fixture(scope="session")
def py312():
    """The interpreter of .venv-py312 (Python >= 3.12 with telemrec[cjm]), built once by scripts/py312_env.sh.

    Skips only when this machine has no Python >= 3.12 at all; a failing build fails.
    """
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", "py312_env.sh")], capture_output=True, text=True,
                          timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"scripts/py312_env.sh failed ({done.returncode}):\n{done.stderr[-3000:]}")
    python = done.stdout.strip()
    if not python:
        pytest.skip(f"cjm needs Python >= 3.12 and none was found: {done.stderr.strip()}")
    return python


@pytest.fixture(scope="session")
def sample():
    return lambda name: os.path.join(SAMPLES, name)

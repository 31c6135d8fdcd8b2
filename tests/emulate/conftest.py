"""Shared by the emulator tests: sample traces (copied, the frozen files stay untouched), a MIG
dcgmi trace recorded from the fake dcgmi's capture, and helpers to read traces back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from telemrec.testing.fake_nvml import training_job
from telemrec.trace import open_trace

from .nvml_helpers import mig_and_processes, write_nvml_trace

SAMPLES = Path(__file__).resolve().parents[2] / "sample_traces"
MIG_CAPTURE_ARGS = ["--fake-gpus", "2", "--fake-mig", "0:2:1", "--fake-time-scale", "0", "dmon", "-c", "20",
                    "-d", "100"]


def telemrec(*args, timeout=120, env=None, check=True) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "telemrec", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"telemrec {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def invoke(*args):
    """The CLI in this process (quick, for what needs no real process): (exit code, stdout + stderr)."""
    from typer.testing import CliRunner

    from telemrec.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def ci_or_skip(message: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """``sample("v2/dcgmi_synthetic")``: a private copy of a frozen sample trace."""
    root = tmp_path_factory.mktemp("samples")

    def copy(name: str) -> str:
        target = root / name.replace("/", "_")
        if not target.with_suffix(".h5").exists():
            shutil.copy(SAMPLES / f"{name}.h5", target.with_suffix(".h5"))
        return str(target.with_suffix(".h5"))

    return copy


@pytest.fixture(scope="session")
def mig_capture_and_trace(tmp_path_factory):
    """(capture text, trace path): 20 ticks of the fake dcgmi (2 GPUs, GPU 0 split into 2 GPU
    instances with a compute instance each), recorded by the dcgmi reader from the capture."""
    root = tmp_path_factory.mktemp("mig")
    capture = root / "capture.txt"
    with open(capture, "w") as fh:
        subprocess.run([sys.executable, "-m", "telemrec.testing.fake_dcgmi", *MIG_CAPTURE_ARGS], stdout=fh,
                       check=True, timeout=60)
    trace = root / "mig.h5"
    code, output = invoke("record", "--reader", "dcgmi", "--source", capture, "--interval", "0.01", "-q", "-o", trace)
    assert code == 0, output
    return capture.read_text(), str(trace)


def trace_records(path, **selection):
    with open_trace(path) as trace:
        return list(trace.records(**selection))


def ticks_of(records):
    """Records grouped into ticks (a tick ends where an entity reports again)."""
    ticks, current = [], {}
    for rec in records:
        if rec.entity in current:
            ticks.append(current)
            current = {}
        current[rec.entity] = rec
    if current:
        ticks.append(current)
    return ticks


@pytest.fixture(scope="session")
def rich_trace(tmp_path_factory) -> str:
    return write_nvml_trace(str(tmp_path_factory.mktemp("nvml") / "rich.h5"), mig_and_processes(), ticks=30)


@pytest.fixture(scope="session")
def training_trace(tmp_path_factory) -> str:
    return write_nvml_trace(str(tmp_path_factory.mktemp("nvml") / "training.h5"), training_job(2), ticks=30)

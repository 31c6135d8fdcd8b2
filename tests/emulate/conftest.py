"""Fixtures of the NVML replay tests (helpers in nvml_helpers.py)."""

from __future__ import annotations

import pytest

from .nvml_helpers import mig_and_processes, write_nvml_trace
from telemrec.testing.fake_nvml import training_job


@pytest.fixture(scope="session")
def rich_trace(tmp_path_factory) -> str:
    return write_nvml_trace(str(tmp_path_factory.mktemp("nvml") / "rich.h5"), mig_and_processes(), ticks=30)


@pytest.fixture(scope="session")
def training_trace(tmp_path_factory) -> str:
    return write_nvml_trace(str(tmp_path_factory.mktemp("nvml") / "training.h5"), training_job(2), ticks=30)

"""Upgrading a v1 trace to the current format keeps every record, tick, annotation and manifest key."""

from pathlib import Path

import pytest

from telemrec.errors import TraceWriteError
from telemrec.record import records_identical
from telemrec.trace import CURRENT_FORMAT_VERSION, open_trace
from telemrec.trace.upgrade import upgrade

V1 = Path(__file__).resolve().parents[2] / "sample_traces" / "v1"


def test_upgrade_rewrites_a_v1_trace_exactly(tmp_path):
    out = tmp_path / "new.h5"
    assert upgrade(V1 / "psutil_workload.h5", out) == 1
    with open_trace(V1 / "psutil_workload.h5") as old, open_trace(out) as new:
        assert new.format_version == CURRENT_FORMAT_VERSION
        assert all(records_identical(a, b) for a, b in zip(old.records(), new.records(), strict=True))
        assert {k: v.tolist() for k, v in old.ticks("psutil").items()} == \
            {k: v.tolist() for k, v in new.ticks("psutil").items()}
        assert dict(old.manifest, format_version=CURRENT_FORMAT_VERSION) == new.manifest
    assert upgrade(out, tmp_path / "again.h5") == CURRENT_FORMAT_VERSION  # the latest copies as it is
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_upgrade_never_overwrites(tmp_path):
    out = tmp_path / "new.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(TraceWriteError, match="already exists"):
        upgrade(V1 / "nvml_synthetic.h5", out)
    assert out.read_bytes() == b"keep me"
    with pytest.raises(TraceWriteError):  # onto itself
        upgrade(V1 / "nvml_synthetic.h5", V1 / "nvml_synthetic.h5")


def test_upgrade_command(cli, tmp_path):
    out = tmp_path / "new.h5"
    proc = cli("upgrade", str(V1 / "dcgmi_synthetic.h5"), "-o", str(out), check=True)
    assert proc.stdout.strip() == f"{out}: format v1 -> v{CURRENT_FORMAT_VERSION}"
    assert cli("check", str(out)).returncode == 0
    again = cli("upgrade", str(V1 / "dcgmi_synthetic.h5"), "-o", str(out))
    assert again.returncode == 2 and "does not overwrite" in again.stderr


def test_an_output_that_appears_during_the_upgrade_is_left_alone(tmp_path, monkeypatch):
    from telemrec.trace import upgrade as upgrade_module

    out = tmp_path / "new.h5"
    original = upgrade_module._copy

    def copy_then_race(*args):
        state = original(*args)
        out.write_bytes(b"someone else's")
        return state

    monkeypatch.setattr(upgrade_module, "_copy", copy_then_race)
    with pytest.raises(TraceWriteError, match="already exists"):
        upgrade(V1 / "nvml_synthetic.h5", out)
    assert out.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["new.h5"]

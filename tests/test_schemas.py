"""Manifest schema: valid examples pass, each invalid example fails, and the wheel ships the schema."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from telemrec.trace.manifest import load_schema, manifest_problems

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "schemas" / "manifest" / "v1" / "examples"


@pytest.mark.parametrize("path", sorted((EXAMPLES / "valid").glob("*.json")), ids=lambda p: p.stem)
def test_valid_examples_validate(path):
    assert manifest_problems(json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", sorted((EXAMPLES / "invalid").glob("*.json")), ids=lambda p: p.stem)
def test_invalid_examples_are_rejected(path):
    assert manifest_problems(json.loads(path.read_text()))


def test_id_and_version_match_the_folder():
    schema = load_schema(1)
    assert schema["$id"].endswith("/manifest/v1/manifest.schema.json")
    assert schema["properties"]["format_version"] == {"const": 1}


def test_a_real_recording_manifest_validates(tmp_path, cli):
    out = tmp_path / "t.h5"
    assert cli("record", "-r", "psutil", "-d", "0.5", "-i", "0.1", "-o", str(out)).returncode == 0
    from telemrec.trace import open_trace

    with open_trace(out) as trace:
        assert manifest_problems(trace.manifest) == []


@pytest.mark.slow
def test_the_wheel_ships_the_schemas(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True)
    if proc.returncode != 0 and "hatchling" in proc.stderr:
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                               str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("telemrec-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        shipped = zf.read("telemrec/schemas/manifest/v1/manifest.schema.json")
    assert shipped == (ROOT / "schemas/manifest/v1/manifest.schema.json").read_bytes()
    assert any(n.startswith("telemrec/schemas/manifest/v1/examples/valid/") for n in names)

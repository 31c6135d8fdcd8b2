"""Manifest schemas (one per format version): valid examples pass, each invalid example fails, and the wheel ships the schema."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from telemrec.trace.manifest import load_schema, manifest_problems

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = sorted(int(p.name[1:]) for p in (ROOT / "schemas" / "manifest").glob("v*"))


def _examples(kind: str):
    return [(v, p) for v in VERSIONS
            for p in sorted((ROOT / "schemas" / "manifest" / f"v{v}" / "examples" / kind).glob("*.json"))]


def test_every_supported_format_version_has_a_schema():
    from telemrec.trace import SUPPORTED_FORMAT_VERSIONS

    assert VERSIONS == list(SUPPORTED_FORMAT_VERSIONS)


@pytest.mark.parametrize("version,path", _examples("valid"), ids=lambda x: getattr(x, "stem", f"v{x}"))
def test_valid_examples_validate(version, path):
    assert manifest_problems(json.loads(path.read_text()), version) == []


@pytest.mark.parametrize("version,path", _examples("invalid"), ids=lambda x: getattr(x, "stem", f"v{x}"))
def test_invalid_examples_are_rejected(version, path):
    assert manifest_problems(json.loads(path.read_text()), version)


@pytest.mark.parametrize("version", VERSIONS)
def test_id_and_version_match_the_folder(version):
    schema = load_schema(version)
    assert schema["$id"].endswith(f"/manifest/v{version}/manifest.schema.json")
    assert schema["properties"]["format_version"] == {"const": version}


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
    if proc.returncode != 0:  # the build backend is not installed here: let pip fetch it
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
                               str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("telemrec-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for version in VERSIONS:
            shipped = zf.read(f"telemrec/schemas/manifest/v{version}/manifest.schema.json")
            assert shipped == (ROOT / f"schemas/manifest/v{version}/manifest.schema.json").read_bytes()
            assert any(n.startswith(f"telemrec/schemas/manifest/v{version}/examples/valid/") for n in names)


JOURNAL = ROOT / "schemas" / "journal"


@pytest.mark.parametrize("path", sorted(JOURNAL.glob("v*/examples/*/*.json")), ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_journal_frame_examples(path):
    """The journal's JSON frames (docs/format.md section 2.1): valid examples pass, invalid ones fail."""
    from telemrec.trace.manifest import journal_frame_problem

    problem = journal_frame_problem(json.loads(path.read_text()), int(path.parents[2].name[1:]))
    assert (problem is None) == (path.parent.name == "valid"), problem

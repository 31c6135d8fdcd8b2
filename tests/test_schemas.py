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


_ITEMS = [["source", "psutil"], ["source", 3], ["source"], ["source", "a", "b"], ["table", "records", 0],
          ["table", "time", -1], ["table", "time", -2], ["table", "other", 0], ["table", "ticks", 1.0],
          ["table", "ticks", True], ["column", 0, "cpu"], ["column", 0, ""], ["column", -1, "cpu"],
          ["column", 2**63, "x"], ["column", 2**63 - 1, "x"], ["entity", 5, "pid:4"], ["entity", 5, None],
          ["entity", True, "x"], ["fields", 1, [0, 3, 1]], ["fields", 1, [0, -3]], ["fields", 1, []],
          ["fields", 1, [0.0]], ["fields", 1, "0"], ["other", 1, 2], [], "source", None, ["entity", 1, "x", 2]]


@pytest.mark.parametrize("item", _ITEMS, ids=lambda i: json.dumps(i))
def test_the_fast_def_check_says_what_the_schema_says(item):
    """``def`` frames are checked item by item without jsonschema (its cost grew with the entities of
    a process tree): whatever the fast check passes, the schema passes too, and the verdict on the
    frame is the schema's (1.0 is an integer to JSON Schema: the fast check leaves those to it)."""
    import jsonschema

    from telemrec.trace.manifest import _def_item_valid, journal_frame_problem, load_schema

    schema = load_schema(2, "journal")
    by_schema = jsonschema.Draft202012Validator(schema).is_valid({"t": "def", "items": [item]})
    assert by_schema or not _def_item_valid(item)
    assert _def_item_valid(item) == by_schema or item in (["table", "ticks", 1.0], ["fields", 1, [0.0]])
    assert (journal_frame_problem({"t": "def", "items": [item]}) is None) == by_schema


_CHECKPOINTS = [{"t": "checkpoint", "frames": []}, {"t": "checkpoint", "frames": [[35, 0], [90, 1]]},
                {"t": "checkpoint", "frames": [[35, 0, 1]]}, {"t": "checkpoint", "frames": [[-1, 0]]},
                {"t": "checkpoint", "frames": [[35, True]]}, {"t": "checkpoint", "frames": [[35.0, 1]]},
                {"t": "checkpoint", "frames": [[2**63, 1]]}, {"t": "checkpoint", "frames": "35"},
                {"t": "checkpoint", "frames": [[35, 0]], "extra": 1}, {"t": "checkpoint"}]


@pytest.mark.parametrize("frame", _CHECKPOINTS, ids=lambda f: json.dumps(f))
def test_the_fast_checkpoint_check_says_what_the_schema_says(frame):
    """A checkpoint lists thousands of frames; it is checked without jsonschema, with its verdicts."""
    import jsonschema

    from telemrec.trace.manifest import journal_frame_problem, load_schema

    by_schema = jsonschema.Draft202012Validator(load_schema(3, "journal")).is_valid(frame)
    assert (journal_frame_problem(frame, 3) is None) == by_schema
    assert journal_frame_problem(frame, 2) is not None  # version 2 journals have no checkpoints

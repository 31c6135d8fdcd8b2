"""Every frozen sample trace opens, validates and replays; every corrupt one fails the documented way."""

import hashlib
import shutil
from pathlib import Path

import pytest

from telemrec.errors import TraceCorruptError, UnsupportedFormatVersionError
from telemrec.trace import open_trace
from telemrec.trace.check import check_trace
from telemrec.trace.manifest import manifest_problems

ROOT = Path(__file__).resolve().parents[1] / "sample_traces"
SUMS = dict(reversed(line.split(None, 1)) for line in (ROOT / "SHA256SUMS").read_text().splitlines())
SAMPLES = sorted(ROOT.glob("v*/*.h5"))


def test_checksums_pin_every_file():
    listed = {name.strip() for name in SUMS}
    present = {str(p.relative_to(ROOT)) for p in ROOT.glob("v*/*")} | {str(p.relative_to(ROOT)) for p in ROOT.glob("corrupt/*")}
    assert listed == present
    for name, digest in SUMS.items():
        assert hashlib.sha256((ROOT / name.strip()).read_bytes()).hexdigest() == digest, name


def test_every_supported_version_has_samples():
    from telemrec.trace import SUPPORTED_FORMAT_VERSIONS

    assert sorted({int(p.parent.name[1:]) for p in SAMPLES}) == list(SUPPORTED_FORMAT_VERSIONS)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_sample_opens_validates_and_replays(path, tmp_path):
    copy = tmp_path / path.name  # never let a test touch the frozen file
    shutil.copy(path, copy)
    report = check_trace(str(copy))
    assert report.ok, report.problems
    with open_trace(copy) as trace:
        assert trace.format_version == int(path.parent.name[1:])
        assert manifest_problems(trace.manifest, trace.format_version) == []
        records = list(trace.records())
        assert len(records) == trace.manifest["stats"]["records"] > 0
    from telemrec.readers.replay import ReplayReader
    from telemrec.record import ReaderConfig, records_identical

    reader = ReplayReader()
    reader.open(ReaderConfig(source=str(copy)))
    replayed = []
    while (batch := reader.read()) is not None:
        replayed.extend(batch)
    reader.close()
    assert len(replayed) == len(records)
    assert all(records_identical(a, b) for a, b in zip(records, replayed))


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("name", [p.name for p in (ROOT / "v1").glob("*.h5")])
def test_later_samples_are_the_v1_recordings_upgraded(name, version, tmp_path):
    """Same records, ticks, annotations and manifest (but the version) in every format; the
    frames load() builds (the fast decoders) are equal bit for bit."""
    from telemrec.analysis import load
    from telemrec.record import records_identical
    from telemrec.testing import assert_frames_identical

    with open_trace(ROOT / "v1" / name) as old, open_trace(ROOT / f"v{version}" / name) as new:
        assert (old.format_version, new.format_version) == (1, version)
        assert all(records_identical(a, b) for a, b in zip(old.records(), new.records(), strict=True))
        for label in old.tick_labels():
            assert {k: v.tolist() for k, v in old.ticks(label).items()} == \
                {k: v.tolist() for k, v in new.ticks(label).items()}
        assert old.annotations() == new.annotations()
        assert dict(old.manifest, format_version=version) == new.manifest
        a, b = load(old), load(new)
    assert_frames_identical(a, b)
    assert (ROOT / f"v{version}" / name).stat().st_size < (ROOT / f"v{version - 1}" / name).stat().st_size


def test_the_process_tree_recording_keeps_every_short_lived_process():
    """The real format 3 recording: processes came and went; each is an entity of one table."""
    with open_trace(ROOT / "v3" / "psutil_process_tree.h5") as trace:
        pids = [e for s, e in trace.entities() if e.startswith("pid:")]
        assert len(pids) > 20
        tables = {trace._reader.catalog.entities[trace.entity("psutil", e).eid].table for e in pids}
        assert len(tables) == 1
        rows = {e: trace.entity("psutil", e).rows for e in pids}
        assert min(rows.values()) < max(rows.values())  # short-lived and long-lived ones


def test_truncated_and_foreign_files_are_corrupt():
    for name in ("truncated.h5", "truncated_v3.h5", "not_hdf5.h5"):
        with pytest.raises(TraceCorruptError):
            open_trace(ROOT / "corrupt" / name)


def test_future_version_names_both_versions():
    with pytest.raises(UnsupportedFormatVersionError, match="99"):
        open_trace(ROOT / "corrupt" / "future_version.h5")


@pytest.mark.parametrize("name", ["crashed", "crashed_v3", "crashed_j3"])
def test_crashed_journal_recovers_the_flushed_records(tmp_path, name):
    """A journal of version 1 (telemrec with format 2), 2 and 3, each with a torn last frame."""
    shutil.copy(ROOT / "corrupt" / f"{name}.h5.journal", tmp_path / f"{name}.h5.journal")
    with open_trace(tmp_path / f"{name}.h5") as trace:
        assert trace.recovered and not trace.closed_cleanly and trace.format_version == 3
        assert [r.fields["n"] for r in trace.records()] == list(range(100))

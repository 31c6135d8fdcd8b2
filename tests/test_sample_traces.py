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


@pytest.mark.parametrize("name", [p.name for p in (ROOT / "v1").glob("*.h5")])
def test_v2_samples_are_the_v1_recordings_upgraded(name, tmp_path):
    """Same records, ticks, annotations and manifest (but the version) in both formats; the
    frames load() builds (the fast decoder) are equal bit for bit."""
    from telemrec.analysis import load
    from telemrec.record import records_identical
    from telemrec.testing import assert_frames_identical

    with open_trace(ROOT / "v1" / name) as old, open_trace(ROOT / "v2" / name) as new:
        assert (old.format_version, new.format_version) == (1, 2)
        assert all(records_identical(a, b) for a, b in zip(old.records(), new.records(), strict=True))
        for label in old.tick_labels():
            assert {k: v.tolist() for k, v in old.ticks(label).items()} == \
                {k: v.tolist() for k, v in new.ticks(label).items()}
        assert old.annotations() == new.annotations()
        assert dict(old.manifest, format_version=2) == new.manifest
        a, b = load(old), load(new)
    assert_frames_identical(a, b)
    assert (ROOT / "v2" / name).stat().st_size < (ROOT / "v1" / name).stat().st_size


def test_truncated_and_foreign_files_are_corrupt():
    for name in ("truncated.h5", "not_hdf5.h5"):
        with pytest.raises(TraceCorruptError):
            open_trace(ROOT / "corrupt" / name)


def test_future_version_names_both_versions():
    with pytest.raises(UnsupportedFormatVersionError, match="99"):
        open_trace(ROOT / "corrupt" / "future_version.h5")


def test_crashed_journal_recovers_the_flushed_records(tmp_path):
    shutil.copy(ROOT / "corrupt" / "crashed.h5.journal", tmp_path / "crashed.h5.journal")
    with open_trace(tmp_path / "crashed.h5") as trace:
        assert trace.recovered and not trace.closed_cleanly
        assert [r.fields["n"] for r in trace.records()] == list(range(100))

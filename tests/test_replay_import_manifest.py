"""`telemrec replay | telemrec import -` keeps the manifest; replay speaks the `--reader` vocabulary."""

import json
from pathlib import Path

import pytest

from telemrec.errors import RecordError, UsageError
from telemrec.jsonl import dumps_header, dumps_record, iter_records, read_stream
from telemrec.readers.replay import ReplayReader, iter_replay
from telemrec.record import ReaderConfig, records_identical
from telemrec.trace import open_trace

SAMPLE = str(Path(__file__).resolve().parents[1] / "sample_traces" / "v2" / "psutil_workload.h5")


def _copy(cli, tmp_path, *replay_args, name="copy.h5"):
    replay = cli("replay", SAMPLE, "--speed", "max", *replay_args)
    assert replay.returncode == 0, replay.stderr
    out = tmp_path / name
    imported = cli("import", "-", "-o", str(out), input=replay.stdout)
    assert imported.returncode == 0, imported.stderr
    return out, replay.stdout


def test_replay_into_import_keeps_host_interval_readers_and_ticks(tmp_path, cli):
    out, stream = _copy(cli, tmp_path)
    assert stream.startswith('{"telemrec_manifest":')
    with open_trace(SAMPLE) as original, open_trace(out) as copy:
        m, c = original.manifest, copy.manifest
        assert c["host"] == m["host"] and c["interval_seconds"] == m["interval_seconds"]
        assert c["readers"] == m["readers"] and c["command"] == m["command"] and c["gpus"] == m["gpus"]
        assert c["stats"]["ticks"] == m["stats"]["ticks"] == 41
        assert c["stats"]["records"] == m["stats"]["records"] and c["start"] == m["start"]
        assert c["imported_from"]["source"] == "<stdin>" and c["closed_cleanly"]
        assert all(records_identical(a, b) for a, b in zip(original.records(), copy.records(), strict=True))
    info = cli("info", str(out)).stdout
    assert "host         vm (" in info and "ticks 41" in info and "interval     0.5 s" in info
    assert "imported     from <stdin>" in info
    summary = cli("summary", str(out)).stdout
    assert summary.splitlines()[1].split() == ["host", "vm"]


def test_a_selection_keeps_the_host_but_not_the_whole_recordings_stats(tmp_path, cli):
    out, _ = _copy(cli, tmp_path, "-e", "system")
    with open_trace(out) as copy:
        m = copy.manifest
        assert m["host"]["hostname"] == "vm" and m["readers"][0]["caps"]["units"]
        assert "ticks" not in m["stats"] and m["stats"]["records"] == 41
        assert m["start"]["wall_ns"] == copy.time_span()[0]


def test_no_manifest_writes_records_only(cli):
    proc = cli("replay", SAMPLE, "--speed", "max", "--no-manifest", "-e", "system")
    first = json.loads(proc.stdout.splitlines()[0])
    assert set(first) == {"mono_ns", "wall_ns", "entity", "source", "source_version", "fields", "error"}


def test_a_header_comes_first_or_not_at_all(records_factory):
    recs = records_factory(3)
    lines = [dumps_header({"host": {"hostname": "n1"}})] + [dumps_record(r) for r in recs]
    manifest, got = read_stream(lines)
    assert manifest == {"host": {"hostname": "n1"}}
    assert all(records_identical(a, b) for a, b in zip(got, recs, strict=True))
    assert len(list(iter_records(lines))) == len(recs)
    assert read_stream([dumps_record(r) for r in recs])[0] is None
    with pytest.raises(RecordError, match="line 2: a manifest header after the first line"):
        list(iter_records([dumps_record(recs[0]), lines[0]]))
    with pytest.raises(RecordError, match="exactly one key"):
        read_stream(['{"telemrec_manifest": {}, "extra": 1}'])


def test_replay_selects_by_reader_like_summary_and_export(tmp_path, cli):
    by_source = cli("replay", SAMPLE, "--speed", "max", "--no-manifest", "-r", "psutil", "-e", "system")
    by_glob = cli("replay", SAMPLE, "--speed", "max", "--no-manifest", "--reader", "ps*", "-e", "system")
    assert by_source.returncode == 0 and by_source.stdout == by_glob.stdout and by_source.stdout
    assert by_source.stderr == ""
    missing = cli("replay", SAMPLE, "--speed", "max", "-r", "nvml")
    assert missing.returncode == 2 and "no records from reader 'nvml'" in missing.stderr


def test_the_old_spellings_still_work_with_a_warning(cli):
    old = cli("replay", SAMPLE, "--speed", "max", "--no-manifest", "--source-name", "psutil", "-e", "system")
    new = cli("replay", SAMPLE, "--speed", "max", "--no-manifest", "--reader", "psutil", "-e", "system")
    assert old.returncode == 0 and old.stdout == new.stdout
    assert "--source-name/-s is deprecated: use --reader/-r" in old.stderr
    with pytest.deprecated_call():
        assert len(list(iter_replay(SAMPLE, sources="psutil", entities="system"))) == 41
    reader = ReplayReader()
    with pytest.deprecated_call():
        reader.open(ReaderConfig(source=SAMPLE, options={"sources": "psutil"}))
    reader.close()
    with pytest.raises(UsageError, match="readers and sources both given"):
        list(iter_replay(SAMPLE, sources="psutil", readers="psutil"))


@pytest.mark.parametrize("speed", ["fast", "asap", "quick"])
def test_an_unknown_speed_is_refused(cli, speed):
    proc = cli("replay", SAMPLE, "--speed", speed)
    assert proc.returncode == 2 and "is not a number, 'realtime' or 'max'" in proc.stderr and proc.stdout == ""


def test_both_json_parsers_give_the_same_records():
    """orjson (the [fast] extra) where it takes a line, the standard library where it does not
    (NaN and Infinity tokens, lone surrogates): the same records either way."""
    from telemrec import jsonl
    from telemrec.record import RawRecord, records_identical

    recs = [RawRecord(1, 2, "e", {"a": float("nan"), "b": float("-inf"), "c": 1, "d": 1.0}, "s"),
            RawRecord(3, 4, "pid:1\udc80", {"cmdline": "x\udcff", "big": 2**63 - 1, "neg": -(2**63)}, "s", "v", "err"),
            RawRecord(5, 6, "e", {"z": None, "s": "héllo", "f": 5e-324}, "s")]
    lines = [jsonl.dumps_record(r) for r in recs]
    fast = jsonl._fast_loads
    try:
        with_fast = [jsonl.loads_record(line) for line in lines]
        jsonl._fast_loads = None
        without = [jsonl.loads_record(line) for line in lines]
    finally:
        jsonl._fast_loads = fast
    assert fast is not None, "the test extra installs orjson"
    for a, b, c in zip(recs, with_fast, without):
        assert records_identical(a, b) and records_identical(a, c)

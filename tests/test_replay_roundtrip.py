"""Property: random record streams survive TraceWriter -> trace -> replay bit for bit, in process
and through `telemrec replay --speed max | telemrec import -`."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemrec.readers.replay import ReplayReader
from telemrec.record import RawRecord, ReaderConfig, records_identical
from telemrec.trace import TraceWriter, open_trace
from telemrec.trace._iterate import iter_records
from telemrec.trace.importer import import_manifest

INT64 = st.integers(-(2**63), 2**63 - 1)
# HDF5 strings cannot hold U+0000 and the journal's UTF-8 cannot hold lone surrogates
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
TEXT = st.text(CHARS, max_size=8)
NAMES = st.text(CHARS, min_size=1, max_size=6)
SPECIAL = st.sampled_from([0, -1, 1, 2**63 - 1, -(2**63), 0.0, -0.0, float("nan"), float("inf"), float("-inf"),
                           "", "ü✓", 5e-324, 1.7976931348623157e308])


def values(nan_payloads: bool):
    floats = st.floats(allow_nan=nan_payloads, allow_infinity=True)
    return st.one_of(st.none(), floats, INT64, SPECIAL, TEXT, st.decimals(places=3, allow_nan=False,
                                                                           allow_infinity=False).map(float))


@st.composite
def record_streams(draw, nan_payloads: bool = True, max_records: int = 60):
    """Records of a few sources and entities whose fields appear, vanish and change type;
    timestamps mostly advance, sometimes repeat (one tick), and wall_ns sometimes steps back."""
    sources = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    entities = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    fields = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    mono = draw(st.integers(-(2**62), 2**62))
    wall = draw(st.integers(0, 2**62))
    value = values(nan_payloads)
    out = []
    for _ in range(draw(st.integers(0, max_records))):
        mono += draw(st.sampled_from([0, 0, 1, 10**6, 10**8, 10**9]))
        wall += draw(st.sampled_from([0, 1, 10**8, 10**9, -(10**9)]))
        keys = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields)))
        out.append(RawRecord(mono, wall, draw(st.sampled_from(entities)), {k: draw(value) for k in keys},
                             draw(st.sampled_from(sources)), draw(st.sampled_from(["", "1.0", "é"])),
                             draw(st.none() | TEXT)))
    return out


def assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert records_identical(a, b), (a, b)


def write(path, records, chunk_rows=None):
    w = TraceWriter(path, import_manifest("property"), chunk_rows=chunk_rows)
    w.write(records)
    w.close()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_streams())
def test_replay_reader_returns_the_recorded_stream(records):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.h5")
        write(path, records)
        reader = ReplayReader()
        reader.open(ReaderConfig(source=path))
        got = []
        try:
            while (batch := reader.read()) is not None:
                got.extend(batch)
        finally:
            reader.close()
    assert_same(got, records)


@st.composite
def selections(draw, records):
    """A window on recorded wall times and subsets of the sources, entities and fields."""
    def subset(items):
        items = sorted(set(items))
        return draw(st.none() | st.lists(st.sampled_from(items), unique=True, max_size=len(items))) if items else None

    walls = sorted({r.wall_ns for r in records}) or [0]
    start = draw(st.none() | st.sampled_from(walls))
    end = draw(st.none() | st.sampled_from(walls))
    return {"start_wall_ns": start, "end_wall_ns": end,
            "sources": subset(r.source for r in records), "entity_names": subset(r.entity for r in records),
            "fields": subset(k for r in records for k in r.fields)}


def model(records, start_wall_ns, end_wall_ns, sources, entity_names, fields):
    """What a selection means, record by record."""
    out = []
    for r in records:
        if sources is not None and r.source not in sources:
            continue
        if entity_names is not None and r.entity not in entity_names:
            continue
        if start_wall_ns is not None and r.wall_ns < start_wall_ns:
            continue
        if end_wall_ns is not None and r.wall_ns >= end_wall_ns:
            continue
        kept = dict(r.fields)
        if fields is not None:
            kept = {k: v for k, v in r.fields.items() if k in fields}
            if not kept and r.error is None:
                continue
        out.append(RawRecord(r.mono_ns, r.wall_ns, r.entity, kept, r.source, r.source_version, r.error))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), record_streams(max_records=80), st.sampled_from([1, 2, 3, 7]), st.integers(1, 40))
def test_selection_over_chunk_and_merge_boundaries(data, records, chunk_rows, merge_rows):
    selection = data.draw(selections(records))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.h5")
        write(path, records, chunk_rows=chunk_rows)
        with open_trace(path) as trace:
            entities = {key: trace.entity(*key) for key in trace.entities()}
            everything = [r for b in iter_records(entities, merge_rows=merge_rows) for r in b]
            chosen = [r for b in iter_records(entities, merge_rows=merge_rows, **selection) for r in b]
    assert_same(everything, records)
    expected = model(records, **selection)
    if selection["fields"] is not None:
        # an entity that never held a chosen field is not replayed at all, even its error records
        holders = {(r.source, r.entity) for r in records if set(r.fields) & set(selection["fields"])}
        expected = [r for r in expected if (r.source, r.entity) in holders]
    assert_same(chosen, expected)


def test_an_entity_whose_records_hold_no_field_lists_none_and_a_field_selection_leaves_it_out():
    """Found by the property test above: an entity that only ever reported an error (no fields)
    shares a table with one that holds field "0"; it lists no fields (not its table's), so
    selecting "0" leaves it out, error records and all."""
    records = [RawRecord(0, 0, "00", {}, "0", "", ""), RawRecord(0, 0, "0", {}, "0", "", None),
               RawRecord(0, 0, "0", {"0": None}, "0", "", None)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.h5")
        write(path, records, chunk_rows=1)
        with open_trace(path) as trace:
            entities = {key: trace.entity(*key) for key in trace.entities()}
            assert {key: list(ent.fields) for key, ent in entities.items()} == {("0", "0"): ["0"], ("0", "00"): []}
            chosen = [r for b in iter_records(entities, fields=["0"]) for r in b]
            assert_same([r for b in iter_records(entities) for r in b], records)
    assert_same(chosen, [records[2]])


def _cli(*args):
    return [sys.executable, "-m", "telemrec", *args]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_streams(nan_payloads=False, max_records=40))
def test_cli_replay_piped_into_import_copies_the_records(records):
    # JSON has one NaN token: NaN payloads cannot cross JSON lines, so this stream holds plain NaN only
    with tempfile.TemporaryDirectory() as tmp:
        path, copy = os.path.join(tmp, "t.h5"), os.path.join(tmp, "copy.h5")
        write(path, records)
        replay = subprocess.Popen(_cli("replay", path, "--speed", "max"), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        importer = subprocess.Popen(_cli("import", "-", "-o", copy), stdin=replay.stdout, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        replay.stdout.close()
        _, import_err = importer.communicate(timeout=120)
        replay_err = replay.stderr.read()
        replay.stderr.close()
        assert replay.wait(timeout=60) == 0, replay_err
        assert importer.returncode == 0, import_err
        with open_trace(copy) as trace:
            got = list(trace.records())
    assert_same(got, records)

"""The fast decoder equals ColumnReader.read().as_float() bit for bit, on every encoding and range."""

import random

import numpy as np
import pytest

from telemrec.trace._fastread import NumericJob, decode_numeric, empty_block
from telemrec.analysis.frames import load
from telemrec.record import RawRecord
from telemrec.testing.legacy import write_legacy_trace
from telemrec.trace import open_trace

CHUNK = 16


def _values(rng: random.Random, n: int) -> dict[str, list]:
    counter, gauge = 10**12, 0.0
    cols = {"int_counter": [], "dec2": [], "xor_float": [], "mixed": [], "sparse": [], "with_none": [],
            "with_text": [], "negative": [], "big": [], "steady": [], "constant": [], "zero": [], "flat": [],
            "steady_dec": []}
    for i in range(n):
        # chunks whose stored residuals are all 0 in format 2 (width 0, values from the anchors)
        cols["steady"].append(10**12 + 7 * i)
        cols["constant"].append(-42)
        cols["zero"].append(0)
        cols["flat"].append(2.5)
        cols["steady_dec"].append(round(1000.25 + 0.5 * i, 2))
        counter += rng.randint(0, 5000)
        gauge = round(gauge + rng.uniform(-3, 3), 2)
        cols["int_counter"].append(counter)
        cols["dec2"].append(gauge)
        cols["xor_float"].append(rng.random() * 1e6)
        cols["mixed"].append(rng.randint(-5, 5) if i % 3 else rng.random())
        cols["sparse"].append(i * 7 if i % 5 == 0 else "ABSENT")
        cols["with_none"].append(None if i % 4 == 0 else rng.randint(0, 100))
        cols["with_text"].append("N/A" if i % 6 == 0 else float(i))
        cols["negative"].append(-rng.randint(0, 2**40))
        cols["big"].append(rng.choice([2**62, -(2**62), 0, 1]))
    return cols


def test_values_equal_what_was_recorded(small_chunk_trace):
    """Against the input itself (not the reference decoder, which shares the codec)."""
    path, n = small_chunk_trace
    cols = _values(random.Random(7), n)
    with open_trace(path) as trace:
        ent = trace.entity("src", "e")
        widths = {int(w) for name in ("steady", "constant", "zero", "flat") for w in ent.column(name).descriptors[:, 2]}
        assert widths == {0}, "these columns should exercise the anchors-only path"
        for name in ("int_counter", "dec2", "negative", "big", "steady", "constant", "zero", "flat", "steady_dec"):
            out = np.empty(n)
            decode_numeric([NumericJob(ent.column(name), 0, n, out)], threads=False)
            assert out.tolist() == [float(v) for v in cols[name]], name
            for lo, hi in ((3, n - 2), (CHUNK + 1, 3 * CHUNK - 1)):
                part = np.empty(hi - lo)
                decode_numeric([NumericJob(ent.column(name), lo, hi, part)], threads=False)
                assert part.tolist() == out[lo:hi].tolist(), (name, lo, hi)


def write_value_trace(path: str, seed: int, n: int) -> None:
    """A format 2 trace of one entity holding ``_values`` (every chunk encoding), in chunks of CHUNK rows."""
    rng = random.Random(seed)
    cols = _values(rng, n)
    recs = []
    for i in range(n):
        fields = {k: v[i] for k, v in cols.items() if v[i] != "ABSENT"}
        recs.append(RawRecord(10**9 + i * 10**9, 1_700_000_000 * 10**9 + i * 10**9 + rng.randint(0, 999), "e",
                              fields, "src", "1"))
    write_legacy_trace(path, recs, version=2, chunk_rows=CHUNK)


def copy_listing_widths(path: str, copy: str, widths: tuple[str, ...]) -> list[str]:
    """Copy a trace; the paths of its field datasets named like ``widths`` (``u8``, ...)."""
    import shutil

    import h5py

    shutil.copy(path, copy)
    found = []
    with h5py.File(copy, "r") as f:
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) and "/fields/" in name
                     and name.rsplit("/", 1)[-1] in widths else None)
    return found


@pytest.fixture(scope="module")
def small_chunk_trace(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fast") / "t.h5")
    n = 5 * CHUNK + 3
    write_value_trace(path, 7, n)
    return path, n


def _reference(col, lo, hi):
    return col.read(lo, hi).as_float()[0]


@pytest.mark.parametrize("raw", [True, False])
def test_equal_to_column_reader_on_random_ranges(small_chunk_trace, raw):
    path, n = small_chunk_trace
    rng = random.Random(1)
    with open_trace(path) as trace:
        ent = trace.entity("src", "e")
        ranges = [(0, n), (0, 1), (n - 1, n), (CHUNK - 1, CHUNK + 1), (CHUNK, 2 * CHUNK)]
        ranges += [tuple(sorted(rng.sample(range(n + 1), 2))) for _ in range(20)]
        for name in ent.fields:
            col = ent.column(name)
            jobs = [NumericJob(col, lo, hi, np.empty(hi - lo)) for lo, hi in ranges]
            decode_numeric(jobs, raw=raw, threads=False)
            for job, (lo, hi) in zip(jobs, ranges):
                expect = _reference(col, lo, hi)
                assert np.array_equal(job.out.view(np.int64), expect.view(np.int64)) or \
                    np.array_equal(job.out, expect, equal_nan=True), (name, lo, hi)


def test_int64_output_is_exact(small_chunk_trace):
    path, n = small_chunk_trace
    with open_trace(path) as trace:
        ent = trace.entity("src", "e")
        for name in ("_tidx", "_seq"):
            col = ent.column(name)
            for lo, hi in ((0, n), (3, n - 2), (CHUNK + 5, 3 * CHUNK + 1)):
                out = np.empty(hi - lo, np.int64)
                decode_numeric([NumericJob(col, lo, hi, out)])
                assert np.array_equal(out, col.read(lo, hi).ints)


def test_flags_for_none_and_text(small_chunk_trace):
    path, n = small_chunk_trace
    with open_trace(path) as trace:
        ent = trace.entity("src", "e")
        none_job = NumericJob(ent.column("with_none"), 0, n, np.empty(n))
        text_job = NumericJob(ent.column("with_text"), 0, n, np.empty(n))
        decode_numeric([none_job, text_job])
        assert none_job.has_none and not none_job.has_str
        assert text_job.has_str


def test_threads_give_the_same_result(small_chunk_trace):
    path, n = small_chunk_trace
    with open_trace(path) as trace:
        ent = trace.entity("src", "e")
        cols = [ent.column(f) for f in ent.fields]
        a = [NumericJob(c, 0, n, np.empty(n)) for c in cols]
        b = [NumericJob(c, 0, n, np.empty(n)) for c in cols]
        decode_numeric(a, threads=True)
        decode_numeric(b, threads=False)
        for x, y in zip(a, b):
            assert np.array_equal(x.out, y.out, equal_nan=True)


def test_wide_frame_matches_the_records(node_trace):
    """Every value of load() equals the record it came from (the slow, generic path)."""
    df = load(node_trace, align="exact")
    with open_trace(node_trace) as trace:
        for rec in trace.records():
            for name, value in rec.fields.items():
                got = df.at[df.index[df.index.asi8 == rec.wall_ns][0], (rec.source, rec.entity, name)]
                if value is None:
                    assert got is None or np.isnan(got)
                elif isinstance(value, str):
                    assert got == value
                else:
                    assert got == float(value)


def test_empty_block_is_writable():
    block = empty_block((3, 1 << 20))
    block[:] = 1.5
    assert block.sum() == 1.5 * 3 * (1 << 20)
    assert empty_block((2, 2)).shape == (2, 2)


def test_clean_chunks_are_read_directly_and_runs_are_capped(small_chunk_trace, monkeypatch):
    """The pread + inflate path serves every chunk of a clean file (h5py's reader is only the
    fallback), and capping the 2-D runs changes nothing."""
    from telemrec.trace import _fastread
    from telemrec.trace._columns import ColumnReader

    path, n = small_chunk_trace
    calls = []
    original = ColumnReader.stored_chunk
    monkeypatch.setattr(ColumnReader, "stored_chunk", lambda self, c: calls.append(c) or original(self, c))
    with open_trace(path) as trace:
        ent = trace.entity("src", "e")
        cols = [ent.column(f) for f in ent.fields]
        whole = [NumericJob(c, 0, n, np.empty(n)) for c in cols]
        decode_numeric(whole, threads=False)
        assert calls == []
        monkeypatch.setattr(_fastread, "_MAX_RUN", 2)
        capped = [NumericJob(c, 0, n, np.empty(n)) for c in cols]
        decode_numeric(capped, threads=True)
        for x, y in zip(whole, capped):
            assert np.array_equal(x.out.view(np.int64), y.out.view(np.int64))


def test_a_damaged_chunk_is_a_typed_error(small_chunk_trace, tmp_path):
    import h5py

    from telemrec.errors import TraceCorruptError

    path, n = small_chunk_trace
    damaged = str(tmp_path / "damaged.h5")
    found = copy_listing_widths(path, damaged, ("u8",))
    with h5py.File(damaged, "r") as f:
        dsid = f[found[0]].id
        info = dsid.get_chunk_info(0)
    with open(damaged, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    with open_trace(damaged) as trace:
        with pytest.raises(TraceCorruptError, match="cannot be read"):
            for name in trace.entity("src", "e").fields:
                col = trace.entity("src", "e").column(name)
                decode_numeric([NumericJob(col, 0, n, np.empty(n))])
    with pytest.raises(TraceCorruptError):
        load(damaged)


def test_damaged_kinds_and_strings_are_typed_errors_too(small_chunk_trace, tmp_path):
    import shutil

    import h5py

    from telemrec.errors import TraceCorruptError

    path, n = small_chunk_trace
    for member in ("with_none/kind", "with_text/kind"):
        damaged = str(tmp_path / f"{member.replace('/', '-')}.h5")
        shutil.copy(path, damaged)
        with h5py.File(damaged, "r") as f:
            found = []
            f.visititems(lambda name, obj: found.append(name) if name.endswith(member) else None)
            info = f[found[0]].id.get_chunk_info(0)
        with open(damaged, "r+b") as fh:
            fh.seek(info.byte_offset)
            fh.write(b"\xff" * info.size)
        with pytest.raises(TraceCorruptError, match="kinds of rows"):
            load(damaged)


def test_read_gives_each_column_its_own_writable_kinds(small_chunk_trace):
    path, n = small_chunk_trace
    with open_trace(path) as trace:
        col = trace.entity("src", "e").column("with_none")
        a, b = col.read(0, n), col.read(0, n)
        a.kinds[0] = 0
        assert b.kinds[0] != 0

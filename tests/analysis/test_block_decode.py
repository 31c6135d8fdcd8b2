"""``columnar.decode_block`` (the wide frame's decoder) and ``columnar.text_in``, against the
per-column path ``decode_numeric`` and the rows themselves, in formats 3 and 2."""

from __future__ import annotations

import random

import numpy as np
import pytest

from telemrec.record import RawRecord
from telemrec.testing.legacy import write_legacy_trace
from telemrec.trace import _fastread3, open_trace
from telemrec.trace.columnar import (MIXED, NO_TEXT, TEXT, BlockJob, NumericJob, decode_block, decode_numeric,
                                     text_in)
from telemrec.trace.importer import import_manifest
from telemrec.trace.writer import TraceWriter

from .test_fastread import _values

N = 700
META = ["_seq", "_error", "_source_version"]


def _records(seed: int) -> list[RawRecord]:
    """Six entities sharing a table; two of them come and go (runs in some segments only), one
    field is text throughout, one is missing from whole segments."""
    rng = random.Random(seed)
    cols = {name: _values(rng, N) for name in ("e0", "e1", "e2", "e3", "e4", "e5")}
    recs = []
    for i in range(N):
        for name, values in cols.items():
            if (name == "e4" and 150 <= i < 420) or (name == "e5" and i % 200 > 60):
                continue
            fields = {k: v[i] for k, v in values.items() if v[i] != "ABSENT"}
            fields["label"] = f"job-{i % 3}"
            if i >= 300:
                fields["late"] = i * 3
            recs.append(RawRecord(10**9 + i * 10**9, 1_700_000_000 * 10**9 + i * 10**9, name, fields, "src",
                                  "1", "boom" if i % 97 == 0 else None))
    return recs


@pytest.fixture(scope="module")
def v3_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("block") / "v3.h5")
    w = TraceWriter(path, import_manifest("test"), frame_records=500, seal_rows=500)
    w.write(_records(5))
    w.close()
    return path


@pytest.fixture(scope="module", params=[3, 2])
def trace_path(request, v3_path, tmp_path_factory):
    if request.param == 3:
        return v3_path
    path = str(tmp_path_factory.mktemp("block") / "v2.h5")
    write_legacy_trace(path, _records(5), version=2, chunk_rows=64)
    return path


def _ranges(rows: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    out = [(0, rows), (0, 1), (rows - 1, rows), (rows // 3, rows // 3)]
    for _ in range(6):
        a = rng.randrange(rows)
        out.append((a, rng.randrange(a, rows + 1)))
    return out


def _per_column(ent, name: str, lo: int, hi: int) -> np.ndarray:
    col = ent.meta_column(name) if name.startswith("_") else ent.field_column(name)
    out = np.empty(hi - lo)
    decode_numeric([NumericJob(col, lo, hi, out)], threads=False)
    return out


def _bits(x: np.ndarray) -> bytes:
    return np.ascontiguousarray(x).view(np.uint64).tobytes()


@pytest.mark.parametrize("threads", [False, True])
def test_blocks_equal_the_per_column_decoder(trace_path, threads):
    """Several entities' columns, rows in any order within shared blocks, any row range: bit for
    bit what decode_numeric gives column by column (NaN payloads included)."""
    with open_trace(trace_path) as trace:
        ents = [trace.entity("src", name) for name in ("e0", "e1", "e2", "e3", "e4", "e5")]
        for k, (lo, hi) in enumerate(_ranges(min(e.rows for e in ents), 11)):
            jobs, want = [], {}
            block = np.full((sum(len(e.fields) + len(META) for e in ents), hi - lo), 7.0)
            order = list(range(len(block)))
            random.Random(k).shuffle(order)
            at = iter(order)
            for e in ents:
                names = [f for f in e.fields if f != "label"] + META
                rows = [next(at) for _ in names]
                jobs.append(BlockJob(e, names, rows, lo, hi, block))
                want.update({row: _per_column(e, name, lo, hi) for name, row in zip(names, rows)})
            decode_block(jobs, threads=threads)
            for row, expected in want.items():
                assert _bits(block[row]) == _bits(expected), (trace_path, lo, hi, row)


def test_blocks_of_their_own_and_wider_rows(trace_path):
    """Each entity into its own block (as the wide frame does for entities missing rows), and rows
    longer than the range: only the first hi - lo values of a row are written."""
    with open_trace(trace_path) as trace:
        e = trace.entity("src", "e4")
        lo, hi = 5, e.rows - 3
        block = np.full((3, hi - lo + 4), 7.0)
        decode_block([BlockJob(e, ["int_counter", "with_none", "late"], [2, 0, 1], lo, hi, block)])
        assert _bits(block[2, :hi - lo]) == _bits(_per_column(e, "int_counter", lo, hi))
        assert _bits(block[0, :hi - lo]) == _bits(_per_column(e, "with_none", lo, hi))
        assert _bits(block[1, :hi - lo]) == _bits(_per_column(e, "late", lo, hi))
        assert (block[:, hi - lo:] == 7.0).all()


def test_the_numpy_path_gives_the_same_blocks(trace_path, monkeypatch):
    with open_trace(trace_path) as trace:
        ents = [trace.entity("src", name) for name in ("e0", "e4", "e5")]
        lo, hi = 0, min(e.rows for e in ents)
        names = [f for f in ents[0].fields if f != "label"]
        width = len(names)

        def blocks():
            block = np.empty((3 * width, hi - lo))
            decode_block([BlockJob(e, names, list(range(k * width, (k + 1) * width)), lo, hi, block)
                          for k, e in enumerate(ents)], threads=False)
            return block

        compiled = blocks()
        monkeypatch.setattr(_fastread3, "_ccodec", None)
        assert _bits(blocks()) == _bits(compiled)


def _text(col, lo, hi) -> int:
    kinds = col.read(lo, hi).kinds
    text, numbers = bool((kinds == 4).any()), bool(((kinds == 2) | (kinds == 3)).any())
    return (MIXED if numbers else TEXT) if text else NO_TEXT


def test_text_in_says_what_the_rows_hold(trace_path):
    """Exact, except that a range of None rows in a text column may still be text (in format 3
    it always is: known from the index)."""
    with open_trace(trace_path) as trace:
        for name in ("e0", "e4", "e5"):
            e = trace.entity("src", name)
            names = list(e.fields) + META
            for lo, hi in _ranges(e.rows, 3):
                for f, got in zip(names, text_in(e, names, lo, hi)):
                    col = e.meta_column(f) if f.startswith("_") else e.field_column(f)
                    exact, whole = _text(col, lo, hi), _text(col, 0, e.rows)
                    if got != exact:  # only a text column may be answered for as a whole
                        assert whole == got == TEXT, (name, f, lo, hi)
                    if whole == TEXT and trace.format_version >= 3:  # known from the index, unread
                        assert got == TEXT, (name, f, lo, hi)
                    # one column at a time (format 3 answers a table's columns without text from its index)
                    assert text_in(e, [f], lo, hi) == [got], (name, f, lo, hi)
            got = dict(zip(names, text_in(e, names, 0, e.rows)))
            assert (got["label"], got["with_text"], got["int_counter"], got["_error"]) == (TEXT, MIXED, NO_TEXT, TEXT)


def test_destinations_that_do_not_fit_are_refused(v3_path):
    """The compiled decoder checks every destination against its run and its block before writing."""
    _ccodec = _fastread3._ccodec
    if _ccodec is None:
        pytest.skip("the compiled codec is not built (scripts/test.sh requires it)")
    from telemrec.trace import _catalog as C

    with open_trace(v3_path) as trace:
        e = trace.entity("src", "e0")
        reader = e.reader
        seg = int(reader.runs_of(e.eid)[0][0])
        column = e.table.column_of("int_counter")
        row = reader.stream_row(seg, column)
        offset, size, crc, raw = (int(v) for v in reader.index.streams[row, C.ST_OFFSET:C.ST_RAW + 1])
        data = reader.read_bytes(offset, size)
        runs = np.ascontiguousarray(reader.segment_runs(seg), np.int64)
        out = np.empty((2, int(runs[0])))
        good = np.array([[0, 0, runs[0], 0, 0]], np.int64)
        assert _ccodec.decode_into(data, raw, crc, runs, good, [out], True) is None
        for bad in ([len(runs), 0, 1, 0, 0], [0, 0, runs[0] + 1, 0, 0], [0, 2, 1, 0, 0], [0, 0, 1, 1, 0],
                    [0, 0, 1, -1, 0], [0, 0, 2, 0, out.size - 1], [0, 0, 1, 0, -1]):
            with pytest.raises(ValueError, match="does not fit"):
                _ccodec.decode_into(data, raw, crc, runs, np.array([bad], np.int64), [out], True)
        with pytest.raises(ValueError, match="rows of"):
            _ccodec.decode_into(data, raw, crc, runs, np.zeros(4, np.int64), [out], True)
        with pytest.raises(ValueError, match="CRC"):
            _ccodec.decode_into(data, raw, crc ^ 1, runs, good, [out], True)
        with pytest.raises((ValueError, TypeError)):
            _ccodec.decode_into(data, raw, crc, runs, good, [out[:, ::2]], True)  # not contiguous


def test_a_block_the_rows_do_not_fit_is_a_usage_error(trace_path):
    with open_trace(trace_path) as trace:
        e = trace.entity("src", "e0")
        for out, rows, at in ((np.empty((2, 10)), [0], 0), (np.empty((2, 20))[:, ::2], [0], 0),
                              (np.empty((2, 12)), [2], 0), (np.empty((2, 12)), [0], 3),
                              (np.empty((2, 12), np.float32), [0], 0), (np.empty(24), [0], 0)):
            with pytest.raises(ValueError, match="do not fit"):
                decode_block([BlockJob(e, ["int_counter"], rows, 0, 11, out, at)])


def test_a_damaged_stream_fails_the_load_on_the_decode_threads(v3_path, tmp_path):
    """A stream whose bytes fail their CRC, decoded on the pool while load() builds the frame's
    indexes: a TraceCorruptError from load(), after every decode thread has ended."""
    import shutil

    import h5py

    from telemrec.analysis import load
    from telemrec.errors import TraceCorruptError
    from telemrec.trace import _catalog as C

    with open_trace(v3_path) as trace:
        e = trace.entity("src", "e0")
        seg = int(e.reader.runs_of(e.eid)[0][-1])
        row = e.reader.stream_row(seg, e.table.column_of("xor_float"))
        at = int(e.reader.index.streams[row, C.ST_OFFSET]) + 3
        assert _fastread3._WORKERS == 1 or sum(
            int(e.reader.index.streams[r, C.ST_RAW]) for r in range(len(e.reader.index.streams))) > _fastread3._SMALL
    copy = tmp_path / "damaged.h5"
    shutil.copy(v3_path, copy)
    with h5py.File(copy, "r") as f:
        where = f["streams"].id.get_offset() + at
    with open(copy, "r+b") as f:
        f.seek(where)
        byte = f.read(1)
        f.seek(where)
        f.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(TraceCorruptError, match="CRC"):
        load(copy)
    assert len(load(v3_path).columns)  # the pool is fine afterwards

"""`telemrec check` of a format 3 trace: what opening it does not already prove.

Opening checks the CRC-32s of the manifest, the catalog and the index, and that the
index is consistent with the catalog (``V3Reader._check_index``). Here: the streams
tile ``/streams`` exactly; each table's segments cover its rows in order; and, deep,
every stream is read, checked, inflated and decoded, its header must agree with the
index, and the records' sequence numbers, timestamps and wall ranges must agree with
the segments that claim them.
"""

from __future__ import annotations

import zlib

import numpy as np

from telemrec.errors import TelemrecError
from telemrec.trace import _catalog as C
from telemrec.trace import _streams


def check_v3(trace, report, deep: bool) -> None:
    reader = trace._reader
    cat, index = reader.catalog, reader.index
    seg, streams = index.segments, index.streams
    _check_tiling(reader, report)
    for table in range(len(cat.tables)):
        rows = seg[seg[:, C.SEG_TABLE] == table]
        if len(rows) and ((rows[0, C.SEG_ROW_LO] != 0)
                          or (rows[1:, C.SEG_ROW_LO] != rows[:-1, C.SEG_ROW_HI]).any()):
            report.problems.append(f"table {table}: its segments do not cover its rows in order")
    seqs = []
    total = 0
    for s in range(len(seg)):
        table = int(seg[s, C.SEG_TABLE])
        kind = cat.tables[table].kind
        if kind == C.RECORDS:
            total += reader.segment_rows(s)
        if not deep:
            continue
        a = int(seg[s, C.SEG_STREAM0])
        for k in range(int(seg[s, C.SEG_STREAMS])):
            _check_stream(reader, s, streams[a + k], report)
        if kind == C.RECORDS and reader.segment_rows(s):
            try:
                seq = reader.decode(s, 0).ints
                tidx = reader.decode(s, 1).ints
            except TelemrecError as exc:
                report.problems.append(exc.message)
                continue
            seqs.append(seq)
            if int(seq.min()) != seg[s, C.SEG_SEQ_LO] or int(seq.max()) + 1 != seg[s, C.SEG_SEQ_HI]:
                report.problems.append(f"segment {s}: its records' positions do not match its index row")
            time = reader.entities_time(cat.tables[table].source)
            if len(tidx) and (tidx.min() < 0 or tidx.max() >= time.rows):
                report.problems.append(f"segment {s}: _tidx points outside the source's time table")
                continue
            _, wall = time.gather(tidx)
            if int(wall.min()) != seg[s, C.SEG_WALL_LO] or int(wall.max()) != seg[s, C.SEG_WALL_HI]:
                report.problems.append(f"segment {s}: its wall-clock range does not match its records")
    records = (trace.manifest.get("stats") or {}).get("records")
    if records is not None and records != total:
        report.problems.append(f"manifest stats.records is {records}, the trace holds {total} records")
    if deep and seqs:
        allseq = np.sort(np.concatenate(seqs))
        if not np.array_equal(allseq, np.arange(len(allseq))):
            report.problems.append("record sequence numbers are not 0..N-1 without gaps or repeats")
    tables = len({cat.entities[e].table for e in cat.record_entities()})
    report.notes.append(f"{total} records in {len(reader.entities())} entities, {tables} tables, {len(seg)} segments")


def _check_tiling(reader, report) -> None:
    """Streams (and the index arrays after them) fill /streams exactly, without overlap."""
    streams = reader.index.streams
    spans = [(int(o), int(n)) for o, n in streams[:, [C.ST_OFFSET, C.ST_SIZE]].tolist()]
    size = reader.streams_size
    if size is None:
        return
    spans += [(int(v[0]), int(v[1])) for v in reader.index_spans]
    spans.sort()
    at = 0
    for offset, length in spans:
        if offset != at:
            report.problems.append(f"/streams: bytes {min(at, offset)}-{max(at, offset)} are "
                                   + ("claimed twice" if offset < at else "not part of any stream"))
            return
        at = offset + length
    if at != size:
        report.problems.append(f"/streams holds {size} bytes, its streams {at}")


def _check_stream(reader, segment: int, row: np.ndarray, report) -> None:
    where = f"segment {segment} column {int(row[C.ST_COLUMN])}"
    offset, size, crc, raw = (int(v) for v in row[C.ST_OFFSET:C.ST_RAW + 1])
    data = reader.read_bytes(offset, size)
    if len(data) != size or zlib.crc32(data) != crc:
        report.problems.append(f"{where}: the stream fails its CRC-32")
        return
    try:
        body = _streams.inflate(data, raw, where)
        header = _streams.HEADER.unpack_from(body)
        col = _streams.decode_body(body, reader.segment_runs(segment), where)
    except TelemrecError as exc:
        report.problems.append(exc.message)
        return
    encoding, scale, width = header[3], header[4], header[5]
    if (encoding, scale, width, _streams.kinds_mask(col.kinds)) != tuple(
            int(v) for v in row[[C.ST_ENCODING, C.ST_SCALE, C.ST_WIDTH, C.ST_KINDS]]):
        report.problems.append(f"{where}: the index's encoding, width or kinds disagree with the stream")

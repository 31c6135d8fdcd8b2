"""Streaming record iteration over a trace, in recorded order (seq)."""

from __future__ import annotations

import heapq
from typing import Iterator

from telemrec.record import RawRecord
from telemrec.trace.v1 import EntityReader

ABSENT_MARK = object()


def iter_entity_records(ent: EntityReader, lo: int, hi: int, fields: list[str] | None = None,
                        block: int = 65536) -> Iterator[tuple[int, RawRecord]]:
    """(seq, record) for rows [lo, hi) of one entity, decoded block by block."""
    names = ent.fields if fields is None else [f for f in fields if f in ent.fields]
    for a in range(lo, hi, block):
        b = min(a + block, hi)
        seq = ent.ints("_seq", a, b).tolist()
        mono = ent.ints("_mono_ns", a, b).tolist()
        wall = ent.ints("_wall_ns", a, b).tolist()
        versions = ent.read("_source_version", a, b).to_list()
        errors = ent.read("_error", a, b).to_list()
        cols = [ent.read(name, a, b).to_list(absent=ABSENT_MARK) for name in names]
        for i in range(b - a):
            values = {}
            for name, col in zip(names, cols):
                v = col[i]
                if v is not ABSENT_MARK:
                    values[name] = v
            yield seq[i], RawRecord(mono[i], wall[i], ent.name, values, ent.source, versions[i], errors[i])


def iter_records_with_seq(entities: dict, *, start_wall_ns=None, end_wall_ns=None, sources=None,
                          entity_names=None, fields=None) -> Iterator[tuple[int, RawRecord]]:
    """Merge the selected entities' records by seq; memory is one block per entity."""
    srcs = set(sources) if sources is not None else None
    ents = set(entity_names) if entity_names is not None else None
    wanted = list(fields) if fields is not None else None
    streams = []
    for (source, name), ent in sorted(entities.items()):
        if (srcs is not None and source not in srcs) or (ents is not None and name not in ents):
            continue
        lo, hi = ent.row_range(start_wall_ns, end_wall_ns)
        if hi > lo:
            streams.append(iter_entity_records(ent, lo, hi, wanted))
    if len(streams) == 1:
        yield from streams[0]
    else:
        yield from heapq.merge(*streams, key=lambda pair: pair[0])

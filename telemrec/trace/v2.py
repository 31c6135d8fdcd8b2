"""On-disk format version 2: format 1's layout with anchored delta chunks (docs/format.md).

A delta-encoded chunk (encodings 1, 2, 4, 5) keeps its first value and, for
delta-2, its first difference in the column's ``anchors`` (int64 [chunks, 2]
attribute, also in the entity's column directory) and stores 0 in their place,
so one large starting value (a counter at 80,256,567) no longer widens every
residual of the chunk to 4 bytes; a chunk whose stored values are all 0 has
width 0 and no data. On the 24 h reference trace that turns most CPU-time
chunks into 1-byte or empty ones: a third of the bytes to inflate on load.

Everything else (groups, names, ``$time``, directories, ticks, annotations,
filters) is format 1's, so the v1 module's classes do the work: a format 1
column has no anchors and decodes as before. The writer also records where
every chunk is (``_where``, ``telemrec.trace._chunkindex``): an optional addition
that readers of every version ignore or check before use, so not a new version.
"""

from __future__ import annotations

from telemrec.trace import v1

FORMAT_VERSION = 2


class V2Writer(v1.V1Writer):
    """Writes one complete v2 trace (the only version telemrec writes)."""

    FORMAT_VERSION = FORMAT_VERSION
    ANCHORED = True
    INDEXED = True


class V2Reader(v1.V1Reader):
    """Reads a v2 trace; columns find their anchors in the entity's column directory."""

"""Where a column's stored chunks are in the file: the chunk index (docs/format.md, section 3.5).

A column keeps each chunk in the dataset of its byte width (``u1``, ``u2``, ...),
compressed by HDF5 (shuffle + deflate, a zlib stream). ``locate`` asks HDF5 where
each chunk is (``chunk_iter``, one call per dataset); the writer stores the answer,
with each stream's Adler-32 trailer, in one ``_where`` dataset per entity, so a
reader can read the chunks directly without opening 600 datasets first.

An index row is (file offset, compressed size, Adler-32), -1 for a chunk that is
not stored (width 0) or not located. Readers use the index only while the file
has the size the writer recorded (root attribute ``_where_size``: an edit in place
that moves a chunk grows the file), and a row only for a stream that ends with its
Adler-32 (the checksum of the chunk's own data) and inflates to exactly the
chunk's size: a file rewritten by another tool (h5repack) moves chunks, a stale
offset then finds other bytes, and the reader locates the chunks through HDF5
again. (Like every checksum in a file, these guard against accidents, not against
someone rewriting index and data to match.)
"""

from __future__ import annotations

import os
from typing import Callable

import h5py
import numpy as np

WHERE_COLUMNS = 3  # offset, size, adler32
UNKNOWN = -1


def locate(open_dataset: Callable[[str], h5py.h5d.DatasetID], widths: np.ndarray, chunk_rows: int,
           accept: Callable[[h5py.h5d.DatasetID, int], bool] | None = None) -> np.ndarray:
    """int64 [chunks, 3]: (offset, size, -1) of each chunk in the dataset of its width ``widths[c]``;
    -1 rows for width 0 and for datasets ``accept`` turns down (e.g. other filters)."""
    where = np.full((len(widths), WHERE_COLUMNS), UNKNOWN, np.int64)
    for width in set(widths.tolist()):
        if not width:
            continue
        dsid = open_dataset(f"u{width}")
        if accept is not None and not accept(dsid, width):
            continue
        found = []
        dsid.chunk_iter(lambda info: found.append((info.chunk_offset[0] // chunk_rows, info.byte_offset, info.size))
                        if info.filter_mask == 0 and info.byte_offset is not None else None)
        if found:
            index = np.array(found, np.int64)
            index = index[(index[:, 0] < len(widths)) & (widths[np.minimum(index[:, 0], len(widths) - 1)] == width)]
            where[index[:, 0], :2] = index[:, 1:]  # a chunk is read from the dataset of its own width only
    return where


def add_checksums(where: np.ndarray, fd: int) -> None:
    """Fill in the Adler-32 trailer (the last 4 bytes, big-endian) of every located zlib stream."""
    for row in where:
        offset, size = int(row[0]), int(row[1])
        if offset >= 0 and size >= 6:
            row[2] = int.from_bytes(os.pread(fd, 4, offset + size - 4), "big")


def split(index: np.ndarray, counts: list[int]) -> list[np.ndarray] | None:
    """The rows of an entity's ``_where`` for each column (``counts`` chunks each, in directory
    order), or None when the index does not have that shape (then readers locate chunks themselves)."""
    if index.ndim != 2 or index.shape[1] != WHERE_COLUMNS or len(index) != sum(counts):
        return None
    # a row is used only with its checksum: one without (or with an impossible one) is "not located"
    bad = (index[:, 2] < 0) | (index[:, 2] > 0xFFFFFFFF) | (index[:, 1] <= 0) | (index[:, 0] < 0)
    if bad.any():
        index = index.copy()
        index[bad] = UNKNOWN
    bounds = np.cumsum([0] + counts)
    return [index[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

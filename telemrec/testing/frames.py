"""Comparing the frames ``telemrec.load`` builds, bit for bit."""

from __future__ import annotations

import numpy as np


def assert_frames_identical(a, b) -> None:
    """Raise AssertionError unless two frames have the same index and columns, float columns with
    the same bits (NaN payloads and -0.0 included, which ``DataFrame.equals`` does not tell apart)
    and equal other columns: e.g. a trace and its replay or upgrade, loaded."""
    assert a.columns.equals(b.columns), "columns differ"
    assert a.index.equals(b.index), "index differs"
    for c in a.columns:
        if a[c].dtype == np.float64:
            assert np.array_equal(a[c].to_numpy().view(np.int64), b[c].to_numpy().view(np.int64)), c
        else:
            assert a[c].equals(b[c]), c

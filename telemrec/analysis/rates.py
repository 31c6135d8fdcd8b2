"""Cumulative counters into per-second rates.

Counters are recorded raw (what the kernel, NVML or DCGM said). A rate is the
difference to the previous sample that holds a number, divided by the
difference of their *monotonic* timestamps (so a wall-clock step cannot make a
rate jump). A negative difference is a counter reset or wrap (reboot, driver
reload, 32-bit wrap): the rate at that row is NaN, never a clamped 0, because
nothing is known about what happened across it. The first sample has no
predecessor and is NaN too; so is any row whose value is missing.
"""

from __future__ import annotations

import numpy as np

__all__ = ["counter_rate", "counter_rates", "rate_unit"]


def counter_rate(values: np.ndarray, mono_ns: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Per-second rate of ``values`` (float64, NaN = missing) sampled at ``mono_ns`` (int64 ns).

    ``out`` may be ``values`` itself (computed in place).
    """
    values = np.asarray(values, np.float64)
    mono_ns = np.asarray(mono_ns, np.int64)
    if out is None:
        out = np.empty(len(values), np.float64)
    valid = ~np.isnan(values)
    if valid.all():
        dv = np.diff(values)
        dt = np.diff(mono_ns).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = dv * 1e9 / dt
        rate[(dv < 0) | (dt <= 0)] = np.nan
        out[1:] = rate
        out[:1] = np.nan
        return out
    idx = np.flatnonzero(valid)
    v, t = values[idx], mono_ns[idx]
    out[:] = np.nan
    if len(idx) >= 2:
        dv = np.diff(v)
        dt = np.diff(t).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = dv * 1e9 / dt
        rate[(dv < 0) | (dt <= 0)] = np.nan
        out[idx[1:]] = rate
    return out


def counter_rates(values: np.ndarray, mono_ns: np.ndarray) -> None:
    """``counter_rate`` of every row of ``values`` (float64 [counters, samples]), in place.

    The rows share one clock, so the time differences are computed once and the
    rows without missing values are done as one block; the result is identical
    to ``counter_rate`` row by row.
    """
    if values.ndim != 2 or not len(values) or values.shape[1] == 0:
        for row in values:
            counter_rate(row, mono_ns, out=row)
        return
    complete = ~np.isnan(values).any(axis=1)
    for i in np.flatnonzero(~complete).tolist():
        counter_rate(values[i], mono_ns, out=values[i])
    rows = np.flatnonzero(complete)
    if not len(rows):
        return
    dt = np.diff(np.asarray(mono_ns, np.int64)).astype(np.float64)
    block = values if len(rows) == len(values) else values[rows]
    dv = np.diff(block, axis=1)
    falls = dv < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        np.multiply(dv, 1e9, out=dv)
        np.divide(dv, dt, out=dv)
    dv[falls] = np.nan
    dv[:, dt <= 0] = np.nan
    block[:, 1:] = dv
    block[:, 0] = np.nan
    if block is not values:
        values[rows] = block


def rate_unit(unit: str | None) -> str:
    """The unit of a counter's rate: ``bytes`` -> ``bytes/s``; a count without unit -> ``1/s``."""
    return f"{unit}/s" if unit else "1/s"

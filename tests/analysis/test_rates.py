import numpy as np

from telemrec.analysis import counter_rate
from telemrec.analysis.rates import rate_unit


def test_rate_per_second_from_monotonic_time():
    values = np.array([0.0, 10.0, 30.0, 60.0])
    mono = np.array([0, 1, 2, 4], np.int64) * 10**9
    assert np.allclose(counter_rate(values, mono)[1:], [10.0, 20.0, 15.0])
    assert np.isnan(counter_rate(values, mono)[0])


def test_reset_is_nan_not_zero():
    out = counter_rate(np.array([100.0, 200.0, 5.0, 15.0]), np.arange(4, dtype=np.int64) * 10**9)
    assert np.isnan(out[2]) and out[3] == 10.0


def test_missing_values_rate_against_the_last_number():
    out = counter_rate(np.array([0.0, np.nan, 40.0]), np.arange(3, dtype=np.int64) * 10**9)
    assert np.isnan(out[1]) and out[2] == 20.0


def test_non_increasing_time_is_nan_and_in_place_works():
    values = np.array([0.0, 5.0, 9.0])
    counter_rate(values, np.array([0, 0, 10**9], np.int64), out=values)
    assert np.isnan(values[1]) and values[2] == 4.0


def test_units():
    assert rate_unit("bytes") == "bytes/s" and rate_unit(None) == "1/s" and rate_unit("") == "1/s"


def test_counter_rates_equal_counter_rate_row_by_row():
    from telemrec.analysis.rates import counter_rates

    rng = np.random.default_rng(3)
    n = 500
    mono = np.cumsum(rng.integers(0, 2 * 10**9, n)).astype(np.int64)  # includes dt == 0
    values = np.cumsum(rng.random((6, n)) * 100, axis=1)
    values[1, 40] = 0.0  # a reset
    values[2, [3, 99]] = np.nan  # missing samples take the row-by-row path
    values[4, :] = np.nan
    expect = np.array([counter_rate(row, mono) for row in values])
    got = values.copy()
    counter_rates(got, mono)
    assert np.array_equal(got, expect, equal_nan=True)
    assert np.isnan(got[1, 40]) and np.isnan(got[:, 0]).all()

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

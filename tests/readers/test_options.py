"""The shared reader-option parsers: CLI strings and Python values, and the errors they raise."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from telemrec.errors import UsageError
from telemrec.readers._options import bool_option, int_option, list_option, positive_float_option, reject_unknown
from telemrec.readers.registry import get_reader
from telemrec.record import ReaderConfig


def usage_error(fn, *args, **kwargs) -> UsageError:
    with pytest.raises(UsageError) as info:
        fn(*args, **kwargs)
    return info.value


# -- booleans -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (1, True), (0, False), (np.int64(1), True),
    ("1", True), ("0", False), ("true", True), (" TRUE ", True), ("False", False),
    ("yes", True), ("no", False), ("on", True), ("Off", False),
])
def test_bool_option_accepts_python_and_cli_spellings(value, expected):
    assert bool_option("once", value) is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, -1, 1.0, None, [True]])
def test_bool_option_refuses_anything_else(value):
    err = usage_error(bool_option, "once", value)
    assert err.message == f"option once={value!r} is not true or false"
    assert "-O once=true" in err.remediation


# -- integers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(0, 0), (1234, 1234), ("1234", 1234), (" 7 ", 7), (np.int32(5), 5)])
def test_int_option_accepts_integers_and_their_text(value, expected):
    result = int_option("pid", value, minimum=0)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", ["abc", "", "1.5", "1e6", 1.5, 2.0, True, False, None, [1]])
def test_int_option_refuses_what_is_not_a_whole_number(value):
    err = usage_error(int_option, "max_bytes", value, minimum=1, example=4096)
    assert err.message == f"option max_bytes={value!r} is not a whole number"
    assert err.remediation == "Pass a whole number >= 1, e.g. -O max_bytes=4096."


def test_int_option_minimum_is_inclusive_and_optional():
    assert int_option("count", 0, minimum=0) == 0
    assert usage_error(int_option, "count", "-1", minimum=0).message == "option count='-1' is below 0"
    assert int_option("offset", -5) == -5
    assert usage_error(int_option, "offset", "x").remediation == "Pass a whole number, e.g. -O offset=1."


def test_int_option_hint_replaces_the_remediation():
    err = usage_error(int_option, "uid", -1, minimum=0, hint="Pass a numeric uid or a user name.")
    assert err.remediation == "Pass a numeric uid or a user name."


# -- positive floats ----------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(2, 2.0), (0.5, 0.5), ("0.5", 0.5), (" 15 ", 15.0), ("1e-3", 0.001)])
def test_positive_float_option_accepts_numbers_and_their_text(value, expected):
    result = positive_float_option("timeout", value, example=5)
    assert result == expected and type(result) is float


@pytest.mark.parametrize("value", [0, "0", -1.0, "soon", "", "inf", float("inf"), "nan", float("nan"), True, None])
def test_positive_float_option_refuses_zero_negative_non_finite_and_non_numbers(value):
    err = usage_error(positive_float_option, "timeout", value, example=5)
    assert err.message == f"option timeout={value!r} is not a positive number"
    assert err.remediation == "Pass a finite number above 0, e.g. -O timeout=5."


# -- lists --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("gpu,UUID", ("gpu", "UUID")),
    (" gpu , UUID ,", ("gpu", "UUID")),
    ("a,,b", ("a", "b")),
    ("", ()),
    ([], ()),
    (["gpu", " UUID "], ("gpu", "UUID")),
    (("0", 2), ("0", "2")),
])
def test_list_option_splits_strips_and_accepts_sequences(value, expected):
    assert list_option("entity_labels", value) == expected


@pytest.mark.parametrize("value", [[""], ["a", " "], [1.5], [True], [None]])
def test_list_option_refuses_empty_or_non_text_items(value):
    err = usage_error(list_option, "gpus", value, example="0,2")
    assert "empty or non-text item" in err.message and "-O gpus=0,2" in err.remediation


@pytest.mark.parametrize("value", [5, 1.5, None, {"a": 1}, {"a"}])
def test_list_option_refuses_scalars_and_unordered_collections(value):
    err = usage_error(list_option, "entity_labels", value)
    assert err.message == f"option entity_labels={value!r} is neither a comma-separated string nor a list"


# -- unknown keys -------------------------------------------------------------------------------
def test_reject_unknown_passes_known_and_empty_options():
    reject_unknown({}, ("pid",), "psutil")
    reject_unknown({"pid": 1, "uss": "0"}, ("pid", "uss", "levels"), "psutil")


def test_reject_unknown_names_every_unknown_option_and_suggests_close_ones():
    err = usage_error(reject_unknown, {"timout": 5, "zzz": 1, "once": "1"}, ("timeout", "once", "max_bytes"),
                      "prometheus")
    assert err.message == "unknown prometheus option(s): timout, zzz"
    assert err.remediation == "Known options: timeout, once, max_bytes. Did you mean: timout -> timeout?"
    assert err.unknown == ["timout", "zzz"]


def test_reject_unknown_without_a_close_match_lists_the_known_options_only():
    err = usage_error(reject_unknown, {"zzz": 1}, ("pid",), "psutil")
    assert err.remediation == "Known options: pid."


def test_option_errors_survive_pickling():
    err = usage_error(reject_unknown, {"levle": 1}, ("level",), "psutil")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is UsageError and str(copy) == str(err) and copy.unknown == ["levle"]


# -- every reader uses them ---------------------------------------------------------------------
@pytest.mark.parametrize("reader_name", ["psutil", "nvml", "dcgmi", "prometheus"])
def test_every_reader_refuses_a_misspelt_option_before_touching_its_source(reader_name):
    reader = get_reader(reader_name)()
    try:
        err = usage_error(reader.open, ReaderConfig(options={"intreval": 1}))
        assert err.message == f"unknown {reader_name} option(s): intreval"
        assert err.remediation.startswith("Known options: ")
    finally:
        reader.close()

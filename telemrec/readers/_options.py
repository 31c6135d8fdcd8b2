"""Parsing of reader options, shared by the readers.

An option value is a Python object (``ReaderConfig(options={"pid": 1234})``) or the
string the CLI's ``-O key=value`` produced (``"1234"``); every helper takes both.
A value it cannot use raises ``UsageError`` naming the option and the value, with
a ``-O name=...`` example as remediation. ``None`` is not a value here: a reader
decides what an absent option means before calling these.
"""

from __future__ import annotations

import difflib
import math
import numbers
from typing import Any, Collection, Mapping

from telemrec.errors import UsageError

__all__ = ["bool_option", "choice_option", "int_option", "list_option", "positive_float_option", "reject_unknown"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _is_integer(value: Any) -> bool:
    # bool is an int subclass, but True is not a count, an id or a size
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value: Any, kind: type[int] | type[float]) -> int | float | None:
    """``value`` as ``kind`` when it is such a number or its text, else None."""
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            return None
    numeric = numbers.Integral if kind is int else numbers.Real
    return kind(value) if isinstance(value, numeric) and not isinstance(value, bool) else None


def bool_option(name: str, value: Any) -> bool:
    """True or False from a bool, 0/1, or 1/0, true/false, yes/no, on/off in any case."""
    if isinstance(value, bool):
        return value
    if _is_integer(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
    raise UsageError(f"option {name}={value!r} is not true or false",
                     f"Pass -O {name}=true or -O {name}=false (1/0, yes/no and on/off work too).")


def choice_option(name: str, value: Any, choices: Collection[str]) -> str:
    """One of ``choices`` (a string, compared without surrounding spaces and case)."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in choices:
        raise UsageError(f"option {name}={value!r} is not one of {', '.join(choices)}",
                         f"Pass -O {name}={next(iter(choices))} (or another of {', '.join(choices)}).")
    return text


def int_option(name: str, value: Any, *, minimum: int | None = None, example: int | str = 1,
               hint: str | None = None) -> int:
    """A whole number (an integer or its decimal text) not below ``minimum``.

    ``hint`` replaces the default remediation where the option takes more than numbers.
    """
    remediation = hint or (f"Pass a whole number{'' if minimum is None else f' >= {minimum}'}, "
                           f"e.g. -O {name}={example}.")
    number = _number(value, int)
    if number is None:
        raise UsageError(f"option {name}={value!r} is not a whole number", remediation)
    if minimum is not None and number < minimum:
        raise UsageError(f"option {name}={value!r} is below {minimum}", remediation)
    return number


def positive_float_option(name: str, value: Any, *, example: float | str) -> float:
    """A finite number above zero (a number or its text), e.g. a timeout in seconds."""
    number = _number(value, float)
    if number is None or not 0 < number < math.inf:  # also refuses NaN
        raise UsageError(f"option {name}={value!r} is not a positive number",
                         f"Pass a finite number above 0, e.g. -O {name}={example}.")
    return number


def list_option(name: str, value: Any, *, example: str = "a,b") -> tuple[str, ...]:
    """A comma-separated string, or a list or tuple of strings and integers, as stripped strings.

    Empty pieces of a string are dropped ("a,,b," is two items); an empty item in a
    list is an error, as it can only be a mistake. The result may be empty.
    """
    remediation = f"Pass names separated by commas, e.g. -O {name}={example}, or a list of strings."
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if not isinstance(value, (list, tuple)):
        raise UsageError(f"option {name}={value!r} is neither a comma-separated string nor a list", remediation)
    items = []
    for item in value:
        text = str(item).strip() if isinstance(item, str) or _is_integer(item) else ""
        if not text:
            raise UsageError(f"option {name}={value!r} has an empty or non-text item {item!r}", remediation)
        items.append(text)
    return tuple(items)


def reject_unknown(options: Mapping[str, Any], known: Collection[str], reader_name: str) -> None:
    """Raise UsageError naming every option the reader does not take, so a typo does not pass silently."""
    unknown = sorted(set(options) - set(known))
    if not unknown:
        return
    guesses = [f"{name} -> {close[0]}" for name in unknown if (close := difflib.get_close_matches(name, known, n=1))]
    did_you_mean = f" Did you mean: {', '.join(guesses)}?" if guesses else ""
    raise UsageError(f"unknown {reader_name} option(s): {', '.join(unknown)}",
                     f"Known options: {', '.join(known)}.{did_you_mean}", unknown=unknown)

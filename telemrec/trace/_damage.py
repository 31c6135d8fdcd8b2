"""Damaged bytes become ``TraceCorruptError``, wherever the readers of every format meet them.

A damaged file fails deep inside h5py, NumPy, ``json`` or the codec with whatever exception
the failing call raises (``KeyError``, ``OSError``, ``ValueError``, an ``AttributeError`` on a
dangling HDF5 link, ...). ``typed_reads`` wraps every public method and property of a reader
class so that such failures leave it as one typed error naming the file and what failed; a
``TelemrecError`` passes through as it is. (Fuzzing thousands of mutants of every sample
trace, ``benchmarks/bench_fuzz.py``, is what these classes are checked against.)
"""

from __future__ import annotations

import functools
import inspect
import json
import zlib

from telemrec.errors import TelemrecError, TraceCorruptError

LOW_LEVEL = (AttributeError, KeyError, IndexError, OSError, ValueError, TypeError, RuntimeError, OverflowError,
             UnicodeError, json.JSONDecodeError, zlib.error, RecursionError, MemoryError, ZeroDivisionError)


def _where(obj) -> str:
    for getter in (lambda o: o.what, lambda o: _where(o.reader), lambda o: o.h5.filename,
                   lambda o: o.group.file.filename, lambda o: o.file.filename):
        try:
            where = getter(obj)
        except Exception:  # noqa: BLE001 - damaged objects fail in any way; try the next
            continue
        if where:
            return str(where)
    return "the trace"


def corrupt(obj, what: str, exc: BaseException, args: tuple = ()) -> TraceCorruptError:
    path = _where(obj)
    for arg in args if path == "the trace" else ():  # a constructor that failed early: its arguments know
        path = _where(arg)
        if path != "the trace":
            break
    detail = str(exc)[:300] or type(exc).__name__
    return TraceCorruptError(f"{path}: {what} failed on damaged data ({type(exc).__name__}: {detail})", path=path)


def _wrap(name: str, function):
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def generator(self, *args, **kwargs):
            try:
                yield from function(self, *args, **kwargs)
            except TelemrecError:
                raise
            except LOW_LEVEL as exc:
                raise corrupt(self, name, exc) from exc
        generator._typed_reads = True
        return generator

    @functools.wraps(function)
    def method(self, *args, **kwargs):
        try:
            return function(self, *args, **kwargs)
        except TelemrecError:
            raise
        except LOW_LEVEL as exc:
            raise corrupt(self, name, exc, args) from exc
    method._typed_reads = True
    return method


def typed_reads(cls):
    """Class decorator: every public method and property (and ``__init__``), its own or inherited from
    a mixin, raises only typed errors."""
    members: dict = {}
    for klass in reversed(cls.__mro__[:-1]):
        members.update(vars(klass))
    for name, value in members.items():
        if getattr(getattr(value, "fget", value), "_typed_reads", False):
            continue
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(value, property):
            setattr(cls, name, property(_wrap(name, value.fget), value.fset, value.fdel, value.__doc__))
        elif inspect.isfunction(value):
            setattr(cls, name, _wrap(name if name != "__init__" else f"opening a {cls.__name__}", value))
    return cls

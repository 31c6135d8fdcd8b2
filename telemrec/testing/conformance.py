"""``ReaderConformance``: the contract every reader's tests inherit.

Subclass it in a pytest module and provide two methods::

    class TestMyReader(ReaderConformance):
        def make_reader(self):            # a fresh, unopened reader (with fakes injected)
            return MyReader(source=fake)
        def make_config(self):            # how to open it for a short test
            return ReaderConfig(source="...", interval=0.05)

Optional: ``ticks`` (how many reads to take), ``expect_records`` (False for a
reader that may legitimately produce nothing in a few ticks), and
``make_failing_config`` (a config whose open() must raise a ReaderError).
"""

from __future__ import annotations

import math
import pickle
import time

import pytest

from telemrec.errors import ReaderClosedError, ReaderError, TelemrecError
from telemrec.jsonl import dumps_record, loads_record
from telemrec.readers.base import Reader
from telemrec.record import RawRecord, ReaderCaps, ReaderConfig, records_identical, validate_record

__all__ = ["ReaderConformance"]


class ReaderConformance:
    ticks = 3
    expect_records = True

    def make_reader(self):  # pragma: no cover - provided by subclasses
        # the one hook every subclass must provide; reaching this is a mistake in the test module
        raise TypeError(f"{type(self).__name__} must define make_reader() returning a fresh, unopened reader")

    def make_config(self) -> ReaderConfig:
        return ReaderConfig(interval=0.05)

    def make_failing_config(self) -> ReaderConfig | None:
        return None

    # -- helpers -----------------------------------------------------------------------
    def _collect(self, reader) -> list[RawRecord]:
        out: list[RawRecord] = []
        for _ in range(self.ticks):
            batch = reader.read()
            if batch is None:
                break
            assert isinstance(batch, list), f"read() must return a list or None, got {type(batch).__name__}"
            out.extend(batch)
            time.sleep(self.make_config().interval)
        return out

    # -- the contract ------------------------------------------------------------------
    def test_is_a_reader(self):
        reader = self.make_reader()
        assert isinstance(reader, Reader)
        assert reader.name and isinstance(reader.name, str)
        assert isinstance(reader.description, str) and reader.description
        assert reader.name in repr(reader)
        ok, reason = type(reader).availability()
        assert isinstance(ok, bool) and isinstance(reason, str)

    def test_read_before_open_raises(self):
        reader = self.make_reader()
        with pytest.raises(ReaderClosedError):
            reader.read()

    def test_close_is_safe_without_open_and_twice(self):
        reader = self.make_reader()
        reader.close()
        reader.close()

    def test_records_follow_the_contract(self):
        reader = self.make_reader()
        reader.open(self.make_config())
        try:
            caps = reader.caps
            assert isinstance(caps, ReaderCaps)
            records = self._collect(reader)
        finally:
            reader.close()
        if self.expect_records:
            assert records, "the reader produced no record in its test ticks"
        now_wall = time.time_ns()
        last_mono: dict[tuple[str, str], int] = {}
        for rec in records:
            validate_record(rec)
            assert abs(rec.wall_ns - now_wall) < 10 * 365 * 86400 * 10**9 or rec.wall_ns > 0
            key = (rec.source, rec.entity)
            assert rec.mono_ns >= last_mono.get(key, rec.mono_ns), f"mono_ns went backwards for {key}"
            last_mono[key] = rec.mono_ns
            if not caps.dynamic_fields and caps.fields:
                unknown = set(rec.fields) - set(caps.fields)
                assert not unknown, f"fields not declared in caps: {sorted(unknown)[:5]}"
            for value in rec.fields.values():
                assert value is None or type(value) in (int, float, str)

    def test_caps_are_consistent(self):
        reader = self.make_reader()
        reader.open(self.make_config())
        try:
            caps = reader.caps
        finally:
            reader.close()
        assert caps.kind
        if not caps.dynamic_fields:
            assert set(caps.units) <= set(caps.fields)
            assert set(caps.counters) <= set(caps.fields)
        assert ReaderCaps.from_dict(caps.to_dict()) == ReaderCaps.from_dict(caps.to_dict())

    def test_records_survive_the_jsonl_schema(self):
        reader = self.make_reader()
        reader.open(self.make_config())
        try:
            records = self._collect(reader)
        finally:
            reader.close()
        for rec in records:
            assert records_identical(loads_record(dumps_record(rec)), rec)

    def test_read_after_close_raises(self):
        reader = self.make_reader()
        reader.open(self.make_config())
        reader.close()
        with pytest.raises(ReaderClosedError):
            reader.read()

    def test_identity_is_json_serialisable(self):
        import json

        reader = self.make_reader()
        reader.open(self.make_config())
        try:
            json.dumps(reader.identity())
            assert isinstance(reader.source_version, str)
        finally:
            reader.close()

    def test_failed_open_raises_typed_error_and_close_is_safe(self):
        config = self.make_failing_config()
        if config is None:
            pytest.skip("this reader declares no failing configuration")
        reader = self.make_reader()
        with pytest.raises(ReaderError) as info:
            reader.open(config)
        assert isinstance(info.value, TelemrecError)
        assert info.value.remediation, "errors must carry a remediation hint"
        restored = pickle.loads(pickle.dumps(info.value))
        assert str(restored) == str(info.value)
        reader.close()
        reader.close()

    def test_floats_are_finite_or_explicit(self):
        reader = self.make_reader()
        reader.open(self.make_config())
        try:
            records = self._collect(reader)
        finally:
            reader.close()
        for rec in records:
            for key, value in rec.fields.items():
                if isinstance(value, float) and not math.isfinite(value):
                    # allowed only when the source itself said NaN/Inf; readers must not invent them
                    assert rec.source in ("prometheus", "replay"), f"{key} became {value}"

"""Replay: a recorded trace re-emitted through the reader protocol, exact, paced and seekable.

Records come back exactly as recorded (timestamps, entities, fields, values, order),
optionally narrowed to a time window, sources, entities and fields, looped, and with
timestamps shifted to "now". Pacing follows the recorded ``mono_ns`` spacing against
the replayer's own monotonic clock, divided by ``speed``; records sharing one
``mono_ns`` (one reader tick) go out together. docs/replay.md has the details.

Three ways in:

- ``iter_replay(path, ...)``: a generator of records (as fast as possible by default);
- ``ReplayReader``: the reader protocol (``-O key=value`` options, see ``OPTIONS``);
- ``telemrec replay PATH`` (telemrec/cli/replay.py): JSON lines, real time by default.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from fractions import Fraction
from itertools import chain, groupby
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable, Iterator

from telemrec.errors import ReplayError, SourceError, TraceError, UsageError
from telemrec.readers.base import BaseReader
from telemrec.record import RawRecord, ReaderCaps, ReaderConfig

if TYPE_CHECKING:
    from telemrec.trace import Trace

__all__ = ["OPTIONS", "Replay", "ReplayReader", "iter_replay", "parse_loop", "parse_names", "parse_speed",
           "parse_time"]

OPTIONS = {
    "speed": "max (as fast as possible, the default here), 1 (real time) or a factor such as 10",
    "start": "ISO 8601 time, +DURATION from the trace's first record, or -DURATION before its last",
    "end": "same forms as start; exclusive",
    "readers": "comma-separated readers (record sources or reader labels, glob patterns) whose records replay",
    "entities": "comma-separated entity names or glob patterns (gpu*)",
    "fields": "comma-separated field names or glob patterns",
    "loop": "how many passes (a positive integer) or forever",
    "rebase_now": "true to shift timestamps so the first record is now",
    "sources": "deprecated spelling of readers",
}

_MONO = attrgetter("mono_ns")
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
                   "h": 3600 * 10**9, "d": 86400 * 10**9}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_FRACTION = re.compile(r"(?<=:\d\d)[.,](\d+)")


# -- option parsing (strings come from -O key=value and the CLI) ------------------------------------

def parse_speed(value: Any) -> float | None:
    """None for as fast as possible ("max", "inf"), else a factor > 0 (1 = real time)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("max", "inf", "infinity"):
            return None
        if text in ("realtime", "real-time", "real"):
            return 1.0
        text = text[:-1] if text.endswith("x") else text
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"speed {value!r} is not a number, 'realtime' or 'max'",
                             "Use --speed 1 (real time), --speed 10 (ten times faster) or --speed max "
                             "(as fast as possible).") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"speed must be a number or 'max', got {value!r}", "For example speed=10 or speed=max.")
    if value == float("inf"):
        return None
    if not 1e-6 <= value <= 1e9:
        raise UsageError(f"speed must lie between 1e-6 and 1e9 (or be max), got {value!r}",
                         "Use 1 for real time, 0.5 for half speed, max for no pacing.")
    return float(value)


def parse_loop(value: Any) -> int | None:
    """Number of passes (>= 1), or None for forever."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("forever", "inf", "infinite", "infinity"):
            return None
        if not text.isdigit():
            raise UsageError(f"loop {value!r} is not a positive integer or 'forever'",
                             "Use --loop 3 or --loop forever.")
        value = int(text)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"loop must be a positive integer or 'forever', got {value!r}",
                         "Use --loop 3 or --loop forever.")
    return value


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", ""):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name} must be true or false, got {value!r}", f"Write -O {name}=true or -O {name}=false.")


def parse_names(value: Any) -> list[str] | None:
    """A list of names from a list, or from a comma-separated string; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    else:
        names = [str(part) for part in value]
    names = [n for n in names if n]
    return names or None


def parse_duration_ns(text: str) -> int:
    """'90' (seconds), '1.5s', '5m', '1h30m', '250ms' -> nanoseconds."""
    if _NUMBER.fullmatch(text):
        return int(Fraction(text) * 10**9)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"{text!r} is not a duration",
                         "Write durations like 30s, 5m, 1h30m or 250ms (a bare number is seconds).")
    return sum(int(Fraction(n) * _DURATION_UNITS[u]) for n, u in parts)


def parse_time(value: Any, *, first_wall_ns: int | None, last_wall_ns: int | None) -> int | None:
    """A window bound as wall_ns.

    ``+DURATION`` counts from the trace's first record, ``-DURATION`` back from its last;
    anything else is ISO 8601 (a time without offset is local time); an int is wall_ns.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        return _datetime_ns(value)
    text = str(value).strip()
    if text and text[0] in "+-":
        offset = parse_duration_ns(text[1:])
        anchor = first_wall_ns if text[0] == "+" else last_wall_ns
        if anchor is None:
            raise ReplayError(f"time {text!r} is relative, but the trace holds no record to count from",
                              "Use an absolute ISO 8601 time, or replay a trace that holds records.")
        return anchor + offset if text[0] == "+" else anchor - offset
    # datetime keeps microseconds: take the fraction of a second apart to keep nanoseconds
    fraction = _FRACTION.search(text)
    nanos = 0
    if fraction:
        nanos = int(fraction.group(1)[:9].ljust(9, "0"))
        text = text[:fraction.start()] + text[fraction.end():]
    try:
        when = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text))
    except ValueError:
        raise UsageError(f"time {value!r} is neither ISO 8601 nor +/-DURATION",
                         "Write e.g. 2026-03-02T01:00:00Z, +5m (after the first record) "
                         "or -30s (before the last).") from None
    return _datetime_ns(when) + nanos


def _datetime_ns(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as `date` would read it
    delta = when - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _format_ns(wall_ns: int | None) -> str:
    if wall_ns is None:
        return "?"
    when = datetime.fromtimestamp(wall_ns / 1e9, timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the replay itself ----------------------------------------------------------------------------

class Replay:
    """A replay of an open trace: the selection resolved against it, then records in recorded
    order (``batches``), one instant at a time (``instants``) or paced (``paced``).

    ``speed`` None is as fast as possible. Each loop pass after the first shifts mono_ns and
    wall_ns by the pass's span plus one sampling interval, so timestamps keep increasing.
    ``rebase_now`` shifts both clocks so the first record is stamped with the moment it is
    emitted. ``clock``/``wall_clock``/``sleep`` are injectable for tests.
    """

    def __init__(self, trace: "Trace", *, speed: Any = None, start: Any = None, end: Any = None,
                 entities: Any = None, fields: Any = None, readers: Any = None, loop: Any = 1,
                 rebase_now: Any = False, fallback_interval_ns: int = 10**9, sources: Any = None,
                 clock: Callable[[], int] = time.monotonic_ns, wall_clock: Callable[[], int] = time.time_ns,
                 sleep: Callable[[float], Any] = time.sleep):
        self.trace = trace
        self.speed = parse_speed(speed)
        self.loop = parse_loop(loop)
        self.rebase_now = parse_bool(rebase_now, "rebase_now")
        self.fallback_interval_ns = fallback_interval_ns
        self._clock, self._wall_clock, self._sleep = clock, wall_clock, sleep
        from telemrec.trace._iterate import entity_map

        self._entities = entity_map(trace)
        self.first_wall_ns, self.last_wall_ns = trace.time_span()
        self.start_wall_ns = parse_time(start, first_wall_ns=self.first_wall_ns, last_wall_ns=self.last_wall_ns)
        self.end_wall_ns = parse_time(end, first_wall_ns=self.first_wall_ns, last_wall_ns=self.last_wall_ns)
        if self.start_wall_ns is not None and self.end_wall_ns is not None and self.end_wall_ns <= self.start_wall_ns:
            raise UsageError(f"end ({_format_ns(self.end_wall_ns)}) is not after "
                             f"start ({_format_ns(self.start_wall_ns)})",
                             "The window is [start, end): give an end later than the start.")
        self.sources = self._resolve_sources(parse_names(_readers_argument(readers, sources, warn=False)))
        self.entities = self._resolve("entity", parse_names(entities),
                                      sorted({e for s, e in self._entities if self._source_ok(s)}))
        self.fields = self._resolve("field", parse_names(fields),
                                    sorted({f for (s, e), ent in self._entities.items()
                                            if self._source_ok(s) and self._entity_ok(e) for f in ent.fields}))
        self._check_window()

    # -- selection --------------------------------------------------------------------------
    def _source_ok(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    def _entity_ok(self, entity: str) -> bool:
        return self.entities is None or entity in self.entities

    def _resolve_sources(self, wanted: list[str] | None) -> list[str] | None:
        """The record sources that ``wanted`` (sources or reader labels, globs) names, as ``load`` selects them."""
        from telemrec.analysis._select import reader_matches

        if wanted is None:
            return None
        known = sorted({s for s, _ in self._entities})
        out: dict[str, None] = {}
        missing = []
        for pattern in wanted:
            hits = [s for s in known if reader_matches(self.trace.manifest, s, [pattern])]
            out.update(dict.fromkeys(hits))
            if not hits:
                missing.append(pattern)
        if missing:
            raise ReplayError(f"{self.trace.path} has no records from reader {missing[0]!r} "
                              f"(it has: {_listing(known)})",
                              "Pick readers from `telemrec info PATH`; glob patterns such as 'nv*' work.",
                              missing=missing)
        return list(out)

    def _resolve(self, what: str, patterns: list[str] | None, known: list[str]) -> list[str] | None:
        """Exact names stay; glob patterns expand against ``known``; a pattern that matches
        nothing is an error (a typo would otherwise replay nothing, or everything forever)."""
        if patterns is None:
            return None
        out: dict[str, None] = {}
        for pattern in patterns:
            if pattern in known:
                out[pattern] = None
                continue
            hits = [name for name in known if fnmatchcase(name, pattern)]
            if not hits:
                raise ReplayError(f"no {what} {pattern!r} in {self.trace.path} within the selection "
                                  f"(it has: {_listing(known)})",
                                  f"Pick {what} names from `telemrec info PATH`; glob patterns such as 'gpu*' work.")
            out.update(dict.fromkeys(hits))
        return list(out)

    def _check_window(self) -> None:
        if self.start_wall_ns is None and self.end_wall_ns is None:
            return
        for (source, entity), ent in self._entities.items():
            if self._source_ok(source) and self._entity_ok(entity):
                lo, hi = ent.row_range(self.start_wall_ns, self.end_wall_ns)
                if hi > lo:
                    return
        raise ReplayError(f"no record of the selection lies in [{_format_ns(self.start_wall_ns)}, "
                          f"{_format_ns(self.end_wall_ns)}); the trace spans {_format_ns(self.first_wall_ns)} to "
                          f"{_format_ns(self.last_wall_ns)}",
                          "Widen --start/--end; +5m counts from the first record, -5m back from the last.")

    def selected_entities(self) -> list[tuple[str, str]]:
        from telemrec.trace._iterate import select_entities

        return [(ent.source, ent.name) for ent, _ in select_entities(
            self._entities, sources=self.sources, entity_names=self.entities, fields=self.fields)]

    # -- records --------------------------------------------------------------------------
    def _pass(self) -> Iterator[list[RawRecord]]:
        from telemrec.trace._iterate import iter_records

        return iter_records(self._entities, start_wall_ns=self.start_wall_ns, end_wall_ns=self.end_wall_ns,
                            sources=self.sources, entity_names=self.entities, fields=self.fields)

    def sampling_interval_ns(self) -> int:
        """The shortest typical spacing of one selected entity's records (median of its first
        chunk's positive mono_ns steps): the gap put between loop passes."""
        import numpy as np

        best = None
        for key in self.selected_entities():
            ent = self._entities[key]
            lo, hi = ent.row_range(self.start_wall_ns, self.end_wall_ns)
            mono, _ = ent.timestamps(lo, min(hi, lo + ent.chunk_rows))
            steps = np.diff(mono)
            steps = steps[steps > 0]
            if len(steps):
                typical = int(np.median(steps))
                best = typical if best is None else min(best, typical)
        return best if best is not None else self.fallback_interval_ns

    def batches(self) -> Iterator[list[RawRecord]]:
        """Lists of records in recorded order, unpaced, shifted for loops and rebase."""
        passes = 0
        shift_mono = shift_wall = 0
        rebased = not self.rebase_now
        while self.loop is None or passes < self.loop:
            lo = hi = None
            emitted = 0
            for batch in self._pass():
                if not batch:
                    continue
                if not rebased:
                    shift_mono = self._clock() - batch[0].mono_ns
                    shift_wall = self._wall_clock() - batch[0].wall_ns
                    rebased = True
                if self.loop != 1:
                    monos = [r.mono_ns for r in batch]
                    lo = min(monos) if lo is None else min(lo, min(monos))
                    hi = max(monos) if hi is None else max(hi, max(monos))
                emitted += len(batch)
                yield _shifted(batch, shift_mono, shift_wall) if shift_mono or shift_wall else batch
            passes += 1
            if not emitted:
                return  # an empty selection would loop forever doing nothing
            if self.loop is None or passes < self.loop:
                step = hi - lo + self.sampling_interval_ns()
                shift_mono += step
                shift_wall += step

    def instants(self) -> Iterator[list[RawRecord]]:
        """Consecutive records sharing one mono_ns, as lists, unpaced."""
        for _, group in groupby(chain.from_iterable(self.batches()), key=_MONO):
            yield list(group)

    def paced(self) -> Iterator[list[RawRecord]]:
        """Instants at their due time (``speed`` set), or large batches as fast as possible."""
        if self.speed is None:
            yield from self.batches()
            return
        pacer = Pacer(self.speed, self._clock, self._sleep)
        for group in self.instants():
            pacer.wait(group[0].mono_ns)
            yield group

    def __iter__(self) -> Iterator[RawRecord]:
        return chain.from_iterable(self.paced())


class Pacer:
    """Maps recorded mono_ns onto the replayer's monotonic clock: the first instant is due at
    once, each later one ``(mono - first) / speed`` after it. An instant whose time has
    passed (a slow consumer, or a record stamped earlier than its predecessor) is due now:
    the pacer never waits backwards and never skips."""

    def __init__(self, speed: float, clock: Callable[[], int] = time.monotonic_ns,
                 sleep: Callable[[float], Any] = time.sleep):
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self.t0: int | None = None
        self.m0 = 0

    def due(self, mono_ns: int) -> int:
        """The replayer's clock reading at which a record stamped ``mono_ns`` is due."""
        if self.t0 is None:
            self.t0, self.m0 = self.clock(), mono_ns
        return self.t0 + int((mono_ns - self.m0) / self.speed)

    def wait(self, mono_ns: int) -> None:
        delay = self.due(mono_ns) - self.clock()
        if delay > 0:
            self.sleep(delay / 1e9)


def _shifted(batch: list[RawRecord], dm: int, dw: int) -> list[RawRecord]:
    return [RawRecord(r.mono_ns + dm, r.wall_ns + dw, r.entity, r.fields, r.source, r.source_version, r.error)
            for r in batch]


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") if names else "nothing"


def _readers_argument(readers: Any, sources: Any, *, warn: bool = True) -> Any:
    """``readers``, or the deprecated ``sources`` it replaces (one name across record, replay, load and
    export). ``Replay`` itself takes both without a warning: telemrec's own modules build it."""
    if sources is None:
        return readers
    import warnings

    if readers is not None:
        raise UsageError("readers and sources both given", "Give readers only: sources is its deprecated spelling.")
    if warn:
        warnings.warn("replay's sources= is deprecated: use readers= (the same name load, summary and export use)",
                      DeprecationWarning, stacklevel=3)
    return sources


def iter_replay(path: str | os.PathLike, *, speed: Any = None, start: Any = None, end: Any = None,
                entities: Any = None, fields: Any = None, readers: Any = None, loop: Any = 1,
                rebase_now: Any = False, sources: Any = None) -> Iterator[RawRecord]:
    """Records of the trace at ``path`` in recorded order, as fast as possible unless ``speed``
    is given (1 = real time). Selection and timestamps as for ``ReplayReader``; the trace
    is closed when the generator finishes or is closed."""
    from telemrec.trace import open_trace

    trace = open_trace(path)
    try:
        yield from Replay(trace, speed=speed, start=start, end=end, entities=entities, fields=fields,
                          readers=_readers_argument(readers, sources), loop=loop, rebase_now=rebase_now)
    finally:
        trace.close()


# -- the reader -----------------------------------------------------------------------------------

class ReplayReader(BaseReader):
    """A trace re-emitted through the reader protocol.

    ``read()`` as fast as possible (``speed`` unset or ``max``, the default): the next
    records in recorded order, whole instants, up to about 16k at a time. Paced
    (``speed`` set): every instant that has fallen due since the previous call, possibly
    none (``[]``); the replay clock starts at the first ``read()``, which returns the first
    instant. ``stream()`` sleeps until each instant is due instead of following
    ``config.interval``. ``None`` once the selection (and every loop) is exhausted.
    """

    name = "replay"
    options = OPTIONS
    description = "Re-emits a recorded trace exactly: paced (real time or x speed), windowed, filtered, looped."
    source_help = "Path of a trace (.h5) written by `telemrec record` or `telemrec import`."

    def __init__(self, *, clock: Callable[[], int] = time.monotonic_ns, wall_clock: Callable[[], int] = time.time_ns,
                 sleep: Callable[[float], Any] = time.sleep):
        super().__init__()
        self._clock, self._wall_clock, self._sleep = clock, wall_clock, sleep
        self._trace = None
        self._replay: Replay | None = None
        self._instants: Iterator[list[RawRecord]] | None = None
        self._pending: list[RawRecord] | None = None
        self._pacer: Pacer | None = None
        self._caps: ReaderCaps | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def _open(self, config: ReaderConfig) -> None:
        from telemrec.trace import open_trace

        if not config.source:
            raise SourceError("the replay reader needs a trace to replay",
                              "Pass the trace path as the source: --source run.h5.")
        unknown = sorted(set(config.options) - set(OPTIONS))
        if unknown:
            raise UsageError(f"unknown replay option {unknown[0]!r}",
                             f"Replay options: {', '.join(OPTIONS)} (-O key=value).")
        try:
            self._trace = open_trace(config.source)
        except TraceError as exc:
            # a reader's open failure is a ReaderError; the trace error's words stay
            raise SourceError(exc.message, exc.remediation, path=config.source,
                              cause=type(exc).__name__) from exc
        try:
            opts = dict(config.options)
            if "sources" in opts:
                opts["sources"] = _readers_argument(opts.pop("readers", None), opts["sources"])
            self._replay = Replay(self._trace, fallback_interval_ns=int(config.interval * 1e9),
                                  clock=self._clock, wall_clock=self._wall_clock, sleep=self._sleep, **opts)
            self._caps = self._build_caps()
        except BaseException:
            self._trace.close()
            self._trace = None
            raise

    def _close(self) -> None:
        if self._trace is not None:
            self._trace.close()
            self._trace = None
        self._instants = None

    def _read(self) -> list[RawRecord] | None:
        replay = self._replay
        if replay.speed is None:
            return self._read_fast()
        if self._instants is None:
            self._instants = replay.instants()
            self._pacer = Pacer(replay.speed, self._clock, self._sleep)
        out: list[RawRecord] = []
        while True:
            if self._pending is None:
                self._pending = next(self._instants, None)
                if self._pending is None:
                    return out or None
            # the first instant starts the replay clock, so the first read() returns it
            if self._pacer.due(self._pending[0].mono_ns) > self._clock():
                return out
            out.extend(self._pending)
            self._pending = None

    def _read_fast(self) -> list[RawRecord] | None:
        """The next batch, cut at the last instant boundary so instants stay whole."""
        if self._instants is None:
            self._instants = self._replay.batches()
        carry = self._pending or []
        self._pending = None
        while True:
            batch = next(self._instants, None)
            if batch is None:
                return carry or None
            batch = carry + batch if carry else batch
            last = batch[-1].mono_ns
            cut = len(batch)
            while cut > 0 and batch[cut - 1].mono_ns == last:
                cut -= 1
            if cut == 0:  # one instant so far: it may continue in the next batch
                carry = batch
                continue
            self._pending = batch[cut:]
            return batch[:cut]

    def stream(self) -> Iterator[RawRecord]:
        """Records until exhausted, each instant at its due time (or as fast as possible):
        ``read()`` in a loop that sleeps until the next instant is due, so ``read()`` and
        ``stream()`` share one position."""
        while (batch := self.read()) is not None:
            yield from batch
            if self._pacer is not None and self._pending is not None:
                delay = self._pacer.due(self._pending[0].mono_ns) - self._clock()
                if delay > 0:
                    self._sleep(delay / 1e9)

    # -- description ------------------------------------------------------------------------
    @property
    def caps(self) -> ReaderCaps:
        if self._caps is None:
            return ReaderCaps(kind="replay", dynamic_fields=True)
        return self._caps

    def _recorded_readers(self, sources: set[str]) -> list[dict]:
        out = []
        for reader in self._trace.manifest.get("readers") or []:
            caps = reader.get("caps") or {}
            if {caps.get("kind"), reader.get("name"), reader.get("label")} & sources:
                out.append(reader)
        return out

    def _build_caps(self) -> ReaderCaps:
        """The recorded readers' caps, narrowed to the selection; the field list also names every
        field the selected entities hold, so records never carry an undeclared field."""
        replay = self._replay
        selected = replay.selected_entities()
        sources = {s for s, _ in selected}
        readers = self._recorded_readers(sources)
        fields: set[str] = set()
        units: dict[str, str] = {}
        descriptions: dict[str, str] = {}
        counters: set[str] = set()
        dynamic = False
        for reader in readers:
            caps = ReaderCaps.from_dict(reader.get("caps") or {})
            fields |= caps.fields
            units.update(caps.units)
            descriptions.update(caps.descriptions)
            counters |= caps.counters
            dynamic = dynamic or caps.dynamic_fields
        for key in selected:
            fields.update(self._trace.entity(*key).fields)
        if replay.fields is not None:
            fields &= set(replay.fields)
        kind = next(iter(sources)) if len(sources) == 1 else "replay"
        return ReaderCaps(kind=kind, fields=frozenset(fields),
                          units={k: v for k, v in units.items() if k in fields},
                          descriptions={k: v for k, v in descriptions.items() if k in fields},
                          counters=frozenset(counters & fields), dynamic_fields=dynamic)

    def identity(self) -> dict[str, Any]:
        if self._trace is None:
            return {}
        trace = self._trace
        manifest = trace.manifest
        sources = {s for s, _ in self._replay.selected_entities()}
        return {
            "trace": os.path.abspath(trace.path),
            "format_version": trace.format_version,
            "closed_cleanly": trace.closed_cleanly,
            "recovered": trace.recovered,
            "host": manifest.get("host"),
            "gpus": manifest.get("gpus") or [],
            "start": manifest.get("start"),
            "readers": [{"label": r.get("label"), "name": r.get("name"), "version": r.get("version"),
                         "identity": r.get("identity") or {}} for r in self._recorded_readers(sources)],
        }

    @property
    def source_version(self) -> str:
        if self._trace is None:
            return ""
        return f"telemrec-trace v{self._trace.format_version}"

"""``TracePlayer``: what each entity of a trace last reported, at a trace time that moves.

Emulators answer "what would the tool have shown now?": every entity's latest record
at or before trace time ``t``, where ``t`` follows the caller's monotonic clock from
``epoch`` as ``start + elapsed x speed`` (``telemrec.readers.replay.Pacer`` does the
mapping, ``Replay`` supplies the records, windowed, filtered and looped). With speed
``max`` the player steps instead: each ``advance()`` takes the next recorded tick (the
records up to the first entity that reports again), so a consumer sees every tick
exactly once, as fast as it asks.

The state at the window start includes what entities reported shortly before it (the
last ten intervals, at least 10 s, as ``telemrec.snapshot`` reads), so ``--start``
lands on a fully populated node rather than an empty one.
"""

from __future__ import annotations

import time
from itertools import chain
from typing import TYPE_CHECKING, Any, Callable, Iterator

from telemrec.errors import ReplayError, UsageError
from telemrec.readers.replay import Pacer, Replay
from telemrec.record import RawRecord

if TYPE_CHECKING:
    from telemrec.trace import Trace

__all__ = ["TracePlayer"]

Key = tuple[str, str]


class TracePlayer:
    """The latest record of each selected (source, entity), advanced along a replay of ``trace``.

    Selection arguments are ``Replay``'s (strings as the CLI takes them). ``epoch_ns``
    is the ``clock`` reading at which trace time was at the window start (default: the
    first ``advance()``), so separate processes given the same epoch agree on ``t``.
    """

    def __init__(self, trace: "Trace", *, speed: Any = "1", start: Any = None, end: Any = None,
                 entities: Any = None, fields: Any = None, sources: Any = None, loop: Any = 1,
                 epoch_ns: int | None = None, clock: Callable[[], int] = time.monotonic_ns):
        self.trace = trace
        self.replay = Replay(trace, speed=speed, start=start, end=end, entities=entities, fields=fields,
                             sources=sources, loop=loop)
        self.speed = self.replay.speed
        self.latest: dict[Key, RawRecord] = {}
        self._clock = clock
        self._records: Iterator[RawRecord] = chain.from_iterable(self.replay.batches())
        self._pending: RawRecord | None = next(self._records, None)
        self._prime()
        self._pacer: Pacer | None = None
        if self.speed is not None:
            self._pacer = Pacer(self.speed, clock)
            if epoch_ns is not None and self._pending is not None:
                self._pacer.t0, self._pacer.m0 = epoch_ns, self._pending.mono_ns
        self.last_mono_ns: int | None = None

    @property
    def finished(self) -> bool:
        """True once every record of the replay (all loops) has been taken."""
        return self._pending is None

    def advance(self) -> bool:
        """Take the records due now (paced) or the next tick (speed max); False if none were left."""
        if self._pending is None:
            return False
        if self._pacer is None:
            seen: set[Key] = set()
            while self._pending is not None and (self._pending.source, self._pending.entity) not in seen:
                seen.add((self._pending.source, self._pending.entity))
                self._take()
            return True
        now = self._clock()
        while self._pending is not None and self._pacer.due(self._pending.mono_ns) <= now:
            self._take()
        return True

    def seconds_until_next(self) -> float | None:
        """Wall seconds until the next record falls due (0 when stepping), None when finished."""
        if self._pending is None:
            return None
        if self._pacer is None:
            return 0.0
        return max(0.0, (self._pacer.due(self._pending.mono_ns) - self._clock()) / 1e9)

    def records(self) -> list[RawRecord]:
        """The current state: each entity's latest record (renderers order them)."""
        return list(self.latest.values())

    def entity_fields(self, key: Key) -> frozenset[str]:
        """Every field the trace holds for an entity (whether or not its latest record has it)."""
        try:
            return frozenset(self.trace.fields(*key))
        except UsageError:  # not an entity of this trace
            return frozenset()

    def _take(self) -> None:
        rec = self._pending
        assert rec is not None
        self.latest[(rec.source, rec.entity)] = rec
        self.last_mono_ns = rec.mono_ns
        self._pending = next(self._records, None)

    def _prime(self) -> None:
        start = self.replay.start_wall_ns
        if start is None:
            return
        manifest = self.trace.manifest
        interval = float(manifest.get("interval_seconds") or 1.0)
        window = int(max(10 * interval, 10.0) * 1e9)
        try:
            earlier = Replay(self.trace, start=start - window, end=start, entities=self.replay.entities,
                             fields=self.replay.fields, sources=self.replay.sources)
        except ReplayError:  # nothing recorded just before the window: start empty
            return
        for rec in earlier:
            self.latest[(rec.source, rec.entity)] = rec

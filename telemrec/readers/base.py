"""The reader protocol: open(config) / read() per tick / stream() / close(), plus caps.

``read()`` has three outcomes: a list of records (possibly empty: nothing new this
tick), ``None`` when a finite source is exhausted (a file, a replayed trace, a
command that ended), or a raised ``ReaderError`` for a fatal condition. A problem
with one entity at one instant is not fatal: it is a record whose ``error`` is set.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator, Mapping, Protocol, runtime_checkable

from telemrec.errors import ReaderClosedError, ReaderError
from telemrec.record import RawRecord, ReaderCaps, ReaderConfig

__all__ = ["BaseReader", "Reader"]


@runtime_checkable
class Reader(Protocol):
    name: ClassVar[str]
    description: ClassVar[str]

    def open(self, config: ReaderConfig) -> None: ...
    def read(self) -> list[RawRecord] | None: ...
    def stream(self) -> Iterator[RawRecord]: ...
    def close(self) -> None: ...
    @property
    def caps(self) -> ReaderCaps: ...


class BaseReader(ABC):
    """Lifecycle bookkeeping shared by the built-in readers.

    Subclasses implement ``_open``, ``_read`` and optionally ``_close``,
    ``identity`` and ``availability``; sources are injected through ``__init__``
    so tests pass fakes rather than patching modules.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    source_help: ClassVar[str] = ""
    """What ``--source`` means for this reader (shown by ``telemrec readers``)."""
    options: ClassVar[Mapping[str, str]] = {}
    """The ``-O key=value`` options this reader takes: name -> what it does and its default
    (shown by ``telemrec readers`` and ``telemrec record --help``)."""

    def __init__(self) -> None:
        self._config: ReaderConfig | None = None
        self._opened = False
        self._closed = False

    # -- availability ----------------------------------------------------------------
    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Whether this reader can run on this machine, and if not, why."""
        return True, ""

    # -- lifecycle -------------------------------------------------------------------
    def open(self, config: ReaderConfig | None = None) -> None:
        if self._opened:
            raise ReaderError(f"reader {self.name!r} is already open", "Open each reader once.")
        if self._closed:
            raise ReaderClosedError(f"reader {self.name!r} was closed")
        self._config = config or ReaderConfig()
        if self._config.interval <= 0:
            from telemrec.errors import UsageError
            raise UsageError(f"interval must be > 0 seconds, got {self._config.interval}",
                             "Pass a positive --interval such as 1 or 0.1.")
        self._open(self._config)
        self._opened = True

    def read(self) -> list[RawRecord] | None:
        if not self._opened:
            raise ReaderClosedError(f"reader {self.name!r} is not open")
        return self._read()

    def close(self) -> None:
        """Release the source. Safe to call twice and after a failed open."""
        if self._closed:
            return
        self._closed = True
        self._opened = False
        self._close()

    def stream(self) -> Iterator[RawRecord]:
        """Yield records tick by tick on a fixed grid of the monotonic clock until
        the source is exhausted. A tick that overran is followed at once by the
        next grid point still ahead (no catch-up burst)."""
        interval_ns = int(self.config.interval * 1e9)
        next_ns = time.monotonic_ns()
        while True:
            batch = self.read()
            if batch is None:
                return
            yield from batch
            next_ns += interval_ns
            now = time.monotonic_ns()
            if now > next_ns:
                next_ns += ((now - next_ns) // interval_ns + 1) * interval_ns
            time.sleep((next_ns - now) / 1e9)

    def __enter__(self):
        if not self._opened:
            self.open(self._config)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def config(self) -> ReaderConfig:
        if self._config is None:
            raise ReaderClosedError(f"reader {self.name!r} has no config before open()")
        return self._config

    @property
    def is_open(self) -> bool:
        return self._opened

    @property
    @abstractmethod
    def caps(self) -> ReaderCaps: ...

    def identity(self) -> dict[str, Any]:
        """Static facts for the trace manifest (device names, UUIDs, versions)."""
        return {}

    @property
    def source_version(self) -> str:
        return ""

    @abstractmethod
    def _open(self, config: ReaderConfig) -> None: ...

    @abstractmethod
    def _read(self) -> list[RawRecord] | None: ...

    def _close(self) -> None:
        return None

    def __repr__(self) -> str:
        state = "open" if self._opened else ("closed" if self._closed else "new")
        source = self._config.source if self._config else None
        return f"<{type(self).__name__} name={self.name!r} source={source!r} {state}>"

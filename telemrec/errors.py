"""The telemrec exception tree.

Every error telemrec raises on purpose is a ``TelemrecError`` carrying a
``remediation`` string (what the user can do about it). Leaves also inherit the
builtin that matches their meaning, so ``except FileNotFoundError`` keeps working.

    TelemrecError(Exception)
    ├── UsageError(ValueError)                    bad argument or option value
    ├── MissingDependencyError(ImportError)       an optional extra is not installed
    ├── ReaderError(RuntimeError)                 a reader could not produce data
    │   ├── ReaderNotFoundError(LookupError)      no reader registered under that name
    │   ├── ReaderUnavailableError                library, device or binary missing here
    │   ├── SourceError                           the source misbehaved (exit code, HTTP, parse)
    │   │   └── SourceParseError(ValueError)      the source's output could not be parsed
    │   └── ReaderClosedError                     read after close
    ├── TraceError                                a trace could not be read or written
    │   ├── TraceNotFoundError(FileNotFoundError)
    │   ├── TraceCorruptError(ValueError)         bytes that do not follow the spec
    │   ├── UnsupportedFormatVersionError(ValueError)
    │   ├── ManifestValidationError(ValueError)
    │   ├── TraceInProgressError                  a recorder still holds the trace
    │   └── TraceWriteError(OSError)              disk full, permission denied, ...
    ├── RecordError(ValueError)                   a record violates the RawRecord contract
    ├── ReplayError                               replay options that do not fit the trace
    ├── IntegrationUnavailableError(ImportError)  an integration's optional extra is not installed
    └── ReplayUnavailableError(RuntimeError)      a replay backend cannot run here (library not built)

Warnings: ``TelemrecWarning`` and its child ``TelemrecPluginWarning`` (a broken
third-party reader entry point).
"""

from __future__ import annotations

__all__ = [
    "IntegrationUnavailableError",
    "ManifestValidationError",
    "MissingDependencyError",
    "ReaderClosedError",
    "ReaderError",
    "ReaderNotFoundError",
    "ReaderUnavailableError",
    "RecordError",
    "ReplayError",
    "ReplayUnavailableError",
    "SourceError",
    "SourceParseError",
    "TelemrecError",
    "TelemrecPluginWarning",
    "TelemrecWarning",
    "TraceCorruptError",
    "TraceError",
    "TraceInProgressError",
    "TraceNotFoundError",
    "TraceWriteError",
    "UnsupportedFormatVersionError",
    "UsageError",
]


class TelemrecError(Exception):
    """Base of every error telemrec raises on purpose.

    ``str(err)`` is the message followed by the remediation on its own line.
    """

    default_remediation = ""

    def __init__(self, message: str, remediation: str | None = None, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.remediation = remediation if remediation is not None else self.default_remediation
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        if self.remediation:
            return f"{self.message}\n  hint: {self.remediation}"
        return self.message

    def __reduce__(self):  # keep pickling working for errors raised in worker threads/processes
        return (_rebuild, (type(self), self.message, self.remediation, self.context))


def _rebuild(cls, message, remediation, context):
    return cls(message, remediation, **context)


class UsageError(TelemrecError, ValueError):
    """An argument or option has a value telemrec cannot use."""


class MissingDependencyError(TelemrecError, ImportError):
    """A feature needs an optional extra that is not installed (``extra``: its name)."""

    def __init__(self, message: str, remediation: str | None = None, **context: object) -> None:
        extra = context.get("extra")
        if remediation is None and extra:
            remediation = f"pip install 'telemrec[{extra}]'"
        super().__init__(message, remediation, **context)


class ReaderError(TelemrecError, RuntimeError):
    """A reader could not produce data."""


class ReaderNotFoundError(ReaderError, LookupError):
    default_remediation = "Run `telemrec readers` to list the readers this installation knows."


class ReaderUnavailableError(ReaderError):
    """The reader cannot run on this machine (library, device or binary missing)."""


class SourceError(ReaderError):
    """The source answered, but not usefully (exit status, HTTP error, timeout)."""


class SourceParseError(SourceError, ValueError):
    """The source's output does not follow the format the reader expects."""


class ReaderClosedError(ReaderError):
    default_remediation = "Call open() before reading; a closed reader cannot be reused."


class TraceError(TelemrecError):
    """A trace could not be read or written."""


class TraceNotFoundError(TraceError, FileNotFoundError):
    default_remediation = "Check the path; a trace is the file given to `telemrec record -o`."


class TraceCorruptError(TraceError, ValueError):
    default_remediation = "Run `telemrec check PATH` for details; the file may be truncated or not a telemrec trace."


class UnsupportedFormatVersionError(TraceError, ValueError):
    """The trace's format version is not one this telemrec reads."""


class ManifestValidationError(TraceError, ValueError):
    default_remediation = "Run `telemrec check PATH` to see every problem with the manifest."


class TraceInProgressError(TraceError):
    default_remediation = "Wait for the recorder to stop, or read the live journal read-only with telemrec.open_trace(path)."


class TraceWriteError(TraceError, OSError):
    default_remediation = "Free disk space or choose another output directory; data flushed so far is kept."


class RecordError(TelemrecError, ValueError):
    """A record does not follow the RawRecord contract."""


class ReplayError(TelemrecError, ValueError):
    """Replay options do not fit the trace."""


class IntegrationUnavailableError(TelemrecError, ImportError):
    """An integration needs a package its optional extra installs (``pip install 'telemrec[EXTRA]'``)."""


class ReplayUnavailableError(TelemrecError, RuntimeError):
    """A replay backend cannot run on this installation (e.g. the replay NVML library was not built)."""


class TelemrecWarning(UserWarning):
    """Base of telemrec's warnings."""


class TelemrecPluginWarning(TelemrecWarning):
    """A third-party reader entry point could not be loaded; the other readers still work."""

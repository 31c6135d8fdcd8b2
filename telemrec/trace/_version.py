"""The one place that parses a trace's format name and version."""

from __future__ import annotations

from telemrec._version import __version__
from telemrec.errors import TraceCorruptError, UnsupportedFormatVersionError

FORMAT_NAME = "telemrec-trace"
CURRENT_FORMAT_VERSION = 3
SUPPORTED_FORMAT_VERSIONS = (1, 2, 3)
JOURNAL_FORMAT_VERSION = 3


def parse_format_version(name: object, version: object, *, path: str = "") -> int:
    """Validate (format name, format version) as found in a file; return the version.

    Older supported versions are returned as is (their reader module upgrades on
    read); a newer version names both versions and how to get a telemrec that reads it.
    """
    where = f"{path}: " if path else ""
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if name != FORMAT_NAME:
        raise TraceCorruptError(f"{where}not a telemrec trace (format attribute is {name!r}, expected {FORMAT_NAME!r})",
                                "Pass a file written by `telemrec record` or `telemrec import`.", path=path)
    try:
        number = int(version)  # h5py gives numpy integers
    except (TypeError, ValueError):
        raise TraceCorruptError(f"{where}format_version {version!r} is not an integer", path=path) from None
    if number != version and not hasattr(version, "dtype"):
        raise TraceCorruptError(f"{where}format_version {version!r} is not an integer", path=path)
    if number in SUPPORTED_FORMAT_VERSIONS:
        return number
    supported = ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))
    if number > CURRENT_FORMAT_VERSION:
        raise UnsupportedFormatVersionError(
            f"{where}trace format version {number} is newer than this telemrec {__version__} reads (versions {supported})",
            "Upgrade telemrec (pip install -U telemrec) to read it.",
            path=path, found_version=number, supported_versions=SUPPORTED_FORMAT_VERSIONS)
    raise UnsupportedFormatVersionError(
        f"{where}trace format version {number} is not supported (this telemrec {__version__} reads versions {supported})",
        "Convert it with the telemrec release that wrote it.",
        path=path, found_version=number, supported_versions=SUPPORTED_FORMAT_VERSIONS)

"""Traces: versioned HDF5 files with a manifest (docs/format.md)."""

from telemrec.trace._store import Trace, fold_journal, open_trace
from telemrec.trace._version import CURRENT_FORMAT_VERSION, FORMAT_NAME, SUPPORTED_FORMAT_VERSIONS, parse_format_version
from telemrec.trace.writer import TraceWriter

__all__ = ["CURRENT_FORMAT_VERSION", "FORMAT_NAME", "SUPPORTED_FORMAT_VERSIONS", "Trace", "TraceWriter",
           "fold_journal", "open_trace", "parse_format_version"]

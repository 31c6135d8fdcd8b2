"""Readers: one module and one class per source, registered by name."""

from telemrec.readers.base import BaseReader, Reader
from telemrec.readers.registry import ReaderInfo, get_reader, list_readers, refresh_readers

__all__ = ["BaseReader", "Reader", "ReaderInfo", "get_reader", "list_readers", "refresh_readers"]

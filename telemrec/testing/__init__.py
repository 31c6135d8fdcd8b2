"""Test helpers shipped with telemrec: the reader conformance suite and fakes.

Importing this module needs pytest (it is meant for test suites).
"""

from telemrec.testing.conformance import ReaderConformance

__all__ = ["ReaderConformance"]

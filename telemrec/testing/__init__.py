"""Test helpers shipped with telemrec: the reader conformance suite and faithful fakes
(``fake_nvml``, ``fake_dcgmi``, ``fake_exporter``).

``ReaderConformance`` needs pytest; it is imported on first use so that the fakes
(runnable as ``python -m telemrec.testing.fake_dcgmi``) work without it.
"""

__all__ = ["ReaderConformance"]


def __getattr__(name):
    if name == "ReaderConformance":
        from telemrec.testing.conformance import ReaderConformance

        return ReaderConformance
    raise AttributeError(f"module 'telemrec.testing' has no attribute {name!r}")

"""Test helpers shipped with telemrec: the reader conformance suite, faithful fakes
(``fake_nvml``, ``fake_dcgmi``, ``fake_exporter``) and ``assert_frames_identical``.

``ReaderConformance`` needs pytest; it is imported on first use so that the fakes
(runnable as ``python -m telemrec.testing.fake_dcgmi``) work without it.
"""

__all__ = ["ReaderConformance", "assert_frames_identical"]


def __getattr__(name):
    if name == "ReaderConformance":
        from telemrec.testing.conformance import ReaderConformance

        return ReaderConformance
    if name == "assert_frames_identical":
        from telemrec.testing.frames import assert_frames_identical

        return assert_frames_identical
    raise AttributeError(f"module 'telemrec.testing' has no attribute {name!r}")

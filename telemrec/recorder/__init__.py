"""Recording: readers on a fixed monotonic grid into a crash-safe trace."""

from telemrec.recorder.paths import expand_output_path
from telemrec.recorder.recorder import Recorder, ReaderSlot
from telemrec.recorder.session import RecordRequest, RecordResult, record

__all__ = ["ReaderSlot", "RecordRequest", "RecordResult", "Recorder", "expand_output_path", "record"]

"""telemrec: record, replay and analyse cluster-node telemetry."""

from telemrec._version import __version__

__all__ = ["__version__"]

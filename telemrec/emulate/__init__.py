"""Serve a recorded trace to unmodified consumers: a ``dcgmi``, a Prometheus endpoint, OpenMetrics.

Each emulator shows the trace as the tool it stands in for would have shown the
recorded node (docs/replay/). They share ``_timeline.TracePlayer``: the latest record of
each entity at a trace time that follows the wall clock (``start + elapsed x speed``),
built on ``telemrec.readers.replay.Replay``.
"""

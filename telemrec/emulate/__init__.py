"""Serve a recorded trace to unmodified consumers: a replay NVML library, a ``dcgmi``, a
Prometheus endpoint, OpenMetrics (docs/replay/).

Each emulator shows the trace as the tool it stands in for would have shown the
recorded node. The text emulators share ``_timeline.TracePlayer``: the latest record of
each entity at a trace time that follows the wall clock (``start + elapsed x speed``),
built on ``telemrec.readers.replay.Replay``; the NVML library reads a timeline file
that ``nvml.py`` prepares from the trace.
"""

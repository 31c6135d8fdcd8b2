"""Replay a trace into unmodified consumers (a replay NVML library, ...); docs/replay/."""

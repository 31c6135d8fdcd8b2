"""The ``dcgmi`` command line both stand-ins present (the replay dcgmi and the test fake):
dmon's options, the ``-v`` text, SIGINT as a stop request, and a quiet exit on a closed pipe."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["StopFlag", "add_dmon_arguments", "quiet_stdout", "version_text"]


def add_dmon_arguments(subparsers) -> argparse.ArgumentParser:
    """``dcgmi dmon``'s options (DCGM 4.x spellings)."""
    dmon = subparsers.add_parser("dmon")
    dmon.add_argument("-e", "--field-id", dest="field_ids", default=None)
    dmon.add_argument("-d", "--delay", type=int, default=1000)
    dmon.add_argument("-c", "--count", type=int, default=0)
    dmon.add_argument("-i", "--entity-id", dest="entities", default=None)
    dmon.add_argument("-g", "--group-id", default=None)
    dmon.add_argument("--host", default="localhost")
    return dmon


def version_text(version: str, build_id: str = "0") -> str:
    """What ``dcgmi -v`` prints."""
    return (f"Version : {version}\nBuild ID : {build_id}\nBuild Type : Release\n\nHostengine build info:\n"
            f"Version : {version}\n")


class StopFlag:
    """Set by a signal handler; dmon checks it between ticks (so a tick is never cut short)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum=None, frame=None) -> None:  # noqa: ARG002 - a signal handler
        self.requested = True


def quiet_stdout() -> None:
    """After a BrokenPipeError: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        sys.stdout = open(os.devnull, "w")
    except OSError:
        pass

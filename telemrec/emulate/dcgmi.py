"""A ``dcgmi`` that answers from a trace: ``telemrec replay TRACE --as dcgmi -- COMMAND``.

``install(...)`` writes a ``dcgmi`` launcher into a private directory that the replay
puts first on COMMAND's PATH; the launcher runs ``python -m telemrec.emulate.dcgmi``
with the replay's settings. What it answers (docs/replay/dcgmi.md):

- ``dcgmi dmon -e IDS [-d MS] [-c N] [-i GPUS]``: the trace at trace time
  ``start + elapsed x speed`` in DCGM 4.x's layout, one tick every ``-d`` of real time
  (dmon sleeps ``-d`` after each tick), header again after the 15th tick and every 14th,
  GPU rows in descending order each followed by its GPU-I and GPU-CI rows, ``N/A`` for a
  value recorded as None or a field the GPU never reported, spaces for a field the
  record lacks, and the stop trailer on SIGINT. It exits 0 after the tick that shows
  the end of the replay. Speed ``max`` prints one recorded tick per dmon tick without
  sleeping. dcgmi traces are shown as recorded; nvml traces through the NVML-to-DCGM
  field mapping (``_gpus.NVML_TO_DCGM``).
- ``dcgmi discovery -l``: the trace's GPUs (name, PCI bus id, UUID) as DCGM 4.6 lists them.
- ``dcgmi -v``: the recorded DCGM version.

All invocations share one clock (the replay's start), so a consumer that runs
``discovery`` and later ``dmon`` sees trace time move on in between, as on the node.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, TextIO

from telemrec.emulate._dcgmi_cli import StopFlag, add_dmon_arguments, quiet_stdout, version_text
from telemrec.emulate._gpus import GPU_SOURCES, dcgm_field_id, dcgm_values, gpu_entity, gpu_identity
from telemrec.emulate._timeline import TracePlayer
from telemrec.errors import TelemrecError, UsageError
from telemrec.readers._dmon_parser import (
    DEFAULT_FIELD_IDS,
    STOP_TRAILER,
    HeaderSchedule,
    entity_returns,
    format_header,
    format_row,
    format_value,
    parse_entity_ids,
)
from telemrec.record import RawRecord

__all__ = ["DcgmiSettings", "export_dmon", "install", "main", "run_dmon"]

DEFAULT_VERSION = "4.6.0"
_SETTINGS = "--telemrec-settings"


@dataclass
class DcgmiSettings:
    """What the launcher hands every ``dcgmi`` invocation (a JSON file next to it)."""

    trace: str
    speed: str = "1"
    start: str | None = None
    end: str | None = None
    loop: str = "1"
    entities: list[str] | None = None
    fields: list[str] | None = None
    sources: list[str] | None = None
    epoch_ns: int = field(default_factory=time.monotonic_ns)

    def player(self, trace) -> TracePlayer:
        return TracePlayer(trace, speed=self.speed, start=self.start, end=self.end, entities=self.entities,
                           fields=self.fields, sources=self.sources, loop=self.loop, epoch_ns=self.epoch_ns)


def install(directory: str, settings: DcgmiSettings) -> str:
    """Write ``dcgmi`` (and its settings) into ``directory``; return the launcher's path."""
    settings_path = os.path.join(directory, "dcgmi-settings.json")
    with open(settings_path, "w", encoding="utf-8") as fh:
        json.dump(asdict(settings), fh)
    launcher = os.path.join(directory, "dcgmi")
    with open(launcher, "w", encoding="utf-8") as fh:
        fh.write(f"#!/bin/sh\n# telemrec replay --as dcgmi: answers from {shlex.quote(settings.trace)}\n"
                 f"exec {shlex.quote(sys.executable)} -m telemrec.emulate.dcgmi {_SETTINGS} "
                 f"{shlex.quote(settings_path)} \"$@\"\n")
    os.chmod(launcher, 0o755)
    return launcher


def run_as(trace_path: str, command: list[str], *, speed: str = "1", start: str | None = None,
           end: str | None = None, loop: str = "1", entities=None, fields=None, sources=None) -> int:
    """``telemrec replay TRACE --as dcgmi -- COMMAND``: COMMAND's exit status."""
    from telemrec.emulate._command import run_command
    from telemrec.trace import open_trace

    settings = DcgmiSettings(os.path.abspath(trace_path), speed, start, end, loop, entities, fields, sources)
    with open_trace(trace_path) as trace:  # check the trace and the selection before COMMAND starts
        player = settings.player(trace)
        if not _gpu_keys(player.replay.selected_entities()):
            raise UsageError(f"{trace_path} holds no GPU records in the selection (sources: "
                             f"{', '.join(sorted({s for s, _ in trace.entities()})) or 'none'})",
                             "--as dcgmi serves traces recorded by the dcgmi or nvml reader.")
    with tempfile.TemporaryDirectory(prefix="telemrec-dcgmi-") as directory:
        env = dict(os.environ)
        env["PATH"] = directory + os.pathsep + env.get("PATH", "")
        settings.epoch_ns = time.monotonic_ns()  # trace time starts as COMMAND does
        install(directory, settings)
        return run_command(command, env)


# -- dmon ---------------------------------------------------------------------------------

def _gpu_keys(keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(s, e) for s, e in keys if s in GPU_SOURCES and gpu_entity(e) is not None]


def _row_order(entity) -> tuple:
    """dmon's order: GPUs descending, each followed by its GPU instances and their compute instances."""
    gpu = -1 if entity.gpu is None else entity.gpu
    gi = -1 if entity.instance is None else entity.instance
    return (-gpu, {"GPU": 0}.get(entity.group, 1), gi, -1 if entity.compute is None else entity.compute)


class DmonRows:
    """The rows dmon prints for a player's current state."""

    def __init__(self, player: TracePlayer, field_ids: tuple[int, ...], gpus: set[int] | None):
        self.player = player
        self.field_ids = field_ids
        self.gpus = gpus
        self._known: dict[tuple[str, str], frozenset[int]] = {}

    def _entity_ids(self, key: tuple[str, str]) -> frozenset[int]:
        known = self._known.get(key)
        if known is None:
            fields = self.player.entity_fields(key)
            probe = RawRecord(0, 0, key[1], dict.fromkeys(fields, 0), key[0])
            known = self._known[key] = frozenset(dcgm_values(probe))
        return known

    def lines(self) -> list[str]:
        chosen: dict[tuple, tuple[Any, RawRecord]] = {}
        for rec in self.player.records():
            entity = gpu_entity(rec.entity) if rec.source in GPU_SOURCES else None
            if entity is None or (self.gpus is not None and entity.gpu not in self.gpus):
                continue
            slot = (entity.group, entity.gpu, entity.instance, entity.compute)
            if slot not in chosen or rec.source == "dcgmi":  # both readers recorded it: DCGM's own view
                chosen[slot] = (entity, rec)
        out = []
        for entity, rec in sorted(chosen.values(), key=lambda er: _row_order(er[0])):
            out.append(format_row(f"{entity.group} {_label_id(entity)}", self._cells(entity, rec), self.field_ids))
        return out

    def _cells(self, entity, rec: RawRecord) -> dict[int, str | None]:
        values = dcgm_values(rec)
        lost = rec.error is not None and not rec.fields
        known = self._entity_ids((rec.source, rec.entity))
        cells: dict[int, str | None] = {}
        for fid in self.field_ids:
            if fid in values:
                cells[fid] = format_value(fid, values[fid])
            elif lost or (fid not in known and entity_returns(entity.group, fid)):
                cells[fid] = "N/A"   # DCGM returned a blank value
            else:
                cells[fid] = None    # not returned for this entity: spaces
        return cells


def _label_id(entity) -> str:
    value = entity.entity_id
    return "?" if value is None else str(value)


def run_dmon(player: TracePlayer, out: TextIO, *, field_ids: tuple[int, ...] = DEFAULT_FIELD_IDS,
             delay_ms: int = 1000, count: int = 0, gpus: set[int] | None = None,
             sleep: Callable[[float], Any] = time.sleep, stopped: Callable[[], bool] = lambda: False) -> int:
    """Print dmon's output for ``player`` until the replay ends, ``count`` ticks, or ``stopped()``."""
    rows = DmonRows(player, field_ids, gpus)
    header = "\n".join(format_header(field_ids)) + "\n"
    out.write(header)
    out.flush()
    schedule = HeaderSchedule()
    ticks = 0
    while not stopped():
        player.advance()
        out.write("".join(line + "\n" for line in rows.lines()))
        out.flush()
        ticks += 1
        if (count and ticks >= count) or player.finished:
            return 0
        if player.speed is not None:
            sleep(max(delay_ms, 1) / 1000.0)
        if schedule.after_tick():
            out.write(header)
    out.write(f"\n\n{STOP_TRAILER}\n")
    out.flush()
    return 0


def recorded_field_ids(trace, player: TracePlayer) -> tuple[int, ...]:
    """The dmon columns a trace implies: a dcgmi recording's own ``-e`` list (else its fields by id),
    narrowed to the selected fields; for other traces KempnerPulse's 23 fields."""
    selected = set(player.replay.fields) if player.replay.fields is not None else None
    for reader in trace.manifest.get("readers") or []:
        if reader.get("name") != "dcgmi":
            continue
        identity = reader.get("identity") or {}
        argv = [str(a) for a in identity.get("argv") or []]
        if "-e" in argv[:-1]:
            ids = [int(x) for x in argv[argv.index("-e") + 1].split(",") if x.strip().isdigit()]
        else:
            keys = list(identity.get("fields") or {}) or list((reader.get("caps") or {}).get("fields") or [])
            ids = sorted(i for i in map(dcgm_field_id, keys) if i is not None)
        if selected is not None:
            ids = [i for i in ids if any(dcgm_field_id(k) == i for k in selected)]
        if ids:
            return tuple(dict.fromkeys(ids))
    return DEFAULT_FIELD_IDS


def export_dmon(path: str, out: str, *, sources=None, entities=None, fields=None, start=None, end=None) -> str:
    """``telemrec export TRACE --format dmon``: every tick of the trace as ``dcgmi dmon`` printed it
    (the capture KempnerPulse's replay backend reads), with the recording's field list."""
    from telemrec.emulate._export import atomic_text, source_names, wall_window
    from telemrec.trace import open_trace

    with open_trace(path) as trace:
        start_ns, end_ns = wall_window(trace, start, end)
        sources = source_names(trace, sources)
        player = TracePlayer(trace, speed="max", start=start_ns, end=end_ns, entities=entities, fields=fields,
                             sources=sources)
        if not _gpu_keys(player.replay.selected_entities()):
            raise UsageError(f"{path} holds no GPU records in the selection",
                             "The dmon format holds dcgmi or nvml records; pick a GPU trace.")
        with atomic_text(out) as fh:
            run_dmon(player, fh, field_ids=recorded_field_ids(trace, player))
    return out


# -- discovery and version -------------------------------------------------------------------

def _hline(widths: Iterable[int]) -> str:
    return "+" + "+".join("-" * w for w in widths) + "+\n"


def _row(cells: Iterable[str], widths: Iterable[int]) -> str:
    parts = [f"{c:<{w - 2}}" for c, w in zip(cells, widths)]
    return "| " + " | ".join(parts) + " |\n"


def _table(title: str, columns: tuple[tuple[str, int], ...], sections: list[list[tuple[str, ...]]]) -> str:
    """DcgmiOutputColumns with separate sections, as ``dcgmi discovery -l`` prints each entity kind."""
    names = [c for c, _ in columns]
    widths = [w for _, w in columns]
    text = title + "\n" + _hline(widths) + _row(names, widths) + _hline(widths)
    for i, rows in enumerate(sections):
        if i:
            text += _hline(widths)
        text += "".join(_row(r, widths) for r in rows)
    return text + _hline(widths)


def discovery(player: TracePlayer) -> str:
    keys = _gpu_keys(player.replay.selected_entities())
    indices = {e.gpu for _, name in keys if (e := gpu_entity(name)) is not None and e.gpu is not None}
    info = gpu_identity(player.trace.manifest, indices)
    sections = [[(str(i), f"Name: {info[i].name}"), ("", f"PCI Bus ID: {info[i].pci_bus_id}"),
                 ("", f"Device UUID: {info[i].uuid}")] for i in sorted(indices)]
    n = len(indices)
    return (_table(f"{n} GPU{'' if n == 1 else 's'} found (Active).", (("GPU ID", 8), ("Device Information", 70)),
                   sections)
            + _table("0 NvSwitches found.", (("Switch ID", 11),), [])
            + _table("0 ConnectX found.", (("ConnectX", 10),), [])
            + _table("0 CPUs found.", (("CPU ID", 8), ("Device Information", 70)), []))


def recorded_version(manifest) -> str:
    for reader in manifest.get("readers") or []:
        if reader.get("name") == "dcgmi" and reader.get("version"):
            return str(reader["version"])
    return DEFAULT_VERSION


# -- the program --------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dcgmi", description="dcgmi replaying a telemrec trace")
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="command")
    add_dmon_arguments(sub)
    disc = sub.add_parser("discovery")
    disc.add_argument("-l", "--list", action="store_true")
    disc.add_argument("-a", "--all", action="store_true")
    disc.add_argument("--host", default="localhost")
    return p


def _field_ids(spec: str | None) -> tuple[int, ...]:
    if not spec:
        return DEFAULT_FIELD_IDS
    try:
        ids = tuple(int(x) for x in spec.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"-e {spec!r} is not a list of field ids", "Pass e.g. -e 150,155,1002.") from None
    if not ids:
        raise UsageError("-e names no field", "Pass e.g. -e 150,155,1002.")
    return ids


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] != _SETTINGS:
        sys.stderr.write("telemrec dcgmi: run through `telemrec replay TRACE --as dcgmi -- COMMAND`\n")
        return 2
    with open(argv[1], encoding="utf-8") as fh:
        settings = DcgmiSettings(**json.load(fh))
    args = _parser().parse_args(argv[2:])
    from telemrec.trace import open_trace

    try:
        with open_trace(settings.trace) as trace:
            if args.version:
                out.write(version_text(recorded_version(trace.manifest), "telemrec-replay"))
                return 0
            if args.command == "discovery" and args.list:
                out.write(discovery(settings.player(trace)))
                return 0
            if args.command != "dmon":
                out.write("Usage: dcgmi dmon -e <field ids> [-d <ms>] [-c <count>] [-i <entities>] | "
                          "dcgmi discovery -l | dcgmi -v\n(telemrec replay serves these subcommands only)\n")
                return 1
            stop = StopFlag()
            signal.signal(signal.SIGINT, stop)  # dcgmi's own handler: SIGTERM keeps its default
            return run_dmon(settings.player(trace), out, field_ids=_field_ids(args.field_ids),
                            delay_ms=args.delay, count=max(args.count, 0), gpus=parse_entity_ids(args.entities),
                            stopped=lambda: stop.requested)
    except TelemrecError as exc:
        out.write(f"Error: {exc.message}\n")
        hint = f"  hint: {exc.remediation}\n" if exc.remediation else ""
        sys.stderr.write(f"telemrec dcgmi: {exc.message}\n{hint}")
        return 1
    except BrokenPipeError:
        quiet_stdout()
        return 0


if __name__ == "__main__":
    sys.exit(main())

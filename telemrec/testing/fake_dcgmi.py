"""A fake ``dcgmi`` for tests: ``python -m telemrec.testing.fake_dcgmi dmon -e IDS -d MS [-c N] [-i LIST]``.

It prints what DCGM 4.x ``dcgmi dmon`` prints (dcgmi/DeviceMonitor.cpp), with real
timing: header and units line, one row per entity per tick (GPUs in descending
order, each followed by its GPU-I and GPU-CI rows), cells left-aligned in
``width + 8`` characters, ``N/A`` for blank values, spaces for fields an entity
does not return, ``...`` truncation, the header again after the 15th tick and then
every 14 ticks, a sleep of ``-d`` after each tick, and the stop trailer after
SIGINT (and, unlike the real tool, also SIGTERM).

The devices come from a scripted model or from a capture file. Fake-only options
(also read from the environment, so a wrapper script can fix them):

  --fake-gpus N            FAKE_DCGMI_GPUS            GPUs 0..N-1 (default 4)
  --fake-mig SPEC          FAKE_DCGMI_MIG             "GPU:GIS:CIS_PER_GI[,...]", e.g. "0:2:1"
  --fake-capture PATH      FAKE_DCGMI_CAPTURE         replay a saved dmon capture instead of the model
  --fake-entity-width W    FAKE_DCGMI_ENTITY_WIDTH    entity column width (16 as in 4.6; 11 in early 4.x)
  --fake-glitch SPEC       FAKE_DCGMI_GLITCH          "GPU@TICK[,...]": a power reading too wide for its column
  --fake-hostengine-down   FAKE_DCGMI_HOSTENGINE=down fail like dcgmi with no nv-hostengine
  --fake-fail-after N      FAKE_DCGMI_FAIL_AFTER      lose the host engine after N ticks
  --fake-stderr-bytes N    FAKE_DCGMI_STDERR_BYTES    write N bytes to stderr first
  --fake-seed N            FAKE_DCGMI_SEED            value seed (default 0)
  --fake-time-scale X      FAKE_DCGMI_TIME_SCALE      multiply the sleeps (0: print at once; for making fixtures)

``--host`` other than localhost/127.0.0.1 also behaves as an unreachable host engine.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Iterator, TextIO

from telemrec.emulate._dcgmi_cli import StopFlag, add_dmon_arguments, quiet_stdout, version_text
from telemrec.readers._dmon_parser import (
    DEFAULT_FIELD_IDS,
    ENTITY_WIDTH,
    PROFILING_FIRST_ID,
    HeaderSchedule,
    entity_returns,
    format_header,
    format_row,
    parse_entity_ids,
)

__all__ = ["DeviceModel", "FakeEntity", "format_header", "format_row", "main"]

FAKE_VERSION = "4.6.0"
MAX_INSTANCES_PER_GPU = 8  # DCGM numbers GPU-I/GPU-CI entities gpu * 8 + index
CONNECT_ERROR = ("Error: unable to establish a connection to the specified host: {host}\n"
                 "Error: Unable to connect to host engine. Host engine connection invalid/disconnected.\n")
CONNECTION_NOT_VALID_EXIT = 235  # main() returns DCGM_ST_CONNECTION_NOT_VALID (-21) as the exit status
_NOT_RETURNED = None


# -- the scripted devices ---------------------------------------------------------------
@dataclass(frozen=True)
class FakeEntity:
    group: str  # "GPU", "GPU-I", "GPU-CI"
    entity_id: int
    gpu: int

    @property
    def label(self) -> str:
        return f"{self.group} {self.entity_id}"


class DeviceModel:
    """Plausible H100-like readings, deterministic for a seed."""

    def __init__(self, gpus: int = 4, mig: dict[int, tuple[int, int]] | None = None, seed: int = 0,
                 glitches: set[tuple[int, int]] | None = None) -> None:
        self.gpus = gpus
        self.mig = mig or {}
        self.seed = seed
        self.glitches = glitches or set()
        self._energy_mj = {g: 1_200_000_000 + 97_000_000 * g for g in range(gpus)}

    def entities(self, selected: set[int] | None = None) -> list[FakeEntity]:
        out = []
        for gpu in sorted(range(self.gpus), reverse=True):
            if selected is not None and gpu not in selected:
                continue
            out.append(FakeEntity("GPU", gpu, gpu))
            n_gi, n_ci = self.mig.get(gpu, (0, 0))
            ci_index = 0
            for gi in range(n_gi):
                out.append(FakeEntity("GPU-I", gpu * MAX_INSTANCES_PER_GPU + gi, gpu))
                for _ in range(n_ci):
                    out.append(FakeEntity("GPU-CI", gpu * MAX_INSTANCES_PER_GPU + ci_index, gpu))
                    ci_index += 1
        return out

    def cells(self, entity: FakeEntity, tick: int, field_ids: tuple[int, ...], delay_s: float) -> dict[int, str | None]:
        rng = random.Random(f"{self.seed}:{entity.label}:{tick}")
        load = 0.15 + 0.8 * rng.random()
        mig_gpu = entity.gpu in self.mig
        power = 70.0 + 620.0 * load + rng.uniform(-5, 5)
        if entity.group == "GPU" and 156 in field_ids:
            self._energy_mj[entity.gpu] += int(power * delay_s * 1000)
        if entity.group == "GPU" and (entity.gpu, tick) in self.glitches:
            power = 1.8e13  # a garbage sensor reading: too wide for the 16-character POWER column
        share = {"GPU": 1.0, "GPU-I": 0.5, "GPU-CI": 0.5}[entity.group]
        fb_total = int(81559 * share)
        fb_used = int(fb_total * (0.1 + 0.8 * load))
        values: dict[int, str | None] = {}
        for fid in field_ids:
            if not entity_returns(entity.group, fid):
                values[fid] = _NOT_RETURNED
                continue
            if fid >= PROFILING_FIRST_ID and tick == 0:
                values[fid] = "N/A"  # the profiler has no sample before the first interval ends
                continue
            values[fid] = self._value(fid, entity, rng, load, power, fb_total, fb_used, mig_gpu)
        return values

    def _value(self, fid, entity, rng, load, power, fb_total, fb_used, mig_gpu) -> str:
        ratio = lambda scale: f"{min(1.0, load * scale + rng.uniform(0, 0.02)):.3f}"  # noqa: E731
        simple = {
            100: lambda: str(rng.choice((1755, 1830, 1980))),
            101: lambda: "2619",
            140: lambda: str(int(38 + 30 * load)),
            150: lambda: str(int(33 + 40 * load)),
            155: lambda: f"{power:.3f}",
            156: lambda: str(self._energy_mj[entity.gpu]),
            202: lambda: "0",
            203: lambda: "N/A" if mig_gpu else str(int(100 * load)),
            204: lambda: "N/A" if mig_gpu else str(int(60 * load)),
            251: lambda: str(fb_total - fb_used - 527),
            252: lambda: str(fb_used),
            253: lambda: "527",
            449: lambda: str(int(180_000 * load)),
            1001: lambda: ratio(1.0), 1002: lambda: ratio(0.95), 1003: lambda: ratio(0.6),
            1004: lambda: ratio(0.5), 1005: lambda: ratio(0.4), 1006: lambda: "0.000",
            1007: lambda: ratio(0.3), 1008: lambda: ratio(0.7),
            1009: lambda: str(int(2.1e9 * load)), 1010: lambda: str(int(1.7e9 * load)),
            1011: lambda: str(int(9.0e10 * load)), 1012: lambda: str(int(8.7e10 * load)),
        }
        make = simple.get(fid)
        return make() if make else str(rng.randrange(0, 1000))


# -- the command ------------------------------------------------------------------------
_STOP = StopFlag()


def _env_default(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"FAKE_DCGMI_{name}", default)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dcgmi", description="fake dcgmi (telemrec tests)")
    p.add_argument("-v", "--version", action="store_true")
    p.add_argument("--fake-gpus", type=int, default=int(_env_default("GPUS", "4")))
    p.add_argument("--fake-mig", default=_env_default("MIG", ""))
    p.add_argument("--fake-capture", default=_env_default("CAPTURE"))
    p.add_argument("--fake-entity-width", type=int, default=int(_env_default("ENTITY_WIDTH", str(ENTITY_WIDTH))))
    p.add_argument("--fake-glitch", default=_env_default("GLITCH", ""))
    p.add_argument("--fake-hostengine-down", action="store_true", default=_env_default("HOSTENGINE") == "down")
    p.add_argument("--fake-fail-after", type=int, default=int(_env_default("FAIL_AFTER", "0")))
    p.add_argument("--fake-stderr-bytes", type=int, default=int(_env_default("STDERR_BYTES", "0")))
    p.add_argument("--fake-seed", type=int, default=int(_env_default("SEED", "0")))
    p.add_argument("--fake-time-scale", type=float, default=float(_env_default("TIME_SCALE", "1")))
    add_dmon_arguments(p.add_subparsers(dest="command"))
    return p


def _parse_mig(spec: str) -> dict[int, tuple[int, int]]:
    out = {}
    for part in filter(None, spec.split(",")):
        gpu, gis, cis = (int(x) for x in part.split(":"))
        out[gpu] = (gis, cis)
    return out


def _parse_glitches(spec: str) -> set[tuple[int, int]]:
    return {tuple(int(x) for x in part.split("@")) for part in filter(None, spec.split(","))}  # type: ignore[misc]


def _write(out: TextIO, text: str) -> None:
    out.write(text)
    out.flush()


def _capture_blocks(path: str) -> Iterator[tuple[list[str], bool]]:
    """The capture's lines grouped as dmon printed them, each with whether it holds a tick's rows.

    A block is a tick's rows, or the non-row lines (header, units, blank) that precede
    a tick; the stop trailer is dropped (the fake prints its own when signalled).
    """
    from telemrec.readers._dmon_parser import _STOP_RE, parse_header, row_label

    block: list[str] = []
    labels: set[str] = set()
    layout = None
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if _STOP_RE.search(line):
                continue
            if line.startswith("#Entity"):
                layout = parse_header(line)
            label = row_label(line, layout) if layout is not None else None
            if (label is None and labels) or (label is not None and label in labels):
                yield block, bool(labels)
                block, labels = [], set()
            if label is not None:
                labels.add(label)
            block.append(line)
    if block:
        yield block, bool(labels)


def _run_dmon(args, out: TextIO) -> int:
    field_ids = tuple(int(x) for x in args.field_ids.split(",")) if args.field_ids else DEFAULT_FIELD_IDS
    delay_s = max(args.delay, 1) / 1000.0
    if args.fake_capture:
        blocks: Iterator[tuple[list[str], bool]] = _capture_blocks(args.fake_capture)
        header = None
    else:
        model = DeviceModel(args.fake_gpus, _parse_mig(args.fake_mig), args.fake_seed, _parse_glitches(args.fake_glitch))
        entities = model.entities(parse_entity_ids(args.entities))
        header = format_header(field_ids, args.fake_entity_width)
        _write(out, "\n".join(header) + "\n")

        def model_blocks() -> Iterator[tuple[list[str], bool]]:
            tick = 0
            while True:
                yield [format_row(e.label, model.cells(e, tick, field_ids, delay_s), field_ids, args.fake_entity_width)
                       for e in entities], True
                tick += 1

        blocks = model_blocks()
    schedule = HeaderSchedule()
    ticks = 0
    for block, has_rows in blocks:
        if _STOP.requested:
            break
        if not has_rows:
            _write(out, "".join(line + "\n" for line in block))
            continue
        if args.fake_fail_after and ticks >= args.fake_fail_after:
            _write(out, "Error getting values information. Return -21: Host engine connection invalid/disconnected\n")
            return CONNECTION_NOT_VALID_EXIT
        _write(out, "".join(line + "\n" for line in block))
        ticks += 1
        if args.count and ticks >= args.count:
            return 0
        time.sleep(delay_s * args.fake_time_scale)
        if schedule.after_tick() and header is not None:
            _write(out, "\n".join(header) + "\n")
    if _STOP.requested:
        _write(out, "\n\ndmon was stopped due to receiving a signal\n")
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    if args.fake_stderr_bytes:
        sys.stderr.write(("fake dcgmi diagnostic noise " * 40 + "\n") * (args.fake_stderr_bytes // 1161 + 1))
        sys.stderr.flush()
    if args.version:
        _write(out, version_text(FAKE_VERSION))
        return 0
    if args.command != "dmon":
        _write(out, "Usage: dcgmi dmon -e <field ids> [-d <ms>] [-c <count>] [-i <entities>]\n")
        return 1
    host = getattr(args, "host", "localhost")
    if args.fake_hostengine_down or host not in ("localhost", "127.0.0.1", "::1"):
        _write(out, CONNECT_ERROR.format(host=host))
        return CONNECTION_NOT_VALID_EXIT
    signal.signal(signal.SIGINT, _STOP)
    signal.signal(signal.SIGTERM, _STOP)
    try:
        return _run_dmon(args, out)
    except BrokenPipeError:
        quiet_stdout()
        return 0


if __name__ == "__main__":
    sys.exit(main())

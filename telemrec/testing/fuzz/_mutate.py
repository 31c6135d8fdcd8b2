"""Inputs and mutations: what a mutant is made from, and how, reproducibly.

A mutation is a spec string. ``KIND:SEED`` draws its parameters from a generator seeded by the
spec alone (so ``telemrec-fuzz repro INPUT KIND:SEED`` rebuilds the same bytes from the same
input); explicit specs name them: ``set@133729=2``, ``zero@5024-8200``, ``flip@133729.3``,
``truncate@1000``, ``tail@4096``, ``identity``.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field

from telemrec.testing.fuzz import _journal, _trace

GENERIC_KINDS = ("truncate", "flip", "set", "zero", "zero-large", "burst", "tail")
TRACE_KINDS = ("rename", "manifest-text", "manifest-edit", "attrs")
TRACE3_KINDS = ("catalog-text", "streams", "index", "catalog-edit", "index-edit", "h5-struct")
JOURNAL_KINDS = ("torn", "frame-flip", "frame-json", "frame-order", "journal-header")
JOURNAL2_KINDS = ("seg-header", "seg-stream")
ALL_KINDS = GENERIC_KINDS + TRACE_KINDS + TRACE3_KINDS + JOURNAL_KINDS + JOURNAL2_KINDS
FAMILIES = {"bytes": GENERIC_KINDS, "structure": TRACE_KINDS + TRACE3_KINDS + JOURNAL_KINDS + JOURNAL2_KINDS}


@dataclass
class Input:
    """A file to mutate: a trace (format 1, 2 or 3) or a crashed trace's journal (version 1, 2 or 3)."""

    name: str     # how reports name it: "v2/psutil_workload.h5", "corrupt/crashed.h5.journal"
    path: str
    kind: str     # "trace" or "journal"
    version: int  # the trace's format version, or the journal's version
    data: bytes = field(repr=False)
    layout: dict | None = field(default=None, repr=False)  # traces: _trace.layout(path)

    @classmethod
    def from_path(cls, path: str, name: str | None = None) -> "Input":
        with open(path, "rb") as f:
            data = f.read()
        name = name or os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
        if path.endswith(".journal"):
            version = 1 if data.startswith(b"TELEMREC-JOURNAL 1\n") else 2 if data.startswith(b"TELEMREC-JOURNAL 2\n") else 3
            return cls(name, path, "journal", version, data)
        return cls(name, path, "trace", 0, data)  # version: from the layout

    @property
    def file_name(self) -> str:
        """What a mutant is called where it is run (a journal beside the trace path it recovers)."""
        return "trace.h5.journal" if self.kind == "journal" else "trace.h5"

    def kinds(self) -> tuple[str, ...]:
        if self.kind == "journal":
            return GENERIC_KINDS + JOURNAL_KINDS + (JOURNAL2_KINDS if self.version >= 2 else ())
        return GENERIC_KINDS + TRACE_KINDS + (TRACE3_KINDS if self.version == 3 else ())


@dataclass
class Mutant:
    data: bytes
    description: str
    strict: bool  # True: an accepted mutant must read exactly as the original (or as a prefix of a journal)
    text: bool = False  # some changed byte lies in a format 1/2 manifest's unchecksummed text


_EXPLICIT = re.compile(r"^(set@(\d+)=(\d+)|zero@(\d+)-(\d+)|flip@(\d+)\.([0-7])|truncate@(\d+)|tail@(\d+)|identity)$")


def apply(spec: str, inp: Input, workdir: str) -> Mutant | None:
    """The mutant ``spec`` makes of ``inp`` (None: the mutation does not apply to this input)."""
    data = inp.data
    m = _EXPLICIT.match(spec)
    if m:
        return _explicit(spec, data)
    kind, _, seed = spec.partition(":")
    if kind not in ALL_KINDS or not seed.isdigit():
        raise ValueError(f"unknown mutation {spec!r}: KIND:SEED (KIND one of {', '.join(ALL_KINDS)}) or an explicit one")
    rng = random.Random(spec)
    if kind in GENERIC_KINDS:
        return _unsealed(_generic(kind, data, inp, rng), inp)
    if inp.kind == "journal":
        mutator = _journal.MUTATORS.get(kind)
        out = mutator(_journal.parse(data), data, rng) if mutator else None
    elif kind in _trace.BYTE_MUTATORS:
        out = _trace.BYTE_MUTATORS[kind](data, inp.layout, rng)
        return _unsealed(Mutant(*out), inp) if out else None
    elif kind in _trace.RESEAL_MUTATORS:
        out = _trace.RESEAL_MUTATORS[kind](data, inp.layout, rng, workdir)
    else:
        out = None
    return Mutant(*out) if out else None


def _unsealed(mutant: Mutant, inp: Input) -> Mutant:
    """A format 1 or 2 mutant whose every changed byte lies in text no checksum covers (the manifest,
    HDF5's global heap of variable-length strings: string values, source versions, error texts)
    cannot be told from a trace that held those texts: judged for tracebacks, hangs and crashes only.
    (Names live there too, but each is stored twice and cross-checked: a changed one is refused.)"""
    regions = _trace.unsealed_regions(inp.layout) if inp.kind == "trace" and inp.layout else []
    if not mutant.strict or not regions or len(mutant.data) != len(inp.data):
        return mutant
    import numpy as np

    changed = np.flatnonzero(np.frombuffer(mutant.data, np.uint8) != np.frombuffer(inp.data, np.uint8))
    inside = np.zeros(len(changed), bool)
    for a, b in regions:
        inside |= (changed >= a) & (changed < b)
    if len(changed) and inside.all():
        return Mutant(mutant.data, f"{mutant.description} (in unchecksummed text of format {inp.version})", False)
    manifest = inp.layout.get("manifest")
    if manifest and len(changed) and ((changed >= manifest[0]) & (changed < manifest[0] + manifest[1])).any():
        # mixed: strict for names and values, but a manifest that reads differently is that byte's doing
        return Mutant(mutant.data, mutant.description, True, text=True)
    return mutant


def _explicit(spec: str, data: bytes) -> Mutant:
    out = bytearray(data)
    if spec == "identity":
        return Mutant(data, "unchanged (control)", True)
    if spec.startswith("set@"):
        at, value = (int(x) for x in spec[4:].split("="))
        if at < len(out):
            out[at] = value & 0xFF
        return Mutant(bytes(out), f"byte {at} set to {value}", True)
    if spec.startswith("zero@"):
        lo, hi = (int(x) for x in spec[5:].split("-"))
        out[lo:hi] = bytes(len(out[lo:hi]))
        return Mutant(bytes(out), f"bytes {lo}-{hi} zeroed", True)
    if spec.startswith("flip@"):
        at, bit = (int(x) for x in spec[5:].split("."))
        if at < len(out):
            out[at] ^= 1 << bit
        return Mutant(bytes(out), f"bit {bit} of byte {at} flipped", True)
    if spec.startswith("truncate@"):
        at = int(spec[9:])
        return Mutant(data[:at], f"truncated to {at} of {len(data)} bytes", True)
    n = int(spec[5:])
    return Mutant(data + random.Random(spec).randbytes(n), f"{n} random bytes appended", True)


def _offset(rng: random.Random, inp: Input) -> int:
    """Anywhere, or (half the time, for traces) in the file's metadata: HDF5 structures, heaps, attributes."""
    if inp.layout and rng.random() < 0.5:
        return _trace.pick_in(rng, _trace.meta_regions(inp.layout))
    return rng.randrange(max(len(inp.data), 1))


def _generic(kind: str, data: bytes, inp: Input, rng: random.Random) -> Mutant:
    out = bytearray(data)
    n = len(data)
    if kind == "truncate":
        at = _offset(rng, inp) if rng.random() < 0.8 else max(0, n - rng.randint(1, 512))
        return Mutant(data[:at], f"truncated to {at} of {n} bytes", True)
    if kind == "tail":
        size = rng.choice([1, 7, 64, 512, 4096])
        filler = rng.choice(["random", "zeros", "copy"])
        extra = rng.randbytes(size) if filler == "random" else bytes(size) if filler == "zeros" else data[:size]
        return Mutant(data + extra, f"{size} bytes ({filler}) appended", True)
    at = _offset(rng, inp)
    if kind == "flip":
        spots = []
        for i in range(rng.randint(1, 4)):
            pos = at if i == 0 else _offset(rng, inp)
            bit = rng.randrange(8)
            out[pos] ^= 1 << bit
            spots.append(f"{pos}.{bit}")
        return Mutant(bytes(out), f"bits flipped (byte.bit): {', '.join(spots)}", True)
    if kind == "set":
        value = rng.choice([v for v in (0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256)) if v != data[at]])
        out[at] = value
        return Mutant(bytes(out), f"byte {at} set to {value} (was {data[at]})", True)
    if kind in ("zero", "zero-large", "burst"):
        size = rng.randint(1, 64) if kind == "zero" else rng.randint(1024, 8192) if kind == "zero-large" \
            else rng.randint(8, 256)
        for _ in range(50):  # much of an HDF5 file is zeros already: aim where zeros change something
            if kind == "zero-large":
                at = max(0, at - size // 2)
            if kind == "burst" or any(data[at:at + size]):
                break
            at = _offset(rng, inp)
        end = min(n, at + size)
        out[at:end] = rng.randbytes(end - at) if kind == "burst" else bytes(end - at)
        return Mutant(bytes(out), f"bytes {at}-{end} {'randomized' if kind == 'burst' else 'zeroed'}", True)
    raise AssertionError(kind)


def plan(inp: Input, count: int, *, seed: int = 0, kinds: tuple[str, ...] | None = None) -> list[str]:
    """``count`` mutation specs for ``inp``: the known bad cases first (the zeroed range 5024-8200
    that made format 2 readers spin), then the applicable kinds in turn, each with its own seed."""
    usable = [k for k in inp.kinds() if kinds is None or k in kinds]
    specs: list[str] = []
    if (kinds is None or "zero-large" in kinds) and inp.kind == "trace" and len(inp.data) > 8200:
        specs.append("zero@5024-8200")
    rng = random.Random(f"plan:{inp.name}:{seed}")
    order: list[str] = []
    while len(specs) < count and usable:
        if not order:
            order = usable[:]
            rng.shuffle(order)
        kind = order.pop()
        specs.append(f"{kind}:{seed * 1_000_000 + len(specs)}")
    return specs[:count]

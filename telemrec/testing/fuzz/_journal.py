"""Journals for the fuzzer: their frames (docs/format.md section 2, docs/format-v2.md section 2),
mutants that keep or break the framing, and a deterministic crashed journal made with TraceWriter.

The mutants here re-seal what they change (frame length and CRC-32 recomputed) unless their name
says otherwise, so they reach the code past the checksum: the fold and the journal reader, which
must validate a frame's content before using it (a frame that fails is a torn tail).
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from dataclasses import dataclass

from telemrec.testing.fuzz import _jsonedit

MAGIC = b"\xf0TRF"
_HEAD = struct.Struct("<4sII")  # versions 1 and 2; version 3 follows it with the frame's u32 ordinal
_ORDINAL = struct.Struct("<I")
_SLOT_SIZE = 16
_SEG = struct.Struct("<I")
INT64 = (-(2**63), 2**63 - 1)


@dataclass
class Frame:
    offset: int
    payload: bytes
    ordinal: int | None = None  # version 3: the number in its head, kept when the frame moves

    @property
    def end(self) -> int:
        return self.offset + self.head_size + len(self.payload)

    @property
    def head_size(self) -> int:
        return _HEAD.size + (0 if self.ordinal is None else _ORDINAL.size)


@dataclass
class Journal:
    version: int
    header: bytes
    frames: list[Frame]
    tail: bytes  # the torn bytes after the last whole frame

    def build(self, frames: list[bytes] | None = None, tail: bytes | None = None) -> bytes:
        parts = [self.header, *(seal(f.payload, f.ordinal) for f in self.frames)] if frames is None \
            else [self.header, *frames]
        return b"".join(parts) + (self.tail if tail is None else tail)


def seal(payload: bytes, ordinal: int | None = None) -> bytes:
    """A frame around ``payload``; with the ordinal of a version 3 frame, which its CRC covers."""
    if ordinal is None:
        return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
    number = _ORDINAL.pack(ordinal)
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload, zlib.crc32(number))) + number + payload


def parse(data: bytes) -> Journal:
    """Split a journal into header, whole frames (length and CRC good) and the torn tail."""
    nl = data.find(b"\n")
    header = data[: nl + 1] if nl >= 0 else data
    version = {b"TELEMREC-JOURNAL 1\n": 1, b"TELEMREC-JOURNAL 2\n": 2}.get(header, 3)
    if version == 3:
        header = data[:len(header) + _SLOT_SIZE]  # the header line, then the checkpoint slot
    size = _HEAD.size + (_ORDINAL.size if version == 3 else 0)
    pos, frames = len(header), []
    while pos + size <= len(data):
        magic, length, crc = _HEAD.unpack_from(data, pos)
        ordinal = _ORDINAL.unpack_from(data, pos + _HEAD.size)[0] if version == 3 else None
        payload = data[pos + size: pos + size + length]
        if magic != MAGIC or len(payload) < length or seal(payload, ordinal)[:_HEAD.size] != data[pos:pos + _HEAD.size]:
            break
        frames.append(Frame(pos, payload, ordinal))
        pos += size + length
    return Journal(version, header, frames, data[pos:])


# -- frame contents ---------------------------------------------------------------------------------

def decode(journal: Journal, frame: Frame):
    """('json', obj) or ('segment', (header, streams)) or (None, None) when undecodable."""
    p = frame.payload
    try:
        if journal.version == 1:
            return "json", json.loads(zlib.decompress(p))
        if p[:1] == b"J":
            return "json", json.loads(zlib.decompress(p[1:]))
        if p[:1] == b"S":
            (hlen,) = _SEG.unpack_from(p, 1)
            return "segment", (json.loads(p[5:5 + hlen]), p[5 + hlen:])
    except (ValueError, zlib.error, struct.error):
        pass
    return None, None


def encode(journal: Journal, kind: str, content) -> bytes:
    if kind == "segment":
        header, streams = content
        head = _dumps(header)
        return b"S" + _SEG.pack(len(head)) + head + streams
    body = zlib.compress(_dumps(content), 3)
    return body if journal.version == 1 else b"J" + body


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# -- mutants: each returns (bytes, description, strict) ----------------------------------------------

def torn(journal: Journal, data: bytes, rng: random.Random):
    """Cut the journal: inside a frame, inside a frame's header, or exactly between frames."""
    if not journal.frames:
        cut = rng.randrange(len(data) + 1)
        return data[:cut], f"truncated at {cut} of {len(data)}", True
    frame = rng.choice(journal.frames)
    how = rng.choice(["inside", "header", "boundary"])
    if how == "inside":
        cut = rng.randrange(frame.offset + frame.head_size + 1, frame.end)
    elif how == "header":
        cut = rng.randrange(frame.offset + 1, frame.offset + frame.head_size)
    else:
        cut = frame.end
    index = journal.frames.index(frame)
    return data[:cut], f"torn at {cut} ({how} frame {index} at {frame.offset}..{frame.end})", True


def frame_flip(journal: Journal, data: bytes, rng: random.Random):
    """Flip bits in one whole frame (its 12-byte head or payload), CRC left as it was."""
    if not journal.frames:
        return None
    index = rng.randrange(len(journal.frames))
    frame = journal.frames[index]
    out = bytearray(data)
    spots = []
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(frame.offset, frame.end)
        bit = rng.randrange(8)
        out[at] ^= 1 << bit
        spots.append(f"{at}.{bit}")
    return bytes(out), f"bits {', '.join(spots)} flipped in frame {index}, CRC not recomputed", True


def frame_json(journal: Journal, data: bytes, rng: random.Random):
    """A JSON frame re-sealed with a valid CRC but content of the wrong shape."""
    picks = [(i, obj) for i, f in enumerate(journal.frames) for kind, obj in [decode(journal, f)] if kind == "json"]
    if not picks:
        return None
    index, obj = rng.choice(picks)
    paths = _json_targets(journal, obj)
    new, path, what = _jsonedit.edit(obj, rng, paths=paths)
    strict = _strict_json_edit(obj, new, path, what)
    return _replace(journal, index, encode(journal, "json", new)), \
        f"frame {index} ({_frame_type(obj)}) re-sealed: {what}", strict


def seg_header(journal: Journal, data: bytes, rng: random.Random):
    """A segment frame re-sealed with a valid CRC but a header of the wrong shape (runs, streams, rows)."""
    picks = [(i, c) for i, f in enumerate(journal.frames) for kind, c in [decode(journal, f)] if kind == "segment"]
    if not picks:
        return None
    index, (header, streams) = rng.choice(picks)
    paths = [p for p in _jsonedit.nodes(header) if p]
    new, _, what = _jsonedit.edit(header, rng, paths=paths)
    return _replace(journal, index, encode(journal, "segment", (new, streams))), \
        f"segment frame {index} (table {header.get('table')}) re-sealed: {what}", True


def seg_stream(journal: Journal, data: bytes, rng: random.Random):
    """Damage a segment's streams, then re-seal the frame (only each stream's own CRC can tell)."""
    picks = [(i, c) for i, f in enumerate(journal.frames) for kind, c in [decode(journal, f)] if kind == "segment"]
    picks = [p for p in picks if p[1][1]]
    if not picks:
        return None
    index, (header, streams) = rng.choice(picks)
    body = bytearray(streams)
    at = rng.randrange(len(body))
    op = rng.choice(["flip", "zero", "truncate"])
    if op == "flip":
        body[at] ^= 1 << rng.randrange(8)
    elif op == "zero":
        n = rng.randint(1, 16)
        body[at:at + n] = bytes(len(body[at:at + n]))
    else:
        del body[at:]
    return _replace(journal, index, encode(journal, "segment", (header, bytes(body)))), \
        f"segment frame {index}: streams byte {at} {op}, frame re-sealed", True


def frame_order(journal: Journal, data: bytes, rng: random.Random):
    """Whole frames duplicated, swapped or dropped (each frame's own CRC stays valid)."""
    n = len(journal.frames)
    if n < 2:
        return None
    sealed = [seal(f.payload, f.ordinal) for f in journal.frames]
    op = rng.choice(["duplicate", "swap", "drop"])
    i = rng.randrange(1, n)
    if op == "duplicate":
        sealed.insert(i, sealed[i])
    elif op == "swap":
        j = i - 1 if i == n - 1 or rng.random() < 0.5 else i + 1
        if j == 0:
            j = i + 1 if i + 1 < n else i - 1
        if j == 0:
            return None
        sealed[i], sealed[j] = sealed[j], sealed[i]
        op = f"swap with {j}"
    else:
        del sealed[i]
    return journal.build(sealed), f"frame {i} of {n}: {op}", True


def journal_header(journal: Journal, data: bytes, rng: random.Random):
    new = rng.choice([b"TELEMREC-JOURNAL 1\n", b"TELEMREC-JOURNAL 2\n", b"TELEMREC-JOURNAL 3\n",
                      b"TELEMREC-JOURNAL 99\n", b"TELEMREC-JOURNAL 2", b"TELEMREC-JOURNAL -1\n", b"\n",
                      b"telemrec-journal 2\n", b"TELEMREC-JOURNAL 2\r\n"])
    if new == journal.header:
        new = b"TELEMREC-JOURNAL 4\n"
    return new + data[len(journal.header):], f"header {journal.header!r} -> {new!r}", True


def _replace(journal: Journal, index: int, payload: bytes) -> bytes:
    frames = [seal(f.payload, f.ordinal) for f in journal.frames]
    frames[index] = seal(payload, journal.frames[index].ordinal)
    return journal.build(frames)


def _frame_type(obj) -> str:
    return str(obj.get("t")) if isinstance(obj, dict) else type(obj).__name__


def _json_targets(journal: Journal, obj) -> list:
    """Paths worth editing: structure first (the frame type, catalog items, record rows), the
    manifest's leaves less often (it is free-form enough that most edits are legitimate)."""
    paths = list(_jsonedit.nodes(obj))
    structural = [p for p in paths if not (len(p) > 1 and p[0] in ("manifest", "reader"))]
    return structural if structural and len(structural) < len(paths) * 4 else paths


def _strict_json_edit(old, new, path: tuple, what: str) -> bool:
    """Whether a re-sealed JSON frame edit must be refused or read around (what comes back must be
    what a prefix of the journal holds). Edits of the manifest or a reader entry, a name changed to
    another string, an entity's fields listed in another order, and records that still follow the
    row shape (another value, a swap of two ints) are new content, not damage."""
    if _jsonedit.same_type_edit(old, new, path) and path[-1:] != ("t",):
        return False
    if isinstance(new, dict) and new.get("t") == "def" and len(path) == 3 and path[2] == 2 and what.endswith("swapped"):
        return False  # ["fields", entity, [field numbers]] in another order: the order of first appearance
    if path[:1] in (("manifest",), ("reader",), ("stats",), ("stop",), ("command",)) and isinstance(new, dict) and (
            len(path) > 1 or isinstance(new.get(path[0]), dict)):
        return False  # a manifest or reader entry with other content, still an object
    if isinstance(new, dict) and new.get("t") == "rec" and path[:1] == ("r",) and len(path) >= 2:
        rows = new.get("r")
        return not (isinstance(rows, list) and all(_valid_v1_row(row) for row in rows))
    return True


def _valid_v1_row(row) -> bool:
    """``[mono_ns, wall_ns, source, source_version, entity, fields, error]`` (docs/format-v2.md, section 2)."""
    if not isinstance(row, list) or len(row) != 7:
        return False
    mono, wall, source, version, entity, fields, error = row
    return (_int64(mono) and _int64(wall) and all(isinstance(v, str) for v in (source, version, entity))
            and (error is None or isinstance(error, str)) and isinstance(fields, dict)
            and all(_field_value(v) for v in fields.values()))


def _int64(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]


def _field_value(value) -> bool:
    if isinstance(value, dict):  # a NaN with its payload: {"f64": int64 bit pattern}
        return list(value) == ["f64"] and _int64(value["f64"])
    return value is None or isinstance(value, (str, float)) or _int64(value)  # not bool: RawRecord refuses it


MUTATORS = {
    "torn": torn,
    "frame-flip": frame_flip,
    "frame-json": frame_json,
    "seg-header": seg_header,
    "seg-stream": seg_stream,
    "frame-order": frame_order,
    "journal-header": journal_header,
}


def prefixes(data: bytes) -> list[bytes]:
    """The journal cut after each of its whole frames: what a torn tail at that frame leaves (the
    references a damaged journal's recovery may equal)."""
    journal = parse(data)
    return [data[: f.end] for f in journal.frames]


# -- a crashed journal, made the way a recorder makes one ----------------------------------------------

def make_crashed_journal(path: str) -> str:
    """A journal (this telemrec's version) of a writer that died: three sources' worth of entities coming and going,
    ints, floats (NaN, -0.0, inf), strings, None, error records, ticks and an annotation; sealed
    and provisional segments, merged provisional levels, and a torn last frame. Deterministic
    (fixed clocks and manifest): the same bytes on every run of one telemrec version."""
    import os

    from telemrec.record import RawRecord
    from telemrec.trace import TraceWriter

    trace = path[: -len(".journal")] if path.endswith(".journal") else path
    for p in (trace, trace + ".journal"):
        if os.path.exists(p):
            os.unlink(p)
    manifest = {"format": "telemrec-trace", "format_version": 3, "telemrec_version": "0.1.0",
                "libraries": {}, "host": None, "gpus": [], "readers": [], "interval_seconds": 0.5,
                "flush_every_seconds": 1.0, "start": {"wall_ns": 1_790_000_000_000_000_000, "mono_ns": 1000},
                "stop": None, "slurm": None, "env": {}, "command": None, "tags": {"fuzz": "journal"},
                "closed_cleanly": False, "stats": {},
                "imported_from": {"source": "telemrec.testing.fuzz", "imported_wall_ns": 1_790_000_000_000_000_000}}
    w = TraceWriter(trace, manifest, frame_records=1000, seal_rows=36)
    t0 = 1_790_000_000_000_000_000
    specials = [float("nan"), -0.0, float("inf"), 1e-300, 2**62, -(2**63), "text", None]
    for tick in range(40):
        mono, wall = 1000 + tick * 500_000_000, t0 + tick * 500_000_000
        recs = [RawRecord(mono, wall, "system", {"load": tick / 8, "n": tick, "state": "ok" if tick % 7 else "busy"},
                          "psutil", "7.2"),
                RawRecord(mono, wall, "gpu0", {"util": tick % 100, "temp": 30.5 + tick / 10,
                                               "odd": specials[tick % len(specials)]}, "nvml", "12.5")]
        for pid in range(3):  # processes that come and go
            if (tick // 10 + pid) % 2 == 0 and pid < 2:
                recs.append(RawRecord(mono, wall, f"pid:{4000 + pid + tick // 20}", {"rss": 1 << (20 + pid), "cpu": pid / 3},
                                      "psutil", "7.2"))
        if tick % 13 == 5:
            recs.append(RawRecord(mono, wall, "gpu1", {}, "nvml", "12.5", error="NVML_ERROR_GPU_IS_LOST"))
        w.write(recs)
        w.write_ticks("psutil", [{"tick": tick, "scheduled_mono_ns": mono, "start_mono_ns": mono, "end_mono_ns": mono + 1000,
                                  "start_wall_ns": wall, "status": 0, "records": len(recs), "cpu_ns": 12345}])
        if tick == 20:
            w.annotate("phase-a", t0, wall, 1000, mono)
            w.write_reader({"label": "nvml", "name": "nvml", "caps": {"fields": ["util", "temp", "odd"]}})
        if tick % 4 == 3:  # nine flushes of provisional segments, then a merged level
            w.flush()
    w.abandon()
    jpath = trace + ".journal"
    with open(jpath, "rb") as f:
        blob = f.read()
    with open(jpath, "wb") as f:
        f.write(blob[:-7])
    return jpath

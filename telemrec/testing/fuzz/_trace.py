"""Trace files (HDF5) for the fuzzer: where things are in a file, and mutants that know it.

``layout`` opens the file with h5py (run it in a child process: the fuzzer's parent never opens
HDF5 files, so that what it forks is clean). Byte mutants aim at what a trace relies on: entity
and field names, the manifest and catalog text, format 3's streams and index. Re-sealing mutants
(``*-edit``, ``attrs``, ``h5-struct``) rewrite the file with h5py and recompute the CRC-32s format
3 keeps, so they reach the code that must validate the catalog and index before using them.
"""

from __future__ import annotations

import json
import os
import random
import zlib

from telemrec.testing.fuzz import _jsonedit

INDEX_COLUMNS = {"segments": 12, "runs": 2, "streams": 10, "run_kinds": 1}
#: index columns whose small changes no checksum or cross-check can tell (a different, valid trace)
_SOFT_INDEX_COLUMNS = {("segments", 7), ("segments", 8), ("segments", 9), ("segments", 10), ("segments", 11)}


def layout(path: str) -> dict:
    """Regions of a trace file: raw data of datasets, the manifest and catalog texts, format 3's
    /streams and index arrays, and names (entities, fields) to aim renames at."""
    import h5py

    with open(path, "rb") as f:
        data = f.read()
    out: dict = {"size": len(data), "raw": [], "manifest": None, "catalog": None, "streams": None, "index": {},
                 "names": [], "version": None}
    out["heaps"] = _global_heaps(data)
    with h5py.File(path, "r") as h5:
        out["version"] = int(h5.attrs.get("format_version", 1))

        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            dsid = obj.id
            if obj.chunks is None:
                offset = dsid.get_offset()
                if offset is not None and obj.dtype.kind not in "O":
                    out["raw"].append([int(offset), int(dsid.get_storage_size())])
            else:
                for i in range(dsid.get_num_chunks()):
                    info = dsid.get_chunk_info(i)
                    out["raw"].append([int(info.byte_offset), int(info.size)])

        h5.visititems(visit)
        for name in ("manifest", "catalog"):
            if name in h5:
                raw = h5[name][()]
                text = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogatepass")
                at = data.find(text)
                out[name] = [at, len(text)] if at >= 0 else None
        if "streams" in h5 and "catalog" in h5:
            streams = h5["streams"]
            base = streams.id.get_offset()
            out["streams"] = [int(base), int(streams.shape[0])] if base is not None else None
            catalog = json.loads(h5["catalog"][()])
            for name, (offset, size, _crc, _rows) in catalog["index"].items():
                if base is not None:
                    out["index"][name] = [int(base) + offset, size]
            names = {e[1] for e in catalog["entities"]}
            for table in catalog["tables"]:
                names.update(table.get("fields") or [])
        else:
            names = set()
            for source in h5.get("records", {}).values():
                names.update(k for k in source.keys() if not k.startswith("$"))
                for entity in list(source.values())[:4]:
                    if isinstance(entity, h5py.Group):
                        names.update(entity.keys())
        out["names"] = sorted(n for n in names if isinstance(n, str) and len(n) >= 3)[:400]
    out["raw"].sort()
    return out


def meta_regions(lay: dict) -> list[tuple[int, int]]:
    """The file's bytes that are not a dataset's raw data: HDF5 metadata, heaps, attributes."""
    regions, pos = [], 0
    for offset, size in lay["raw"]:
        if offset > pos:
            regions.append((pos, offset))
        pos = max(pos, offset + size)
    if pos < lay["size"]:
        regions.append((pos, lay["size"]))
    return regions or [(0, lay["size"])]


def pick_in(rng: random.Random, regions: list[tuple[int, int]]) -> int:
    total = sum(b - a for a, b in regions)
    at = rng.randrange(max(total, 1))
    for a, b in regions:
        if at < b - a:
            return a + at
        at -= b - a
    return regions[-1][0]


# -- byte mutants aimed by the layout (no re-seal) ---------------------------------------------------

def rename(data: bytes, lay: dict, rng: random.Random):
    """One letter of an entity or field name changed where the name is stored (disk:loop4 -> dksk:loop4)."""
    names = [n for n in lay["names"] if data.find(n.encode("utf-8", "surrogatepass")) >= 0]
    if not names:
        return None
    name = rng.choice(names)
    raw = name.encode("utf-8", "surrogatepass")
    spots, at = [], data.find(raw)
    while at >= 0 and len(spots) < 50:
        spots.append(at)
        at = data.find(raw, at + 1)
    at = rng.choice(spots)
    letters = [i for i, c in enumerate(raw) if chr(c).isalnum()]
    if not letters:
        return None
    i = rng.choice(letters)
    old = chr(raw[i])
    new = rng.choice([c for c in ("0123456789" if old.isdigit() else "abcdefghijklmnopqrstuvwxyz") if c != old.lower()])
    out = bytearray(data)
    out[at + i] = ord(new)
    renamed = (raw[:i] + new.encode() + raw[i + 1:]).decode("utf-8", "replace")
    return (bytes(out), f"name {name!r} -> {renamed!r} at byte {at} ({len(spots)} occurrence(s))",
            not _unsealed_manifest(lay, at))


def unsealed_regions(lay: dict) -> list[tuple[int, int]]:
    """Byte ranges of a format 1 or 2 file that no checksum covers and no second copy backs: the
    manifest text and HDF5's global heap collections (variable-length strings); none in format 3."""
    if (lay.get("version") or 1) >= 3:
        return []
    regions = [tuple(h) for h in lay.get("heaps", ())]
    if lay.get("manifest"):
        start, size = lay["manifest"]
        regions.append((start, start + size))
    return regions


def _global_heaps(data: bytes) -> list[list[int]]:
    """[start, end) of every HDF5 global heap collection ("GCOL", version 1, then its size)."""
    found, at = [], data.find(b"GCOL")
    while at >= 0:
        if data[at + 4:at + 5] == b"\x01" and at + 16 <= len(data):
            size = int.from_bytes(data[at + 8:at + 16], "little")
            if 16 <= size <= len(data) - at:
                found.append([at, at + size])
        at = data.find(b"GCOL", at + 4)
    return found


def _unsealed_manifest(lay: dict, at: int | None = None) -> bool:
    """Whether a change at ``at`` (anywhere: None) lands in a manifest no checksum covers: formats 1 and
    2 keep it as free JSON text with no second copy, so no reader can tell a changed letter there from
    the original (their names are another matter: each is stored twice and cross-checked). Format 3
    seals its manifest."""
    region = lay.get("manifest")
    if (lay.get("version") or 1) >= 3 or not region:
        return False
    return at is None or region[0] <= at < region[0] + region[1]


def text_char(which: str):
    """One character of the manifest or catalog JSON text changed to another of its class (a
    digit to a digit, a letter to a letter): the JSON stays well-formed."""

    def mutate(data: bytes, lay: dict, rng: random.Random):
        region = lay.get(which)
        if not region:
            return None
        start, size = region
        text = data[start:start + size]
        candidates = [i for i, c in enumerate(text) if chr(c).isalnum()]
        if not candidates:
            return None
        i = rng.choice(candidates)
        old = chr(text[i])
        pool = "0123456789" if old.isdigit() else "abcdefghijklmnopqrstuvwxyz"
        new = rng.choice([c for c in pool if c != old.lower()])
        out = bytearray(data)
        out[start + i] = ord(new)
        context = text[max(0, i - 12): i + 12].decode("utf-8", "replace").replace("\n", " ")
        return (bytes(out), f"/{which} text byte {start + i}: {old!r} -> {new!r} in {context!r}",
                not (which == "manifest" and _unsealed_manifest(lay)))

    return mutate


def region_bytes(which: str):
    """Bytes damaged inside format 3's /streams data (streams only) or index arrays."""

    def mutate(data: bytes, lay: dict, rng: random.Random):
        if which == "index":
            regions = [(a, a + n) for a, n in lay["index"].values() if n]
        else:
            if not lay.get("streams"):
                return None
            base, size = lay["streams"]
            index = sorted((a, a + n) for a, n in lay["index"].values())
            lo = min((a for a, _ in index), default=base + size)
            regions = [(base, lo)] if lo > base else []
        if not regions:
            return None
        at = pick_in(rng, regions)
        out = bytearray(data)
        op = rng.choice(["flip", "set", "zero", "burst"])
        if op == "flip":
            bit = rng.randrange(8)
            out[at] ^= 1 << bit
            what = f"bit {bit} of byte {at} flipped"
        elif op == "set":
            value = rng.choice([0, 1, 2, 0x7F, 0x80, 0xFF, rng.randrange(256)])
            out[at] = value
            what = f"byte {at} set to {value}"
        else:
            n = rng.randint(1, 32)
            out[at:at + n] = bytes(len(out[at:at + n])) if op == "zero" else rng.randbytes(len(out[at:at + n]))
            what = f"bytes {at}-{at + n} {'zeroed' if op == 'zero' else 'randomized'}"
        return bytes(out), f"{which}: {what}", True

    return mutate


# -- re-sealing mutants (rewrite with h5py, recompute the CRC-32s) ------------------------------------

def _rewrite(data: bytes, workdir: str, change) -> bytes:
    import h5py

    tmp = os.path.join(workdir, "reseal.h5")
    with open(tmp, "wb") as f:
        f.write(data)
    with h5py.File(tmp, "r+") as h5:
        change(h5)
    with open(tmp, "rb") as f:
        out = f.read()
    os.unlink(tmp)
    return out


def _put_text(h5, name: str, text: str) -> None:
    import h5py
    import numpy as np

    raw = text.encode("utf-8", "surrogatepass")
    del h5[name]
    h5.create_dataset(name, data=text, dtype=h5py.string_dtype("utf-8"))
    h5.attrs[f"{name}_crc32"] = np.uint32(zlib.crc32(raw))


def catalog_edit(data: bytes, lay: dict, rng: random.Random, workdir: str):
    """The catalog with one node of the wrong shape, its CRC-32 recomputed."""
    if lay["version"] != 3:
        return None
    result = {}

    def change(h5):
        catalog = json.loads(h5["catalog"][()])
        paths = [p for p in _jsonedit.nodes(catalog) if p]
        new, path, what = _jsonedit.edit(catalog, rng, paths=paths)
        # swapping two entities (or sources), or a name changed to another string, is a consistently
        # different trace, not damage
        result["strict"] = not (what.endswith("swapped") and path[:1] in (("entities",), ("sources",))) \
            and not _jsonedit.same_type_edit(catalog, new, path)
        result["what"] = what
        _put_text(h5, "catalog", json.dumps(new, ensure_ascii=False))

    out = _rewrite(data, workdir, change)
    return out, f"catalog re-sealed: {result['what']}", result["strict"]


def manifest_edit(data: bytes, lay: dict, rng: random.Random, workdir: str):
    """The manifest with one node changed, re-sealed (format 3) or not (no CRC before it): robust only."""
    result = {}

    def change(h5):
        manifest = json.loads(h5["manifest"][()])
        new, _, what = _jsonedit.edit(manifest, rng)
        result["what"] = what
        text = json.dumps(new, ensure_ascii=False)
        if lay["version"] == 3:
            _put_text(h5, "manifest", text)
        else:
            import h5py

            del h5["manifest"]
            h5.create_dataset("manifest", data=text, dtype=h5py.string_dtype("utf-8"))

    out = _rewrite(data, workdir, change)
    return out, f"manifest rewritten: {result['what']}", False


def index_edit(data: bytes, lay: dict, rng: random.Random, workdir: str):
    """One cell of an index array changed, the array re-encoded and appended to /streams, the
    catalog's index entry and CRC-32 updated: only the reader's checks of the index can tell."""
    if lay["version"] != 3:
        return None
    import numpy as np

    result = {}

    def change(h5):
        catalog = json.loads(h5["catalog"][()])
        blob = h5["streams"][()]
        names = [n for n, e in catalog["index"].items() if e[3] > 0]
        name = rng.choice(names)
        offset, size, _crc, rows = catalog["index"][name]
        columns = INDEX_COLUMNS[name]
        array = decode_index(blob[offset:offset + size].tobytes(), rows, columns)
        row, col = rng.randrange(rows), rng.randrange(columns)
        old = int(array[row, col])
        op = rng.choice(["+1", "-1", "negative", "huge", "zero", "drop-row", "dup-row"])
        strict = True
        if op == "drop-row":
            array = np.delete(array, row, axis=0)
        elif op == "dup-row":
            array = np.insert(array, row, array[row], axis=0)
        else:
            new = {"+1": old + 1, "-1": old - 1, "negative": -abs(old) - 1, "huge": 2**62 + 3, "zero": 0}[op]
            array[row, col] = (new + 2**63) % 2**64 - 2**63  # as int64 arithmetic wraps (NO_WALL - 1)
            strict = not (op in ("+1", "-1") and (name, col) in _SOFT_INDEX_COLUMNS)
        encoded = encode_index(array)
        catalog["index"][name] = [int(blob.shape[0]), len(encoded), zlib.crc32(encoded), int(array.shape[0])]
        catalog["streams_size"] = int(blob.shape[0]) + len(encoded)
        del h5["streams"]
        h5.create_dataset("streams", data=np.concatenate([blob, np.frombuffer(encoded, np.uint8)]))
        _put_text(h5, "catalog", json.dumps(catalog, ensure_ascii=False))
        result.update(what=f"{name}[{row}, {col}] = {old}: {op}", strict=strict)

    out = _rewrite(data, workdir, change)
    return out, f"index re-sealed: {result['what']}", result["strict"]


def decode_index(raw: bytes, rows: int, columns: int):
    import numpy as np

    planes = np.frombuffer(zlib.decompress(raw), np.uint8).reshape(8, -1)
    return np.ascontiguousarray(planes.T).view("<i8").reshape(rows, columns).astype(np.int64)


def encode_index(array) -> bytes:
    import numpy as np

    a = np.ascontiguousarray(array, dtype="<i8")
    return zlib.compress(np.ascontiguousarray(a.view(np.uint8).reshape(-1, 8).T).tobytes(), 6)


def attrs(data: bytes, lay: dict, rng: random.Random, workdir: str):
    """A root attribute with another value or type: the version, the format name, the CRC-32s."""
    import numpy as np

    choices = [("format_version", v) for v in (0, -1, 1, 2, 3, 4, 99, 2**40, "3", 3.5, np.array([3, 3]))]
    choices += [("format", v) for v in ("telemrec-trac", "", 3)]
    if lay["version"] == 3:
        choices += [(n, v) for n in ("manifest_crc32", "catalog_crc32") for v in (0, "x", -1, 2**40, None)]
    name, value = rng.choice(choices)
    if name == "format_version" and not isinstance(value, (str, np.ndarray)) and value == lay["version"]:
        value = lay["version"] % 3 + 1  # another version this telemrec reads
    what = {}

    def change(h5):
        if value is None:
            del h5.attrs[name]
            what["text"] = f"{name} removed"
        else:
            h5.attrs[name] = value
            what["text"] = f"{name} = {value!r}"

    # another version this telemrec reads: the same data may legitimately read (or be refused)
    relabel = name == "format_version" and type(value) is int and value in (1, 2, 3)
    return _rewrite(data, workdir, change), f"root attribute {what['text']}", not relabel


def h5_struct(data: bytes, lay: dict, rng: random.Random, workdir: str):
    """A dataset replaced by one of another shape, type or storage (format 3's three datasets), or
    an extra object. Re-chunking /streams keeps its bytes: readers must give the same data."""
    if lay["version"] != 3:
        return None
    import h5py
    import numpy as np

    op = rng.choice(["streams-int32", "streams-2d", "streams-chunked", "streams-short", "manifest-bytes",
                     "catalog-missing", "catalog-int", "extra-group", "manifest-array"])

    def change(h5):
        if op.startswith("streams"):
            blob = h5["streams"][()]
            del h5["streams"]
            if op == "streams-int32":
                h5.create_dataset("streams", data=blob.astype(np.int32))
            elif op == "streams-2d":
                h5.create_dataset("streams", data=blob[: len(blob) // 2 * 2].reshape(-1, 2))
            elif op == "streams-chunked":
                h5.create_dataset("streams", data=blob, chunks=(4096,), compression="gzip", shuffle=True)
            else:
                h5.create_dataset("streams", data=blob[: len(blob) * 3 // 4])
        elif op == "manifest-bytes":
            raw = h5["manifest"][()]
            del h5["manifest"]
            h5.create_dataset("manifest", data=np.frombuffer(raw if isinstance(raw, bytes) else raw.encode(), np.uint8))
        elif op == "manifest-array":
            raw = h5["manifest"][()]
            del h5["manifest"]
            h5.create_dataset("manifest", data=[raw, raw], dtype=h5py.string_dtype())
        elif op == "catalog-missing":
            del h5["catalog"]
        elif op == "catalog-int":
            del h5["catalog"]
            h5["catalog"] = 3
        else:
            h5.create_group("records/psutil")

    return _rewrite(data, workdir, change), f"HDF5 structure: {op}", True


BYTE_MUTATORS = {
    "rename": rename,
    "manifest-text": text_char("manifest"),
    "catalog-text": text_char("catalog"),
    "streams": region_bytes("streams"),
    "index": region_bytes("index"),
}
RESEAL_MUTATORS = {
    "catalog-edit": catalog_edit,
    "manifest-edit": manifest_edit,
    "index-edit": index_edit,
    "attrs": attrs,
    "h5-struct": h5_struct,
}

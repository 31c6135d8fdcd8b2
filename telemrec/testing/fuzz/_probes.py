"""What runs in a fuzzer's child: the CLI commands and the Python probes, and the digests that
let the parent compare what a mutant read with what the original read.

Probes print one JSON line. A ``TelemrecError`` is the typed failure: one line on stderr,
``telemrec-probe: error: TYPE: message``, status 2 (as the CLI does); anything else propagates
and leaves a traceback.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys

TRACE = "trace.h5"
CLI_COMMANDS = {
    "check": ["check", TRACE],
    "info": ["info", TRACE],
    "replay": ["replay", "--speed", "max", TRACE],
    "summary": ["summary", TRACE],
}
PROBES = ("load", "records", "records-inplace")
COMMANDS = tuple(CLI_COMMANDS) + PROBES
#: the manifest keys a recovery fills in from the journal's damage (how many bytes were discarded
#: and why) and the clock: two recoveries of one journal differ there and nowhere else
VOLATILE_RECOVERY = ("recovery",)


def target(command: str):
    if command in CLI_COMMANDS:
        return lambda: _cli(CLI_COMMANDS[command])
    if command == "load":
        return lambda: _typed(_load)
    if command == "records":
        return lambda: _typed(lambda: _records(recover=True))
    if command == "records-inplace":
        return lambda: _typed(lambda: _records(recover=False))
    raise ValueError(f"unknown command {command!r}: one of {', '.join(COMMANDS)}")


def argv(command: str) -> list[str]:
    """The command a user runs to see what this run saw (in the directory holding trace.h5)."""
    if command in CLI_COMMANDS:
        return ["telemrec", *CLI_COMMANDS[command]]
    code = {"load": "import telemrec; print(telemrec.load('trace.h5'))",
            "records": "import telemrec; print(sum(1 for _ in telemrec.open_trace('trace.h5').records()))",
            "records-inplace": "import telemrec; print(sum(1 for _ in telemrec.open_trace('trace.h5', recover=False)"
                               ".records()))"}[command]
    return ["python", "-c", code]


def _cli(args: list[str]) -> int:
    from telemrec.cli import main

    main(list(args))
    return 0


def _typed(func) -> int:
    from telemrec.errors import TelemrecError

    try:
        func()
    except TelemrecError as exc:
        message = exc.message.replace("\n", "\\n")
        print(f"telemrec-probe: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
    return 0


def normalized_manifest(manifest) -> dict:
    out = dict(manifest) if isinstance(manifest, dict) else {"(not a dict)": repr(manifest)}
    for key in VOLATILE_RECOVERY:
        if key in out:
            out[key] = "(recovery)"
    return out


def canonical(value) -> str:
    """A value as text that tells every value apart: floats by their bits (-0.0, NaN payloads)."""
    if isinstance(value, bool):
        return f"b{int(value)}"
    if isinstance(value, float):
        return "f" + struct.pack("<d", value).hex()
    if isinstance(value, int):
        return f"i{value}"
    if isinstance(value, str):
        return "s" + json.dumps(value)
    if value is None:
        return "n"
    if isinstance(value, dict):
        return "{" + ",".join(canonical(k) + ":" + canonical(value[k]) for k in sorted(value, key=repr)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    return f"?{type(value).__name__}:{value!r}"


def _records(recover: bool) -> None:
    from telemrec.trace import open_trace

    total, count, entities = hashlib.sha256(), 0, {}
    with open_trace(TRACE, recover=recover) as trace:
        manifest = canonical(normalized_manifest(trace.manifest))
        for r in trace.records():
            line = canonical([r.mono_ns, r.wall_ns, r.source, r.entity, r.source_version, r.error, r.fields]).encode(
                "utf-8", "surrogatepass")
            total.update(line + b"\n")
            key = f"{r.source}/{r.entity}"
            if key not in entities:
                entities[key] = hashlib.sha256()
            entities[key].update(line)
            count += 1
    print(json.dumps({"records": count, "digest": total.hexdigest(),
                      "manifest": hashlib.sha256(manifest.encode("utf-8", "surrogatepass")).hexdigest(),
                      "entities": {k: h.hexdigest()[:16] for k, h in sorted(entities.items())}},
                     sort_keys=True, ensure_ascii=True))


def _load() -> None:
    import telemrec

    frame = telemrec.load(TRACE)
    print(json.dumps({"shape": list(frame.shape), "digest": frame_digest(frame),
                      "columns": [canonical(c) for c in frame.columns[:2000]]}, ensure_ascii=True))


def frame_digest(frame) -> str:
    """Columns, index and every value, bit for bit."""
    h = hashlib.sha256()
    h.update(canonical(list(frame.columns)).encode("utf-8", "surrogatepass"))
    h.update(_array_bytes(frame.index))
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        h.update(str(column.dtype).encode())
        h.update(_array_bytes(column))
    return h.hexdigest()


def _array_bytes(values) -> bytes:
    import numpy as np

    array = np.asarray(values)
    if array.dtype.kind in "biufcmM":
        return np.ascontiguousarray(array).tobytes()
    return "\x1e".join(canonical(_plain(v)) for v in array.tolist()).encode("utf-8", "surrogatepass")


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return value
    return value if isinstance(value, (bool, int, float, str, type(None), list, tuple, dict)) else repr(value)

"""Benchmark: how fast values become a trace (issue "format 3"): the recorder's encoding, the fold,
``upgrade`` and ``import``, on the reference GPU node (benchmarks/reference_trace.py).

    python benchmarks/bench_encode.py [--hours 1] [--cache DIR]

- **Encoding while recording**: ``TraceWriter.write`` every tick and ``flush`` every 5 s of
  recorded time (fsync skipped: it costs the disk, not the encoder), records made beforehand.
  At the recorded rate (1 Hz: a flush every 5 ticks) and as a recorder at 100 Hz would (a
  flush every 500 ticks): values per second of CPU time spent encoding completed chunks
  (``encode_piece``: each flush's provisional segment, the merges, the seals), and of the
  writer's time in all (records taken into table rows too).
- **Fold**: ``close()`` of that writer, which seals the tail and copies the encoded streams.
- **Upgrade**: the same data in format 2 (written once with telemrec.testing.legacy) to format 3.
- **Import**: the trace as JSON lines (``telemrec replay``) back with ``telemrec import``'s
  code, parsing with orjson (the [fast] extra) and with the standard library.

Target: >= 5 M values/s for the fold, the upgrade and the recorder's encoding.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
TARGET = 5e6


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t0) -> tuple[float, float]:
    return time.perf_counter() - t0[0], time.process_time() - t0[1]


def encode(ticks: list, flush_every: int, workdir: str) -> dict:
    from reference_trace import reference_manifest

    from telemrec.trace import TraceWriter

    from telemrec.trace import writer as writer_module

    path = os.path.join(workdir, f"enc-{flush_every}.h5")
    real_fsync, real_encode = os.fsync, writer_module.encode_piece
    encoding = [0.0]

    def timed_encode(*args, **kw):  # the encoding of completed chunks, apart from taking records in
        t = time.thread_time()
        try:
            return real_encode(*args, **kw)
        finally:
            encoding[0] += time.thread_time() - t

    os.fsync = lambda fd: None
    writer_module.encode_piece = timed_encode
    try:
        writer = TraceWriter(path, reference_manifest(1, 0))
        t0 = _clock()
        for i, recs in enumerate(ticks):
            writer.write(recs)
            if i % flush_every == flush_every - 1:
                writer.flush()
        wall, cpu = _since(t0)
        chunks = encoding[0]
    finally:
        os.fsync, writer_module.encode_piece = real_fsync, real_encode
    t1 = _clock()
    writer.close()
    close_wall, close_cpu = _since(t1)
    values = writer.values
    os.unlink(path)
    return {"values": values, "wall": wall, "cpu": cpu, "close_wall": close_wall, "close_cpu": close_cpu,
            "chunks": chunks}


def upgrade(v2: str, workdir: str) -> dict:
    import telemrec
    from telemrec.trace.upgrade import upgrade as run

    out = os.path.join(workdir, "up.h5")
    with telemrec.open_trace(v2) as trace:
        values = trace.manifest["stats"]["values"]
    t0 = _clock()
    run(v2, out)
    wall, cpu = _since(t0)
    os.unlink(out)
    return {"values": values, "wall": wall, "cpu": cpu}


def import_jsonl(trace: str, workdir: str) -> dict:
    import telemrec
    from telemrec import jsonl
    from telemrec.readers.replay import iter_replay
    from telemrec.trace.importer import import_records

    lines = io.StringIO()
    for rec in iter_replay(trace):
        lines.write(jsonl.dumps_record(rec) + "\n")
    text = lines.getvalue()
    with telemrec.open_trace(trace) as t:
        values = t.manifest["stats"]["values"]
    out = {}
    fast = jsonl._fast_loads
    for name, parser in (("orjson", fast), ("json", None)):
        if name == "orjson" and fast is None:
            continue
        jsonl._fast_loads = parser
        path = os.path.join(workdir, f"imp-{name}.h5")
        t0 = _clock()
        import_records(jsonl.iter_records(io.StringIO(text)), path, source_name="bench")
        out[name] = dict(zip(("wall", "cpu"), _since(t0)), values=values)
        os.unlink(path)
    jsonl._fast_loads = fast
    return out


def _legacy_copy(cache: str, hours: float) -> str:
    from reference_trace import reference_manifest, reference_records

    from telemrec.testing.legacy import write_legacy_trace

    path = os.path.join(cache, f"reference-{hours:g}h-format2.h5")
    if not os.path.exists(path):
        print(f"writing {path} (format 2, once) ...", flush=True)
        write_legacy_trace(path + ".part", reference_records(hours), version=2,
                           manifest=dict(reference_manifest(hours), format_version=2))
        os.replace(path + ".part", path)
    return path


def _rate(row: dict, key: str = "wall") -> str:
    return f"{row['values'] / row[key] / 1e6:5.2f} M values/s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "telemrec-bench"))
    args = parser.parse_args(argv)
    from reference_trace import _reference

    os.makedirs(args.cache, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="bench-encode-")
    ticks = [recs for _, recs in _reference(args.hours, 0)]
    print(f"reference: {args.hours:g} h, {sum(map(len, ticks))} records; load average {os.getloadavg()[0]:.2f}")
    for label, every in (("as recorded (1 Hz, a flush each 5 s)", 5), ("as at 100 Hz (a flush each 500 ticks)", 500)):
        r = encode(ticks, every, workdir)
        print(f"encoding while recording, {label}:")
        print(f"  encoding of completed chunks (flush segments, merges, seals): {_rate(r, 'chunks')} CPU "
              f"({'met' if r['values'] / r['chunks'] >= TARGET else 'under'} {TARGET / 1e6:g} M)")
        print(f"  the writer in all (records taken into table rows, encoding, journal): {_rate(r)} wall, "
              f"{_rate(r, 'cpu')} CPU")
        print(f"  fold at close: {r['close_wall']:.3f} s = {r['values'] / r['close_wall'] / 1e6:.1f} M values/s")
    v2 = _legacy_copy(args.cache, args.hours)
    r = upgrade(v2, workdir)
    print(f"upgrade format 2 -> 3: {r['wall']:.2f} s, {_rate(r)} wall, {_rate(r, 'cpu')} CPU "
          f"({'met' if r['values'] / r['wall'] >= TARGET else 'under'} {TARGET / 1e6:g} M)")
    from reference_trace import build_reference_trace

    trace = os.path.join(args.cache, f"reference-{args.hours:g}h.h5")
    if not os.path.exists(trace):
        build_reference_trace(trace, args.hours)
    for name, row in import_jsonl(trace, workdir).items():
        print(f"import of JSON lines, parsed with {name}: {row['wall']:.2f} s, {_rate(row)} wall")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          "(the records of every tick are held in memory beforehand)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

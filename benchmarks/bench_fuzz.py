"""Benchmark: the long fuzz run of the read paths (issue 12, item 8).

    python benchmarks/bench_fuzz.py [--mutants 150] [--seed 1] [--input v2/psutil_workload.h5 ...]
                                    [--kinds rename,zero-large | --kinds structure] [--timeout 8]
                                    [--workers 2] [--lenient 1,2] [--out fuzz-out]

Mutants of every sample trace (sample_traces/v1, v2, v3), of the crashed journals of
sample_traces/corrupt (journal versions 1 and 2) and of a journal written by TraceWriter and
abandoned (``gen:crashed_v2``; journals get twice ``--mutants``), each through `telemrec check`,
`info`, `replay --speed max`, `summary`, `telemrec.load()`, `open_trace(...).records()` and, for
journals, `open_trace(..., recover=False).records()`, every run in its own process.

Prints runs, typed errors, accepted, silently altered, tracebacks, hangs and crashes per input and
per command, then the failures grouped by root cause, each with the command that reproduces it.
``--out`` keeps: ``summary.txt`` (what was printed), ``failures.jsonl`` (every failing run: input,
mutation spec, description, command, class, signature, stderr tail, reproducer) and ``mutants/``
(the bytes of each root cause's first example, named after its input and spec). ``lost`` runs
(typed errors on a journal whose undamaged leading frames hold records) are listed too.

A run is a hang when it takes longer than ``--timeout`` seconds and ten times what the original
took; on a shared machine keep it at several seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from telemrec.testing import fuzz  # noqa: E402
from telemrec.testing.fuzz._campaign import to_json  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=150, help="per trace (journals: twice as many)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--input", action="append", help="only these inputs (names as printed, repeatable)")
    parser.add_argument("--kinds", help="comma-separated kinds or families (bytes, structure)")
    parser.add_argument("--timeout", type=float, default=8.0, help="seconds before a run counts as a hang")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lenient", default="", help="trace format versions judged for tracebacks, hangs and "
                                                      "crashes only, e.g. 1,2 (they checksum no names)")
    parser.add_argument("--out", default="fuzz-out")
    args = parser.parse_args(argv)

    kinds = None
    if args.kinds:
        kinds = tuple(k for item in args.kinds.split(",") for k in fuzz.FAMILIES.get(item, (item,)))
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "mutants"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="telemrec-fuzz-")
    cache = os.path.join(work, "inputs")
    campaign = fuzz.Campaign(os.path.join(work, "runs"), workers=args.workers, min_timeout=args.timeout,
                             lenient_versions=tuple(int(v) for v in args.lenient.split(",") if v))
    inputs = [(p, n) for p, n in fuzz.sample_inputs(os.path.join(ROOT, "sample_traces"))
              if not args.input or n in args.input]
    paths = {n: os.path.relpath(p, ROOT) if not p.startswith("gen:") else p for p, n in inputs}
    results, started = [], time.monotonic()
    try:
        for path, name in inputs:
            t0 = time.monotonic()
            inp = campaign.load_input(fuzz.resolve_input(path, cache), name)
            ref = campaign.reference(inp)
            if ref.failures:
                print(f"{name}: the unmutated input does not read cleanly: {ref.failures}", file=sys.stderr)
            count = args.mutants * (2 if inp.kind == "journal" else 1)
            got = campaign.run(inp, fuzz.plan(inp, count, seed=args.seed, kinds=kinds), ref)
            results += got
            row = fuzz.totals(got)
            print(f"{name:34} {row['runs']:5} runs in {time.monotonic() - t0:6.1f} s: "
                  + ", ".join(f"{c} {row[c]}" for c in fuzz.CLASSES if row[c]), file=sys.stderr)
            _save_examples(got, inp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    elapsed = time.monotonic() - started
    mutants = len({(r.input, r.mutation) for r in results if r.outcome != "skipped"})
    lines = [f"telemrec fuzz: {mutants} mutants, {sum(1 for r in results if r.outcome != 'skipped')} runs in "
             f"{elapsed:.0f} s (seed {args.seed}, hang timeout {args.timeout:g} s, {args.workers} workers)", "",
             fuzz.format_table(fuzz.counts(results, "input"), "input"), "",
             fuzz.format_table(fuzz.counts(results, "command"), "command"), "",
             "root causes (failures grouped by class and innermost telemrec frame):",
             fuzz.format_causes(fuzz.causes(results), paths) or "none", "",
             "typed errors that refused a journal whose leading frames hold records (recoverable, not recovered):",
             fuzz.format_causes(fuzz.causes(results, lost=True), paths) or "none"]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "failures.jsonl"), "w") as f:
        for r in results:
            if r.failed or r.lost:
                row = to_json(r)
                row["reproducer"] = fuzz.reproducer(paths.get(r.input, r.input), r.mutation, r.command)
                f.write(json.dumps(row) + "\n")
    print(f"\nfailing runs: {os.path.join(out, 'failures.jsonl')}; example mutants: {os.path.join(out, 'mutants')}")
    return 0


def _save_examples(results, inp, out: str) -> None:
    """The bytes of each root cause's first example (the spec rebuilds them too)."""
    seen = set()
    index_path = os.path.join(out, "mutants", "index.jsonl")
    for r in results:
        key = (r.outcome, r.signature)
        if not r.failed or key in seen:
            continue
        seen.add(key)
        safe = r.mutation.replace(":", "_").replace("@", "_").replace("=", "_")
        name = f"{inp.name.replace('/', '_').rsplit('.h5', 1)[0]}__{safe}.{'h5.journal' if inp.kind == 'journal' else 'h5'}"
        target = os.path.join(out, "mutants", name)
        if not os.path.exists(target):
            with tempfile.TemporaryDirectory() as tmp:
                mutant = fuzz.apply(r.mutation, inp, tmp)
            with open(target, "wb") as f:
                f.write(mutant.data)
        with open(index_path, "a") as f:
            f.write(json.dumps({"file": name, "input": r.input, "mutation": r.mutation, "class": r.outcome,
                                "signature": r.signature, "description": r.description}) + "\n")


if __name__ == "__main__":
    sys.exit(main())

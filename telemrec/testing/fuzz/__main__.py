"""``python -m telemrec.testing.fuzz``: rebuild one mutant and run it through the real CLI.

    python -m telemrec.testing.fuzz repro sample_traces/v2/psutil_workload.h5 'set@133729=2' -c info
    python -m telemrec.testing.fuzz mutate sample_traces/v3/dcgmi_synthetic.h5 catalog-edit:17 -o bad.h5
    python -m telemrec.testing.fuzz make-journal crashed.h5.journal
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from telemrec.testing.fuzz import COMMANDS, GENERATED, Input, apply, make_crashed_journal, resolve_input
from telemrec.testing.fuzz import _probes, _trace

def _mutant(input_path: str, spec: str, workdir: str):
    path = resolve_input(input_path, os.path.join(workdir, "input"))  # gen:* made afresh, as the benchmark does
    name = GENERATED.get(input_path) or None
    inp = Input.from_path(path, name)
    if inp.kind == "trace":
        inp.layout = _trace.layout(path)
        inp.version = inp.layout["version"]
    mutant = apply(spec, inp, workdir)
    if mutant is None:
        sys.exit(f"{spec} does not apply to {input_path}")
    return inp, mutant


def repro(args) -> int:
    workdir = args.keep or tempfile.mkdtemp(prefix="telemrec-fuzz-")
    os.makedirs(workdir, exist_ok=True)
    inp, mutant = _mutant(args.input, args.mutation, workdir)
    print(f"input    {args.input} ({len(inp.data)} bytes)\nmutation {args.mutation}: {mutant.description}")
    status = 0
    for command in args.command or COMMANDS:
        if command == "records-inplace" and inp.kind != "journal":
            continue
        rundir = os.path.join(workdir, command)
        os.makedirs(rundir, exist_ok=True)
        for leftover in ("trace.h5", "trace.h5.journal"):
            if os.path.exists(os.path.join(rundir, leftover)):
                os.unlink(os.path.join(rundir, leftover))
        with open(os.path.join(rundir, inp.file_name), "wb") as f:
            f.write(mutant.data)
        argv = _probes.argv(command)
        argv = [sys.executable, "-m", "telemrec", *argv[1:]] if argv[0] == "telemrec" else [sys.executable, *argv[1:]]
        print(f"\n$ cd {rundir} && {' '.join(_probes.argv(command))}")
        try:
            proc = subprocess.run(argv, cwd=rundir, capture_output=True, text=True, errors="replace", timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"-> no answer in {args.timeout} s (hang)")
            status = 1
            continue
        out = proc.stdout.splitlines()
        for line in out[:8]:
            print(f"  {line[:200]}")
        if len(out) > 8:
            print(f"  ... ({len(out)} lines)")
        for line in proc.stderr.splitlines()[-25:]:
            print(f"  stderr: {line[:300]}")
        print(f"-> exit {proc.returncode}")
        status = status or (1 if "Traceback" in proc.stderr or proc.returncode < 0 else 0)
    if not args.keep:
        print(f"\n(files in {workdir})")
    return status


def mutate(args) -> int:
    with tempfile.TemporaryDirectory() as workdir:
        _, mutant = _mutant(args.input, args.mutation, workdir)
    with open(args.output, "wb") as f:
        f.write(mutant.data)
    print(f"{args.output}: {mutant.description}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telemrec.testing.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("repro", help="rebuild a mutant and run commands on it in real processes")
    p.add_argument("input", help="a trace or journal, or gen:crashed_v2 (the generated journal)")
    p.add_argument("mutation", help="KIND:SEED or an explicit spec (set@OFF=VAL, zero@A-B, flip@OFF.BIT, truncate@N)")
    p.add_argument("-c", "--command", action="append", choices=COMMANDS, help="repeatable; default: all")
    p.add_argument("--keep", help="directory to leave the mutant and outputs in")
    p.add_argument("--timeout", type=float, default=30.0)
    m = sub.add_parser("mutate", help="write one mutant")
    m.add_argument("input")
    m.add_argument("mutation")
    m.add_argument("-o", "--output", required=True)
    j = sub.add_parser("make-journal", help="write the generated crashed journal (this telemrec's journal version)")
    j.add_argument("output")
    args = parser.parse_args(argv)
    if args.what == "repro":
        return repro(args)
    if args.what == "mutate":
        return mutate(args)
    print(make_crashed_journal(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figures and root causes of a campaign's results, and the one command that reproduces a run."""

from __future__ import annotations

import shlex
from collections import Counter, defaultdict

from telemrec.testing.fuzz._campaign import CLASSES, FAILURES, Result

COLUMNS = ("runs",) + CLASSES + ("noisy", "lost")


def counts(results: list[Result], by: str) -> dict[str, Counter]:
    """Per input (``by="input"``) or per command: runs and each class (skipped mutants left out)."""
    table: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        if r.outcome == "skipped":
            continue
        row = table[getattr(r, by)]
        row["runs"] += 1
        row[r.outcome] += 1
        row["noisy"] += r.noisy
        row["lost"] += r.lost
    return dict(table)


def totals(results: list[Result]) -> Counter:
    total: Counter = Counter()
    for row in counts(results, "input").values():
        total.update(row)
    return total


def format_table(table: dict[str, Counter], title: str) -> str:
    width = max([len(title)] + [len(k) for k in table])
    head = f"{title:<{width}}  " + " ".join(f"{c:>9}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    total: Counter = Counter()
    for key in sorted(table):
        total.update(table[key])
        lines.append(f"{key:<{width}}  " + " ".join(f"{table[key][c]:>9}" for c in COLUMNS))
    lines.append(f"{'total':<{width}}  " + " ".join(f"{total[c]:>9}" for c in COLUMNS))
    return "\n".join(lines)


def causes(results: list[Result], *, lost: bool = False) -> list[dict]:
    """Failures grouped by root cause (class and signature), most frequent first within a class.
    ``lost``: instead, the typed errors that refused a journal whose leading frames were intact."""
    groups: dict[tuple[str, str], dict] = {}
    for r in results:
        if (not r.lost) if lost else r.outcome not in FAILURES:
            continue
        g = groups.setdefault((r.outcome, r.signature), {
            "class": r.outcome, "signature": r.signature, "runs": 0, "mutants": set(), "inputs": Counter(),
            "commands": Counter(), "kinds": Counter(), "example": r})
        g["runs"] += 1
        g["mutants"].add((r.input, r.mutation))
        g["inputs"][r.input] += 1
        g["commands"][r.command] += 1
        g["kinds"][r.mutation.split(":")[0].split("@")[0]] += 1
    order = {c: i for i, c in enumerate(FAILURES + ("typed",))}
    return sorted(groups.values(), key=lambda g: (order[g["class"]], -g["runs"]))


def reproducer(input_path: str, spec: str, command: str) -> str:
    return f"python -m telemrec.testing.fuzz repro {shlex.quote(input_path)} {shlex.quote(spec)} -c {command}"


def format_causes(groups: list[dict], paths: dict[str, str]) -> str:
    lines = []
    for g in groups:
        ex: Result = g["example"]
        inputs = ", ".join(f"{k} {v}" for k, v in g["inputs"].most_common(4)) + (" ..." if len(g["inputs"]) > 4 else "")
        lines.append(f"[{g['class']}] {g['signature']}: {g['runs']} runs, {len(g['mutants'])} mutants")
        lines.append(f"    commands: {dict(g['commands'].most_common())}; mutations: {dict(g['kinds'].most_common(6))}")
        lines.append(f"    inputs: {inputs}")
        lines.append(f"    e.g. {ex.input} {ex.mutation} ({ex.description[:100]}) -> {ex.detail[:200]}")
        lines.append(f"    {reproducer(paths.get(ex.input, ex.input), ex.mutation, ex.command)}")
    return "\n".join(lines)

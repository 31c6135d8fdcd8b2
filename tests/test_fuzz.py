"""The bounded fuzz run (issue 12, item 8): mutants of every sample trace (formats 1, 2, 3) and of
the crashed journals (versions 1 and 2) through `telemrec check`, `info`, `replay --speed max`,
`summary`, `telemrec.load()` and `open_trace(...).records()`. Every run must end in a typed error
or read exactly what the original reads (a journal: what one of its frame prefixes reads): no
traceback, no hang, no crash, nothing silently altered.

Each mutant goes through the Python probes and one CLI command, the commands taking turns, so the
whole run costs about a minute on 2 cores; `benchmarks/bench_fuzz.py` runs thousands through every
command. A failure prints each root cause with the one command that reproduces it.

    pytest tests/test_fuzz.py -k v2-psutil_workload            # one input
    TELEMREC_FUZZ_KINDS=structure pytest tests/test_fuzz.py    # one family (bytes, structure) or kinds
    TELEMREC_FUZZ_KINDS=rename,catalog-edit pytest tests/test_fuzz.py
    TELEMREC_FUZZ_MUTANTS=200 TELEMREC_FUZZ_ALL_COMMANDS=1 pytest tests/test_fuzz.py -k crashed
"""

from __future__ import annotations

import os

import pytest

from telemrec.testing import fuzz

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_traces")
INPUTS = fuzz.sample_inputs(ROOT, generated=False)
MUTANTS = int(os.environ.get("TELEMREC_FUZZ_MUTANTS", "16"))  # per trace; journals get twice as many
SEED = int(os.environ.get("TELEMREC_FUZZ_SEED", "12"))
ALL_COMMANDS = os.environ.get("TELEMREC_FUZZ_ALL_COMMANDS") == "1"
HANG_S = 8.0  # a read that takes 8 s (and 10x its original's time) is a hang: every sample reads in < 0.5 s

pytestmark = pytest.mark.fuzz


def _kinds() -> tuple[str, ...] | None:
    wanted = os.environ.get("TELEMREC_FUZZ_KINDS")
    if not wanted:
        return None
    kinds: list[str] = []
    for item in wanted.split(","):
        kinds += fuzz.FAMILIES.get(item.strip(), (item.strip(),))
    unknown = set(kinds) - set(fuzz.ALL_KINDS)
    assert not unknown, f"TELEMREC_FUZZ_KINDS: unknown {sorted(unknown)}; kinds: {', '.join(fuzz.ALL_KINDS)}"
    return tuple(kinds)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return fuzz.Campaign(str(tmp_path_factory.mktemp("fuzz")), workers=2, min_timeout=HANG_S)


@pytest.mark.parametrize("path,name", INPUTS, ids=[n.replace("/", "-").rsplit(".h5", 1)[0] for _, n in INPUTS])
def test_mutants_fail_typed_or_read_as_the_original(campaign, path, name):
    inp = campaign.load_input(path, name)
    ref = campaign.reference(inp)
    assert not ref.failures, f"the unmutated {name} does not read cleanly: {ref.failures}"
    count = MUTANTS * (2 if inp.kind == "journal" else 1)
    specs = ["identity"] + fuzz.plan(inp, count, seed=SEED, kinds=_kinds())
    results = campaign.run(inp, specs, ref, one_cli=not ALL_COMMANDS)
    control = [r for r in results if r.mutation == "identity" and r.outcome != "accepted"]
    assert not control, f"the harness reads the unchanged input differently: {control}"
    failed = [r for r in results if r.failed]
    figures = fuzz.totals(results)
    assert not failed, (
        f"{name}: {len(failed)} of {figures['runs']} runs failed "
        f"({', '.join(f'{c} {figures[c]}' for c in fuzz.FAILURES)}):\n"
        + fuzz.format_causes(fuzz.causes(results), {name: os.path.relpath(path)}))

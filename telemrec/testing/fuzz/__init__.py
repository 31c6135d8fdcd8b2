"""A mutation fuzzer for telemrec's read paths (traces of every format version and crashed
journals), shared by ``tests/test_fuzz.py`` and ``benchmarks/bench_fuzz.py``.

    from telemrec.testing.fuzz import Campaign, plan, sample_inputs
    campaign = Campaign("/tmp/fuzz")
    for path, name in sample_inputs("sample_traces"):
        inp = campaign.load_input(path, name)
        ref = campaign.reference(inp)
        results = campaign.run(inp, plan(inp, 100, seed=1), ref)

Every mutant is a spec (``KIND:SEED`` or an explicit one such as ``zero@5024-8200``) that
rebuilds the same bytes from the same input: ``python -m telemrec.testing.fuzz repro INPUT SPEC
-c COMMAND`` runs one in a real ``telemrec`` process. Mutations: ``_mutate`` (bytes),
``_trace`` (HDF5 layout, format 3's catalog, index and streams), ``_journal`` (frames, re-sealed
frames of the wrong shape). Runs: ``_runner`` (forked children of a warm parent), ``_campaign``
(references and classification), ``_report`` (figures and root causes).
"""

from __future__ import annotations

import glob
import os

from telemrec.testing.fuzz._campaign import CLASSES, FAILURES, Campaign, Reference, Result
from telemrec.testing.fuzz._journal import make_crashed_journal
from telemrec.testing.fuzz._mutate import ALL_KINDS, FAMILIES, Input, Mutant, apply, plan
from telemrec.testing.fuzz._probes import COMMANDS
from telemrec.testing.fuzz._report import causes, counts, format_causes, format_table, reproducer, totals

__all__ = ["ALL_KINDS", "CLASSES", "COMMANDS", "FAILURES", "FAMILIES", "Campaign", "Input", "Mutant", "Reference",
           "Result", "apply", "causes", "counts", "format_causes", "format_table", "generated_journal", "plan",
           "reproducer", "resolve_input", "sample_inputs", "totals"]

GENERATED = {"gen:crashed_v2": "crashed_v2.h5.journal"}


def sample_inputs(root: str, *, generated: bool = True) -> list[tuple[str, str]]:
    """(path, name) of every sample trace (v1/, v2/, v3/), the crashed journals of corrupt/, and
    (``generated``) the journal ``make_crashed_journal`` writes. The frozen files are only read."""
    found = []
    for version in ("v1", "v2", "v3"):
        for path in sorted(glob.glob(os.path.join(root, version, "*.h5"))):
            found.append((path, f"{version}/{os.path.basename(path)}"))
    for path in sorted(glob.glob(os.path.join(root, "corrupt", "crashed*.journal"))):
        found.append((path, f"corrupt/{os.path.basename(path)}"))
    if generated:
        found.append(("gen:crashed_v2", "gen/crashed_v2.h5.journal"))
    return found


def generated_journal(cache_dir: str) -> str:
    """The generated crashed journal, made once per cache directory (deterministic bytes)."""
    path = os.path.join(cache_dir, GENERATED["gen:crashed_v2"])
    if not os.path.exists(path):
        os.makedirs(cache_dir, exist_ok=True)
        work = os.path.join(cache_dir, "make")
        os.makedirs(work, exist_ok=True)
        made = make_crashed_journal(os.path.join(work, "crashed.h5.journal"))
        os.replace(made, path)
    return path


def resolve_input(path: str, cache_dir: str) -> str:
    """A file path for an input name: ``gen:crashed_v2`` is made on demand."""
    return generated_journal(cache_dir) if path in GENERATED else path

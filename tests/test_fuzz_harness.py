"""The fuzz harness itself (telemrec.testing.fuzz): its runs are classified right, its mutants are
reproducible and reach past the checksums they claim to, and its references tell a changed read
from an unchanged one. These pass whatever the state of the read paths; tests/test_fuzz.py is the
fuzz run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zlib

import pytest

from telemrec.errors import TraceCorruptError
from telemrec.testing import fuzz
from telemrec.testing.fuzz import _journal, _probes, _runner
from telemrec.testing.fuzz._campaign import Reference, Result, _cross_check, classify

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_traces")
V3 = os.path.join(ROOT, "v3", "nvml_synthetic.h5")
V2 = os.path.join(ROOT, "v2", "psutil_workload.h5")
JOURNAL_V1 = os.path.join(ROOT, "corrupt", "crashed.h5.journal")
JOURNAL_V2 = os.path.join(ROOT, "corrupt", "crashed_v3.h5.journal")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    return fuzz.Campaign(str(tmp_path_factory.mktemp("harness")), workers=2, min_timeout=3.0)


def _spin():
    while True:
        pass


def _typed():
    raise TraceCorruptError("trace.h5: the catalog does not say where the runs index is")


def _untyped():
    return {}["streams"]


def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def test_each_way_a_run_can_end_is_classified(tmp_path):
    runner = _runner.ForkRunner(workers=2)
    funcs = {"ok": lambda: print("same") or 0, "typed": lambda: _probes._typed(_typed), "traceback": _untyped,
             "hang": _spin, "abort": os.abort, "segfault": _segfault}
    jobs = [_runner.Job(name, func, str(tmp_path / name), 1.0) for name, func in funcs.items()]
    outcomes = {job.key: outcome for job, outcome in runner.run(jobs)}
    inp = fuzz.Input("x", "x", "trace", 3, b"")
    ref = Reference(outputs={"load": {"0:" + _sha("same\n"): []}})
    got = {name: classify(inp, "flip:1", "", True, "load", outcome, ref) for name, outcome in outcomes.items()}
    assert {name: r.outcome for name, r in got.items()} == {
        "ok": "accepted", "typed": "typed", "traceback": "traceback", "hang": "hang", "abort": "crash",
        "segfault": "crash"}
    assert got["typed"].detail.startswith("telemrec-probe: error: TraceCorruptError: trace.h5: the catalog")
    assert got["traceback"].signature.startswith("KeyError at ") and "_untyped" in got["traceback"].signature
    assert "_spin" in got["hang"].signature  # the stack faulthandler dumped names the spinning loop
    assert got["abort"].signature.startswith("SIGABRT") and got["segfault"].signature.startswith("SIGSEGV")


def _sha(text):
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("path", [V3, V2, JOURNAL_V1, JOURNAL_V2])
def test_every_kind_makes_the_same_mutant_from_the_same_spec(campaign, path, tmp_path):
    inp = campaign.load_input(path)
    made = 0
    for kind in inp.kinds():
        for seed in range(3):
            spec = f"{kind}:{seed}"
            a, b = fuzz.apply(spec, inp, str(tmp_path)), fuzz.apply(spec, inp, str(tmp_path))
            if a is None:
                continue
            made += 1
            assert a.data == b.data and a.description == b.description, spec
            if kind not in ("manifest-edit", "frame-order"):  # may rewrite a node to an equal value
                assert a.data != inp.data, f"{spec} left {inp.name} unchanged: {a.description}"
    assert made >= 2 * len(inp.kinds())


def test_plan_is_deterministic_and_starts_with_the_known_hang(campaign):
    inp = campaign.load_input(V2)
    specs = fuzz.plan(inp, 40, seed=3)
    assert specs == fuzz.plan(inp, 40, seed=3) and specs != fuzz.plan(inp, 40, seed=4)
    assert specs[0] == "zero@5024-8200" and len(specs) == 40
    assert {s.split(":")[0] for s in specs[1:]} == set(inp.kinds())


def test_resealed_journal_frames_keep_valid_checksums(campaign, tmp_path):
    for path in (JOURNAL_V1, JOURNAL_V2):
        inp = campaign.load_input(path)
        whole = len(_journal.parse(inp.data).frames)
        for kind in ("frame-json", "seg-header", "seg-stream"):
            for seed in range(8):
                mutant = fuzz.apply(f"{kind}:{seed}", inp, str(tmp_path))
                if mutant is None:
                    continue
                assert len(_journal.parse(mutant.data).frames) == whole, (kind, seed, mutant.description)


def test_resealed_catalog_and_index_pass_their_crcs(campaign, tmp_path):
    import h5py

    inp = campaign.load_input(V3)
    for spec in [f"catalog-edit:{s}" for s in range(4)] + [f"index-edit:{s}" for s in range(4)]:
        mutant = fuzz.apply(spec, inp, str(tmp_path))
        out = tmp_path / "m.h5"
        out.write_bytes(mutant.data)
        with h5py.File(out, "r") as h5:
            catalog = h5["catalog"][()]
            assert zlib.crc32(catalog) == int(h5.attrs["catalog_crc32"]), spec
            if spec.startswith("index-edit"):
                entry = dict(json.loads(catalog)["index"])
                blob = h5["streams"][()].tobytes()
                assert all(zlib.crc32(blob[o:o + n]) == crc for o, n, crc, _ in entry.values()), spec


def test_the_unchanged_input_reads_as_its_reference(campaign):
    for path in (V3, JOURNAL_V2):
        inp = campaign.load_input(path)
        ref = campaign.reference(inp)
        assert not ref.failures
        results = campaign.run(inp, ["identity"], ref)
        assert {r.command: r.outcome for r in results} == {c: "accepted" for c in campaign.commands_for(inp)}


def test_a_journal_cut_between_frames_reads_as_that_prefix(campaign):
    inp = campaign.load_input(JOURNAL_V2)
    ref = campaign.reference(inp)
    cut = _journal.parse(inp.data).frames[4].end  # start, def, three segments: 50 records
    assert ref.prefix_records[5] == 50
    results = campaign.run(inp, [f"truncate@{cut}"], ref)
    assert {r.outcome for r in results} == {"accepted"}, [(r.command, r.outcome, r.detail) for r in results]


def test_other_data_under_the_same_name_is_silently_altered(campaign):
    original = campaign.load_input(V3)
    ref = campaign.reference(original)
    other = campaign.load_input(os.path.join(ROOT, "v3", "dcgmi_synthetic.h5"), original.name)
    results = {r.command: r for r in campaign.run(other, ["identity"], ref)}
    assert {c: r.outcome for c, r in results.items()} == {c: "altered" for c in campaign.commands_for(original)}
    assert results["records"].signature.startswith("entity names changed")


def test_check_passing_a_mutant_whose_data_changed_is_silently_altered():
    runs = [Result("v2/x.h5", "rename:3", "", True, "check", "accepted"),
            Result("v2/x.h5", "rename:3", "", True, "records", "altered", signature="entity names"),
            Result("v2/x.h5", "rename:3", "", True, "info", "typed")]
    _cross_check(runs)
    assert [r.outcome for r in runs] == ["altered", "altered", "typed"]
    assert runs[0].signature == "check passed a mutant whose entity names changed (rename mutants)"
    assert runs[1].signature == "entity names changed, yet accepted (rename mutants)"


def test_reproducer_command_runs_the_real_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "telemrec.testing.fuzz", "repro", V3, "set@1=0", "-c", "info",
                           "--keep", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mutation set@1=0: byte 1 set to 0" in proc.stdout
    assert "telemrec: error:" in proc.stdout and "-> exit 2" in proc.stdout
    assert (tmp_path / "info" / "trace.h5").read_bytes()[1] == 0


def _warns():
    import warnings

    warnings.warn("overflow in a garbage column", RuntimeWarning)
    return 0


def test_a_run_warns_as_a_fresh_interpreter_does_even_under_pytest(tmp_path):
    # pytest's filterwarnings=error is in force here: the child must not inherit it
    [(job, outcome)] = list(_runner.ForkRunner().run([_runner.Job("w", _warns, str(tmp_path / "w"), 10)]))
    assert (outcome.status, outcome.code) == ("exit", 0)
    assert "RuntimeWarning: overflow in a garbage column" in outcome.stderr

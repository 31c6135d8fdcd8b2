"""A fuzzing campaign: references from the untouched input, mutants through every command, and
each run classified.

Classes: ``typed`` (exit 1 or 2 with a ``telemrec: error:`` line, or a ``TelemrecError`` from
the API; ``check`` saying INVALID counts too), ``accepted`` (success, and what came back is the
original's), ``altered`` (success with other names, values or manifest: silently altered),
``traceback``, ``hang`` (past the timeout), ``crash`` (killed by a signal), ``other`` (an exit
status telemrec does not give), ``skipped`` (the mutation does not apply to this input).

A journal's mutant may lose what follows the damage (a torn tail): its references are the
journal cut after each whole frame, and an accepted run must equal one of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
from dataclasses import asdict, dataclass, field

from telemrec.testing.fuzz import _journal, _probes, _runner
from telemrec.testing.fuzz._mutate import Input, apply

FAILURES = ("traceback", "hang", "crash", "altered")
CLASSES = ("typed", "accepted", "altered", "traceback", "hang", "crash", "other")
_ERROR_LINE = re.compile(r"^telemrec(-probe)?: error: ", re.M)
_QUIET_LINE = re.compile(r"^(telemrec(-probe)?: (error|note|warning): |  hint: )")
_FRAME = re.compile(r'File "([^"]+)", line (\d+),? in (\S+)')


@dataclass
class Result:
    input: str
    mutation: str
    description: str
    strict: bool
    command: str
    outcome: str
    signature: str = ""
    detail: str = ""
    wall: float = 0.0
    noisy: bool = False
    lost: bool = False  # typed, on a journal whose undamaged leading frames hold records (refused, not recovered)
    stderr_tail: str = field(default="", repr=False)

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES


@dataclass
class Reference:
    outputs: dict = field(default_factory=dict)   # command -> {key: line hashes}
    records: list = field(default_factory=list)   # the records probe's JSON of each reference
    seconds: dict = field(default_factory=dict)   # command -> slowest reference run
    failures: list = field(default_factory=list)  # reference runs that did not succeed (harness problem)
    prefix_records: dict = field(default_factory=dict)  # journals: whole frames kept -> records recovered
    check_problems: set = field(default_factory=set)    # the problem lines of check's reference verdicts


class Campaign:
    def __init__(self, workdir: str, *, commands: tuple[str, ...] = _probes.COMMANDS, workers: int = 2,
                 min_timeout: float = 5.0, timeout_factor: float = 10.0, memory_limit: int = 4 << 30,
                 lenient_versions: tuple[int, ...] = ()):
        """``lenient_versions``: trace format versions whose mutants are judged for tracebacks, hangs
        and crashes only (formats 1 and 2 checksum neither names nor the manifest, so a changed
        letter there cannot be told from the original: a decision for whoever runs the campaign)."""
        _runner.warm()
        self.lenient_versions = lenient_versions
        self.workdir = workdir
        self.commands = commands
        self.runner = _runner.ForkRunner(workers, memory_limit)
        self.min_timeout, self.timeout_factor = min_timeout, timeout_factor
        self._serial = 0
        os.makedirs(workdir, exist_ok=True)

    # -- inputs and references -------------------------------------------------------------------
    def load_input(self, path: str, name: str | None = None) -> Input:
        path = os.path.abspath(path)  # children run in their own directories
        inp = Input.from_path(path, name)
        if inp.kind == "trace":
            out = self._child(lambda: _write_json("layout.json", _layout_of(path)), "layout.json", 120)
            inp.layout = out
            inp.version = out["version"] if out else 0
        return inp

    def commands_for(self, inp: Input) -> tuple[str, ...]:
        return tuple(c for c in self.commands if c != "records-inplace" or inp.kind == "journal")

    def reference(self, inp: Input) -> Reference:
        ref = Reference()
        variants = [inp.data] + (_journal.prefixes(inp.data) if inp.kind == "journal" else [])
        for n, data in enumerate(variants):
            jobs = [self._job(inp, data, command, 300) for command in self.commands_for(inp)]
            for job in jobs:
                job.report_modules = True
            finished = list(self.runner.run(jobs))
            _runner.warm(_runner.imported_by(job.rundir for job, _ in finished))
            for job, outcome in finished:
                command = job.key
                text = _normalized(command, _read(outcome.stdout_path), inp.kind)
                ok = outcome.status == "exit" and (outcome.code == 0 or _check_verdict(command, outcome, text))
                if ok:
                    ref.outputs.setdefault(command, {})[f"{outcome.code}:{_sha(text)}"] = _line_hashes(text)
                    if command == "check":
                        ref.check_problems.add(_problems(text))
                    if command == "records":
                        ref.records.append(json.loads(text))
                        if n:
                            ref.prefix_records[n] = ref.records[-1]["records"]
                elif data is inp.data:
                    ref.failures.append(f"{command}: {outcome.status} {outcome.code}: {outcome.stderr[-300:]}")
                ref.seconds[command] = max(ref.seconds.get(command, 0.0), outcome.wall)
                shutil.rmtree(job.rundir, ignore_errors=True)
        return ref

    # -- mutants ---------------------------------------------------------------------------------
    def run(self, inp: Input, specs: list[str], ref: Reference, *, batch: int = 16, progress=None,
            one_cli: bool = False) -> list[Result]:
        """Every mutant of ``specs`` through the commands. ``one_cli``: each mutant through the
        Python probes and one CLI command, the CLI commands taking turns (a bounded run)."""
        results: list[Result] = []
        clis = [c for c in self.commands_for(inp) if c in _probes.CLI_COMMANDS]
        for at in range(0, len(specs), batch):
            chunk = specs[at:at + batch]
            mutants = self._materialize(inp, chunk)
            jobs = []
            for i, spec in enumerate(chunk, at):
                mutant = mutants.get(spec)
                if mutant is None:
                    results.append(Result(inp.name, spec, "does not apply", False, "-", "skipped"))
                    continue
                commands = self.commands_for(inp)
                if one_cli and clis:
                    commands = tuple(c for c in commands if c not in clis or c == clis[i % len(clis)])
                for command in commands:
                    timeout = max(self.min_timeout, self.timeout_factor * ref.seconds.get(command, 1.0))
                    job = self._job(inp, mutant["data"], command, timeout)
                    job.key = (spec, command)
                    jobs.append(job)
            by_spec: dict[str, list[Result]] = {}
            for job, outcome in self.runner.run(jobs):
                spec, command = job.key
                mutant = mutants[spec]
                strict = mutant["strict"] and not (inp.kind == "trace" and inp.version in self.lenient_versions)
                result = classify(inp, spec, mutant["description"], strict, command, outcome, ref)
                result.lost = result.outcome == "typed" and ref.prefix_records.get(mutant["intact"], 0) > 0
                by_spec.setdefault(spec, []).append(result)
                shutil.rmtree(job.rundir, ignore_errors=True)
            for spec in chunk:
                if spec in by_spec:
                    _cross_check(by_spec[spec], mutants[spec].get("text", False))
                    results.extend(by_spec[spec])
                    if progress:
                        progress(by_spec[spec])
        return results

    def _materialize(self, inp: Input, specs: list[str]) -> dict[str, dict]:
        out = {}
        jobs = []
        for spec in specs:
            rundir = self._rundir()

            def make(spec=spec, rundir=rundir):
                mutant = apply(spec, inp, rundir)
                if mutant is not None:
                    with open("mutant", "wb") as f:
                        f.write(mutant.data)
                    _write_json("meta.json", {"description": mutant.description, "strict": mutant.strict,
                                              "text": mutant.text})
                return 0

            jobs.append(_runner.Job(spec, make, rundir, 120))
        for job, outcome in self.runner.run(jobs):
            meta = os.path.join(job.rundir, "meta.json")
            if outcome.status == "exit" and outcome.code == 0 and os.path.exists(meta):
                with open(meta) as f:
                    info = json.load(f)
                with open(os.path.join(job.rundir, "mutant"), "rb") as f:
                    info["data"] = f.read()
                info["intact"] = _intact_frames(inp, info["data"]) if inp.kind == "journal" else 0
                out[job.key] = info
            elif outcome.status != "exit" or outcome.code != 0:
                raise RuntimeError(f"making mutant {job.key} of {inp.name} failed:\n{outcome.stderr[-2000:]}")
            shutil.rmtree(job.rundir, ignore_errors=True)
        return out

    # -- plumbing --------------------------------------------------------------------------------
    def _rundir(self) -> str:
        self._serial += 1
        return os.path.join(self.workdir, f"run{self._serial:07d}")

    def _job(self, inp: Input, data: bytes, command: str, timeout: float) -> _runner.Job:
        rundir = self._rundir()
        os.makedirs(rundir)
        with open(os.path.join(rundir, inp.file_name), "wb") as f:
            f.write(data)
        return _runner.Job(command, _probes.target(command), rundir, timeout)

    def _child(self, func, output: str, timeout: float):
        rundir = self._rundir()
        for job, outcome in self.runner.run([_runner.Job(None, func, rundir, timeout)]):
            path = os.path.join(rundir, output)
            try:
                if outcome.status == "exit" and outcome.code == 0 and os.path.exists(path):
                    with open(path) as f:
                        return json.load(f)
                raise RuntimeError(f"fuzzer child failed: {outcome.status} {outcome.code}\n{outcome.stderr[-2000:]}")
            finally:
                shutil.rmtree(rundir, ignore_errors=True)


def _intact_frames(inp: Input, data: bytes) -> int:
    """How many of the journal's leading whole frames the mutant still holds unchanged."""
    original, mutant = _journal.parse(inp.data), _journal.parse(data)
    if mutant.header != original.header:
        return 0
    n = 0
    for a, b in zip(original.frames, mutant.frames):
        if a.offset != b.offset or a.payload != b.payload:
            break
        n += 1
    return n


def _layout_of(path: str) -> dict:
    from telemrec.testing.fuzz._trace import layout

    return layout(path)


def _write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _line_hashes(text: str) -> list[str]:
    return [hashlib.blake2b(line.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
            for line in text.split("\n")]


_BYTES = re.compile(r"\b\d+ bytes\b")


def _normalized(command: str, raw: bytes, input_kind: str) -> str:
    """The output with what legitimately differs between a mutant and its original taken out: the
    file's size (info), and for a recovered journal how many bytes were discarded and why."""
    text = raw.decode("utf-8", "surrogateescape")
    if command == "info":
        text = "\n".join(line for line in text.split("\n") if not line.startswith("size "))
    if command == "replay" and text.startswith('{"telemrec_manifest"'):
        head, sep, rest = text.partition("\n")
        try:
            header = json.loads(head)
            header["telemrec_manifest"] = _probes.normalized_manifest(header["telemrec_manifest"])
            head = json.dumps(header, sort_keys=True)
        except (ValueError, TypeError, KeyError):
            pass
        text = head + sep + rest
    if input_kind == "journal" and command in ("info", "check", "summary"):
        text = _BYTES.sub("N bytes", text)
        text = re.sub(r"(problem: the trace was not closed cleanly).*", r"\1", text)
    return text


def _problems(text: str) -> frozenset:
    return frozenset(line for line in text.split("\n") if line.startswith("problem:"))


def _check_verdict(command: str, outcome, text: str) -> bool:
    """``check`` exiting 1 with its INVALID verdict (and no error line) ran to the end."""
    return command == "check" and outcome.code == 1 and "INVALID" in text and not _ERROR_LINE.search(outcome.stderr)


def classify(inp: Input, spec: str, description: str, strict: bool, command: str, outcome, ref: Reference) -> Result:
    result = Result(inp.name, spec, description, strict, command, "other", wall=round(outcome.wall, 3))
    stderr = outcome.stderr
    result.stderr_tail = stderr[-3000:]
    if outcome.status == "timeout":
        site = _dump_site(stderr)
        result.outcome, result.signature = "hang", f"hang in {site}"
        result.detail = f"no answer in {outcome.wall:.1f} s; stack: {site}"
        return result
    if outcome.status == "signal":
        name = signal.Signals(outcome.code).name if outcome.code in signal.Signals._value2member_map_ else str(outcome.code)
        site = _dump_site(stderr)
        result.outcome, result.signature, result.detail = "crash", f"{name} in {site}", f"killed by {name}"
        return result
    if "Traceback (most recent call last)" in stderr:
        result.outcome = "traceback"
        result.signature, result.detail = _traceback_site(stderr)
        return result
    text = _normalized(command, _read(outcome.stdout_path), inp.kind)
    accepted = outcome.code == 0 or _check_verdict(command, outcome, text)
    if accepted:
        known = ref.outputs.get(command, {})
        if f"{outcome.code}:{_sha(text)}" in known:
            result.outcome = "accepted"
        elif command == "check" and outcome.code == 1 and _problems(text) not in ref.check_problems:
            result.outcome = "typed"
            problems = [line for line in text.split("\n") if line.startswith("problem:")]
            result.detail = (problems or ["INVALID"])[0][:200]
            result.signature = "check: " + _shape(result.detail)
        elif not strict:
            result.outcome, result.detail = "accepted", "differs (the mutation made a legitimate trace)"
        else:
            result.outcome = "altered"
            result.detail = _difference(command, text, known, ref)
            result.signature = _what_changed(command, text, ref)  # _cross_check completes it
        return result
    error = _ERROR_LINE.search(stderr)
    if outcome.code in (1, 2) and error:
        result.outcome = "typed"
        line = stderr[error.start():].split("\n", 1)[0]
        result.detail = line[:240]
        result.signature = _shape(line)
        result.noisy = any(ln.strip() and not _QUIET_LINE.match(ln) for ln in stderr.split("\n"))
        return result
    last = [ln for ln in stderr.strip().split("\n") if ln.strip()][-1:] or ["(no stderr)"]
    result.detail = f"exit {outcome.code}: {last[0][:200]}"
    result.signature = f"exit {outcome.code} without a telemrec error line"
    return result


def _cross_check(results: list[Result], text: bool = False) -> None:
    """One mutant's runs together: its altered runs named by what changed (as the records probe
    saw it), and ``check`` saying the mutant is fine while a reader got other data. ``text``: some
    changed byte lies in a format 1/2 manifest's unchecksummed text; if the manifest is all that
    reads differently (names and values as the original's), the runs are accepted."""
    altered = [r for r in results if r.outcome == "altered"]
    if not altered:
        return
    seen = next((r for r in altered if r.command.startswith("records")), altered[0]).signature
    if text and seen == "manifest" and any(r.command.startswith("records") for r in altered):
        for r in altered:
            r.outcome, r.detail = "accepted", "differs only in its manifest, a byte of whose unchecksummed text changed"
        return
    for r in altered:
        r.signature = f"{seen} changed, yet accepted ({_kind(r.mutation)} mutants)"
    for r in results:
        if r.command == "check" and r.outcome == "accepted" and r.strict:
            r.outcome = "altered"
            r.detail = f"check passed it, but {', '.join(sorted({c.command for c in altered}))} read other data"
            r.signature = f"check passed a mutant whose {seen} changed ({_kind(r.mutation)} mutants)"


def _kind(spec: str) -> str:
    return spec.split(":")[0].split("@")[0]


def _shape(line: str) -> str:
    """A typed message without its numbers and paths, to count distinct messages."""
    return re.sub(r"\d+", "N", re.sub(r"\S*trace\.h5\S*", "PATH", line))[:120]


def _frames(block: str) -> list[tuple[str, int, str]]:
    return [(m.group(1), int(m.group(2)), m.group(3)) for m in _FRAME.finditer(block)]


def _site(frames) -> str:
    """The innermost telemrec frame (not the fuzzer's own), as telemrec/trace/v1.py:482 (func)."""
    own = [f for f in frames if "/telemrec/" in f[0] and "/telemrec/testing/fuzz/" not in f[0]]
    path, line, func = (own or frames or [("?", 0, "?")])[-1]
    at = path.rfind("/telemrec/")
    return f"{path[at + 1:] if at >= 0 else os.path.basename(path)}:{line} ({func})"


def _traceback_site(stderr: str) -> tuple[str, str]:
    blocks = stderr.split("Traceback (most recent call last):")
    last = blocks[-1]
    lines = [ln for ln in last.split("\n") if ln.strip()]
    exc_line = next((ln for ln in reversed(lines) if not ln.startswith((" ", "\t"))), "?")
    exc_type = exc_line.split(":", 1)[0].strip()
    site = _site(_frames(last))
    cause = ""
    if len(blocks) > 2:
        first = [ln for ln in blocks[1].split("\n") if ln.strip() and not ln.startswith((" ", "\t"))]
        first = [ln for ln in first if not ln.startswith(("During handling", "The above exception"))]
        if first:
            cause = f" (while handling {first[0].split(':', 1)[0]} at {_site(_frames(blocks[1]))})"
    return f"{exc_type} at {site}", f"{exc_line[:200]}{cause}"


def _dump_site(stderr: str) -> str:
    """Where faulthandler's dump says the main work was: innermost frame first in its blocks."""
    for block in re.split(r"\n(?=(?:Current thread|Thread) 0x)", stderr):
        frames = _frames(block)
        if any("/telemrec/" in f[0] for f in frames):
            return _site(list(reversed(frames)))
    return _site(list(reversed(_frames(stderr)))) if _frames(stderr) else "(no stack)"


def _what_changed(command: str, text: str, ref: Reference) -> str:
    if command != "records" or not ref.records:
        return "output" if command != "load" else "frame"
    try:
        got = json.loads(text)
    except ValueError:
        return "output"
    base = ref.records[0]
    names_got, names_ref = set(got.get("entities", {})), set(base.get("entities", {}))
    if names_got != names_ref:
        return "entity names"
    if got.get("manifest") != base.get("manifest") and got.get("digest") == base.get("digest"):
        return "manifest"
    if got.get("records") != base.get("records"):
        return "record count"
    return "values"


def _difference(command: str, text: str, known: dict, ref: Reference) -> str:
    if command == "records" and ref.records:
        try:
            got = json.loads(text)
        except ValueError:
            got = None
        if got is not None:
            base = max(ref.records, key=lambda r: len(set(r["entities"].items()) & set(got["entities"].items())))
            gone = sorted(set(base["entities"]) - set(got["entities"]))
            new = sorted(set(got["entities"]) - set(base["entities"]))
            changed = sorted(k for k in set(base["entities"]) & set(got["entities"])
                             if base["entities"][k] != got["entities"][k])
            parts = []
            if gone or new:
                parts.append(f"entities {gone[:3]} -> {new[:3]}")
            if changed:
                parts.append(f"values of {len(changed)} entities changed ({', '.join(changed[:3])})")
            if got["manifest"] != base["manifest"]:
                parts.append("manifest changed")
            if got["records"] != base["records"]:
                parts.append(f"{got['records']} records, not {base['records']}")
            return "; ".join(parts) or "records differ"
    lines = _line_hashes(text)
    best = max(known.values(), key=lambda ref_lines: _common_prefix(lines, ref_lines), default=[])
    at = _common_prefix(lines, best)
    shown = text.split("\n")[at] if at < len(lines) else "(end of output)"
    return f"output differs from line {at + 1} ({len(lines)} lines, reference {len(best)}): {shown[:160]!r}"


def _common_prefix(a: list, b: list) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def to_json(result: Result) -> dict:
    return asdict(result)

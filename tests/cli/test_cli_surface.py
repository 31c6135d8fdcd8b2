"""What a new user reads first: help texts, argument errors, the readers' options and their docs."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from telemrec.cli import app
from telemrec.readers import get_reader, list_readers
from telemrec.readers.registry import BUILTIN_READERS
from telemrec.record import ReaderConfig
from telemrec.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
COMMANDS = ["readers", "read", "record", "import", "info", "check", "upgrade", "replay", "summary", "plot", "export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_plain_text_without_type_tags_after_flags(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "<list[str]>" not in result.output
    assert not set("╭╮╰╯│") & set(result.output), "boxed help"
    assert re.search(r"^  --help\s+Show this message and exit\.$", result.output, re.M)


def test_record_usage_shows_the_command_and_lists_every_readers_options():
    text = runner.invoke(app, ["record", "--help"], terminal_width=100).output
    assert "Usage: telemrec record [OPTIONS] [-- COMMAND [ARGS]...]" in text
    for info in list_readers():
        assert f"  {info.name}:" in text
        for key in info.options:
            assert f"-O {key}=" in text, (info.name, key)
    assert "--grace SECONDS" in text and "default 15" in text


def test_record_help_states_the_sessions_grace():
    from telemrec.recorder.session import DEFAULT_GRACE

    assert f"default {DEFAULT_GRACE:g}," in runner.invoke(app, ["record", "--help"], terminal_width=200).output


@pytest.mark.parametrize("args,words", [
    (["record", "-o", "x.h5", "-i", "abc"], "Invalid value for '--interval'"),
    (["summary", "x.h5", "--nosuch"], "No such option: --nosuch"),
    (["record", "-i", "1"], "Missing option '--output'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_argument_errors_are_one_telemrec_line_and_a_hint(cli, args, words):
    proc = cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("telemrec: error: ") and words in lines[0]
    assert lines[1].startswith("  hint: see `telemrec")
    assert "Usage:" not in proc.stderr and not set("╭╮╰╯│") & set(proc.stderr)


def test_readers_lists_each_readers_source_and_options():
    text = runner.invoke(app, ["readers"]).output
    blocks = re.split(r"\n(?=\S)", text)
    psutil_block = next(b for b in blocks if b.startswith("psutil"))
    for key in ("levels", "pid", "uid", "slurm_job", "uss", "per_cpu", "disk_exclude"):
        assert f"-O {key}=" in psutil_block
    assert "--source: procfs root" in psutil_block


@pytest.mark.parametrize("name", sorted(set(BUILTIN_READERS) - {"replay"}))
def test_the_documented_options_are_exactly_those_a_reader_takes(name):
    cls = get_reader(name)
    assert cls.options, f"{name} documents no options"
    reader = cls()
    with pytest.raises(UsageError) as info:
        reader.open(ReaderConfig(options={"zz_not_an_option": "1"}))
    assert info.value.remediation.startswith(f"Known options: {', '.join(cls.options)}.")


@pytest.mark.parametrize("name", sorted(BUILTIN_READERS))
def test_each_reader_has_a_page_that_documents_its_options(name):
    page = REPO / "docs" / ("replay.md" if name == "replay" else f"readers/{name}.md")
    assert page.exists(), f"no documentation page for the {name} reader"
    text = page.read_text(encoding="utf-8")
    for key in get_reader(name).options:
        if key != "sources":  # the deprecated spelling
            assert f"`{key}`" in text, (name, key)


def test_readme_points_at_pages_that_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for link in re.findall(r"`(docs/[\w/.-]+)`", readme):
        assert (REPO / link).exists(), link
    for name in ("psutil", "nvml", "dcgmi", "prometheus"):
        assert (REPO / f"docs/readers/{name}.md").exists()

"""Inputs a user gets wrong: a one-line error with a hint, exit 2, and nothing half-written or overwritten."""

import pytest
from typer.testing import CliRunner

from telemrec.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "t.h5"
    result = runner.invoke(app, ["record", "-r", "psutil", "-i", "0.1", "-d", "0.5", "-q", "-O", "per_cpu=false",
                                 "-o", str(path)])
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize("args", [
    ["-i", "nan"], ["-i", "inf"], ["-i", "1e-9"], ["--flush-every", "nan"], ["-d", "nan"], ["-d", "-1"],
])
def test_non_finite_or_absurd_numbers_are_refused_before_anything_is_written(tmp_path, args):
    out = tmp_path / "n.h5"
    result = runner.invoke(app, ["record", "-r", "psutil", "-o", str(out), *args])
    assert result.exit_code == 2 and "hint:" in result.output, result.output
    assert not list(tmp_path.iterdir())


def test_an_empty_or_directory_output_is_refused(tmp_path):
    for out in ("", str(tmp_path)):
        result = runner.invoke(app, ["record", "-r", "psutil", "-d", "0.2", "-o", out])
        assert result.exit_code == 2 and "hint:" in result.output, result.output
    assert not list(tmp_path.iterdir())


def test_outputs_are_never_overwritten(tmp_path, trace):
    existing = tmp_path / "exists.txt"
    existing.write_text("precious")
    for args in (["replay", str(trace), "--speed", "max", "-o", str(existing)],
                 ["export", str(trace), "--format", "csv", "-o", str(existing)],
                 ["plot", str(trace), "-o", str(tmp_path / "exists.png")]):
        if args[0] == "plot":
            (tmp_path / "exists.png").write_text("precious")
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "already exists" in result.output, (args, result.output)
    assert existing.read_text() == "precious" and (tmp_path / "exists.png").read_text() == "precious"


def test_plot_format_and_size_are_checked(tmp_path, trace):
    result = runner.invoke(app, ["plot", str(trace), "-o", str(tmp_path / "p.txt")])
    assert result.exit_code == 2 and ".png" in result.output
    result = runner.invoke(app, ["plot", str(trace), "-o", str(tmp_path / "p.png"), "--width", "1e6"])
    assert result.exit_code == 2
    assert not list(tmp_path.iterdir())


def test_replay_speed_must_be_sane(trace):
    result = runner.invoke(app, ["replay", str(trace), "--speed", "1e-300"])
    assert result.exit_code == 2 and "hint:" in result.output


def test_a_failed_export_leaves_nothing(tmp_path, trace):
    result = runner.invoke(app, ["export", str(trace), "--format", "csv", "-o", str(tmp_path / "missing" / "x.csv")])
    assert result.exit_code == 2 and "hint:" in result.output
    assert not list(tmp_path.iterdir())


def test_tag_errors_name_the_tag_option(tmp_path):
    result = runner.invoke(app, ["record", "-r", "psutil", "-d", "0.2", "-t", "x", "-o", str(tmp_path / "t.h5")])
    assert result.exit_code == 2 and "--tag" in result.output

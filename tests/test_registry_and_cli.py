"""The reader registry (built-ins, missing libraries, third-party entry points) and the light CLI
commands through typer's test runner."""

import json
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from telemrec.cli import app
from telemrec.errors import ReaderNotFoundError
from telemrec.readers import get_reader, list_readers, refresh_readers
from telemrec.readers import registry

runner = CliRunner()


def test_the_five_builtin_readers_are_listed_with_reasons():
    infos = {i.name: i for i in list_readers()}
    assert list(infos)[:5] == ["psutil", "nvml", "dcgmi", "prometheus", "replay"]
    assert infos["psutil"].available and infos["psutil"].implemented
    for info in infos.values():
        assert info.available or info.reason, f"{info.name} is unavailable without saying why"


def test_a_missing_library_makes_a_reader_unavailable_not_broken(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):
        if name == "pynvml" or name.startswith("pynvml."):
            raise ModuleNotFoundError("No module named 'pynvml'", name="pynvml")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    infos = {i.name: i for i in list_readers()}
    assert not infos["nvml"].available and "pynvml" in infos["nvml"].reason.lower() + "nvml"
    assert infos["psutil"].available, "one reader's missing library must not affect another"


def test_unknown_reader_is_a_lookup_error_with_a_hint():
    with pytest.raises(ReaderNotFoundError) as info:
        get_reader("nosuch")
    assert isinstance(info.value, LookupError) and "telemrec readers" in info.value.remediation


def test_a_reader_module_that_does_not_exist_is_reported_not_implemented(monkeypatch):
    monkeypatch.setitem(registry.BUILTIN_READERS, "future", ("telemrec.readers.future_reader", "FutureReader"))
    info = {i.name: i for i in list_readers()}["future"]
    assert not info.implemented and "not implemented" in info.reason


def test_third_party_readers_come_from_entry_points(tmp_path, monkeypatch):
    pkg = tmp_path / "my_reader_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from telemrec.readers.base import BaseReader
        from telemrec.record import RawRecord, ReaderCaps
        class EchoReader(BaseReader):
            name = "echo"
            description = "a third-party reader"
            @property
            def caps(self):
                return ReaderCaps("echo", frozenset({"v"}))
            def _open(self, config):
                pass
            def _read(self):
                return [RawRecord(1, 1, "system", {"v": 1}, "echo")]
    '''))
    dist = tmp_path / "my_reader_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-reader-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[telemrec.readers]\necho = my_reader_pkg:EchoReader\n"
                                           "broken = my_reader_pkg:DoesNotExist\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    refresh_readers()
    try:
        infos = {i.name: i for i in list_readers()}
        assert infos["echo"].available and not infos["echo"].builtin
        assert not infos["broken"].available and "failed to load" in infos["broken"].reason
        result = runner.invoke(app, ["read", "--reader", "echo", "--count", "1"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout.splitlines()[0])["source"] == "echo"
    finally:
        refresh_readers()


def test_version_and_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("telemrec ")
    result = runner.invoke(app, ["--help"])
    for command in ("readers", "read", "record", "info", "check", "import"):
        assert command in result.stdout


def test_readers_command_says_why():
    result = runner.invoke(app, ["readers"])
    assert result.exit_code == 0
    assert "psutil" in result.stdout and "available" in result.stdout
    data = json.loads(runner.invoke(app, ["readers", "--json"]).stdout)
    assert {d["name"] for d in data} >= {"psutil", "nvml", "dcgmi", "prometheus", "replay"}


def test_read_prints_json_lines_of_the_fixed_schema():
    result = runner.invoke(app, ["read", "--reader", "psutil", "--count", "3", "--interval", "0.05"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines and all(set(d) == {"mono_ns", "wall_ns", "entity", "source", "source_version", "fields", "error"}
                         for d in lines)
    ticks = {d["mono_ns"] for d in lines if d["entity"] == "system"}
    assert len(ticks) == 3


def test_read_errors_are_messages_not_tracebacks():
    result = runner.invoke(app, ["read", "--reader", "psutil", "--source", "/no/such/proc"])
    assert result.exit_code == 2 and "hint:" in result.output
    result = runner.invoke(app, ["read", "--reader", "nosuch"])
    assert result.exit_code == 2 and "telemrec readers" in result.output

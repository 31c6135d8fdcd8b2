"""The public API is small, sorted, importable, and `import telemrec` stays light."""

import subprocess
import sys

import telemrec

EXPECTED = [
    "BaseReader", "OfflineMonitor", "RawRecord", "Reader", "ReaderCaps", "ReaderConfig", "ReaderError",
    "ReaderNotFoundError", "ReaderUnavailableError", "RecordRequest", "ReplayReader", "TelemrecError", "Trace",
    "TraceCorruptError", "TraceError", "TraceNotFoundError", "TraceWriter", "UnsupportedFormatVersionError",
    "__version__", "export_jumper", "get_reader", "live_snapshot", "plot_trace", "snapshot", "summarize", "iter_replay", "list_readers", "load", "open_trace", "record",
]


def test_all_is_pinned_and_sorted():
    assert telemrec.__all__ == sorted(EXPECTED)


def test_every_public_name_resolves():
    for name in telemrec.__all__:
        assert getattr(telemrec, name) is not None, name


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


HEAVY = {"h5py", "pandas", "pynvml", "numpy", "psutil", "matplotlib", "prometheus_client"}


def test_import_telemrec_is_light():
    assert not HEAVY & _modules_after("import telemrec")


def test_cli_help_is_light():
    code = ("import sys; sys.argv=['telemrec','--help']\nfrom telemrec.cli import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass")
    assert not HEAVY & _modules_after(code)


def test_errors_inherit_matching_builtins_and_pickle():
    import pickle

    from telemrec import errors

    err = errors.TraceNotFoundError("no trace at x", path="x")
    assert isinstance(err, FileNotFoundError) and isinstance(err, errors.TelemrecError)
    assert isinstance(errors.ReaderNotFoundError("x"), LookupError)
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and back.path == "x"

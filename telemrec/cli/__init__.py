"""The ``telemrec`` command line: a thin typer app, one module per command group.

Command modules import only typer at module level; pandas, h5py and NVML are
imported inside the commands, so ``telemrec --help`` stays fast.
"""

from __future__ import annotations

import typer

from telemrec._version import __version__

app = typer.Typer(
    name="telemrec",
    help="Record, replay and analyse cluster-node telemetry (psutil, NVML, DCGM, Prometheus).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"telemrec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Record, replay and analyse cluster-node telemetry."""


def _register() -> None:
    import importlib

    for name in ("readers", "record", "inspect", "replay", "serve", "analysis", "integrations"):
        try:
            module = importlib.import_module(f"telemrec.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"telemrec.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def main() -> None:
    app()

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
    rich_markup_mode=None,  # plain help: no boxes, no <bool> after flags
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


def _click_exceptions():
    try:  # typer >= 0.20 carries its own click
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> None:
    """The console script: typer's parsing, with its usage errors told the way telemrec tells errors
    (one line and a hint, exit status 2)."""
    import sys

    exceptions = _click_exceptions()
    command = typer.main.get_command(app)
    try:
        status = command.main(args=argv, prog_name="telemrec", standalone_mode=False)
    except getattr(exceptions, "NoArgsIsHelpError", ()) as exc:  # bare `telemrec`: the help
        typer.echo(exc.format_message(), err=True)
        sys.exit(2)
    except exceptions.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else "telemrec"
        typer.echo(f"telemrec: error: {exc.format_message()}", err=True)
        typer.echo(f"  hint: see `{path} --help`.", err=True)
        sys.exit(2)
    except exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("telemrec: interrupted", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)

"""`telemrec integrations ...`: set-up for the tools telemrec plugs into (docs/integrations.md)."""

from __future__ import annotations

from typing import Optional

import typer

from telemrec.cli._common import reported_errors

integrations_app = typer.Typer(
    name="integrations",
    help="Set telemrec up inside other tools (cjm MonitorPlugins; JUmPER needs no set-up).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@integrations_app.command("cjm-manifest")
def cjm_manifest_command(
    trace: Optional[str] = typer.Option(None, "--trace", "-t",
                                        help="Default trace of the telemrec-replay monitor (else it needs "
                                             "config={'trace': PATH} at load)."),
    directory: Optional[str] = typer.Option(None, "--dir", "-d",
                                            help="Where to write them (default: $CJM_DATA_DIR/manifests when set, "
                                                 "else ./.cjm/manifests, the two places cjm looks)."),
    python: Optional[str] = typer.Option(None, "--python",
                                         help="Interpreter cjm starts the monitors with (default: this one); it "
                                              "needs Python >= 3.12 and telemrec[cjm]."),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Check that the interpreter imports cjm and the monitors."),
) -> None:
    """Write cjm ManifestV2 files for the telemrec-live and telemrec-replay monitors."""
    from telemrec.integrations.cjm_manifest import write_manifests

    with reported_errors():
        paths = write_manifests(directory, trace=trace, python=python, check=check)
    for path in paths:
        typer.echo(path)


def register(app: typer.Typer) -> None:
    app.add_typer(integrations_app, name="integrations")

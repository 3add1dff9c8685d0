"""The typer application: every command group registers itself here."""

from __future__ import annotations

import importlib
from typing import Annotated

import click
import typer

from model_signing import methods
from model_signing.cli import (
    _audit,
    _digest,
    _hub,
    _inspect,
    _keygen,
    _local,
    _lock,
    _registry,
    _scan,
    _sign,
    _signall,
    _verify,
)
from model_signing.cli._options import RootGroup

app = typer.Typer(
    # Plain click help: typer's rich formatting costs ~70 ms of imports on every command's start-up.
    rich_markup_mode=None,
    name="modelseal",
    cls=RootGroup,
    help="Sign and verify ML models with Sigstore (OpenSSF Model Signing v1.0).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Inherited by every subcommand's context: `-h` works everywhere, as in model-signing.
    context_settings={"help_option_names": ["-h", "--help"]},
)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _print_version(value: bool) -> None:
    if value:
        from model_signing import __version__

        print(f"modelseal {__version__}")
        raise typer.Exit()


def _set_log_level(value: str | None) -> str | None:
    if value is not None:
        import logging  # only when asked for: nothing on the --help path needs it

        logging.basicConfig(level=value.upper(), format="%(levelname)s %(name)s: %(message)s")
    return value


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            metavar="LEVEL",
            click_type=click.Choice(_LOG_LEVELS, case_sensitive=False),
            callback=_set_log_level,
            help="Log messages of this level and above on stderr (DEBUG, INFO, WARNING, ERROR, CRITICAL).",
        ),
    ] = None,
) -> None:
    """Sign and verify ML models with Sigstore (OpenSSF Model Signing v1.0)."""


for _module in (_digest, _sign, _verify, _inspect, _local, _scan, _keygen, _hub, _registry, _lock, _audit, _signall):
    _module.register(app)
# One CLI module per signing method, named like the method; importing it adds `sign <m>` and `verify <m>`.
for _name in methods.names():
    importlib.import_module(f"model_signing.cli.methods.{_name}")
# model-signing's `sign pkcs11-key` / `sign pkcs11-certificate`: aliases of `sign key` / `sign certificate` with a
# pkcs11: key (PKCS #11 is a key source, not a signing method, so the registry does not name it).
importlib.import_module("model_signing.cli._pkcs11")

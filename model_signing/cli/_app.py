"""The typer application: every command group registers itself here."""

from __future__ import annotations

import typer

from model_signing.cli import _digest, _keyless, _local, _sign, _verify

app = typer.Typer(
    name="modelseal",
    help="Sign and verify ML models with Sigstore (OpenSSF Model Signing v1.0).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Sign and verify ML models with Sigstore (OpenSSF Model Signing v1.0)."""


for _module in (_digest, _sign, _verify, _keyless, _local):
    _module.register(app)

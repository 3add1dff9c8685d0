"""CLI: ``digest`` -- hash a model and print its root digest (or, with ``--json``, its manifest)."""

from __future__ import annotations

from typing import Annotated

import typer

from model_signing.cli import _options as opt


def register(app: typer.Typer) -> None:
    """Add the ``digest`` command to the app."""

    @app.command(cls=opt.PeerSpellings)
    @opt.with_option_groups
    def digest(
        path: opt.ModelPath,
        hashing: opt.HashingOptions,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the full manifest (resources + serialization) as JSON.")
        ] = False,
    ) -> None:
        """Hash a model and print its root digest (SHA-256 over the resource digests, in order)."""
        from model_signing.hashing import hash_model

        manifest = hash_model(path, hashing)
        if as_json:
            opt.print_json(manifest.as_dict())
        else:
            print(manifest.root_digest().hex())

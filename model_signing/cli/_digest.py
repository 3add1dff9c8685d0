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
            bool, typer.Option("--json", help="Print the result (manifest included) as a JSON object on stdout.")
        ] = False,
    ) -> None:
        """Hash a model and print its root digest (SHA-256 over the resource digests, in order)."""
        from model_signing.cli import _report
        from model_signing.hashing import digest_model

        _report.begin("digest", model_path=path, as_json=as_json)
        prior = None
        if hashing.reuse_from is not None:
            from model_signing.signing import prior_signature

            prior = prior_signature(hashing.reuse_from, hashing)
        result = digest_model(path, hashing, prior=prior)
        opt.warn_about_cache(hashing)
        _report.digest(result, as_json)

"""CLI: ``digest`` -- hash a model and print its root digest (or, with ``--json``, its manifest)."""

from __future__ import annotations

from typing import Annotated

import typer

from model_signing.cli import _options as opt


def register(app: typer.Typer) -> None:
    """Add the ``digest`` command to the app."""

    @app.command()
    def digest(  # noqa: PLR0917 - one parameter per CLI option
        path: opt.ModelPath,
        serialization: opt.Serialization = opt.SerializationChoice.files,
        shard_size: opt.ShardSize = None,
        hash_type: opt.Hash = opt.HashChoice.sha256,
        ignore_paths: opt.IgnorePaths = None,
        allow_symlinks: opt.AllowSymlinks = False,
        max_workers: opt.MaxWorkers = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the full manifest (resources + serialization) as JSON.")
        ] = False,
        quiet: opt.Quiet = False,
    ) -> None:
        """Hash a model and print its root digest (SHA-256 over the resource digests, in order)."""
        from model_signing.hashing import hash_model

        config = opt.hashing_config(
            serialization=serialization, shard_size=shard_size, hash_type=hash_type, ignore_paths=ignore_paths,
            allow_symlinks=allow_symlinks, max_workers=max_workers, quiet=quiet,
        )
        manifest = hash_model(path, config)
        if as_json:
            opt.print_json(manifest.as_dict())
        else:
            print(manifest.root_digest().hex())

"""CLI: ``digest`` -- hash a model and print its root digest (or, with ``--json``, its manifest)."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer


class _Serialization(StrEnum):
    files = "files"
    shards = "shards"


class _Hash(StrEnum):
    sha256 = "sha256"
    blake2b = "blake2b"
    blake3 = "blake3"


def register(app: typer.Typer) -> None:
    """Add the ``digest`` command to the app."""

    @app.command()
    def digest(  # noqa: PLR0917 - one parameter per CLI option
        path: Annotated[str, typer.Argument(help="Model directory or single model file.")],
        serialization: Annotated[
            _Serialization, typer.Option("--serialization", help="One digest per file, or per byte range.")
        ] = _Serialization.files,
        shard_size: Annotated[
            int | None,
            typer.Option("--shard-size", min=1, help="Shard size in bytes (shards only; default 1000000000)."),
        ] = None,
        hash_type: Annotated[_Hash, typer.Option("--hash", help="Hash algorithm for each resource.")] = _Hash.sha256,
        ignore_paths: Annotated[
            list[str] | None,
            typer.Option(
                "--ignore-paths",
                help="Path to exclude, relative to the model root or absolute inside it (repeatable).",
            ),
        ] = None,
        allow_symlinks: Annotated[
            bool, typer.Option("--allow-symlinks", help="Follow symlinks instead of rejecting them.")
        ] = False,
        max_workers: Annotated[
            int | None, typer.Option("--max-workers", min=1, help="Worker processes (default: CPU count).")
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the full manifest (resources + serialization) as JSON.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Hash a model and print its root digest (SHA-256 over the resource digests, in order)."""
        from model_signing.errors import InputError
        from model_signing.hashing import HashingConfig, hash_model
        from model_signing.manifest import DEFAULT_SHARD_SIZE

        if shard_size is not None and serialization is not _Serialization.shards:
            raise InputError("--shard-size only applies with --serialization shards")
        config = HashingConfig(
            method=serialization.value,
            hash_type=hash_type.value,
            shard_size=shard_size or DEFAULT_SHARD_SIZE,
            allow_symlinks=allow_symlinks,
            ignore_paths=tuple(ignore_paths or ()),
            max_workers=max_workers,
            progress=False if quiet else None,
        )
        manifest = hash_model(path, config)
        if as_json:
            print(json.dumps(manifest.as_dict(), indent=2, ensure_ascii=False))
        else:
            print(manifest.root_digest().hex())

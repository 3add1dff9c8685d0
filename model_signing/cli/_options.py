"""Options shared by several commands, defined once (typer ``Annotated`` aliases + small helpers).

The hashing options mirror ``digest``'s: ``--serialization``, ``--shard-size``, ``--hash``,
``--ignore-paths``, ``--allow-symlinks``, ``--max-workers``, ``--quiet``.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

if TYPE_CHECKING:
    from model_signing.hashing import HashingConfig


class SerializationChoice(StrEnum):
    """``--serialization``."""

    files = "files"
    shards = "shards"


class HashChoice(StrEnum):
    """``--hash``."""

    sha256 = "sha256"
    blake2b = "blake2b"
    blake3 = "blake3"


class DefaultGroup(typer.core.TyperGroup):
    """A command group that runs :attr:`default_command` when no subcommand name is given.

    ``sign MODEL`` and ``sign --path MODEL`` then mean ``sign <default> ...``, while ``sign key ...``
    and ``sign --help`` keep their usual meaning.  If the default subcommand is not registered, the
    group behaves like a plain one.
    """

    default_command = "sigstore"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Insert the default subcommand name in front of arguments that do not start with one."""
        if (
            args
            and self.default_command in self.commands
            and args[0] not in self.commands
            and args[0] not in ("--help", "-h")
        ):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


ModelPath = Annotated[str, typer.Argument(help="Model directory or single model file.", show_default=False)]

Serialization = Annotated[
    SerializationChoice,
    typer.Option("--serialization", help="One digest per file, or per byte range (shards)."),
]
ShardSize = Annotated[
    int | None,
    typer.Option("--shard-size", min=1, help="Shard size in bytes (shards only; default 1000000000)."),
]
Hash = Annotated[HashChoice, typer.Option("--hash", help="Hash algorithm for each resource.")]
IgnorePaths = Annotated[
    list[str] | None,
    typer.Option(
        "--ignore-paths",
        help="Path to exclude, relative to the model root or absolute inside it (repeatable).",
    ),
]
AllowSymlinks = Annotated[bool, typer.Option("--allow-symlinks", help="Follow symlinks instead of rejecting them.")]
MaxWorkers = Annotated[
    int | None, typer.Option("--max-workers", min=1, help="Worker processes (default: CPU count).")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as a JSON object on stdout.")]

SignatureOut = Annotated[
    str | None,
    typer.Option(
        "--signature",
        help="Where to write the signature (default: model.sig beside the model, outside the signed tree).",
        show_default=False,
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing signature file.")]
SignatureIn = Annotated[
    str | None,
    typer.Option(
        "--signature", help="The signature to verify (default: model.sig beside the model).", show_default=False
    ),
]
PrivateKey = Annotated[str, typer.Option("--private-key", help="EC private key (PEM, P-256/P-384/P-521).")]
PasswordEnv = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        metavar="VARIABLE",
        help="Name of the environment variable holding the private key's password (never pass it as an argument).",
    ),
]


def hashing_config(
    *,
    serialization: SerializationChoice,
    shard_size: int | None,
    hash_type: HashChoice,
    ignore_paths: list[str] | None,
    allow_symlinks: bool,
    max_workers: int | None,
    quiet: bool,
) -> HashingConfig:
    """The :class:`HashingConfig` the hashing options describe."""
    from model_signing.errors import InputError
    from model_signing.hashing import HashingConfig
    from model_signing.manifest import DEFAULT_SHARD_SIZE

    if shard_size is not None and serialization is not SerializationChoice.shards:
        raise InputError("--shard-size only applies with --serialization shards")
    return HashingConfig(
        method=serialization.value,
        hash_type=hash_type.value,
        shard_size=shard_size or DEFAULT_SHARD_SIZE,
        allow_symlinks=allow_symlinks,
        ignore_paths=tuple(ignore_paths or ()),
        max_workers=max_workers,
        progress=False if quiet else None,
    )


def password_from_env(variable: str | None) -> str | None:
    """The password held in environment variable ``variable`` (``None`` when no variable is named)."""
    from model_signing.errors import InputError

    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise InputError(f"--password-env {variable}: the environment variable {variable} is not set")
    return value


def print_json(data: dict[str, Any]) -> None:
    """One JSON object on stdout."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


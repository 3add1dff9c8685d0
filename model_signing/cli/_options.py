"""Options shared by several commands, defined once (typer ``Annotated`` aliases + small helpers).

Two blocks of options recur in several commands: the hashing options (``--serialization``,
``--shard-size``, ``--hash``, ``--ignore-paths``, ``--allow-symlinks``, ``--max-workers``, ``--quiet``)
of ``digest`` and every ``sign`` method, and the common options of every ``verify`` method.  Each block
is the keyword signature of one builder function (:func:`hashing_config`, :func:`verify_options`); a
command takes the block as one parameter annotated :data:`HashingOptions` / :data:`VerifyOptions` and
decorated with :func:`with_option_groups`, which shows typer the builder's options in its place.

No ``from __future__ import annotations`` here: the builders' parameter annotations must be the
``Annotated`` objects themselves, since :func:`with_option_groups` hands them to typer as they are.
"""

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
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
    int | None,
    typer.Option(
        "--max-workers", min=1, help="Worker processes (default: CPU count; at most 4 per CPU, with a warning)."
    ),
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
    serialization: Serialization = SerializationChoice.files,
    shard_size: ShardSize = None,
    hash_type: Hash = HashChoice.sha256,
    ignore_paths: IgnorePaths = None,
    allow_symlinks: AllowSymlinks = False,
    max_workers: MaxWorkers = None,
    quiet: Quiet = False,
) -> "HashingConfig":
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
        max_workers=capped_workers(max_workers),
        progress=False if quiet else None,
    )


def capped_workers(max_workers: int | None) -> int | None:
    """``--max-workers``, lowered to the library's cap with a one-line warning when it asks for more."""
    if max_workers is None:
        return None
    from model_signing.hashing import default_workers, max_workers_cap

    cap = max_workers_cap()
    if max_workers <= cap:
        return max_workers
    cpus = default_workers()
    print(
        f"warning: --max-workers {max_workers} is more than hashing can use; using {cap} "
        f"({cap // cpus} per CPU, {cpus} CPU{'s' if cpus != 1 else ''})",
        file=sys.stderr,
    )
    return cap


IgnoreUnsigned = Annotated[
    bool,
    typer.Option(
        "--ignore-unsigned-files",
        help="Accept files the signature does not mention (every signed file is still checked).",
    ),
]
ExtraIgnorePaths = Annotated[
    list[str] | None,
    typer.Option(
        "--ignore-paths",
        help="Path to exclude in addition to the paths the signer excluded (repeatable).",
    ),
]


@dataclass(frozen=True)
class VerifySettings:
    """What the options common to every ``verify`` method ask for."""

    signature: str | None
    ignore_unsigned_files: bool
    ignore_paths: tuple[str, ...]
    max_workers: int | None
    quiet: bool
    as_json: bool


def verify_options(
    *,
    signature: SignatureIn = None,
    ignore_unsigned_files: IgnoreUnsigned = False,
    ignore_paths: ExtraIgnorePaths = None,
    max_workers: MaxWorkers = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> VerifySettings:
    """The :class:`VerifySettings` the common ``verify`` options describe."""
    return VerifySettings(
        signature, ignore_unsigned_files, tuple(ignore_paths or ()), capped_workers(max_workers), quiet, as_json
    )


class _OptionGroup:
    """Marks a command parameter that stands for the options of ``build`` (see :func:`with_option_groups`)."""

    def __init__(self, build: Callable[..., Any]) -> None:
        self.build = build
        self.parameters = list(inspect.signature(build).parameters.values())


HashingOptions = Annotated["HashingConfig", _OptionGroup(hashing_config)]
VerifyOptions = Annotated[VerifySettings, _OptionGroup(verify_options)]


def with_option_groups(command: Callable[..., None]) -> Callable[..., None]:
    """Show typer the options of each :data:`HashingOptions`/:data:`VerifyOptions` parameter of ``command``.

    typer builds a command's options from ``inspect.signature`` and ``typing.get_type_hints`` of the
    function it is given; the wrapper returned here reports the group's options in place of the group
    parameter, and calls ``command`` with the group's builder applied to them.
    """
    signature = inspect.signature(command, eval_str=True)
    groups: dict[str, _OptionGroup] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        marks = getattr(parameter.annotation, "__metadata__", ())
        group = next((m for m in marks if isinstance(m, _OptionGroup)), None)
        if group is None:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        else:
            groups[parameter.name] = group
            parameters.extend(group.parameters)

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        for name, group in groups.items():
            kwargs[name] = group.build(**{p.name: kwargs.pop(p.name) for p in group.parameters})
        command(**kwargs)

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": signature.return_annotation}
    return wrapper


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


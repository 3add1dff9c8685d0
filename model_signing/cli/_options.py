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
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import click
import typer

from model_signing.methods import DEFAULT as DEFAULT_METHOD

if TYPE_CHECKING:
    from model_signing.hashing import HashingConfig
    from model_signing.hashing.executor import Executor
    from model_signing.keymaterial.algorithms import Algorithm
    from model_signing.scan import ScanConfig


class SerializationChoice(StrEnum):
    """``--serialization``."""

    files = "files"
    shards = "shards"


class HashChoice(StrEnum):
    """``--hash``."""

    sha256 = "sha256"
    blake2b = "blake2b"
    blake3 = "blake3"


#: model-signing 1.1.1's option spellings (underscores) -> this CLI's, so its users' scripts keep working.
#: Applied by :class:`PeerSpellings` only where the command has the target option; the aliases stay out of
#: ``--help`` (they would double every option's name there) and are listed in the README instead.
PEER_SPELLINGS: dict[str, str] = {
    "--private_key": "--private-key",
    "--public_key": "--public-key",
    "--signing_certificate": "--signing-certificate",
    "--certificate_chain": "--certificate-chain",
    "--identity_provider": "--identity-provider",
    "--identity_token": "--identity-token",
    "--trust_config": "--trust-config",
    "--use_staging": "--staging",
    "--ignore_unsigned_files": "--ignore-unsigned-files",
    "--allow_symlinks": "--allow-symlinks",
    "--client_id": "--client-id",
    "--client_secret": "--client-secret",
    "--oauth_force_oob": "--oauth-force-oob",
    "--log_fingerprints": "--log-fingerprints",
    "--pkcs11_uri": "--pkcs11-uri",
}
#: model-signing flags that switch off one of this CLI's flags (whose "off" is the default): each cancels
#: the flag if given before it, like the last of a click ``--x/--no-x`` pair wins.  ``--use_ambient_credentials``
#: is a flag there (default off); here ambient credentials are used unless --oidc-disable-ambient-providers.
PEER_NEGATIONS: dict[str, str] = {
    "--no-ignore_unsigned_files": "--ignore-unsigned-files",
    "--use_ambient_credentials": "--oidc-disable-ambient-providers",
}
#: model-signing options with no counterpart here: refused with a reason rather than "No such option".
PEER_UNSUPPORTED: dict[str, str] = {}


def peer_spellings(command: click.Command, args: list[str]) -> list[str]:
    """``args`` with model-signing's spellings of ``command``'s options replaced by this CLI's.

    ``--opt=value`` is handled too; nothing after ``--`` is touched (it is a path, not an option).
    """
    names = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        name, eq, value = arg.partition("=")
        if name in PEER_UNSUPPORTED:
            raise click.UsageError(f"{name}: {PEER_UNSUPPORTED[name]}")
        cancelled = PEER_NEGATIONS.get(name)
        if cancelled is not None and cancelled in names and not eq:
            out = [a for a in out if a != cancelled]
            continue
        target = PEER_SPELLINGS.get(name)
        out.append(target + eq + value if target is not None and target in names else arg)
    return out


class PeerSpellings(typer.core.TyperCommand):
    """A command that also accepts model-signing 1.1.1's option spellings (see :data:`PEER_SPELLINGS`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Translate the peer's spellings, then parse as usual."""
        return super().parse_args(ctx, peer_spellings(self, args))


class HelpGroup(typer.core.TyperGroup):
    """A command group that prints its help and exits 0 when run without arguments.

    typer's ``no_args_is_help`` raises a usage error instead (exit 2, which the CLI maps to 1), although
    asking a bare ``modelseal sign`` what it can do is not a mistake.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """No arguments at all means ``--help``."""
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            args = ["--help"]
        return super().parse_args(ctx, args)


class RootGroup(HelpGroup):
    """The ``modelseal`` group: a Ctrl-C anywhere below it surfaces as :class:`click.Abort`.

    typer turns ``KeyboardInterrupt`` into a silent ``Exit(130)``; an ``Abort`` instead reaches
    :func:`model_signing.cli.main`, which prints ``interrupted`` (exit 130).
    """

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        """Parse the top-level arguments (Ctrl-C -> Abort)."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt:
            raise click.Abort() from None

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand (Ctrl-C -> Abort)."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise click.Abort() from None


class DefaultGroup(HelpGroup):
    """A command group that runs :attr:`default_command` when no subcommand name is given.

    ``sign MODEL`` and ``sign --path MODEL`` then mean ``sign <default> ...``, while ``sign key ...``
    and ``sign --help`` keep their usual meaning.  If the default subcommand is not registered, the
    group behaves like a plain one.
    """

    default_command = DEFAULT_METHOD
    #: Options that, given without a subcommand name, select another subcommand than the default one
    #: (``verify MODEL --registry FILE`` means ``verify registry MODEL --registry FILE``).
    routes: ClassVar[dict[str, str]] = {"--registry": "registry"}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Insert the default subcommand name in front of arguments that do not start with one."""
        if (
            args
            and self.default_command in self.commands
            and args[0] not in self.commands
            and args[0] not in ctx.help_option_names
        ):
            options = args[: args.index("--")] if "--" in args else args
            routed = [c for o, c in self.routes.items() if c in self.commands
                      and any(a == o or a.startswith(o + "=") for a in options)]
            args = [routed[0] if routed else self.default_command, *args]
        return super().parse_args(ctx, args)


ModelPath = Annotated[
    str, typer.Argument(click_type=click.Path(), help="Model directory or single model file.", show_default=False)
]

# The same, optional, with --path as an alternative: `sign --path key` signs a model directory named
# `key`, which as an argument would be taken for the `key` subcommand.
OptionalModelPath = Annotated[
    str | None,
    typer.Argument(click_type=click.Path(), help="Model directory or single model file.", show_default=False),
]
PathOption = Annotated[
    str | None,
    typer.Option("--path", metavar="PATH", help="The model (alternative to the argument; for a model named like a "
                                                "subcommand: `sign --path key`)."),
]


def model_path(path: str | None, path_option: str | None) -> str:
    """The model named by the argument or by ``--path`` (exactly one of them)."""
    from model_signing.errors import InputError

    if path is not None and path_option is not None and path != path_option:
        raise InputError("give the model once: either as the argument or with --path")
    model = path if path is not None else path_option
    if model is None:
        raise InputError("missing model path: pass PATH or --path PATH")
    return model


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
        metavar="PATH",
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
DigestCachePath = Annotated[
    str | None,
    typer.Option(
        "--digest-cache",
        metavar="PATH",
        help="Digest cache database (default: digests.sqlite3 in the user cache directory). Digests of files "
             "unchanged since (device, inode, size, mtime, ctime) are reused; verify never uses it.",
        show_default=False,
    ),
]
NoDigestCache = Annotated[bool, typer.Option("--no-digest-cache", help="Hash every file; read and write no cache.")]
ReuseFrom = Annotated[
    str | None,
    typer.Option(
        "--reuse-from",
        metavar="SIGNATURE",
        help="Reuse the digests of an earlier signature made with this digest cache, for the files unchanged "
             "since it was made.",
        show_default=False,
    ),
]


class ExecutorChoice(StrEnum):
    """``--executor``."""

    local = "local"
    dask = "dask"


ExecutorOption = Annotated[
    ExecutorChoice,
    typer.Option("--executor", help="Hash on this machine, or on a Dask cluster's workers (modelseal[dask])."),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler, tcp://HOST:PORT (default: DASK_SCHEDULER_ADDRESS); with --executor dask.",
        show_default=False,
    ),
]
# model-signing's --ignore-git-paths (its default) is what OMS always does here: .git, .gitattributes,
# .github and .gitignore at the model root are never signed.  Hidden: it only exists for its scripts.
GitPaths = Annotated[
    bool,
    typer.Option("--ignore-git-paths/--no-ignore-git-paths", hidden=True, help="model-signing compatibility."),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as a JSON object on stdout.")]

SignatureOut = Annotated[
    str | None,
    typer.Option(
        "--signature",
        metavar="PATH",
        help="Where to write the signature (default: model.sig beside the model, outside the signed tree).",
        show_default=False,
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing signature file.")]
SignatureIn = Annotated[
    str | None,
    typer.Option(
        "--signature",
        metavar="PATH",
        help="The signature to verify (default: model.sig beside the model).",
        show_default=False,
    ),
]
PrivateKey = Annotated[
    str,
    typer.Option(
        "--private-key",
        metavar="PATH|URI",
        help="Private key: a PEM file (EC P-256/P-384/P-521 or Ed25519), or a pkcs11: URI (RFC 7512) naming a "
        "key in an HSM, e.g. 'pkcs11:token=T;object=K?module-path=/usr/lib/softhsm/libsofthsm2.so"
        "&pin-source=file:/run/pin' (the key never leaves the token).",
    ),
]
PasswordEnv = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        metavar="VARIABLE",
        help="Name of the environment variable holding the private key's password, or a token's PIN when its "
        "pkcs11: URI gives none (never pass either as an argument).",
    ),
]

# model-signing's `--password PASSWORD`: accepted so its scripts run, hidden and warned about, because an
# argument is visible to every user of the machine (ps, /proc/PID/cmdline).
PasswordArgument = Annotated[str | None, typer.Option("--password", hidden=True)]


def hashing_config(
    *,
    serialization: Serialization = SerializationChoice.files,
    shard_size: ShardSize = None,
    hash_type: Hash = HashChoice.sha256,
    ignore_paths: IgnorePaths = None,
    allow_symlinks: AllowSymlinks = False,
    max_workers: MaxWorkers = None,
    quiet: Quiet = False,
    ignore_git_paths: GitPaths = True,
    digest_cache: DigestCachePath = None,
    no_digest_cache: NoDigestCache = False,
    reuse_from: ReuseFrom = None,
    executor: ExecutorOption = ExecutorChoice.local,
    scheduler: Scheduler = None,
) -> "HashingConfig":
    """The :class:`HashingConfig` the hashing options describe."""
    from model_signing.errors import InputError
    from model_signing.hashing import HashingConfig
    from model_signing.hashing.cache import DigestCache
    from model_signing.manifest import DEFAULT_IGNORED, DEFAULT_SHARD_SIZE

    if not ignore_git_paths:
        raise InputError(
            f"--no-ignore-git-paths is not supported: {', '.join(DEFAULT_IGNORED)} at the model root are "
            "never signed (OMS v1.0); sign a directory without them"
        )
    if shard_size is not None and serialization is not SerializationChoice.shards:
        raise InputError("--shard-size only applies with --serialization shards")
    if no_digest_cache and digest_cache is not None:
        raise InputError("--digest-cache and --no-digest-cache contradict each other; give one of them")
    if no_digest_cache and reuse_from is not None:
        raise InputError("--reuse-from needs the digest cache that recorded the signature; drop --no-digest-cache")
    if digest_cache == "":
        raise InputError("--digest-cache is empty; give a database file name, or --no-digest-cache")
    # An explicit --digest-cache must work; the default one is best effort (a read-only home still signs).
    cache = None if no_digest_cache else DigestCache(digest_cache)
    return HashingConfig(
        method=serialization.value,
        hash_type=hash_type.value,
        shard_size=shard_size or DEFAULT_SHARD_SIZE,
        allow_symlinks=allow_symlinks,
        ignore_paths=tuple(ignore_paths or ()),
        max_workers=capped_workers(max_workers),
        progress=False if quiet else None,
        digest_cache=cache,
        executor=_executor(executor, scheduler, max_workers),
        reuse_from=reuse_from,
    )


def _executor(choice: ExecutorChoice, scheduler: str | None, max_workers: int | None) -> "Executor | None":
    """The executor ``--executor``/``--scheduler`` ask for (``None``: the local pool)."""
    from model_signing.errors import InputError

    if choice is ExecutorChoice.local:
        if scheduler is not None:
            raise InputError("--scheduler only applies with --executor dask")
        return None
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if not address:
        raise InputError("--executor dask needs a scheduler: pass --scheduler tcp://HOST:PORT or set "
                         "DASK_SCHEDULER_ADDRESS")
    if max_workers is not None:
        raise InputError("--max-workers applies to the local executor; a Dask cluster uses its workers' threads")
    from model_signing.hashing.executor import dask_executor

    return dask_executor(address)


def warn_about_cache(config: "HashingConfig") -> None:
    """One warning line each when the digest cache could not be used or ``--reuse-from`` offered nothing."""
    cache = config.digest_cache
    if cache is None:
        return
    if cache.stats.disabled:
        print(f"warning: digest cache {cache.path} not used ({cache.stats.disabled}); every file was hashed",
              file=sys.stderr)
    elif cache.stats.prior_unused and config.reuse_from is not None:
        print(f"warning: nothing reused from {config.reuse_from}: {cache.stats.prior_unused}", file=sys.stderr)
    if cache.stats.untrusted_fs:
        print(f"warning: digest cache not used for {cache.stats.untrusted_fs} resources on a file system whose "
              "change time a writer can set (FAT, exFAT, NTFS, FUSE); they were hashed", file=sys.stderr)


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
        metavar="PATH",
        help="Path to exclude in addition to the paths the signer excluded (repeatable).",
    ),
]


class FailOnChoice(StrEnum):
    """``--fail-on`` of ``sign --scan`` / ``verify --scan``."""

    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


ScanFlag = Annotated[
    bool,
    typer.Option("--scan", help="Also scan every file for content that runs code when loaded, in the same read "
                                "pass as hashing; unsafe content exits 4."),
]
FailOn = Annotated[
    FailOnChoice | None,
    typer.Option("--fail-on", help="With --scan: the lowest severity that counts as unsafe (default: medium)."),
]
AllowGlobal = Annotated[
    list[str] | None,
    typer.Option("--allow-global", metavar="MODULE.NAME",
                 help="With --scan: accept this pickle global (or MODULE.* for a whole module); repeatable."),
]


def scan_options(
    *, scan: ScanFlag = False, fail_on: FailOn = None, allow_global: AllowGlobal = None
) -> "ScanConfig | None":
    """The scan the ``--scan`` options ask for (``None`` without ``--scan``)."""
    from model_signing.errors import InputError

    if not scan:
        if fail_on is not None or allow_global:
            raise InputError(f"{'--fail-on' if fail_on is not None else '--allow-global'} only applies with --scan")
        return None
    from model_signing.scan import make_config

    try:
        return make_config(allow_globals=allow_global or (), threshold=(fail_on or FailOnChoice.medium).value)
    except InputError as exc:
        raise InputError(f"--allow-global: {exc}") from None


Quarantine = Annotated[
    str | None,
    typer.Option("--quarantine", metavar="DIR",
                 help="On a failed verification or unsafe content, move the model into DIR/<name>-<UTC time>/ "
                      "with an incident.json (off by default)."),
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
    #: ``--audit-log``: the JSON-lines audit log to append this verification to.
    audit_log: str | None = None
    scan: "ScanConfig | None" = None
    quarantine: str | None = None


AuditLog = Annotated[
    str | None,
    typer.Option("--audit-log", metavar="FILE", help="Append a JSON-lines record of the verification to FILE."),
]


def verify_options(
    *,
    signature: SignatureIn = None,
    ignore_unsigned_files: IgnoreUnsigned = False,
    ignore_paths: ExtraIgnorePaths = None,
    max_workers: MaxWorkers = None,
    quiet: Quiet = False,
    as_json: Json = False,
    audit_log: AuditLog = None,
    # Accepted for model-signing's scripts and ignored: verification always re-hashes with the settings
    # the signature records (symlinks followed only if signed so; git files never signed).
    allow_symlinks: Annotated[bool, typer.Option("--allow-symlinks", hidden=True)] = False,
    ignore_git_paths: GitPaths = True,
    scan: ScanFlag = False,
    fail_on: FailOn = None,
    allow_global: AllowGlobal = None,
    quarantine: Quarantine = None,
) -> VerifySettings:
    """The :class:`VerifySettings` the common ``verify`` options describe."""
    return VerifySettings(
        signature, ignore_unsigned_files, tuple(ignore_paths or ()), capped_workers(max_workers), quiet, as_json,
        audit_log, scan_options(scan=scan, fail_on=fail_on, allow_global=allow_global), quarantine,
    )


class _OptionGroup:
    """Marks a command parameter that stands for the options of ``build`` (see :func:`with_option_groups`)."""

    def __init__(self, build: Callable[..., Any]) -> None:
        self.build = build
        self.parameters = list(inspect.signature(build).parameters.values())


HashingOptions = Annotated["HashingConfig", _OptionGroup(hashing_config)]
ScanOptions = Annotated["ScanConfig | None", _OptionGroup(scan_options)]
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


def password_from_env(variable: str | None, argument: str | None = None) -> str | None:
    """The password held in environment variable ``variable`` (``None`` when no variable is named).

    ``argument`` is model-signing's ``--password`` value: used (with a warning) when no variable is named.
    """
    from model_signing.errors import InputError

    if argument is not None:
        if variable is not None:
            raise InputError("pass the private key's password once: --password-env or --password, not both")
        print("warning: --password is visible to other users of this machine; prefer --password-env VARIABLE",
              file=sys.stderr)
        return argument
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise InputError(f"--password-env {variable}: the environment variable {variable} is not set")
    return value


def print_json(data: dict[str, Any]) -> None:
    """One JSON object on stdout."""
    print(json.dumps(data, indent=2, ensure_ascii=False))



def warn_if_peer_cannot_verify(algorithm: "Algorithm") -> None:
    """One warning line when model-signing 1.1.1 cannot verify signatures made with ``algorithm`` (Ed25519)."""
    if not algorithm.peer_verifies:
        print(
            f"warning: model-signing 1.1.1 cannot verify {algorithm.label} signatures (it accepts only EC "
            "P-256/P-384/P-521 keys); modelseal verifies them",
            file=sys.stderr,
        )

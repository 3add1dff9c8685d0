"""CLI: ``sign-all [METHOD] DIR [method options] [--lock FILE] [--force] [--registry FILE]``.

The group's subcommands are ``sign``'s own (one per method, with the same options): under ``sign-all``
their shared runner (:func:`model_signing.cli._sign.run_sign`) finds a :class:`SignAll` in the click
context and signs every model of DIR instead of one model (:func:`model_signing.policy.batch.sign_all`).
The group's own options may be given anywhere (:class:`SignAllGroup` moves them in front), and without a
method name the default one (keyless) is used, as with ``sign``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import click
import typer

from model_signing.cli import _audit, _report, _sign
from model_signing.cli import _options as opt
from model_signing.methods import DEFAULT as DEFAULT_METHOD

if TYPE_CHECKING:
    from model_signing.hashing import HashingConfig
    from model_signing.signing import Signer

#: The group's options: those taking a value, and the flags.
_VALUED = ("--lock", "--registry", "--exclude", "--verify-trust-config")
_FLAGS = ("--force",)


class SignAllGroup(opt.HelpGroup):
    """``sign-all``: its options are taken from anywhere before ``--``; without a method name, the default one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Move the group's options in front and insert the default method where none is named."""
        cut = args.index("--") if "--" in args else len(args)
        front: list[str] = []
        rest: list[str] = []
        i = 0
        while i < cut:
            name = args[i].split("=", 1)[0]
            if name in _FLAGS or (name in _VALUED and "=" in args[i]):
                front.append(args[i])
            elif name in _VALUED:
                front += args[i:i + 2]
                i += 1
            else:
                rest.append(args[i])
            i += 1
        rest += args[cut:]
        if (rest and rest[0] not in self.commands and rest[0] not in ctx.help_option_names
                and DEFAULT_METHOD in self.commands):
            rest = [DEFAULT_METHOD, *rest]
        return super().parse_args(ctx, front + rest)


sign_all_app = typer.Typer(
    rich_markup_mode=None,
    name="sign-all",
    cls=SignAllGroup,
    help="Sign every model of a directory (each subdirectory and top-level file; NAME.sig beside each), then "
    "write or update its lock file: sign-all [METHOD] DIR [method options] [--lock FILE] [--force].",
    no_args_is_help=True,
)
# The very list of `sign`'s commands: every method registered there (now or later) is a `sign-all` method too.
sign_all_app.registered_commands = _sign.sign_app.registered_commands


@dataclass(frozen=True)
class SignAll:
    """The ``sign-all`` options, handed to the method's runner through the click context."""

    lock: str | None
    force: bool
    registry: str | None
    exclude: tuple[str, ...]
    trust_config: str | None

    def run(self, path: str, make_signer: Callable[[], Signer], config: HashingConfig, *, signature: str | None,
            overwrite: bool, as_json: bool) -> None:
        """Sign every model of ``path`` with one signer (see :func:`model_signing.policy.batch.sign_all`)."""
        from model_signing._internal.text import plural
        from model_signing.errors import InputError
        from model_signing.policy.batch import sign_all

        if signature is not None:
            raise InputError("--signature does not apply to sign-all: each model's signature is NAME.sig beside it")
        done = sign_all(path, make_signer(), hashing=config, force=self.force or overwrite, lock=self.lock,
                        registry=self.registry, exclude=self.exclude, trust_config=self.trust_config)
        if as_json:
            _report.out(json.dumps(done.as_dict(), indent=2, ensure_ascii=False))
            return
        rows = [("MODEL", "ACTION", "ROOT DIGEST", "WHY")]
        rows += [(m.name, m.action, f"sha256:{m.root_digest}", m.reason) for m in done.models]
        lines = [_audit.table(rows)]
        if done.lock is not None:
            lines.append(f"lock file {done.lock.path} written ({plural(len(done.lock.models), 'model')})")
        _report.out("\n".join(lines))


@sign_all_app.callback()
def _options(
    ctx: typer.Context,
    *,
    lock: Annotated[
        str | None, typer.Option("--lock", metavar="FILE", help="Write or update this lock file afterwards.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Sign again even where the signature is still good.")] = False,
    registry: Annotated[
        str | None, typer.Option("--registry", metavar="FILE",
                                 help="Judge existing signatures (and lock publishers) with this registry.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", metavar="PATH", help="Not a model (repeatable).")
    ] = None,
    trust_config: Annotated[
        str | None, typer.Option("--verify-trust-config", metavar="PATH",
                                 help="Sigstore instance for checking keyless publishers of --registry.")
    ] = None,
) -> None:
    ctx.obj = SignAll(lock, force, registry, tuple(exclude or ()), trust_config)


def register(app: typer.Typer) -> None:
    """Add the ``sign-all`` group."""
    app.add_typer(sign_all_app, name="sign-all")

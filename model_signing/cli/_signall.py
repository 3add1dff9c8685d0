"""CLI: ``sign-all [--lock FILE] [--force] [--registry FILE] METHOD DIR [method options]``.

The group's subcommands are ``sign``'s own (one per method, with the same options): under ``sign-all``
their shared runner (:func:`model_signing.cli._sign.run_sign`) finds a :class:`SignAll` in the click
context and signs every model of DIR instead of one model (:func:`model_signing.policy.batch.sign_all`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from model_signing.cli import _audit, _report, _sign
from model_signing.cli import _options as opt

if TYPE_CHECKING:
    from model_signing.hashing import HashingConfig
    from model_signing.signing import Signer

sign_all_app = typer.Typer(
    rich_markup_mode=None,
    name="sign-all",
    # No default method: the group's own options come first, so the method is always named.
    cls=opt.HelpGroup,
    help="Sign every model of a directory (each subdirectory and top-level file; NAME.sig beside each), then "
    "write or update its lock file. Group options go before the method: sign-all --lock L key DIR --private-key K.",
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
            lines.append(f"lock file {done.lock.path} written ({len(done.lock.models)} models)")
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

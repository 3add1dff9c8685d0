"""CLI: the ``sign`` group and what its subcommands share (one subcommand per signing method, each in
:mod:`model_signing.cli.methods`).

The group is a :class:`~model_signing.cli._options.DefaultGroup`: once a ``sigstore`` subcommand is
registered on :data:`sign_app`, ``sign MODEL`` / ``sign --path MODEL`` run it.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _report

if TYPE_CHECKING:
    from model_signing.errors import SignatureExistsError
    from model_signing.hashing import HashingConfig
    from model_signing.scan import ScanConfig
    from model_signing.signing import Signer

sign_app = typer.Typer(
    # Plain click help: typer's rich formatting costs ~70 ms of imports on every command's start-up.
    rich_markup_mode=None,
    name="sign",
    cls=opt.DefaultGroup,
    help="Sign a model: writes an OMS v1.0 signature (a Sigstore bundle) beside it.",
    no_args_is_help=True,
)

#: ``--signature -``: the bundle goes to stdout (as with cosign and sigstore), the report to stderr.
STDOUT = "-"


def begin(path: str, signature: str | None, as_json: bool) -> None:
    """Record the ``sign`` being run (for the ``--json`` error document); first thing in every ``sign`` command."""
    from model_signing.signing import default_signature_path

    sig = signature if signature is not None else default_signature_path(path)
    _report.begin("sign", model_path=path, signature_path=sig, as_json=as_json)


def run_sign(
    path: str,
    make_signer: Callable[[], Signer],
    config: HashingConfig,
    *,
    signature: str | None,
    overwrite: bool,
    as_json: bool,
    scan: ScanConfig | None = None,
) -> None:
    """Check the destination, then build the signer, sign, and write the report (and the bundle, for ``-``).

    ``scan`` (``--scan``): unsafe content refuses to sign (exit 4), before any signature or log entry.

    The signer is only built once the destination is known to be usable: building it can mean an
    interactive sign-in (keyless) or decrypting a key, which a certain failure must not follow.
    """
    from model_signing.errors import InputError, SignatureExistsError
    from model_signing.signing import TO_CALLER, check_destination, sign

    batch = _batch()
    if batch is not None:  # `sign-all METHOD DIR ...`: the same method options, for every model of DIR
        batch.run(path, make_signer, config, signature=signature, overwrite=overwrite, as_json=as_json)
        return
    if signature == "":
        raise InputError("--signature is empty; give a file name, or - to write the signature to stdout")
    to_stdout = signature == STDOUT
    if to_stdout:
        if as_json:
            raise InputError("--signature - writes the signature to stdout, which --json also uses; give a file "
                             "name with --signature, or drop --json")
        _check_stdout()
    target = TO_CALLER if to_stdout else signature
    try:
        check_destination(path, target, overwrite=overwrite)
        result = sign(path, make_signer(), hashing=config, signature_path=target, overwrite=overwrite, scan=scan)
    except SignatureExistsError as exc:
        raise _exists_advice(exc) from None
    opt.warn_about_cache(config)
    if to_stdout:
        _write_stdout(result.bundle_json)
    _report.signed(result, as_json, to_stderr=to_stdout)


def _batch() -> Batch | None:
    """The ``sign-all`` settings when this ``sign`` method runs under ``sign-all`` (its context's object)."""
    import click

    ctx = click.get_current_context(silent=True)
    return ctx.obj if ctx is not None and isinstance(ctx.obj, Batch) else None


@runtime_checkable
class Batch(Protocol):
    """What ``sign-all`` puts in the context: it runs a method's signer over a whole directory."""

    def run(self, path: str, make_signer: Callable[[], Signer], config: HashingConfig, *, signature: str | None,
            overwrite: bool, as_json: bool) -> None:
        """Sign every model of the directory ``path``."""


def _exists_advice(exc: SignatureExistsError) -> SignatureExistsError:
    """The library's error, with the options that act on it (the library names none)."""
    from model_signing.errors import SignatureExistsError

    elsewhere = f"--signature {exc.free_path}" if exc.free_path else "another --signature path"
    if exc.same_model:
        advice = f"pass --overwrite to replace it, or use {elsewhere}"
    else:
        advice = f"use {elsewhere} instead, or pass --overwrite if you mean to replace it"
    return SignatureExistsError(
        exc.path, model_name=exc.model_name, signed_model=exc.signed_model,
        signed_root_digest=exc.signed_root_digest, free_path=exc.free_path,
        message=f"signature {exc.path} already exists: {exc.what_it_signs()}; {advice}",
    )


def _check_stdout() -> None:
    from model_signing.errors import InputError

    if sys.stdout is None:  # started with descriptor 1 closed
        raise InputError(f"cannot write signature to stdout: {os.strerror(errno.EBADF)}")
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, io.UnsupportedOperation):  # a stream without a descriptor (a test's capture)
        return
    except ValueError as exc:  # closed
        raise InputError(f"cannot write signature to stdout: {exc}") from None
    try:
        os.fstat(fd)
    except OSError as exc:
        raise InputError(f"cannot write signature to stdout: {exc.strerror or exc}") from None


def _write_stdout(text: str) -> None:
    """The bundle on stdout, unbuffered, so a failure is seen (and named) here rather than at exit."""
    from model_signing.errors import InputError

    data = (text + "\n").encode("utf-8")
    try:
        sys.stdout.flush()
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, ValueError, OSError):  # a stream without a descriptor (a test's capture)
            sys.stdout.write(data.decode("utf-8"))
            sys.stdout.flush()
            return
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise InputError(f"cannot write signature to stdout: {exc.strerror or exc}") from None


def register(app: typer.Typer) -> None:
    """Add the ``sign`` group to the app."""
    app.add_typer(sign_app, name="sign")

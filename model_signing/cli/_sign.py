"""CLI: ``sign key`` and ``sign certificate`` (the ``sign`` group also hosts the keyless ``sign sigstore``).

The group is a :class:`~model_signing.cli._options.DefaultGroup`: once a ``sigstore`` subcommand is
registered on :data:`sign_app`, ``sign MODEL`` / ``sign --path MODEL`` run it.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _report

if TYPE_CHECKING:
    from model_signing.errors import SignatureExistsError
    from model_signing.hashing import HashingConfig
    from model_signing.signing import Signer

sign_app = typer.Typer(
    name="sign",
    cls=opt.DefaultGroup,
    help="Sign a model: writes an OMS v1.0 signature (a Sigstore bundle) beside it.",
    no_args_is_help=True,
)

SigningCertificate = Annotated[
    str,
    typer.Option("--signing-certificate", metavar="PATH", help="The leaf certificate of the private key (PEM)."),
]
CertificateChain = Annotated[
    list[str] | None,
    typer.Option(
        "--certificate-chain",
        metavar="PATH",
        help="Certificates above the leaf to include in the bundle: the intermediates, optionally the root "
        "(PEM; repeatable; any order). Checked before hashing: a chain that lacks the leaf's issuer is refused.",
    ),
]


#: ``--signature -``: the bundle goes to stdout (as with cosign and sigstore), the report to stderr.
STDOUT = "-"


def begin(path: str, signature: str | None, as_json: bool) -> None:
    """Record the ``sign`` being run (for the ``--json`` error document); first thing in every ``sign`` command."""
    from model_signing.signing import default_signature_path

    sig = signature if signature is not None else default_signature_path(path)
    _report.begin("sign", model_path=path, signature_path=sig, as_json=as_json)


def _run(
    path: str,
    make_signer: Callable[[], Signer],
    config: HashingConfig,
    *,
    signature: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Check the destination, then build the signer, sign, and write the report (and the bundle, for ``-``).

    The signer is only built once the destination is known to be usable: building it can mean an
    interactive sign-in (keyless) or decrypting a key, which a certain failure must not follow.
    """
    from model_signing.errors import InputError, SignatureExistsError
    from model_signing.signing import TO_CALLER, check_destination, sign

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
        result = sign(path, make_signer(), hashing=config, signature_path=target, overwrite=overwrite)
    except SignatureExistsError as exc:
        raise _exists_advice(exc) from None
    if to_stdout:
        _write_stdout(result.bundle_json)
    _report.signed(result, as_json, to_stderr=to_stdout)


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



@sign_app.command("key", cls=opt.PeerSpellings)
@opt.with_option_groups
def sign_key(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    private_key: opt.PrivateKey,
    password_env: opt.PasswordEnv = None,
    password: opt.PasswordArgument = None,
    signature: opt.SignatureOut = None,
    overwrite: opt.Overwrite = False,
    hashing: opt.HashingOptions,
    as_json: opt.Json = False,
) -> None:
    """Sign with an EC private key (P-256, P-384 or P-521; PEM, optionally encrypted)."""
    from model_signing.signing import KeySigner

    model = opt.model_path(path, path_option)
    begin(model, signature, as_json)

    def signer() -> KeySigner:
        return KeySigner(private_key, password=opt.password_from_env(password_env, password))

    _run(model, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json)


@sign_app.command("certificate", cls=opt.PeerSpellings)
@opt.with_option_groups
def sign_certificate(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    private_key: opt.PrivateKey,
    signing_certificate: SigningCertificate,
    certificate_chain: CertificateChain = None,
    password_env: opt.PasswordEnv = None,
    password: opt.PasswordArgument = None,
    signature: opt.SignatureOut = None,
    overwrite: opt.Overwrite = False,
    hashing: opt.HashingOptions,
    as_json: opt.Json = False,
) -> None:
    """Sign with a private key and its certificate; the bundle carries the chain (leaf first)."""
    from model_signing.signing import CertificateSigner

    model = opt.model_path(path, path_option)
    begin(model, signature, as_json)

    def signer() -> CertificateSigner:
        made = CertificateSigner(
            private_key,
            signing_certificate,
            tuple(certificate_chain or ()),
            password=opt.password_from_env(password_env, password),
        )
        for warning in made.warnings:  # before hashing: the user may want to stop and fix the chain
            print(f"warning: {warning}", file=sys.stderr)
        return made

    _run(model, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the ``sign`` group to the app."""
    app.add_typer(sign_app, name="sign")

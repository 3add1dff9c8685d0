"""CLI: ``sign key`` and ``sign certificate`` (the ``sign`` group also hosts the keyless ``sign sigstore``).

The group is a :class:`~model_signing.cli._options.DefaultGroup`: once a ``sigstore`` subcommand is
registered on :data:`sign_app`, ``sign MODEL`` / ``sign --path MODEL`` run it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _report

if TYPE_CHECKING:
    from model_signing.hashing import HashingConfig
    from model_signing.signing import Signer

sign_app = typer.Typer(
    name="sign",
    cls=opt.DefaultGroup,
    help="Sign a model: writes an OMS v1.0 signature (a Sigstore bundle) beside it.",
    no_args_is_help=True,
)

SigningCertificate = Annotated[
    str, typer.Option("--signing-certificate", help="The leaf certificate of the private key (PEM).")
]
CertificateChain = Annotated[
    list[str] | None,
    typer.Option(
        "--certificate-chain",
        help="Intermediate certificates to include in the bundle, leaf's issuer first (PEM; repeatable).",
    ),
]


def begin(path: str, signature: str | None, as_json: bool) -> None:
    """Record the ``sign`` being run (for the ``--json`` error document); first thing in every ``sign`` command."""
    from model_signing.signing import default_signature_path

    sig = signature if signature is not None else default_signature_path(path)
    _report.begin("sign", model_path=path, signature_path=sig, as_json=as_json)


def _run(
    path: str, signer: Signer, config: HashingConfig, *, signature: str | None, overwrite: bool, as_json: bool
) -> None:
    from model_signing.signing import sign

    result = sign(path, signer, hashing=config, signature_path=signature, overwrite=overwrite)
    _report.signed(result, as_json)


@sign_app.command("key")
@opt.with_option_groups
def sign_key(
    path: opt.ModelPath,
    private_key: opt.PrivateKey,
    password_env: opt.PasswordEnv = None,
    signature: opt.SignatureOut = None,
    overwrite: opt.Overwrite = False,
    *,
    hashing: opt.HashingOptions,
    as_json: opt.Json = False,
) -> None:
    """Sign with an EC private key (P-256, P-384 or P-521; PEM, optionally encrypted)."""
    from model_signing.signing import KeySigner

    begin(path, signature, as_json)
    signer = KeySigner(private_key, password=opt.password_from_env(password_env))
    _run(path, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json)


@sign_app.command("certificate")
@opt.with_option_groups
def sign_certificate(  # noqa: PLR0917 - one parameter per CLI option
    path: opt.ModelPath,
    private_key: opt.PrivateKey,
    signing_certificate: SigningCertificate,
    certificate_chain: CertificateChain = None,
    password_env: opt.PasswordEnv = None,
    signature: opt.SignatureOut = None,
    overwrite: opt.Overwrite = False,
    *,
    hashing: opt.HashingOptions,
    as_json: opt.Json = False,
) -> None:
    """Sign with a private key and its certificate; the bundle carries the chain (leaf first)."""
    from model_signing.signing import CertificateSigner

    begin(path, signature, as_json)
    signer = CertificateSigner(
        private_key,
        signing_certificate,
        tuple(certificate_chain or ()),
        password=opt.password_from_env(password_env),
    )
    _run(path, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add the ``sign`` group to the app."""
    app.add_typer(sign_app, name="sign")

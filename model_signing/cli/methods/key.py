"""CLI of the ``key`` method: ``sign key`` and ``verify key``."""

from __future__ import annotations

from typing import Annotated

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _sign, _verify

PublicKey = Annotated[
    str,
    typer.Option("--public-key", metavar="PATH", help="Public key (PEM; EC or Ed25519) paired with the signing key."),
]


@_sign.sign_app.command("key", cls=opt.PeerSpellings)
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
    scanning: opt.ScanOptions,
    as_json: opt.Json = False,
) -> None:
    """Sign with a private key: ECDSA P-256, P-384, P-521 or Ed25519 (PEM, optionally encrypted).

    model-signing 1.1.1 verifies the ECDSA keys' signatures, not Ed25519 ones (a warning says so).
    """
    from model_signing.methods.key import KeySigner

    model = opt.model_path(path, path_option)
    _sign.begin(model, signature, as_json)

    def signer() -> KeySigner:
        made = KeySigner(private_key, password=opt.password_from_env(password_env, password))
        opt.warn_if_peer_cannot_verify(made.algorithm)
        return made

    _sign.run_sign(model, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json,
                   scan=scanning)


@_verify.verify_app.command("key", cls=opt.PeerSpellings)
@opt.with_option_groups
def verify_key(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    public_key: PublicKey,
    options: opt.VerifyOptions,
) -> None:
    """Verify a signature made with `sign key`, using the paired public key."""
    from model_signing.methods.key import KeyVerifier

    model = opt.model_path(path, path_option)
    _verify.begin(model, options)
    _verify.run_verify(model, KeyVerifier(public_key), options)

"""CLI of the ``key`` method: ``sign key`` and ``verify key``."""

from __future__ import annotations

from typing import Annotated

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _sign, _verify

PublicKey = Annotated[
    str, typer.Option("--public-key", metavar="PATH", help="EC public key (PEM) paired with the signing key.")
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
    as_json: opt.Json = False,
) -> None:
    """Sign with an EC private key (P-256, P-384 or P-521; PEM, optionally encrypted)."""
    from model_signing.methods.key import KeySigner

    model = opt.model_path(path, path_option)
    _sign.begin(model, signature, as_json)

    def signer() -> KeySigner:
        return KeySigner(private_key, password=opt.password_from_env(password_env, password))

    _sign.run_sign(model, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json)


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

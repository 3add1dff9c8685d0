"""CLI of the ``key`` method: ``sign key`` and ``verify key``."""

from __future__ import annotations

from typing import Annotated

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _sign, _verify
from model_signing.cli import _timestamps as ts

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
    timestamp_authority: ts.TimestampAuthorities = None,
    trust_config: ts.SigningTrustConfig = None,
    timeout: ts.Timeout = 60.0,
    hashing: opt.HashingOptions,
    scanning: opt.ScanOptions,
    as_json: opt.Json = False,
) -> None:
    """Sign with a private key: ECDSA P-256, P-384, P-521 or Ed25519 (PEM, optionally encrypted).

    model-signing 1.1.1 verifies the ECDSA keys' signatures, not Ed25519 ones (a warning says so).
    With --timestamp-authority (or --trust-config) the signature carries an RFC 3161 timestamp.
    """
    from model_signing.methods.key import KeySigner

    model = opt.model_path(path, path_option)
    _sign.begin(model, signature, as_json)
    seconds = ts.timeout_seconds(timeout)

    def signer() -> KeySigner:
        made = KeySigner(
            private_key, password=opt.password_from_env(password_env, password),
            timestamp_authorities=tuple(timestamp_authority or ()), trust_config=trust_config, timeout=seconds,
        )
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
    timestamp_certificate_chain: ts.TimestampCertificateChains = None,
    trusted_root: ts.TrustedRoot = None,
    trust_config: ts.VerifyTrustConfig = None,
    options: opt.VerifyOptions,
) -> None:
    """Verify a signature made with `sign key`, using the paired public key.

    A signature with RFC 3161 timestamps needs the timestamp authority's trust material
    (--timestamp-certificate-chain, --trusted-root or --trust-config); each timestamp must verify, and the
    signing time is reported.
    """
    from model_signing.methods.key import KeyVerifier

    model = opt.model_path(path, path_option)
    _verify.begin(model, options)
    verifier = KeyVerifier(
        public_key, timestamp_certificate_chain=tuple(timestamp_certificate_chain or ()), trusted_root=trusted_root,
        trust_config=trust_config,
    )
    _verify.run_verify(model, verifier, options)

"""CLI of the ``certificate`` method: ``sign certificate`` and ``verify certificate``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _report, _sign, _verify
from model_signing.cli import _timestamps as ts

SigningCertificate = Annotated[
    str | None,
    typer.Option(
        "--signing-certificate",
        metavar="PATH",
        help="The leaf certificate of the private key (PEM). Required, except with a pkcs11: --private-key whose "
        "token holds the certificate (same id or label).",
        show_default=False,
    ),
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


TrustedCertificates = Annotated[
    list[str],
    typer.Option(
        "--certificate-chain",
        metavar="PATH",
        help="Trusted root certificate(s) the signing certificate must chain to (PEM; repeatable).",
    ),
]
StrictX509 = Annotated[
    bool,
    typer.Option(
        "--strict-x509",
        help="Apply RFC 5280's end-entity rules to the signing certificate: refuse basicConstraints CA:TRUE "
        "and a signing certificate that is itself trusted (both accepted by default, as model-signing does).",
    ),
]


@_sign.sign_app.command("certificate", cls=opt.PeerSpellings)
@opt.with_option_groups
def sign_certificate(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    private_key: opt.PrivateKey,
    signing_certificate: SigningCertificate = None,
    certificate_chain: CertificateChain = None,
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
    """Sign with a private key and its certificate; the bundle carries the chain (leaf first).

    With --timestamp-authority (or --trust-config) the signature carries an RFC 3161 timestamp, and
    verifiers check the certificates at that time: the signature outlives the certificate.
    """
    from model_signing.methods.certificate import CertificateSigner

    model = opt.model_path(path, path_option)
    _sign.begin(model, signature, as_json)
    seconds = ts.timeout_seconds(timeout)

    def signer() -> CertificateSigner:
        made = CertificateSigner(
            private_key,
            signing_certificate,
            tuple(certificate_chain or ()),
            password=opt.password_from_env(password_env, password),
            timestamp_authorities=tuple(timestamp_authority or ()),
            trust_config=trust_config,
            timeout=seconds,
        )
        opt.warn_if_peer_cannot_verify(made.algorithm)
        for warning in made.warnings:  # before hashing: the user may want to stop and fix the chain
            _report.warn(warning)
        return made

    _sign.run_sign(model, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json,
                   scan=scanning)


@_verify.verify_app.command("certificate", cls=opt.PeerSpellings)
@opt.with_option_groups
def verify_certificate(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    certificate_chain: TrustedCertificates,
    log_fingerprints: Annotated[
        bool,
        typer.Option(
            "--log-fingerprints", help="Print the SHA-256 fingerprint of each trusted and each bundled certificate."
        ),
    ] = False,
    options: opt.VerifyOptions,
    strict_x509: StrictX509 = False,
    timestamp_certificate_chain: ts.TimestampCertificateChains = None,
    trusted_root: ts.TrustedRoot = None,
    trust_config: ts.VerifyTrustConfig = None,
) -> None:
    """Verify a signature made with `sign certificate` against trusted root certificates.

    Without a timestamp the certificates are checked at the current time. A signature with RFC 3161
    timestamps needs the timestamp authority's trust material (--timestamp-certificate-chain, --trusted-root
    or --trust-config); each timestamp must verify, and the certificates are checked at its time instead, so
    a certificate that expired after signing still verifies.
    """
    from model_signing.methods.certificate import CertificateVerifier

    model = opt.model_path(path, path_option)
    _verify.begin(model, options)
    verifier = CertificateVerifier(
        certificate_chain, strict=strict_x509, timestamp_certificate_chain=tuple(timestamp_certificate_chain or ()),
        trusted_root=trusted_root, trust_config=trust_config,
    )
    if log_fingerprints:
        _print_fingerprints(certificate_chain, options.signature or _default_signature(model))
    _verify.run_verify(model, verifier, options)


def _default_signature(model: str) -> str:
    from model_signing.signing import default_signature_path

    return default_signature_path(model)


def _print_fingerprints(trusted: list[str], signature: str) -> None:
    """model-signing's --log_fingerprints, on stderr: ``[trusted]`` / ``[bundle]`` SHA-256 fingerprints."""
    import sys

    from cryptography.hazmat.primitives import hashes

    from model_signing import methods
    from model_signing.errors import ModelSigningError
    from model_signing.keymaterial import certificates as _keymaterial

    def show(where: str, cert: Any) -> None:
        print(f"[{where}] SHA-256 fingerprint {cert.fingerprint(hashes.SHA256()).hex(':').upper()} "
              f"{cert.subject.rfc4514_string()}", file=sys.stderr)

    for cert in _keymaterial.load_certificates(trusted, "certificate chain file"):
        show("trusted", cert)
    try:
        bundled = methods.read_bundle(signature).certificate_chain()
    except (ModelSigningError, OSError):
        return  # verification reports what is wrong with the signature
    for cert in bundled:
        show("bundle", cert)




"""CLI: model-signing's ``sign pkcs11-key`` / ``sign pkcs11-certificate``, as aliases of ``sign key`` /
``sign certificate`` with a ``pkcs11:`` key.

They exist so that model-signing 1.1.1's scripts keep working (``--pkcs11_uri``, ``--signing_certificate``
and ``--certificate_chain`` are its spellings, see :data:`model_signing.cli._options.PEER_SPELLINGS`).  The
bundles are ``key`` and ``certificate`` ones: ``verify key`` / ``verify certificate`` check them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _report, _sign
from model_signing.cli.methods.certificate import CertificateChain, SigningCertificate

Pkcs11Uri = Annotated[
    str,
    typer.Option(
        "--pkcs11-uri",
        metavar="URI",
        help="RFC 7512 URI of the private key on the token, e.g. 'pkcs11:token=T;object=K?module-path="
        "/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin' (the same as --private-key URI).",
    ),
]


def _uri(value: str) -> str:
    from model_signing.errors import InputError
    from model_signing.keymaterial.pkcs11 import is_uri

    if not is_uri(value):
        # The value is not echoed: a URI with a mistyped scheme may still carry pin-value.
        raise InputError("--pkcs11-uri must be a pkcs11: URI (one starting with 'pkcs11:'); for a PEM file use "
                         "sign key --private-key PATH")
    return value


@_sign.sign_app.command("pkcs11-key", cls=opt.PeerSpellings)
@opt.with_option_groups
def sign_pkcs11_key(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    pkcs11_uri: Pkcs11Uri,
    password_env: opt.PasswordEnv = None,
    signature: opt.SignatureOut = None,
    overwrite: opt.Overwrite = False,
    hashing: opt.HashingOptions,
    scanning: opt.ScanOptions,
    as_json: opt.Json = False,
) -> None:
    """Sign with a private key on a PKCS #11 token (= sign key --private-key URI; model-signing's spelling)."""
    from model_signing.methods.key import KeySigner

    model = opt.model_path(path, path_option)
    _sign.begin(model, signature, as_json)

    def signer() -> KeySigner:
        made = KeySigner(_uri(pkcs11_uri), password=opt.password_from_env(password_env))
        opt.warn_if_peer_cannot_verify(made.algorithm)
        return made

    _sign.run_sign(model, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json,
                   scan=scanning)


@_sign.sign_app.command("pkcs11-certificate", cls=opt.PeerSpellings)
@opt.with_option_groups
def sign_pkcs11_certificate(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    pkcs11_uri: Pkcs11Uri,
    signing_certificate: SigningCertificate = None,
    certificate_chain: CertificateChain = None,
    password_env: opt.PasswordEnv = None,
    signature: opt.SignatureOut = None,
    overwrite: opt.Overwrite = False,
    hashing: opt.HashingOptions,
    scanning: opt.ScanOptions,
    as_json: opt.Json = False,
) -> None:
    """Sign with a token's key and its certificate (= sign certificate --private-key URI; model-signing's
    spelling). Without --signing-certificate, the certificate stored on the token with the key is used."""
    from model_signing.methods.certificate import CertificateSigner

    model = opt.model_path(path, path_option)
    _sign.begin(model, signature, as_json)

    def signer() -> CertificateSigner:
        made = CertificateSigner(
            _uri(pkcs11_uri),
            signing_certificate,
            tuple(certificate_chain or ()),
            password=opt.password_from_env(password_env),
        )
        opt.warn_if_peer_cannot_verify(made.algorithm)
        for warning in made.warnings:
            _report.warn(warning)
        return made

    _sign.run_sign(model, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json,
                   scan=scanning)

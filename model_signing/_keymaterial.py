"""Loading and checking key material for the ``key`` and ``certificate`` methods (via ``cryptography``).

Everything here turns unusable input into :class:`KeyMaterialError` with a message naming the file and
what to do (missing file, wrong or missing password, RSA instead of EC, unsupported curve, ...), and
certificate problems found while verifying into :class:`VerificationError`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from model_signing._files import MAX_CERTIFICATE_FILE, MAX_KEY_FILE, read_small_file
from model_signing.errors import KeyMaterialError, VerificationError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

#: Supported curves and the hash each one signs with (as Sigstore's key details and the peer pair them).
_CURVES = {"secp256r1": ("P-256", "SHA256"), "secp384r1": ("P-384", "SHA384"), "secp521r1": ("P-521", "SHA512")}

PathLike = str | os.PathLike[str]


def _read(path: PathLike, what: str, limit: int) -> bytes:
    return read_small_file(path, what, limit=limit, error=KeyMaterialError)


def curve_name(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> str:
    """``P-256`` / ``P-384`` / ``P-521``."""
    return _CURVES[key.curve.name][0]


def signature_hash(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    """The hash ECDSA uses with this key: SHA-256/384/512 for P-256/384/521."""
    from cryptography.hazmat.primitives import hashes

    return {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}[
        _CURVES[key.curve.name][1]
    ]


def check_ec(key: object, where: str) -> None:
    """Reject anything but an EC key on a supported curve."""
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace("PublicKey", "")
        raise KeyMaterialError(f"{where} is not an elliptic-curve key ({kind}); use an EC P-256, P-384 or P-521 key")
    if key.curve.name not in _CURVES:
        raise KeyMaterialError(f"{where} uses the curve {key.curve.name}; use P-256, P-384 or P-521")


def load_private_key(path: PathLike, password: str | bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PEM EC private key, decrypting it with ``password`` when it is encrypted."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    where = f"private key {os.fspath(path)}"
    data = _read(path, "private key", MAX_KEY_FILE)
    secret = password.encode("utf-8") if isinstance(password, str) else password
    encrypted = b"ENCRYPTED" in data
    if encrypted and not secret:
        raise KeyMaterialError(f"{where} is encrypted; give its password (--password-env VARIABLE)")
    if not encrypted:
        secret = None  # an unencrypted key does not need the password; refusing it would only annoy
    try:
        key = serialization.load_pem_private_key(data, secret)
    except ValueError:
        if encrypted:
            raise KeyMaterialError(f"{where} cannot be decrypted: wrong password?") from None
        raise KeyMaterialError(f"{where} is not a PEM private key") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(f"{where} cannot be loaded ({exc})") from None
    check_ec(key, where)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def load_public_key(path: PathLike) -> ec.EllipticCurvePublicKey:
    """Load a PEM EC public key (SubjectPublicKeyInfo)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    where = f"public key {os.fspath(path)}"
    data = _read(path, "public key", MAX_KEY_FILE)
    if b"PRIVATE KEY" in data:
        raise KeyMaterialError(f"{where} holds a private key; pass the public key (never ship the private one)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyMaterialError(f"{where} is not a PEM public key") from None
    check_ec(key, where)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def load_certificates(paths: Sequence[PathLike], what: str) -> list[x509.Certificate]:
    """All certificates in the given PEM files (each may hold several), in order."""
    from cryptography import x509

    certs: list[x509.Certificate] = []
    for path in paths:
        data = _read(path, what, MAX_CERTIFICATE_FILE)
        try:
            found = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise KeyMaterialError(f"{what} {os.fspath(path)} holds no PEM certificate") from None
        certs.extend(found)
    return certs


def public_key_of(cert: x509.Certificate, where: str) -> ec.EllipticCurvePublicKey:
    """The certificate's EC public key (rejecting other key types)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = cert.public_key()
    check_ec(key, where)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def describe_certificate(cert: x509.Certificate) -> str:
    """``subject (issued by issuer, serial N)`` for reports."""
    return f"{cert.subject.rfc4514_string()} (issued by {cert.issuer.rfc4514_string()}, serial {cert.serial_number:x})"


def signing_usage_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` may not sign code, or ``None`` if it may.

    When present, KeyUsage must allow digitalSignature and ExtendedKeyUsage must include codeSigning;
    a certificate with neither extension says nothing about its purpose and is refused too.
    """
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        ku: x509.KeyUsage | None = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    try:
        eku: x509.ExtendedKeyUsage | None = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if ku is None and eku is None:
        return "it has neither KeyUsage nor ExtendedKeyUsage, so nothing says it may sign code"
    if ku is not None and not ku.digital_signature:
        return "its KeyUsage does not allow digitalSignature"
    if eku is not None and ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        return "its ExtendedKeyUsage does not include codeSigning"
    return None


def validity_problem(cert: x509.Certificate, at: dt.datetime) -> str | None:
    """Why ``cert`` is not valid at ``at``, or ``None``."""
    if at < cert.not_valid_before_utc:
        return f"it is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
    if at > cert.not_valid_after_utc:
        return f"it expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    return None


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: dt.datetime,
) -> list[x509.Certificate]:
    """Build and check a path from ``leaf`` to one of ``roots`` at time ``at``; return it (leaf first).

    Uses cryptography's RFC 5280 / CA/B-style path validation (``PolicyBuilder``) with WebPKI CA rules
    (basicConstraints, keyCertSign, path length, signature algorithms, validity of every certificate).
    For the leaf, the WebPKI server/client EKU and SAN rules do not apply to code signing, so those two
    extensions are allowed freely there and the signing usage is checked by :func:`signing_usage_problem`.
    """
    from cryptography import x509
    from cryptography.x509.verification import (
        Criticality,
        ExtensionPolicy,
        PolicyBuilder,
        Store,
    )
    from cryptography.x509.verification import VerificationError as X509VerificationError

    problem = validity_problem(leaf, at)
    if problem:
        raise VerificationError(
            f"the signing certificate {leaf.subject.rfc4514_string()} is not valid now: {problem}; "
            "key and certificate signatures carry no timestamp, so the certificate must be valid when verifying"
        )
    problem = signing_usage_problem(leaf)
    if problem:
        raise VerificationError(f"the signing certificate {leaf.subject.rfc4514_string()} may not sign: {problem}")
    ee_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    )
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(roots)))
            .time(at)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
            .build_client_verifier()
        )
        return list(verifier.verify(leaf, list(intermediates)).chain)
    except X509VerificationError as exc:
        raise VerificationError(
            f"the signing certificate {leaf.subject.rfc4514_string()} does not chain to the given "
            f"certificate chain roots: {exc}"
        ) from None
    except ValueError as exc:  # e.g. an empty store
        raise KeyMaterialError(f"cannot verify the certificate chain: {exc}") from None

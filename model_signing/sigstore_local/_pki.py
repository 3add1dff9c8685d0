"""X.509 building blocks shared by the CA (Fulcio) and the timestamp authority.

Certificates follow the WebPKI profile that ``cryptography``'s verifier (and so the sigstore client)
enforces: critical basic constraints and key usage on CAs, subject/authority key identifiers, ECDSA P-256
with SHA-256, positive serials of at most 20 bytes.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ORGANIZATION = "modelseal local Sigstore"
CA_LIFETIME = dt.timedelta(days=3650)
# Backdate CA certificates a little so a client whose clock is slightly behind still accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)


def name(common_name: str) -> x509.Name:
    """A distinguished name in this instance's organization."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def serial_number() -> int:
    """A random positive serial that fits the 20-byte limit of RFC 5280."""
    return x509.random_serial_number()


def ca_certificate(
    *,
    key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    not_before: dt.datetime,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    issuer_cert: x509.Certificate | None = None,
    path_length: int | None = None,
) -> x509.Certificate:
    """A CA certificate: self-signed root when no issuer is given, otherwise an intermediate."""
    start = not_before - CLOCK_SKEW
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer = key
    if issuer_cert is not None and issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        signer = issuer_key
    return builder.sign(signer, hashes.SHA256())


def der(tag: int, content: bytes) -> bytes:
    """One DER TLV (definite length) -- for the few primitive values built by hand."""
    length = len(content)
    if length < 0x80:
        header = bytes([length])
    else:
        size = (length.bit_length() + 7) // 8
        header = bytes([0x80 | size]) + length.to_bytes(size, "big")
    return bytes([tag]) + header + content


def der_utf8(value: str) -> bytes:
    """A DER UTF8String."""
    return der(0x0C, value.encode())


def key_usage_digital_signature() -> x509.KeyUsage:
    """Key usage of a signing leaf (code signing, timestamping): digital signature only."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )

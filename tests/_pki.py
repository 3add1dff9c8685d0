"""Test key and certificate material, generated with ``cryptography`` (no fixtures on disk).

EC keys on the three supported curves (optionally passphrase-protected PEM) and X.509 chains
root CA -> intermediate CA -> code-signing leaf, with knobs for the broken variants the tests need
(expired leaf, leaf without code-signing usage, a chain from another root).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CURVES = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
NOW = dt.datetime.now(dt.UTC)


def ec_key(curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    """A fresh EC private key on ``curve``."""
    return ec.generate_private_key(CURVES[curve])


def write_private_key(key: object, path: Path, password: bytes | None = None) -> Path:
    """Write ``key`` as PKCS#8 PEM, encrypted with ``password`` if given."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))  # type: ignore[attr-defined]
    return path


def write_public_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    """Write the public half of ``key`` as PEM SubjectPublicKeyInfo."""
    path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA key (unsupported for signing: used to test the error)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")]
    )


def _ski(key: ec.EllipticCurvePrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def make_ca(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    *,
    path_length: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A CA certificate: self-signed root when ``issuer`` is ``None``, else an intermediate."""
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=30))
        .not_valid_after(not_after or NOW + dt.timedelta(days=3650))
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
        .add_extension(_ski(key), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_leaf(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    code_signing: bool = True,
    digital_signature: bool = True,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    ca: bool = False,
    authority_key_id: bool = True,
) -> x509.Certificate:
    """A signing certificate for ``key`` issued by ``issuer`` (self-signed when ``issuer`` is ``None``).

    ``ca=True`` asserts basicConstraints CA:TRUE in it, as openssl's default configuration (``v3_ca``)
    and the OMS reference implementations' test PKIs do; ``authority_key_id=False`` leaves out the AKI
    (as many hand-made self-signed certificates do).
    """
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (_name(cn), key)
    eku = [ExtendedKeyUsageOID.CODE_SIGNING] if code_signing else [ExtendedKeyUsageOID.SERVER_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not digital_signature,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(f"{cn}@example.com")]), critical=False)
        .add_extension(_ski(key), critical=False)
    )
    if authority_key_id:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def write_certs(path: Path, *certs: x509.Certificate) -> Path:
    """Write ``certs`` to ``path`` as concatenated PEM."""
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


@dataclass
class Pki:
    """A root -> intermediate -> leaf hierarchy written to ``directory``."""

    directory: Path
    curve: str = "P-256"
    leaf_kwargs: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        self.root_key = ec_key("P-384")
        self.root = make_ca("Test Root CA", self.root_key)
        self.inter_key = ec_key("P-256")
        self.inter = make_ca("Test Intermediate CA", self.inter_key, (self.root, self.root_key), path_length=0)
        self.leaf_key = ec_key(self.curve)
        self.leaf = make_leaf("signer", self.leaf_key, (self.inter, self.inter_key), **self.leaf_kwargs)  # type: ignore[arg-type]
        self.root_pem = write_certs(d / "root.pem", self.root)
        self.chain_pem = write_certs(d / "chain.pem", self.inter)
        self.leaf_pem = write_certs(d / "leaf.pem", self.leaf)
        self.key_pem = write_private_key(self.leaf_key, d / "leaf.key")

    def other_leaf(self, name: str, *, issuer: str = "inter", **kwargs: object) -> tuple[Path, Path]:
        """Another leaf under the intermediate (``issuer="root"``: the root; ``"self"``: self-signed).

        Returns (key path, cert path).
        """
        key = ec_key(self.curve)
        by = {"inter": (self.inter, self.inter_key), "root": (self.root, self.root_key), "self": None}[issuer]
        cert = make_leaf(name, key, by, **kwargs)  # type: ignore[arg-type]
        return write_private_key(key, self.directory / f"{name}.key"), write_certs(
            self.directory / f"{name}.pem", cert
        )

"""EC keys for the ``key`` and ``certificate`` methods (via ``cryptography``): the supported curves, the hash
each signs with, loading PEM files, and the signer identity of a key.

Unusable input becomes :class:`~model_signing.errors.KeyMaterialError` with a message naming the file and
what to do (missing file, wrong or missing password, RSA instead of EC, unsupported curve, ...).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from model_signing._internal.files import MAX_KEY_FILE, read_small_file
from model_signing._internal.types import PathLike
from model_signing.errors import KeyMaterialError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from model_signing.results import SignerIdentity

#: Supported curves and the hash each one signs with (as Sigstore's key details and the peer pair them).
_CURVES = {"secp256r1": ("P-256", "SHA256"), "secp384r1": ("P-384", "SHA384"), "secp521r1": ("P-521", "SHA512")}



def read_material(path: PathLike, what: str, limit: int) -> bytes:
    """The bytes of a key or certificate file (bounded by ``limit``; errors are KeyMaterialError)."""
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
    data = read_material(path, "private key", MAX_KEY_FILE)
    secret = password.encode("utf-8") if isinstance(password, str) else password
    encrypted = b"ENCRYPTED" in data
    if encrypted and not secret:
        raise KeyMaterialError(f"{where} is encrypted; give its password (`password`)")
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
    data = read_material(path, "public key", MAX_KEY_FILE)
    if b"PRIVATE KEY" in data:
        raise KeyMaterialError(f"{where} holds a private key; pass the public key (never ship the private one)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyMaterialError(f"{where} is not a PEM public key") from None
    check_ec(key, where)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def key_signer(key: ec.EllipticCurvePublicKey) -> SignerIdentity:
    """The ``key`` method's signer: the key id (``sha256:`` + the bundle's key hint) and curve."""
    from model_signing.oms.bundle import public_key_hint
    from model_signing.results import SignerIdentity

    key_id = f"sha256:{public_key_hint(key)}"
    return SignerIdentity(method="key", identity=key_id, key_id=key_id, key_algorithm=curve_name(key))



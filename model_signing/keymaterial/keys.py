"""Keys for the ``key`` and ``certificate`` methods (via ``cryptography``): loading PEM files, and the signer
identity of a key.  Which algorithms are supported, and how each signs, is :mod:`.algorithms`' table.

Unusable input becomes :class:`~model_signing.errors.KeyMaterialError` with a message naming the file and
what to do (missing file, wrong or missing password, an RSA key, an unsupported curve, ...).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from model_signing._internal.files import MAX_KEY_FILE, read_small_file
from model_signing._internal.types import PathLike
from model_signing.errors import KeyMaterialError
from model_signing.keymaterial import algorithms as _algorithms

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes

    from model_signing.keymaterial.algorithms import Algorithm, PrivateKey, PublicKey
    from model_signing.results import SignerIdentity


def read_material(path: PathLike, what: str, limit: int) -> bytes:
    """The bytes of a key or certificate file (bounded by ``limit``; errors are KeyMaterialError)."""
    return read_small_file(path, what, limit=limit, error=KeyMaterialError)


def curve_name(key: PublicKey | PrivateKey) -> str:
    """The algorithm's label: ``P-256`` / ``P-384`` / ``P-521`` / ``Ed25519``."""
    return _algorithms.of_key(key, "the key").label


def signature_hash(key: PublicKey | PrivateKey) -> hashes.HashAlgorithm:
    """The hash ECDSA uses with this EC key: SHA-256/384/512 for P-256/384/521 (Ed25519 has none)."""
    algorithm = _algorithms.of_key(key, "the key").hash_algorithm()
    if algorithm is None:
        raise KeyMaterialError("an Ed25519 key signs without a separate hash (PureEdDSA)")
    return algorithm


def check_key(key: object, where: str) -> Algorithm:
    """The key's algorithm; anything but a supported algorithm is refused, naming ``where``."""
    return _algorithms.of_key(key, where)


#: The earlier name (EC was the only kind); it now accepts every algorithm of the table.
check_ec = check_key


def load_private_key(path: PathLike, password: str | bytes | None = None) -> PrivateKey:
    """Load a PEM private key (EC or Ed25519), decrypting it with ``password`` when it is encrypted."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

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
    check_key(key, where)
    return key  # type: ignore[return-value]  # checked by check_key


def load_public_key(path: PathLike) -> PublicKey:
    """Load a PEM public key (EC or Ed25519) (SubjectPublicKeyInfo)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    where = f"public key {os.fspath(path)}"
    data = read_material(path, "public key", MAX_KEY_FILE)
    if b"PRIVATE KEY" in data:
        raise KeyMaterialError(f"{where} holds a private key; pass the public key (never ship the private one)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyMaterialError(f"{where} is not a PEM public key") from None
    check_key(key, where)
    return key  # type: ignore[return-value]  # checked by check_key


def key_signer(key: PublicKey) -> SignerIdentity:
    """The ``key`` method's signer: the key id (``sha256:`` + the bundle's key hint) and algorithm."""
    from model_signing.oms.bundle import public_key_hint
    from model_signing.results import SignerIdentity

    key_id = f"sha256:{public_key_hint(key)}"
    return SignerIdentity(method="key", identity=key_id, key_id=key_id, key_algorithm=curve_name(key))



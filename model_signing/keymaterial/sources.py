"""Where a private key lives, behind one small protocol: :class:`SigningKey`.

The ``key`` and ``certificate`` methods never touch private key bytes themselves: they ask a
:class:`SigningKey` for its public key and for a signature over a message (the DSSE PAE).  A PEM file gives
a :class:`LocalKey`; a key kept in an HSM (a ``pkcs11:`` URI) is another source whose private key never
leaves the token.  :func:`open_signing_key` picks the source from the reference the caller gave.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from model_signing._internal.types import PathLike
from model_signing.keymaterial import keys as _keys

if TYPE_CHECKING:
    from cryptography import x509

    from model_signing.keymaterial.algorithms import PrivateKey, PublicKey
    from model_signing.results import SignerIdentity


@runtime_checkable
class SigningKey(Protocol):
    """A private key that signs messages; only its public half is ever exported."""

    def public_key(self) -> PublicKey:
        """The public key (for the bundle's key hint, and to match a certificate)."""
        ...

    def sign(self, message: bytes) -> bytes:
        """The signature over ``message`` (ECDSA: DER, with the hash that matches the curve; Ed25519: PureEdDSA)."""
        ...


@runtime_checkable
class HoldsCertificate(Protocol):
    """A key source that may also hold the key's X.509 certificate (a PKCS #11 token's certificate object)."""

    def certificate(self) -> x509.Certificate | None:
        """The certificate stored with the key, or ``None``."""
        ...


class LocalKey:
    """A private key held in this process (loaded from a PEM file, or given as a ``cryptography`` object)."""

    def __init__(self, key: PrivateKey) -> None:
        """Wrap ``key`` (checked to be of a supported algorithm)."""
        self._algorithm = _keys.check_key(key, "the private key")
        self._key = key

    def public_key(self) -> PublicKey:
        """The public half."""
        return self._key.public_key()

    def sign(self, message: bytes) -> bytes:
        """The key's algorithm over ``message`` (ECDSA with the curve's hash, or PureEdDSA)."""
        return self._algorithm.sign(self._key, message)


def open_signing_key(
    reference: PathLike | PrivateKey | SigningKey, password: str | bytes | None = None
) -> SigningKey:
    """The signing key named by ``reference``: a PEM file path (decrypted with ``password``), a ``pkcs11:``
    URI (a key on a token; ``password`` is its PIN when the URI gives none), a key object, or a
    :class:`SigningKey` already."""
    import typing

    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    from model_signing.keymaterial import pkcs11

    if pkcs11.is_uri(reference):
        assert isinstance(reference, str)
        return pkcs11.open_key(reference, pin=password)
    if isinstance(reference, str | os.PathLike):
        return LocalKey(_keys.load_private_key(reference, password))
    # A cryptography private key also has public_key() and sign(): it is a key to wrap, not a source
    # (and one of an unsupported type, RSA say, is refused by LocalKey with a clear message).
    if isinstance(reference, SigningKey) and not isinstance(reference, typing.get_args(PrivateKeyTypes)):
        return reference
    return LocalKey(reference)  # LocalKey checks the key type


def signer_identity(key: SigningKey) -> SignerIdentity:
    """The ``key`` method's signer for this key: its id and algorithm."""
    return _keys.key_signer(key.public_key())

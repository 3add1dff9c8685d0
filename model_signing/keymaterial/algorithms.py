"""The signature algorithms of the ``key`` and ``certificate`` methods: one table, one row per algorithm.

Every place that needs to know something about an algorithm (its label in reports, the hash ECDSA uses with
its curve, whether model-signing 1.1.1 can verify it, how to generate, sign and verify) asks this table
instead of keeping its own curve dictionary.

* ECDSA on P-256, P-384, P-521 signs the DSSE PAE with SHA-256/384/512 (as Sigstore's key details and
  model-signing pair them).
* Ed25519 is PureEdDSA (RFC 8032) over the DSSE PAE itself: the algorithm hashes internally, so there is no
  separate hash.  model-signing 1.1.1 only accepts EC keys, so it cannot verify these signatures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from model_signing.errors import InputError, KeyMaterialError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    #: A public key of a supported algorithm.
    PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    #: A private key of a supported algorithm.
    PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Algorithm:
    """One signature algorithm (a row of :data:`ALGORITHMS`)."""

    #: The name users give (``keygen --algorithm``, :func:`model_signing.generate_key`): ``ecdsa-p256``, ...
    name: str
    #: The label in reports and ``SignerIdentity.key_algorithm``: ``P-256``, ``P-384``, ``P-521``, ``Ed25519``.
    label: str
    #: cryptography's curve name (``secp256r1``, ...); ``None`` for Ed25519 (not ECDSA).
    curve: str | None
    #: The hash ECDSA signs with (``sha256``, ...); ``None`` for PureEdDSA, which hashes internally.
    hash: str | None
    #: Whether model-signing 1.1.1 (the OMS reference implementation) verifies signatures made with it.
    peer_verifies: bool

    def hash_algorithm(self) -> hashes.HashAlgorithm | None:
        """The ``cryptography`` hash object ECDSA uses (``None`` for Ed25519)."""
        from cryptography.hazmat.primitives import hashes

        if self.hash is None:
            return None
        made: dict[str, Callable[[], hashes.HashAlgorithm]] = {
            "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512
        }
        return made[self.hash]()

    def generate(self) -> PrivateKey:
        """A fresh private key of this algorithm."""
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        if self.curve is None:
            return ed25519.Ed25519PrivateKey.generate()
        return ec.generate_private_key(_curve(self.curve))

    def sign(self, key: PrivateKey, message: bytes) -> bytes:
        """The signature over ``message``: ECDSA (DER) with this algorithm's hash, or PureEdDSA (64 bytes)."""
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        hash_algorithm = self.hash_algorithm()
        assert hash_algorithm is not None
        return key.sign(message, ec.ECDSA(hash_algorithm))

    def verifies(
        self, key: PublicKey, signature: bytes, message: bytes, *, hash_algorithm: hashes.HashAlgorithm | None = None
    ) -> bool:
        """Whether ``signature`` over ``message`` verifies with ``key`` (ECDSA: with ``hash_algorithm``
        if given, else this algorithm's hash)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            else:
                chosen = hash_algorithm or self.hash_algorithm()
                assert chosen is not None
                key.verify(signature, message, ec.ECDSA(chosen))
        except InvalidSignature:
            return False
        return True


ECDSA_P256 = Algorithm("ecdsa-p256", "P-256", "secp256r1", "sha256", peer_verifies=True)
ECDSA_P384 = Algorithm("ecdsa-p384", "P-384", "secp384r1", "sha384", peer_verifies=True)
ECDSA_P521 = Algorithm("ecdsa-p521", "P-521", "secp521r1", "sha512", peer_verifies=True)
ED25519 = Algorithm("ed25519", "Ed25519", None, None, peer_verifies=False)

#: Every supported algorithm, in the order they are offered.
ALGORITHMS: tuple[Algorithm, ...] = (ECDSA_P256, ECDSA_P384, ECDSA_P521, ED25519)
#: What a new key uses unless told otherwise: the algorithm every OMS verifier (model-signing 1.1.1 too) accepts.
DEFAULT = ECDSA_P256

_SUPPORTED = "an EC P-256, P-384 or P-521 key, or an Ed25519 key"


def _curve(name: str) -> ec.EllipticCurve:
    from cryptography.hazmat.primitives.asymmetric import ec

    made: dict[str, Callable[[], ec.EllipticCurve]] = {
        "secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1, "secp521r1": ec.SECP521R1
    }
    return made[name]()


def names() -> tuple[str, ...]:
    """The algorithm names, as :func:`by_name` accepts them."""
    return tuple(a.name for a in ALGORITHMS)


def by_name(name: str) -> Algorithm:
    """The algorithm called ``name`` (``ecdsa-p256``, ``ecdsa-p384``, ``ecdsa-p521``, ``ed25519``)."""
    for algorithm in ALGORITHMS:
        if algorithm.name == name:
            return algorithm
    raise InputError(f"algorithm {name!r} is not supported; use one of {', '.join(names())}")


def of_key(key: object, where: str) -> Algorithm:
    """The algorithm of a public or private key; :class:`KeyMaterialError` naming ``where`` for any other key."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        for algorithm in ALGORITHMS:
            if algorithm.curve == key.curve.name:
                return algorithm
        raise KeyMaterialError(f"{where} uses the curve {key.curve.name}; use {_SUPPORTED}")
    kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace("PublicKey", "")
    raise KeyMaterialError(f"{where} is not a supported key ({kind}); use {_SUPPORTED}")

"""The ``key`` method: a bare key pair (ECDSA P-256, P-384, P-521, or Ed25519), PEM, the private key optionally
encrypted.

The bundle carries only a hint of the public key (``verificationMaterial.publicKey.hint``); the verifier
brings the key itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from model_signing._internal.types import PathLike
from model_signing.errors import VerificationError
from model_signing.keymaterial import keys as _keys
from model_signing.keymaterial.sources import SigningKey, open_signing_key
from model_signing.methods import _dsse
from model_signing.methods import timestamps as _timestamps
from model_signing.methods.base import VerifiedSignature, require_method
from model_signing.oms import bundle as _bundle
from model_signing.results import SignerIdentity

if TYPE_CHECKING:
    from sigstore_models.bundle.v1 import Bundle

    from model_signing.keymaterial.algorithms import Algorithm, PrivateKey, PublicKey
    from model_signing.oms.bundle import SignatureBundle

NAME = "key"


def claims(material: Mapping[str, Any], media_type: str) -> bool:
    """A bundle is a ``key`` one when its verification material is a public key (hint)."""
    return "publicKey" in material


def load_private(
    private_key: PathLike | PrivateKey | SigningKey, password: str | bytes | None
) -> SigningKey:
    """The signing key: a PEM path (decrypted with ``password``), a key object, or a :class:`SigningKey`."""
    return open_signing_key(private_key, password)


class KeySigner:
    """The ``key`` method: a private key (ECDSA P-256, P-384, P-521 or Ed25519), PEM, optionally encrypted."""

    method = NAME

    def __init__(
        self,
        private_key: PathLike | PrivateKey | SigningKey,
        *,
        password: str | bytes | None = None,
        timestamp_authorities: Sequence[str] = (),
        trust_config: PathLike | None = None,
        timeout: float = _timestamps.DEFAULT_TIMEOUT,
    ):
        """Load ``private_key`` (a PEM file path, a key object, or a :class:`~model_signing.keymaterial.sources.
        SigningKey` such as a key in an HSM) and decrypt it with ``password``.

        ``timestamp_authorities`` (RFC 3161 TSA URLs), and the TSAs of a ``trust_config`` file's signing
        config, are each asked for a timestamp over the signature (``timeout`` seconds per connect or read).
        """
        self._timestamper = _timestamps.Timestamper.configure(
            timestamp_authorities, trust_config=trust_config, timeout=timeout
        )
        self._key = load_private(private_key, password)

    @property
    def identity(self) -> SignerIdentity:
        """The key id (``sha256:<hint>``) and algorithm."""
        return _keys.key_signer(self._key.public_key())

    @property
    def algorithm(self) -> Algorithm:
        """The key's algorithm (its :attr:`~model_signing.keymaterial.algorithms.Algorithm.peer_verifies` says
        whether model-signing 1.1.1 can verify what it signs)."""
        return _keys.check_key(self._key.public_key(), "the private key")

    @property
    def timestamp_authorities(self) -> tuple[str, ...]:
        """The RFC 3161 TSA URLs asked for a timestamp over each signature, in order."""
        return self._timestamper.urls

    @property
    def description(self) -> str:
        """``P-256 key sha256:<hint>``."""
        return self.identity.description

    def check_own(self, bundle: SignatureBundle) -> bytes:
        """The payload when ``bundle`` is a key signature made with this key (see ``ChecksOwnSignatures``)."""
        require_method(bundle, self.method)
        return _dsse.check_dsse(self._key.public_key(), bundle, "the signing key")[0]

    def sign(self, payload: bytes) -> Bundle:
        """The key's signature over the DSSE PAE of ``payload`` (ECDSA with the curve's hash, or PureEdDSA),
        with an RFC 3161 timestamp over it from each configured TSA."""
        signature = _dsse.sign_pae(self._key, payload)
        return _bundle.assemble(
            payload, signature, _bundle.key_material(self._key.public_key()),
            timestamps=self._timestamper.stamp(signature),
        )


class KeyVerifier:
    """The ``key`` method: the public key (PEM; EC or Ed25519) paired with the signing key."""

    method = NAME

    def __init__(
        self,
        public_key: PathLike | PublicKey,
        *,
        timestamp_certificate_chain: Sequence[PathLike] = (),
        trusted_root: PathLike | None = None,
        trust_config: PathLike | None = None,
    ):
        """Load ``public_key`` (a PEM file path or a key object).

        A bundle that carries RFC 3161 timestamps is only accepted when each verifies with one of the
        timestamp authorities of ``timestamp_certificate_chain`` (PEM files, one TSA's chain each) or of a
        ``trusted_root`` / ``trust_config``; the verified times are reported.
        """
        self._tsa = _timestamps.TimestampTrust.load(
            timestamp_certificate_chain, trusted_root=trusted_root, trust_config=trust_config
        )
        if isinstance(public_key, str | os.PathLike):
            self._key = _keys.load_public_key(public_key)
        else:
            _keys.check_key(public_key, "the public key")
            self._key = public_key
        self._hint = _bundle.public_key_hint(self._key)

    @property
    def identity(self) -> SignerIdentity:
        """The key: its id (``sha256:<hint>``) and curve."""
        return _keys.key_signer(self._key)

    @property
    def description(self) -> str:
        """``P-256 key sha256:<hint>``."""
        return self.identity.description

    def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
        """Check the key hint (when present) and the signature over the DSSE PAE."""
        require_method(bundle, self.method)
        hint = bundle.key_hint
        if hint and hint != self._hint:
            raise VerificationError(
                f"{bundle.source} was signed with a different key (key hint {hint}, the given public key "
                f"is {self._hint})"
            )
        if not hint and bundle.legacy_public_key is not None:
            legacy = _dsse.legacy_key(bundle.legacy_public_key)
            if legacy is not None and _bundle.public_key_hint(legacy) != self._hint:
                raise VerificationError(f"{bundle.source} was signed with a different key than the one given")
        payload, legacy_encoding = _dsse.check_dsse(self._key, bundle, "the given public key")
        stamps = _timestamps.verify_timestamps(bundle, self._tsa.authorities)
        return VerifiedSignature(payload, self.description, legacy_encoding, self.identity, timestamps=stamps)

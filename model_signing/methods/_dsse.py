"""Signatures over the DSSE pre-authentication encoding (ECDSA, or PureEdDSA for Ed25519): what the ``key`` and
``certificate`` methods sign and check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model_signing.errors import VerificationError
from model_signing.keymaterial import keys as _keys
from model_signing.oms import bundle as _bundle

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from model_signing.keymaterial.algorithms import PublicKey
    from model_signing.keymaterial.sources import SigningKey
    from model_signing.oms.bundle import SignatureBundle


def sign_pae(key: SigningKey, payload: bytes) -> bytes:
    """The key's signature over the DSSE PAE of ``payload`` (ECDSA with the curve's hash, or PureEdDSA)."""
    return key.sign(_bundle.pae(payload))


def legacy_key(raw: bytes) -> ec.EllipticCurvePublicKey | None:
    """Best-effort parse of a pre-v1.1 ``publicKey.rawBytes`` (PEM or DER SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    for load in (serialization.load_pem_public_key, serialization.load_der_public_key):
        try:
            key = load(raw)
        except ValueError:
            continue
        return key if isinstance(key, ec.EllipticCurvePublicKey) else None
    return None


def check_dsse(key: PublicKey, bundle: SignatureBundle, what: str) -> tuple[bytes, bool]:
    """Verify the DSSE signature over the PAE; fall back to model-signing v0.2's encoding (read-only, EC only).

    Returns the payload and whether the legacy encoding was the one that verified.
    """
    from cryptography.hazmat.primitives import hashes

    algorithm = _keys.check_key(key, what)
    payload, signature = bundle.payload, bundle.signature
    if algorithm.verifies(key, signature, _bundle.pae(payload, bundle.payload_type)):
        return payload, False
    preferred = algorithm.hash_algorithm()
    if preferred is not None:  # v0.2 predates Ed25519 support: only EC signatures can be in its encoding
        # v0.2 signed a different byte string, and always hashed with SHA-256.
        legacy = _bundle.legacy_pae(payload, bundle.payload_type)
        for hash_algorithm in (preferred, hashes.SHA256()) if preferred.name != "sha256" else (preferred,):
            if algorithm.verifies(key, signature, legacy, hash_algorithm=hash_algorithm):
                return payload, True
    raise VerificationError(
        f"the signature in {bundle.source} does not verify with {what}: wrong key, or the envelope was "
        "tampered with"
    )

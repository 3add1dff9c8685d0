"""The ``secret`` method: HMAC-SHA256 over the DSSE PAE with a shared secret.

Symmetric: anyone who can verify can also sign, so a leaked CI variable lets its holder forge
signatures.  Keyless (``sigstore``) or a key pair (``key``) is the better choice wherever possible.

The bundle is an ordinary OMS bundle.  The OMS bundle schema only allows ``publicKey``,
``x509CertificateChain`` or ``certificate`` as verification material, so the method is marked in
``verificationMaterial.publicKey.hint`` as ``hmac-sha256:<key id>`` (the DSSE signature's ``keyid`` holds
the same string).  A key hint is hex, so it can never start with that prefix: a ``key`` verifier refuses
the bundle as another method's, and the registry classifies it before ``key``.  The key id is SHA-256 of a
domain-separated string and the secret -- one-way, never the secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from model_signing.errors import KeyMaterialError, VerificationError
from model_signing.methods.base import VerifiedSignature, require_method
from model_signing.oms import bundle as _bundle
from model_signing.results import SignerIdentity

if TYPE_CHECKING:
    from sigstore_models.bundle.v1 import Bundle

    from model_signing.oms.bundle import SignatureBundle

NAME = "secret"
#: What ``publicKey.hint`` starts with in a ``secret`` bundle.
HINT_PREFIX: Final = "hmac-sha256:"
#: The shortest secret accepted: HMAC-SHA256's own output size (RFC 2104 section 3).
MIN_SECRET_BYTES: Final = 32
_KEY_ID_DOMAIN: Final = b"modelseal secret key id v1\x00"


def claims(material: Mapping[str, Any], media_type: str) -> bool:
    """A ``secret`` bundle: a ``publicKey`` whose hint starts with ``hmac-sha256:``."""
    pk = material.get("publicKey")
    hint = pk.get("hint") if isinstance(pk, Mapping) else None
    return isinstance(hint, str) and hint.startswith(HINT_PREFIX)


def key_id(secret: bytes) -> str:
    """``hmac-sha256:<hex SHA-256 of a domain-separated string and the secret>``: names the secret, one-way."""
    return HINT_PREFIX + hashlib.sha256(_KEY_ID_DOMAIN + secret).hexdigest()


def _check_secret(secret: bytes | str) -> bytes:
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(raw) < MIN_SECRET_BYTES:
        raise KeyMaterialError(
            f"the shared secret is {len(raw)} bytes; an HMAC-SHA256 secret must be at least {MIN_SECRET_BYTES} "
            "bytes (generate one with: openssl rand -base64 48)"
        )
    return raw


def _identity(kid: str) -> SignerIdentity:
    return SignerIdentity(method=NAME, identity=kid, key_id=kid, key_algorithm="HMAC-SHA256")


class _Secret:
    """What the signer and the verifier share: the secret, its key id, and the identity it gives."""

    method = NAME

    def __init__(self, secret: bytes | str):
        """Take the shared ``secret`` (a ``str`` is encoded as UTF-8)."""
        self._secret = _check_secret(secret)
        self._kid = key_id(self._secret)

    @property
    def identity(self) -> SignerIdentity:
        """The secret's key id."""
        return _identity(self._kid)

    @property
    def description(self) -> str:
        """``shared secret hmac-sha256:<key id>``."""
        return self.identity.description


class SecretSigner(_Secret):
    """The ``secret`` method: HMAC-SHA256 with a shared secret of at least 32 bytes (symmetric; see the module)."""

    def check_own(self, bundle: SignatureBundle) -> bytes:
        """The payload when ``bundle``'s HMAC was made with this secret (see ``ChecksOwnSignatures``)."""
        return SecretVerifier(self._secret).verify(bundle).payload

    def sign(self, payload: bytes) -> Bundle:
        """HMAC-SHA256 over the DSSE PAE of ``payload``."""
        from sigstore_models.bundle.v1 import VerificationMaterial
        from sigstore_models.common.v1 import PublicKeyIdentifier

        mac = hmac.new(self._secret, _bundle.pae(payload), hashlib.sha256).digest()
        material = VerificationMaterial(public_key=PublicKeyIdentifier(hint=self._kid), tlog_entries=[])
        return _bundle.assemble(payload, mac, material, keyid=self._kid)


class SecretVerifier(_Secret):
    """The ``secret`` method: the same shared secret the signer used."""

    def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
        """Check the key id, then the HMAC over the DSSE PAE (constant-time comparison)."""
        require_method(bundle, self.method)
        if bundle.key_hint != self._kid:
            raise VerificationError(
                f"{bundle.source} was signed with a different shared secret (key id {bundle.key_hint}, the given "
                f"secret's is {self._kid})"
            )
        expected = hmac.new(self._secret, _bundle.pae(bundle.payload, bundle.payload_type), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, bundle.signature):
            raise VerificationError(
                f"the signature in {bundle.source} does not verify with the given shared secret: the envelope was "
                "tampered with"
            )
        return VerifiedSignature(bundle.payload, self.description, False, self.identity)

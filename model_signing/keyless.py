"""Keyless signing and verification with Sigstore (public API): the ``sigstore`` method.

```python
import model_signing as ms

signer = ms.SigstoreSigner(trust_config="tc.json", token_source=ms.TokenSource(identity_token=token))
ms.sign("path/to/model", signer)
policy = ms.IdentityPolicy(identity="alice@example.com", issuer="https://issuer.example")
ms.verify("path/to/model", ms.SigstoreVerifier(policy, trust_config="tc.json"), signature_path="model.sig")
```

Everything Sigstore-specific is done by the ``sigstore`` library: the identity token (explicit, ambient CI
credentials or the OAuth flow), the Fulcio certificate, the DSSE signature, the Rekor entry, the RFC 3161
timestamp, and on verification the certificate chain, SCT, inclusion proof, checkpoint, SET, timestamps and
the identity policy.  This module only adapts it to the :class:`~model_signing.signing.Signer` and
:class:`~model_signing.verifying.Verifier` protocols and turns its errors into ours.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from model_signing._identity_policy import IdentityPolicy
from model_signing._oidc_token import TokenSource
from model_signing._sigstore_trust import signing_trust_config, verification_trusted_root
from model_signing.errors import SignatureFormatError, SigningError, VerificationError

if TYPE_CHECKING:
    from cryptography import x509
    from sigstore.models import ClientTrustConfig, TrustedRoot
    from sigstore.oidc import IdentityToken
    from sigstore_models.bundle.v1 import Bundle

    from model_signing._bundle import SignatureBundle
    from model_signing.verifying import VerifiedSignature

PathLike = str | os.PathLike[str]

__all__ = ["IdentityPolicy", "SigstoreSigner", "SigstoreVerifier", "TokenSource"]

_IN_TOTO = "application/vnd.in-toto+json"


class SigstoreSigner:
    """The keyless ``sigstore`` method: OIDC identity -> Fulcio certificate -> DSSE -> Rekor (+ TSA).

    The identity token is obtained when the signer is created, before any hashing, so an interactive
    sign-in or a bad token fails fast rather than after minutes of hashing.
    """

    method = "sigstore"

    def __init__(
        self,
        *,
        trust_config: PathLike | ClientTrustConfig | None = None,
        staging: bool = False,
        token_source: TokenSource | None = None,
    ) -> None:
        """Pick the instance (``trust_config`` file or object, ``staging``, else public good) and get a token."""
        if trust_config is None or isinstance(trust_config, str | os.PathLike):
            self._trust = signing_trust_config(trust_config, staging)
        else:
            self._trust = trust_config
        from model_signing._oidc_token import obtain_identity_token

        default_issuer = _oidc_url(self._trust)
        self._token: IdentityToken = obtain_identity_token(token_source or TokenSource(), default_issuer)

    @property
    def description(self) -> str:
        """The token's identity and issuer."""
        return f"{self._token.identity} via {self._token.issuer}"

    def sign(self, payload: bytes) -> Bundle:
        """Sign ``payload`` (the canonical statement) with sigstore's ``Signer.sign_dsse``."""
        from sigstore.dsse import Statement
        from sigstore.errors import Error as SigstoreError
        from sigstore.sign import SigningContext
        from sigstore_models.bundle.v1 import Bundle

        try:
            context = SigningContext.from_trust_config(self._trust)
            # cache=True is required: with cache=False sigstore 4.5 generates a fresh ephemeral key on every
            # access, so the certificate and the DSSE signature would belong to different keys.
            with context.signer(self._token, cache=True) as signer:
                signed = signer.sign_dsse(Statement(payload))
        except SigstoreError as exc:
            raise SigningError(f"Sigstore signing failed: {_one_line(exc)}") from None
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise SigningError(f"cannot reach the Sigstore instance ({_one_line(exc)}); check the network") from None
        # sigstore's Bundle wraps the same protobuf-JSON model our pipeline uses; convert via its JSON form.
        return Bundle.from_json(signed.to_json())


class SigstoreVerifier:
    """Verifies keyless bundles: certificate chain to the trusted root, SCT, transparency log, policy."""

    method = "sigstore"

    def __init__(
        self,
        policy: IdentityPolicy,
        *,
        trust_config: PathLike | None = None,
        trusted_root: PathLike | None = None,
        staging: bool = False,
        offline: bool = False,
    ) -> None:
        """Resolve the trusted root now (``offline`` never touches the network; see ``--offline``)."""
        self._policy = policy
        self._root: TrustedRoot = verification_trusted_root(
            trust_config=trust_config, trusted_root=trusted_root, staging=staging, offline=offline
        )

    @property
    def description(self) -> str:
        """The expected identity."""
        return self._policy.describe()

    def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
        """Run sigstore's DSSE verification with the identity policy; return the verified payload."""
        from sigstore.errors import Error as SigstoreError
        from sigstore.models import Bundle, InvalidBundle
        from sigstore.verify import Verifier

        from model_signing.verifying import VerifiedSignature

        try:
            sigstore_bundle = Bundle.from_json(bundle.raw)
        except InvalidBundle as exc:
            raise SignatureFormatError(f"{bundle.source}: not a valid keyless bundle: {_one_line(exc)}") from None
        except ValueError as exc:
            raise SignatureFormatError(f"{bundle.source}: malformed keyless bundle ({_one_line(exc)})") from None
        try:
            payload_type, payload = Verifier(trusted_root=self._root).verify_dsse(
                sigstore_bundle, self._policy.to_sigstore()
            )
        except SigstoreError as exc:
            raise VerificationError(
                f"{bundle.source} does not verify for {self._policy.describe()}: {_one_line(exc)}"
            ) from None
        if payload_type != _IN_TOTO:
            raise VerificationError(f"{bundle.source}: DSSE payload type {payload_type!r} is not {_IN_TOTO}")
        return VerifiedSignature(payload, _describe_certificate(sigstore_bundle.signing_certificate))


def _oidc_url(trust: ClientTrustConfig) -> str | None:
    try:
        return trust.signing_config.get_oidc_url()
    except Exception:  # noqa: BLE001 - a config without an OIDC URL just has no interactive default
        return None


def _describe_certificate(cert: x509.Certificate) -> str:
    from cryptography.x509 import RFC822Name, SubjectAlternativeName, UniformResourceIdentifier
    from cryptography.x509.oid import ObjectIdentifier

    san = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
    names = [*san.get_values_for_type(RFC822Name), *san.get_values_for_type(UniformResourceIdentifier)]
    issuer = "unknown issuer"
    for oid in ("1.3.6.1.4.1.57264.1.8", "1.3.6.1.4.1.57264.1.1"):
        try:
            raw = cert.extensions.get_extension_for_oid(ObjectIdentifier(oid)).value
        except Exception:  # noqa: BLE001 - absent extension: try the legacy one
            continue
        value = getattr(raw, "value", b"")
        # .1.8 is DER UTF8String (tag 0x0c + length); .1.1 is the raw string.
        issuer = (value[2:] if value[:1] == b"\x0c" else value).decode(errors="replace")
        break
    return f"{', '.join(names) or 'no identity'} via {issuer} (Sigstore certificate)"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__



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

from model_signing._identity_policy import IdentityPolicy, certificate_identities
from model_signing._oidc_token import TokenSource, fresh_identity_token, obtain_identity_token, one_line
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
        self._source = token_source or TokenSource()
        self._token: IdentityToken = obtain_identity_token(self._source, _oidc_url(self._trust))
        self._certified: str | None = None

    @property
    def description(self) -> str:
        """Who signs: once signed, the certificate's identity (what ``verify --identity`` must name).

        Before signing only the token is known, whose ``sub`` may differ from the certificate's SAN
        (a GitHub workflow token's ``sub`` is ``repo:owner/name:ref:...``, its SAN the workflow URI).
        """
        if self._certified is not None:
            return self._certified
        return f"{self._token.identity} via {self._token.issuer}"

    def sign(self, payload: bytes) -> Bundle:
        """Sign ``payload`` (the canonical statement) with sigstore's ``Signer.sign_dsse``."""
        from sigstore.dsse import Statement
        from sigstore.sign import SigningContext
        from sigstore_models.bundle.v1 import Bundle

        # Hashing may have outlived a short-lived (CI) token: renew it or say so, rather than sigstore's
        # message-less ExpiredIdentity.
        self._token = fresh_identity_token(self._source, self._token)
        try:
            context = SigningContext.from_trust_config(self._trust)
            # cache=True is required: with cache=False sigstore 4.5 generates a fresh ephemeral key on every
            # access, so the certificate and the DSSE signature would belong to different keys.
            with context.signer(self._token, cache=True) as signer:
                signed = signer.sign_dsse(Statement(payload))
        except Exception as exc:  # noqa: BLE001 - sigstore's service clients raise assorted (partly private) types
            raise SigningError(_signing_failure(exc)) from None
        self._certified = _certificate_identity(signed.signing_certificate)
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

        from model_signing.verifying import VerifiedSignature, _require_method

        # Like the key and certificate verifiers: another method's bundle is refused by name, also when
        # this verifier is called directly rather than through ``verify``.
        _require_method(bundle, self.method)
        try:
            sigstore_bundle = Bundle.from_json(bundle.raw)
        except InvalidBundle as exc:
            raise SignatureFormatError(f"{bundle.source}: not a valid keyless bundle: {one_line(exc)}") from None
        except ValueError as exc:
            raise SignatureFormatError(f"{bundle.source}: malformed keyless bundle ({one_line(exc)})") from None
        try:
            payload_type, payload = Verifier(trusted_root=self._root).verify_dsse(
                sigstore_bundle, self._policy.to_sigstore()
            )
        except SigstoreError as exc:
            raise VerificationError(
                f"{bundle.source} does not verify for {self._policy.describe()}: {one_line(exc, limit=300)}"
            ) from None
        if payload_type != _IN_TOTO:
            raise VerificationError(f"{bundle.source}: DSSE payload type {payload_type!r} is not {_IN_TOTO}")
        signer = _certificate_identity(sigstore_bundle.signing_certificate)
        return VerifiedSignature(payload, f"{signer} (Sigstore certificate)")


def _oidc_url(trust: ClientTrustConfig) -> str | None:
    try:
        return trust.signing_config.get_oidc_url()
    except Exception:  # noqa: BLE001 - a config without an OIDC URL just has no interactive default
        return None


def _certificate_identity(cert: x509.Certificate) -> str:
    """``<SAN identities> via <OIDC issuer>`` from a Fulcio certificate."""
    from asn1crypto.core import UTF8String
    from cryptography.x509 import ExtensionNotFound, ObjectIdentifier

    names = certificate_identities(cert)
    issuer = "unknown issuer"
    for oid in ("1.3.6.1.4.1.57264.1.8", "1.3.6.1.4.1.57264.1.1"):
        try:
            value: bytes = getattr(cert.extensions.get_extension_for_oid(ObjectIdentifier(oid)).value, "value", b"")
        except ExtensionNotFound:
            continue
        try:
            # .1.8 holds a DER UTF8String (any length form); the legacy .1.1 the raw string bytes.
            issuer = str(UTF8String.load(value).native) if oid.endswith(".8") else value.decode(errors="replace")
        except ValueError:
            continue
        break
    return f"{', '.join(names) or 'no identity'} via {issuer}"


# sigstore's service-client errors (private classes, not ``sigstore.errors.Error``), by class name.
_SERVICES = {
    "FulcioClientError": "the Fulcio CA",
    "RekorClientError": "the Rekor transparency log",
    "TimestampError": "the timestamp authority",
}

# When a request fails before any response, the URL tells which service it was for.
_SERVICE_PATHS = (("/signingCert", "the Fulcio CA"), ("/api/v1/log", "the Rekor transparency log"),
                  ("/api/v2/log", "the Rekor transparency log"), ("timestamp", "the timestamp authority"))


def _signing_failure(exc: Exception) -> str:
    """One line naming the service that failed and why.

    sigstore often raises its client errors without a message (the HTTP status and the service's own
    explanation sit in the chained ``requests`` exception), so the cause chain is searched.
    """
    service = next((_SERVICES[c.__name__] for c in type(exc).__mro__ if c.__name__ in _SERVICES), None)
    chain: list[BaseException] = [exc]
    while len(chain) < 8 and (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(nxt)
    for link in chain:
        response = getattr(link, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            detail = _response_message(response)
            return (
                f"{service or 'a Sigstore service'} refused the request (HTTP {status} from "
                f"{getattr(response, 'url', '?')}{': ' + detail if detail else ''})"
            )
    if any(isinstance(link, OSError) for link in chain):  # requests' ConnectionError and Timeout are OSErrors
        url = next((u for link in chain if isinstance(u := getattr(getattr(link, "request", None), "url", None), str)),
                   None)
        if service is None and url is not None:
            service = next((name for part, name in _SERVICE_PATHS if part in url), None)
        # The innermost OS error says it best ("Connection refused"); requests' own message is a repr pile.
        reason = next((link.strerror for link in reversed(chain) if isinstance(link, OSError) and link.strerror),
                      None) or one_line(next(link for link in chain if isinstance(link, OSError)), limit=200)
        where = f" at {url}" if url else ""
        return (
            f"cannot reach {service or 'the Sigstore instance'}{where} ({reason}); check the network and the "
            "instance's URLs (--trust-config)"
        )
    messages = list(dict.fromkeys(m for link in chain if (m := " ".join(str(link).split()))))
    where = f" at {service}" if service else ""
    return f"Sigstore signing failed{where}: {'; '.join(messages) or type(exc).__name__}"


def _response_message(response: object) -> str:
    try:
        body = response.json()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not JSON: fall back to the text
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return " ".join(body[key].split())
    text = " ".join(str(getattr(response, "text", "")).split())
    return text[:200]

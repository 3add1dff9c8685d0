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
:class:`~model_signing.methods.base.Verifier` protocols.  sigstore runs in a helper process
(``_sigstore_service``), so its import and its network round trips overlap the hashing of the model.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from model_signing.methods.sigstore import _wire
from model_signing.methods.sigstore import service as _sigstore_service
from model_signing.methods.sigstore._token import TokenSource, obtain_identity_token, renewed_token
from model_signing.methods.sigstore._trust import check_signing_sources, check_verification_sources
from model_signing.methods.sigstore.identity import IdentityPolicy
from model_signing.oms.bundle import BUNDLE_MEDIA_TYPE
from model_signing.results import SignerIdentity, TrustedTimestamp

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig
    from sigstore_models.bundle.v1 import Bundle

    from model_signing.methods.base import VerifiedSignature
    from model_signing.methods.sigstore._wire import Prepared
    from model_signing.methods.sigstore.service import Pending
    from model_signing.oms.bundle import SignatureBundle

from model_signing._internal.types import PathLike

__all__ = ["IdentityPolicy", "SigstoreSigner", "SigstoreVerifier", "TokenSource"]

NAME = "sigstore"


def claims(material: Mapping[str, Any], media_type: str) -> bool:
    """A keyless bundle: a lone Fulcio certificate, or (before bundle v0.3) a chain with log entries."""
    if "certificate" in material:
        return True
    return "x509CertificateChain" in material and bool(material.get("tlogEntries")) and media_type != BUNDLE_MEDIA_TYPE

#: A certificate with less validity left than this when the signature is made is replaced first.
_RENEW_BEFORE_EXPIRY = 30.0


class SigstoreSigner:
    """The keyless ``sigstore`` method: OIDC identity -> Fulcio certificate -> DSSE -> Rekor (+ TSA).

    Creating the signer checks the options and obtains the identity token (an unusable token, or an
    interactive sign-in, fails fast, before any hashing); no Sigstore service is contacted yet.
    :func:`~model_signing.sign` calls :meth:`start` once the signature's destination is known to be
    writable, right before hashing: the Fulcio certificate is then obtained in the Sigstore helper process
    while the model is hashed.  ``sign`` uses that certificate, unless it would expire first (a very long
    hash), in which case a new one is requested; only then is the Rekor entry made.
    """

    method = NAME

    def __init__(
        self,
        *,
        trust_config: PathLike | ClientTrustConfig | None = None,
        staging: bool = False,
        token_source: TokenSource | None = None,
        timeout: float = _wire.DEFAULT_TIMEOUT,
        rekor_version: int | None = None,
    ) -> None:
        """Pick the instance (``trust_config`` file or object, ``staging``, else public good) and get a token.

        ``timeout`` (seconds) bounds every connect and every wait for an answer of the Sigstore requests
        (TUF, Fulcio, Rekor, timestamp authority); a service that stays silent longer fails the signing.
        ``rekor_version`` (1 or 2) forces the Rekor API version of the log; by default the signing config
        decides, as sigstore does: the highest version each operator offers.  A v2 entry carries no
        time, so signing to v2 needs a timestamp authority in the signing config (and its timestamp).
        """
        self._timeout = _wire.check_timeout(timeout)
        version = _wire.check_rekor_version(rekor_version)
        if trust_config is None or isinstance(trust_config, str | os.PathLike):
            check_signing_sources(trust_config, staging)
            path = os.path.abspath(os.fspath(trust_config)) if trust_config is not None else None
            self._trust = _wire.TrustSpec(path=path, staging=staging, rekor_version=version)
        else:
            self._trust = _wire.TrustSpec(config=trust_config, rekor_version=version)
        self._source = token_source or TokenSource()
        self._token, self._origin = obtain_identity_token(self._source, self._default_issuer)
        self._service = _sigstore_service.shared()
        self._prepared: Pending[Prepared] | None = None
        self._certified: str | None = None

    def _default_issuer(self) -> str | None:
        from model_signing.methods.sigstore._ops import oidc_url

        return oidc_url(self._trust)

    def _prepare(self) -> Pending[Prepared]:
        return self._service.submit(
            "prepare_signer", self._trust, self._token, self._source.client_id, self._origin,
            timeout=self._timeout, what="getting the signing certificate",
        )

    def start(self) -> None:
        """Start getting the Fulcio certificate in the background (once; ``sign`` waits for it)."""
        if self._prepared is None:
            self._prepared = self._prepare()

    def _started(self) -> Pending[Prepared]:
        self.start()
        assert self._prepared is not None
        return self._prepared

    @property
    def description(self) -> str:
        """Who signs: once signed, the certificate's identity (what ``IdentityPolicy.identity`` must name).

        Before signing it is the token's identity, whose ``sub`` may differ from the certificate's SAN
        (a GitHub workflow token's ``sub`` is ``repo:owner/name:ref:...``, its SAN the workflow URI); asking
        for it then starts the certificate request (:meth:`start`) and waits for it.
        """
        if self._certified is not None:
            return self._certified
        return self._started().result().token_identity

    @property
    def identity(self) -> SignerIdentity:
        """Who signs, as fields: the certificate's SAN identity and OIDC issuer (waits for the certificate)."""
        prepared = self._started().result()
        if prepared.certificate_signer is not None:
            return prepared.certificate_signer
        return SignerIdentity(method=self.method, identity=prepared.certificate_identity)

    def raise_if_failed(self) -> None:
        """Raise at once if getting the certificate has already failed (called while hashing)."""
        if self._prepared is not None:
            self._prepared.raise_if_failed()

    def sign(self, payload: bytes) -> Bundle:
        """Sign ``payload`` (the canonical statement) with sigstore's ``Signer.sign_dsse``."""
        from sigstore_models.bundle.v1 import Bundle

        prepared = self._started().result()
        if prepared.not_after - time.time() < _RENEW_BEFORE_EXPIRY:
            # Hashing outlived the certificate: a new one needs a token valid now (renewed or refused).
            self._service.submit("forget_signer", prepared.handle).result()
            self._token = renewed_token(self._source, self._token, prepared.token_identity)
            self._prepared = self._prepare()
            prepared = self._prepared.result()
        text: str = self._service.submit(
            "sign", prepared.handle, payload, timeout=self._timeout,
            what="logging and timestamping the signature",
        ).result()
        self._certified = prepared.certificate_identity
        # sigstore's Bundle wraps the same protobuf-JSON model our pipeline uses; convert via its JSON form.
        return Bundle.from_json(text)


class SigstoreVerifier:
    """Verifies keyless bundles: certificate chain to the trusted root, SCT, transparency log, policy.

    The options are checked when the verifier is created; the trusted root is loaded (through TUF when
    online) and the bundle verified in the Sigstore helper process, while the model is hashed.
    """

    method = NAME

    def __init__(
        self,
        policy: IdentityPolicy,
        *,
        trust_config: PathLike | None = None,
        trusted_root: PathLike | None = None,
        staging: bool = False,
        offline: bool = False,
        timeout: float = _wire.DEFAULT_TIMEOUT,
    ) -> None:
        """Check the trust options (``offline=True`` never touches the network: ``trusted_root``, ``trust_config``,
        or the public-good or staging root shipped with sigstore).

        ``timeout`` (seconds) bounds every connect and every wait for an answer of the TUF refresh, when
        the public-good or staging root is fetched.
        """
        self._timeout = _wire.check_timeout(timeout)
        check_verification_sources(trust_config=trust_config, trusted_root=trusted_root, staging=staging)
        self._policy = policy
        self._roots = _wire.RootSpec(
            trust_config=os.path.abspath(os.fspath(trust_config)) if trust_config is not None else None,
            trusted_root=os.path.abspath(os.fspath(trusted_root)) if trusted_root is not None else None,
            staging=staging,
            offline=offline,
        )
        self._service = _sigstore_service.shared()

    @property
    def description(self) -> str:
        """The expected identity."""
        return self._policy.describe()

    def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
        """Run sigstore's DSSE verification with the identity policy; return the verified payload."""
        return self.verify_in_background(bundle).result()

    def verify_in_background(self, bundle: SignatureBundle) -> Pending[VerifiedSignature]:
        """Start :meth:`verify` in the helper process; the caller hashes meanwhile and collects the result."""
        from model_signing.methods.base import VerifiedSignature, require_method

        # Like the key and certificate verifiers: another method's bundle is refused by name, also when
        # this verifier is called directly rather than through ``verify``.
        require_method(bundle, self.method)

        def verified(value: tuple[bytes, str, SignerIdentity, tuple[TrustedTimestamp, ...]]) -> VerifiedSignature:
            return VerifiedSignature(value[0], value[1], identity=value[2], timestamps=value[3])

        return self._service.submit(
            "verify", bundle.raw, bundle.source, self._policy, self._roots, convert=verified,
            timeout=self._timeout, what="verifying the signature",
        )

"""The wire types of the Sigstore helper: what the client and the helper process exchange.

Kept apart from the transport (:mod:`.service`) and the operations run in the helper (:mod:`._ops`), which
both import them: neither of those imports the other at module level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_signing.errors import InputError

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig

    from model_signing.results import SignerIdentity

#: Seconds each network operation of a Sigstore request may take (connect, or wait for the next bytes).
DEFAULT_TIMEOUT = 60.0


def check_timeout(timeout: float) -> float:
    """``timeout`` as a float, or :class:`InputError` unless it is a finite number of seconds above 0."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (0 < timeout < math.inf):
        raise InputError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


#: The Rekor API versions a signer can be told to use.
REKOR_VERSIONS = (1, 2)


def check_rekor_version(version: int | None) -> int | None:
    """``version`` if it is None, 1 or 2; :class:`InputError` otherwise."""
    if version is not None and (isinstance(version, bool) or version not in REKOR_VERSIONS):
        raise InputError(f"`rekor_version` must be 1 or 2 (or None for the signing config's choice), not {version!r}")
    return version


def reply_bound(timeout: float) -> float:
    """How long to wait without any message from the helper before giving it up as stuck.

    Inside the helper every connect and every read is bounded by ``timeout``, but one operation makes
    several requests (a TUF refresh fetches several files, signing talks to Rekor and then a timestamp
    authority), and a service that trickles its answer a byte at a time never trips a per-read timeout.
    The helper reports each request it starts, so this bound only has to cover one request: its connect,
    its answer (3 x the timeout leaves room for both and for a slow but live service), plus 10 s for the
    helper's own start-up (importing sigstore) on a loaded machine.
    """
    return 3 * timeout + 10.0


def service_at(url: str) -> str:
    """The Sigstore service a request URL belongs to (by its path), for messages."""
    return next((name for part, name in _SERVICE_PATHS if part in url), "the Sigstore service")


# When a request fails before any response, the URL tells which service it was for.
_SERVICE_PATHS = (("/signingCert", "the Fulcio CA"), ("/api/v1/log", "the Rekor transparency log"),
                  ("/api/v2/log", "the Rekor transparency log"), ("timestamp", "the timestamp authority"),
                  ("tuf", "the TUF repository"))


@dataclass(frozen=True)
class TrustSpec:
    """Where the signing trust config comes from: a file, an object, staging or the public good."""

    path: str | None = None
    config: ClientTrustConfig | None = None
    staging: bool = False
    #: The Rekor API version to sign to (None: the highest the signing config offers, as sigstore picks).
    rekor_version: int | None = None


@dataclass(frozen=True)
class RootSpec:
    """Where the verification trusted root comes from (the ``SigstoreVerifier`` options)."""

    trust_config: str | None = None
    trusted_root: str | None = None
    staging: bool = False
    offline: bool = False


@dataclass(frozen=True)
class Prepared:
    """A signer with its Fulcio certificate, ready to sign: its handle, identities and expiry."""

    handle: int
    token_identity: str
    certificate_identity: str
    not_after: float
    #: The certificate's identity as fields (what ``certificate_identity`` renders).
    certificate_signer: SignerIdentity | None = None

"""Getting an OIDC identity token for keyless signing, in the documented order of sources.

1. an explicit token (``--identity-token`` or ``SIGSTORE_IDENTITY_TOKEN``);
2. ambient CI credentials (GitHub Actions, GitLab, Buildkite, GCP, CircleCI, through sigstore's
   ``detect_credential``),
   unless disabled;
3. the interactive OAuth flow of the instance's OIDC issuer (browser, or out-of-band with ``force_oob``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_signing.errors import KeyMaterialError

if TYPE_CHECKING:
    from sigstore.oidc import IdentityToken

TOKEN_ENV = "SIGSTORE_IDENTITY_TOKEN"
DEFAULT_CLIENT_ID = "sigstore"


@dataclass(frozen=True)
class TokenSource:
    """Where to get the identity token from (the ``sign sigstore`` identity options)."""

    identity_token: str | None = None
    use_ambient_credentials: bool = True
    oauth_force_oob: bool = False
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = ""
    #: The OIDC issuer for the interactive flow; ``None`` = the one in the signing config.
    oidc_issuer: str | None = None


def obtain_identity_token(source: TokenSource, default_issuer: str | None) -> IdentityToken:
    """Return a parsed identity token from the first source that yields one."""
    from sigstore.oidc import IdentityError, IdentityToken, Issuer, detect_credential

    raw = source.identity_token or os.environ.get(TOKEN_ENV) or None
    origin = "--identity-token" if source.identity_token else TOKEN_ENV
    if raw is None and source.use_ambient_credentials:
        try:
            raw = detect_credential(source.client_id)
        except IdentityError as exc:
            raise KeyMaterialError(
                f"ambient CI credential detection failed ({exc}); pass --identity-token, "
                "or --oidc-disable-ambient-providers to use the interactive flow"
            ) from None
        origin = "ambient CI credentials"
    if raw is not None:
        try:
            return IdentityToken(raw.strip(), client_id=source.client_id)
        except IdentityError as exc:
            raise KeyMaterialError(
                f"the identity token from {origin} is unusable: {exc}; get a fresh token "
                f"(audience {source.client_id!r}, not expired)"
            ) from None

    issuer_url = source.oidc_issuer or default_issuer
    if not issuer_url:
        raise KeyMaterialError(
            "no identity token: pass --identity-token (or set SIGSTORE_IDENTITY_TOKEN), or use an instance "
            "whose signing config names an OIDC issuer"
        )
    try:
        return Issuer(issuer_url).identity_token(
            client_id=source.client_id,
            client_secret=source.client_secret,
            force_oob=source.oauth_force_oob,
        )
    except Exception as exc:  # noqa: BLE001 - network, OAuth and input errors all end the flow
        raise KeyMaterialError(
            f"interactive sign-in with {issuer_url} failed ({type(exc).__name__}: {exc}); "
            "pass --identity-token, or --oauth-force-oob on a machine without a browser"
        ) from None

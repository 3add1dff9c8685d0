"""Getting an OIDC identity token for keyless signing, in the documented order of sources.

1. an explicit token (``--identity-token`` or ``SIGSTORE_IDENTITY_TOKEN``);
2. ambient CI credentials (GitHub Actions, GitLab, Buildkite, GCP, CircleCI, through sigstore's
   ``detect_credential``),
   unless disabled;
3. the interactive OAuth flow of the instance's OIDC issuer (browser, or out-of-band with ``force_oob``),
   only when someone can answer it: by default only when stdin is a terminal, because sigstore's flow
   waits without a time limit for a browser redirect or a pasted code.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from model_signing.errors import KeyMaterialError

if TYPE_CHECKING:
    from sigstore.oidc import IdentityError, IdentityToken

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
    #: Whether the interactive OAuth flow may run: ``None`` = only when stdin is a terminal (a script,
    #: CI job or service without one would otherwise wait forever); ``True`` e.g. for notebooks.
    interactive: bool | None = None


def obtain_identity_token(source: TokenSource, default_issuer: str | None) -> IdentityToken:
    """Return a parsed identity token from the first source that yields one."""
    from sigstore.oidc import IdentityError, IdentityToken, Issuer, detect_credential

    raw = source.identity_token or None
    origin = "--identity-token"
    if raw is None and os.environ.get(TOKEN_ENV):
        raw, origin = os.environ[TOKEN_ENV], TOKEN_ENV
    if raw is None and source.use_ambient_credentials:
        try:
            raw = detect_credential(source.client_id)
        except IdentityError as exc:
            raise KeyMaterialError(
                f"ambient CI credential detection failed ({one_line(exc)}); pass --identity-token, "
                "or --oidc-disable-ambient-providers to use the interactive flow"
            ) from None
        origin = "ambient CI credentials"
    if raw is not None:
        try:
            return IdentityToken(raw.strip(), client_id=source.client_id)
        except IdentityError as exc:
            raise KeyMaterialError(
                f"the identity token from {origin} is unusable: {_token_problem(exc, raw.strip(), source.client_id)}; "
                f"get a fresh token (audience {source.client_id!r}, not expired)"
            ) from None

    issuer_url = source.oidc_issuer or default_issuer
    if not issuer_url:
        raise KeyMaterialError(
            "no identity token: pass --identity-token (or set SIGSTORE_IDENTITY_TOKEN), or use an instance "
            "whose signing config names an OIDC issuer"
        )
    interactive = source.interactive if source.interactive is not None else _stdin_is_terminal()
    if not interactive:
        ambient = "" if source.use_ambient_credentials else " (ambient CI credentials are disabled)"
        raise KeyMaterialError(
            f"no identity token{ambient}, and no terminal for the interactive sign-in with {issuer_url}: "
            "pass --identity-token or set SIGSTORE_IDENTITY_TOKEN, or run in CI with an OIDC token available"
        )
    try:
        return Issuer(issuer_url).identity_token(
            client_id=source.client_id,
            client_secret=source.client_secret,
            force_oob=source.oauth_force_oob,
        )
    except Exception as exc:  # noqa: BLE001 - network, OAuth and input errors all end the flow
        hint = "" if source.oauth_force_oob else ", or --oauth-force-oob on a machine without a browser"
        raise KeyMaterialError(
            f"interactive sign-in with {issuer_url} failed ({type(exc).__name__}: {one_line(exc)}); "
            f"try again, or pass --identity-token{hint}"
        ) from None


def fresh_identity_token(source: TokenSource, token: IdentityToken) -> IdentityToken:
    """``token`` while it is valid; once it has expired, a new one where no person is needed, else an error.

    The token is obtained before hashing (so a bad one fails fast), and CI tokens are short-lived, so
    hashing a large model can outlive it.  Only ambient CI credentials can be asked again unattended, and
    only a token for the same identity is accepted in its place.
    """
    from sigstore.oidc import IdentityError, IdentityToken, detect_credential

    if token.in_validity_period():
        return token
    if not (source.identity_token or os.environ.get(TOKEN_ENV)) and source.use_ambient_credentials:
        try:
            raw = detect_credential(source.client_id)
            renewed = IdentityToken(raw.strip(), client_id=source.client_id) if raw else None
        except IdentityError:
            renewed = None
        if (
            renewed is not None
            and renewed.in_validity_period()
            and (renewed.identity, renewed.issuer) == (token.identity, token.issuer)
        ):
            return renewed
    expired = _when(_unverified_claims(str(token)).get("exp"))
    raise KeyMaterialError(
        f"the identity token for {token.identity} expired at {expired}, before the signature was made "
        "(hashing the model took longer than the token lives); sign again with a fresh token, or one "
        "with a longer lifetime"
    )


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdin
        return False


def _token_problem(exc: IdentityError, raw: str, client_id: str) -> str:
    """Name what is wrong with a token sigstore refused (its own message is generic)."""
    import jwt

    cause = exc.__cause__
    claims = _unverified_claims(raw)
    if isinstance(cause, jwt.ExpiredSignatureError):
        return f"it expired at {_when(claims.get('exp'))}"
    if isinstance(cause, jwt.InvalidAudienceError):
        return f"its audience is {claims.get('aud')!r}, not {client_id!r}"
    if isinstance(cause, jwt.ImmatureSignatureError | jwt.InvalidIssuedAtError):
        return f"it is not valid yet (issued at {_when(claims.get('iat'))}); check the clock"
    if isinstance(cause, jwt.MissingRequiredClaimError):
        return f"it has no {cause.claim!r} claim"
    if isinstance(cause, jwt.DecodeError):
        return "it is not a JWT (three base64url parts separated by dots)"
    if "validity period" in str(exc):
        return f"it is not valid at this time (valid from {_when(claims.get('nbf'))} to {_when(claims.get('exp'))})"
    return one_line(exc)


def _unverified_claims(raw: str) -> dict[str, Any]:
    # Only to describe the problem: the token is never trusted from this (Fulcio checks the signature).
    import jwt

    try:
        claims = jwt.decode(raw, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _when(timestamp: object) -> str:
    if not isinstance(timestamp, int | float):
        return "an unknown time"
    try:
        return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(timestamp)


def one_line(exc: BaseException, *, limit: int | None = None) -> str:
    """``exc``'s message on one line (its type name when empty), cut to ``limit`` characters if given."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    # Some sigstore messages append whole reprs (a checkpoint, raw hashes) after the reason: keep the reason.
    return text if limit is None or len(text) <= limit else text[: limit - 3].rstrip() + "..."

"""Getting an OIDC identity token for keyless signing, in the documented order of sources.

1. an explicit token (``identity_token`` or ``SIGSTORE_IDENTITY_TOKEN``);
2. ambient CI credentials (GitHub Actions, GitLab, Buildkite, GCP, CircleCI, through sigstore's
   ``detect_credential``),
   unless disabled;
3. the interactive OAuth flow of the instance's OIDC issuer (browser, or out-of-band with ``oauth_force_oob``),
   only when someone can answer it: by default only when stdin is a terminal, because sigstore's flow
   waits without a time limit for a browser redirect or a pasted code.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    #: Whether the interactive OAuth flow may run: ``None`` = only when stdin is a terminal (a script,
    #: CI job or service without one would otherwise wait forever); ``True`` e.g. for notebooks.
    interactive: bool | None = None


def explicit_token(source: TokenSource) -> tuple[str, str] | None:
    """The explicit token (``identity_token``, else ``SIGSTORE_IDENTITY_TOKEN``) and where it came from.

    Its claims are checked here, without sigstore (whose import takes a third of a second), so an
    expired or mistargeted token fails at once; sigstore's own check runs again before it is used.
    """
    raw = (source.identity_token or "").strip() or None
    origin = "`identity_token`"
    if raw is None and os.environ.get(TOKEN_ENV, "").strip():
        raw, origin = os.environ[TOKEN_ENV].strip(), TOKEN_ENV
    if raw is None:
        return None
    problem = token_problem(raw, source.client_id)
    if problem is not None:
        raise unusable_token(origin, raw, source.client_id, None)
    return raw, origin


def obtain_identity_token(source: TokenSource, default_issuer: Callable[[], str | None]) -> tuple[str, str]:
    """A raw identity token from the first source that yields one, and the source's name.

    ``default_issuer`` is only called when the interactive flow needs the instance's OIDC issuer.
    """
    explicit = explicit_token(source)
    if explicit is not None:
        return explicit
    from sigstore.oidc import IdentityError, Issuer, detect_credential

    if source.use_ambient_credentials:
        try:
            raw = detect_credential(source.client_id)
        except IdentityError as exc:
            raise KeyMaterialError(
                f"ambient CI credential detection failed ({one_line(exc)}); pass `identity_token`, "
                "or `use_ambient_credentials=False` to use the interactive flow"
            ) from None
        if raw is not None:
            if token_problem(raw.strip(), source.client_id) is not None:
                raise unusable_token("ambient CI credentials", raw.strip(), source.client_id, None)
            return raw.strip(), "ambient CI credentials"

    issuer_url = source.oidc_issuer or default_issuer()
    if not issuer_url:
        raise KeyMaterialError(
            "no identity token: pass `identity_token` (or set SIGSTORE_IDENTITY_TOKEN), or use an instance "
            "whose signing config names an OIDC issuer"
        )
    interactive = source.interactive if source.interactive is not None else _stdin_is_terminal()
    if not interactive:
        ambient = "" if source.use_ambient_credentials else " (ambient CI credentials are disabled)"
        raise KeyMaterialError(
            f"no identity token{ambient}, and no terminal for the interactive sign-in with {issuer_url}: "
            "pass `identity_token` or set SIGSTORE_IDENTITY_TOKEN, or run in CI with an OIDC token available"
        )
    try:
        token: IdentityToken = Issuer(issuer_url).identity_token(
            client_id=source.client_id,
            client_secret=source.client_secret,
            force_oob=source.oauth_force_oob,
        )
    except Exception as exc:  # noqa: BLE001 - network, OAuth and input errors all end the flow
        hint = "" if source.oauth_force_oob else ", or `oauth_force_oob=True` on a machine without a browser"
        raise KeyMaterialError(
            f"interactive sign-in with {issuer_url} failed ({type(exc).__name__}: {one_line(exc)}); "
            f"try again, or pass `identity_token`{hint}"
        ) from None
    return str(token), "the interactive sign-in"


def renewed_token(source: TokenSource, raw: str, identity: str) -> str:
    """``raw`` while it is valid; once it has expired, a new one where no person is needed, else an error.

    Needed only when the Fulcio certificate obtained with ``raw`` expires before the model is hashed.
    Only ambient CI credentials can be asked again unattended, and only a token for the same identity
    (``identity`` = ``<identity> via <issuer>`` as sigstore read it) is accepted in its place.
    """
    if token_problem(raw, source.client_id) is None:
        return raw
    if not (source.identity_token or os.environ.get(TOKEN_ENV)) and source.use_ambient_credentials:
        from sigstore.oidc import IdentityError, IdentityToken, detect_credential

        try:
            fresh = detect_credential(source.client_id)
            renewed = IdentityToken(fresh.strip(), client_id=source.client_id) if fresh else None
        except IdentityError:
            renewed = None
        if renewed is not None and f"{renewed.identity} via {renewed.issuer}" == identity:
            return str(renewed)
    expired = _when(unverified_claims(raw).get("exp"))
    who = identity.split(" via ", maxsplit=1)[0]
    raise KeyMaterialError(
        f"the identity token for {who} expired at {expired}, before the signature was made "
        "(hashing the model took longer than the signing certificate lives); sign again with a fresh token"
    )


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdin
        return False


#: sigstore (PyJWT) tolerates this much clock skew, in seconds.
_LEEWAY = 5
_REQUIRED = ("aud", "sub", "iat", "exp", "iss")


def token_problem(raw: str, client_id: str) -> str | None:
    """What makes ``raw`` unusable as a Sigstore identity token now, or ``None``.

    The checks sigstore's ``IdentityToken`` makes on the unverified claims (Fulcio checks the
    signature), worded so a user knows which token to get instead.
    """
    parts = raw.split(".")
    claims = unverified_claims(raw)
    # PyJWT also decodes the header (a JSON object) and the signature part.
    if not claims or _json_object(parts[0]) is None or _decoded(parts[2]) is None:
        return "it is not a JWT (three base64url parts separated by dots)"
    # PyJWT counts a null claim as missing.
    missing = next((name for name in _REQUIRED if claims.get(name) is None), None)
    if missing is not None:
        return f"it has no {missing!r} claim"
    now = time.time()
    for name in ("iat", "nbf", "exp"):
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"its {name!r} claim is not a number"
    # sigstore looks the issuer up in a table and PyJWT requires every audience to be a string.
    if not isinstance(claims["iss"], str):
        return "its 'iss' claim is not a string"
    if isinstance(claims["aud"], list) and not all(isinstance(a, str) for a in claims["aud"]):
        return "its 'aud' claim is not a string or a list of strings"
    # PyJWT allows the leeway on "iat"; sigstore's validity period then applies "nbf" and "exp" exactly.
    if claims["iat"] > now + _LEEWAY or claims.get("nbf", 0) > now:
        return f"it is not valid yet (issued at {_when(claims['iat'])}); check the clock"
    if claims["exp"] <= now:
        return f"it expired at {_when(claims['exp'])}"
    audience = claims["aud"]
    if audience != client_id and not (isinstance(audience, list) and client_id in audience):
        return f"its audience is {audience!r}, not {client_id!r}"
    return None


def unusable_token(origin: str, raw: str, client_id: str, exc: Exception | None) -> KeyMaterialError:
    """The error for a token from ``origin`` that cannot be used (``exc``: sigstore's refusal, if any)."""
    problem = token_problem(raw, client_id) or (one_line(exc) if exc is not None else "it was refused")
    return KeyMaterialError(
        f"the identity token from {origin} is unusable: {problem}; "
        f"get a fresh token (audience {client_id!r}, not expired)"
    )


def unverified_claims(raw: str) -> dict[str, Any]:
    """The claims of a JWT, decoded without checking its signature (Fulcio checks that), or ``{}``."""
    parts = raw.split(".")
    return (_json_object(parts[1]) or {}) if len(parts) == 3 else {}


def _decoded(part: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except ValueError:
        return None


def _json_object(part: str) -> dict[str, Any] | None:
    data = _decoded(part)
    try:
        value = json.loads(data) if data is not None else None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


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

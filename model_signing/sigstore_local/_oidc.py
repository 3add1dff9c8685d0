"""The local OpenID Connect issuer: discovery, JWKS, signed ID tokens, GitHub-Actions-style token requests.

Tokens are ES256 JWTs with ``aud`` "sigstore".  Two kinds of identity are issued:

* email identities: ``sub`` and ``email`` are the address, ``email_verified`` is true -> email SAN;
* URI identities: ``sub`` is a URI -> URI SAN; GitHub-workflow tokens additionally carry GitHub's claims
  (``repository``, ``ref``, ``job_workflow_ref`` ...) and become workflow certificates (see ``_fulcio``);
  GitLab CI tokens carry GitLab's (``project_path``, ``ci_config_ref_uri`` ...) and get its pipeline URI.

The GitHub-Actions endpoint mimics ``ACTIONS_ID_TOKEN_REQUEST_URL``: a caller holding a *request token*
(itself a JWT from this issuer, with a distinct audience so it can never pass as an ID token) gets an ID
token with the claims the request token carries and the audience it asks for.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from model_signing.sigstore_local._ct import spki_sha256
from model_signing.sigstore_local._errors import RequestRejected

AUDIENCE = "sigstore"
ACTIONS_REQUEST_AUDIENCE = "modelseal-local:actions-id-token-request"
GITHUB_SERVER_URL = "https://github.com"
_ALGORITHM = "ES256"
_LEEWAY_SECONDS = 5
MAX_LIFETIME_SECONDS = 24 * 3600


def identity_claims(identity: str) -> dict[str, Any]:
    """The claims that make ``identity`` (an email address or a URI) the token's subject."""
    if "://" in identity:
        return {"sub": identity}
    local, at, domain = identity.partition("@")
    if at and local and domain and not any(c.isspace() for c in identity):
        return {"sub": identity, "email": identity, "email_verified": True}
    raise ValueError(
        f"identity {identity!r} must be an email address (alice@example.com) or a URI "
        "(https://example.com/ci/job)"
    )


def github_claims(
    repository: str,
    *,
    workflow: str = ".github/workflows/release.yml",
    ref: str = "refs/heads/main",
    sha: str | None = None,
    event_name: str = "push",
    workflow_name: str = "release",
    run_id: str = "1",
    run_attempt: str = "1",
    repository_id: str = "1",
    repository_owner_id: str = "1",
    repository_visibility: str = "private",
    runner_environment: str = "github-hosted",
    job_workflow_ref: str | None = None,
) -> dict[str, Any]:
    """The claims GitHub Actions puts in a workflow's ID token, for ``repository`` ("owner/name").

    ``sha`` defaults to a deterministic stand-in derived from repository and ref (there is no real
    commit behind a local token).  ``job_workflow_ref`` (``owner/repo/.github/workflows/f.yml@ref``) is the
    reusable workflow a job runs, when it runs one: it, not the caller's workflow, becomes the SAN.
    """
    owner, slash, repo_name = repository.partition("/")
    if not (owner and slash and repo_name) or "/" in repo_name:
        raise ValueError(f"repository {repository!r} must be of the form owner/name")
    commit = sha or hashlib.sha1(f"{repository}@{ref}".encode()).hexdigest()
    workflow_ref = f"{repository}/{workflow}@{ref}"
    return {
        "sub": f"repo:{repository}:ref:{ref}",
        "repository": repository,
        "repository_owner": owner,
        "repository_id": repository_id,
        "repository_owner_id": repository_owner_id,
        "repository_visibility": repository_visibility,
        "ref": ref,
        "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
        "sha": commit,
        "workflow": workflow_name,
        "workflow_ref": workflow_ref,
        "workflow_sha": commit,
        "job_workflow_ref": job_workflow_ref or workflow_ref,
        "job_workflow_sha": (hashlib.sha1(job_workflow_ref.encode()).hexdigest() if job_workflow_ref else commit),
        "event_name": event_name,
        "run_id": run_id,
        "run_attempt": run_attempt,
        "runner_environment": runner_environment,
    }


def gitlab_claims(
    project_path: str,
    *,
    server_host: str = "gitlab.com",
    config_path: str = ".gitlab-ci.yml",
    ref: str = "main",
    ref_type: str = "branch",
    sha: str | None = None,
    pipeline_source: str = "push",
    pipeline_id: str = "1",
    job_id: str = "1",
    project_id: str = "1",
    namespace_id: str = "1",
    project_visibility: str = "private",
    runner_environment: str = "gitlab-hosted",
) -> dict[str, Any]:
    """The claims GitLab CI puts in a job's ``id_tokens`` token, for ``project_path`` ("group/project").

    ``ci_config_ref_uri`` (``HOST/GROUP/PROJECT//CONFIG@refs/heads/REF``) is what Fulcio turns into the
    certificate's URI SAN (``https://`` + it); ``sha`` defaults to a stand-in derived from project and ref.
    """
    namespace, slash, name = project_path.rpartition("/")
    if not (namespace and slash and name):
        raise ValueError(f"project path {project_path!r} must be of the form group/project")
    if ref_type not in ("branch", "tag"):
        raise ValueError(f"ref_type {ref_type!r} must be 'branch' or 'tag'")
    ref_path = f"refs/{'heads' if ref_type == 'branch' else 'tags'}/{ref}"
    commit = sha or hashlib.sha1(f"{project_path}@{ref_path}".encode()).hexdigest()
    return {
        "sub": f"project_path:{project_path}:ref_type:{ref_type}:ref:{ref}",
        "namespace_id": namespace_id,
        "namespace_path": namespace,
        "project_id": project_id,
        "project_path": project_path,
        "pipeline_id": pipeline_id,
        "pipeline_source": pipeline_source,
        "job_id": job_id,
        "ref": ref,
        "ref_type": ref_type,
        "ref_path": ref_path,
        "ref_protected": "true",
        "runner_environment": runner_environment,
        "sha": commit,
        "project_visibility": project_visibility,
        "ci_config_ref_uri": f"{server_host}/{project_path}//{config_path}@{ref_path}",
        "ci_config_sha": commit,
    }


def gitlab_pipeline_identity(claims: Mapping[str, Any]) -> str:
    """The URI SAN Fulcio gives a GitLab CI token (``https://`` + its ``ci_config_ref_uri``)."""
    return f"https://{claims['ci_config_ref_uri']}"


def github_workflow_identity(claims: Mapping[str, Any]) -> str:
    """The URI SAN a workflow certificate gets for these GitHub claims (what verifiers pin)."""
    return f"{GITHUB_SERVER_URL}/{claims['job_workflow_ref']}"


class OidcIssuer:
    """Signs and verifies this instance's JWTs; serves discovery and JWKS documents."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str, client_secret: str) -> None:
        """``issuer`` is the URL the discovery document lives under (``<issuer>/.well-known/...``)."""
        self.key = key
        self.issuer = issuer
        self._client_secret = client_secret
        # RFC 7638-style stable key id: derived from the public key, so it survives restarts.
        self.kid = base64.urlsafe_b64encode(spki_sha256(key.public_key())[:16]).rstrip(b"=").decode()

    # -- documents ---------------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        """The OpenID Connect discovery document."""
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/keys",
            "authorization_endpoint": f"{self.issuer}/auth",
            "token_endpoint": f"{self.issuer}/token",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [_ALGORITHM],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "email", "email_verified"],
        }

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set holding the token-signing key."""
        jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": _ALGORITHM})
        return {"keys": [jwk]}

    # -- tokens ------------------------------------------------------------------------------------

    def mint(
        self,
        claims: Mapping[str, Any],
        *,
        audience: str = AUDIENCE,
        expires_in: int = 600,
    ) -> str:
        """A signed JWT carrying ``claims`` plus iss/aud/iat/nbf/exp/jti."""
        if not 0 < expires_in <= MAX_LIFETIME_SECONDS:
            raise ValueError(f"expires_in must be between 1 and {MAX_LIFETIME_SECONDS} seconds")
        now = int(time.time())
        payload: dict[str, Any] = {
            "iat": now,
            "nbf": now,
            "exp": now + expires_in,
            "jti": secrets.token_hex(16),
            **claims,
            "iss": self.issuer,
            "aud": audience,
        }
        return jwt.encode(payload, self.key, algorithm=_ALGORITHM, headers={"kid": self.kid})

    def verify(self, token: str, *, audience: str = AUDIENCE) -> dict[str, Any]:
        """The claims of ``token`` once its signature, issuer, audience and validity period check out.

        Raises :class:`RequestRejected` (401) naming what is wrong.
        """
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.public_key(),
                algorithms=[_ALGORITHM],
                audience=audience,
                issuer=self.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.InvalidSignatureError:
            raise RequestRejected(401, "identity token signature is not valid for this issuer's keys") from None
        except jwt.ExpiredSignatureError:
            raise RequestRejected(401, "identity token has expired") from None
        except jwt.ImmatureSignatureError:
            raise RequestRejected(401, "identity token is not yet valid (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise RequestRejected(401, f"identity token audience is not {audience!r}") from None
        except jwt.InvalidIssuerError:
            raise RequestRejected(401, f"identity token issuer is not {self.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise RequestRejected(401, f"identity token is missing the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            raise RequestRejected(401, f"identity token is malformed: {exc}") from None
        return claims

    # -- endpoints ---------------------------------------------------------------------------------

    def token_endpoint(self, form: Mapping[str, str], basic_auth: tuple[str, str] | None) -> dict[str, Any]:
        """OAuth2 ``client_credentials`` grant: the holder of the instance's client secret gets an ID
        token for the ``identity`` form field (an email address or a URI)."""
        if form.get("grant_type") != "client_credentials":
            raise RequestRejected(400, "unsupported grant_type: only client_credentials is offered")
        secret = basic_auth[1] if basic_auth else form.get("client_secret", "")
        if not secrets.compare_digest(secret.encode(), self._client_secret.encode()):
            raise RequestRejected(401, "invalid client secret (see <state-dir>/oidc-client.secret)")
        identity = form.get("identity", "")
        try:
            claims = identity_claims(identity)
            expires_in = int(form.get("expires_in", "600"))
            token = self.mint(claims, expires_in=expires_in)
        except ValueError as exc:
            raise RequestRejected(400, str(exc)) from None
        return {"access_token": token, "id_token": token, "token_type": "Bearer", "expires_in": expires_in}

    def actions_request_token(self, claims: Mapping[str, Any], *, expires_in: int = 3600) -> str:
        """A bearer token for the GitHub-Actions-style endpoint, carrying the claims to issue."""
        return self.mint({"sub": "actions-id-token-request", "claims": dict(claims)},
                         audience=ACTIONS_REQUEST_AUDIENCE, expires_in=expires_in)

    def actions_id_token(self, authorization: str | None, audience: str | None) -> dict[str, Any]:
        """Answer an ``ACTIONS_ID_TOKEN_REQUEST_URL`` request: ``{"value": <ID token>}``."""
        scheme, _, request_token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not request_token:
            raise RequestRejected(401, "missing 'Authorization: bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>'")
        request = self.verify(request_token.strip(), audience=ACTIONS_REQUEST_AUDIENCE)
        claims = request.get("claims")
        if not isinstance(claims, dict):
            raise RequestRejected(401, "request token carries no claims")
        # GitHub's default audience is the repository owner's URL; sigstore always asks for "sigstore".
        owner = claims.get("repository_owner", "")
        token = self.mint(claims, audience=audience or f"{GITHUB_SERVER_URL}/{owner}")
        return {"count": len(token), "value": token}

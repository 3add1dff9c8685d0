"""The local Fulcio-compatible CA: ``POST /api/v2/signingCert``.

It issues root -> intermediate -> short-lived leaf chains, the leaf bound to the OIDC identity of a token
that this instance's issuer signed.  Before issuing it checks the token (signature against the JWKS key,
``aud`` "sigstore", ``iss``, ``exp``/``nbf``) and the CSR's proof of possession (its self-signature).
The leaf carries what the sigstore client and its policies read: an email or URI SAN, code-signing EKU,
the issuer extensions (OIDs 1.3.6.1.4.1.57264.1.1 and .1.8), GitHub workflow extensions for
workflow tokens (GitLab pipeline ones for GitLab CI tokens), and an embedded SCT.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from model_signing.sigstore_local import _pki
from model_signing.sigstore_local._ct import CTLog
from model_signing.sigstore_local._errors import RequestRejected
from model_signing.sigstore_local._keys import utcnow
from model_signing.sigstore_local._oidc import GITHUB_SERVER_URL, OidcIssuer, gitlab_pipeline_identity

_log = logging.getLogger("model_signing.sigstore_local")

LEAF_LIFETIME = dt.timedelta(minutes=10)
_FULCIO = "1.3.6.1.4.1.57264.1"
# Extensions whose value is the raw UTF-8 string (Fulcio's legacy encoding) ...
_ISSUER_V1 = x509.ObjectIdentifier(f"{_FULCIO}.1")
_GITHUB_V1 = {  # OID suffix -> GitHub claim
    2: "event_name",
    3: "sha",
    4: "workflow",
    5: "repository",
    6: "ref",
}
# ... and those whose value is a DER UTF8String (RFC 5280 style, OIDs .8 and up).
_ISSUER_V2 = x509.ObjectIdentifier(f"{_FULCIO}.8")
_ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)



def _github_v2_values(claims: Mapping[str, Any]) -> dict[int, str]:
    """Fulcio's CI-provider extensions (.9-.22) from GitHub claims, as the Fulcio OID table maps them."""
    server = GITHUB_SERVER_URL
    repo = str(claims.get("repository", ""))

    def claim(name: str) -> str:
        return str(claims.get(name, ""))

    values = {
        9: f"{server}/{claim('job_workflow_ref')}",
        10: claim("job_workflow_sha"),
        11: claim("runner_environment"),
        12: f"{server}/{repo}",
        13: claim("sha"),
        14: claim("ref"),
        15: claim("repository_id"),
        16: f"{server}/{claim('repository_owner')}",
        17: claim("repository_owner_id"),
        18: f"{server}/{claim('workflow_ref')}" if claims.get("workflow_ref") else "",
        19: claim("workflow_sha"),
        20: claim("event_name"),
        21: (f"{server}/{repo}/actions/runs/{claim('run_id')}/attempts/{claim('run_attempt')}"
             if claims.get("run_id") else ""),
        22: claim("repository_visibility"),
    }
    return {oid: value for oid, value in values.items() if value}


def _gitlab_v2_values(claims: Mapping[str, Any]) -> dict[int, str]:
    """Fulcio's CI-provider extensions (.9-.22) from GitLab claims, as Fulcio's GitLab template maps them.

    Fulcio's ``url`` (the GitLab server) is taken from the host of ``ci_config_ref_uri``: a local token's
    issuer is this instance, not a GitLab server.
    """
    pipeline = gitlab_pipeline_identity(claims)
    server = "https://" + str(claims["ci_config_ref_uri"]).split("/", 1)[0]

    def claim(name: str) -> str:
        return str(claims.get(name, ""))

    values = {
        9: pipeline,
        10: claim("ci_config_sha"),
        11: claim("runner_environment"),
        12: f"{server}/{claim('project_path')}",
        13: claim("sha"),
        14: claim("ref_path"),
        15: claim("project_id"),
        16: f"{server}/{claim('namespace_path')}",
        17: claim("namespace_id"),
        18: pipeline,
        19: claim("ci_config_sha"),
        20: claim("pipeline_source"),
        21: f"{server}/{claim('project_path')}/-/jobs/{claim('job_id')}" if claims.get("job_id") else "",
        22: claim("project_visibility"),
    }
    return {oid: value for oid, value in values.items() if value}


def subject_alternative_name(claims: Mapping[str, Any]) -> x509.GeneralName:
    """The SAN the token's claims earn: workflow URI, verified email, or URI subject."""
    if claims.get("job_workflow_ref"):
        return x509.UniformResourceIdentifier(f"{GITHUB_SERVER_URL}/{claims['job_workflow_ref']}")
    if claims.get("ci_config_ref_uri"):
        return x509.UniformResourceIdentifier(gitlab_pipeline_identity(claims))
    if "email" in claims:
        if claims.get("email_verified") is not True:
            raise RequestRejected(400, "identity token's email is not verified (email_verified is not true)")
        return x509.RFC822Name(str(claims["email"]))
    sub = str(claims.get("sub", ""))
    if "://" in sub:
        return x509.UniformResourceIdentifier(sub)
    raise RequestRejected(
        400, "identity token has neither an email claim nor a URI subject, so it names no identity"
    )


def _csr_public_key(body: bytes) -> ec.EllipticCurvePublicKey:
    """The public key of the request's CSR, once the CSR's self-signature (proof of possession) checks."""
    try:
        request = json.loads(body)
    except ValueError:
        raise RequestRejected(400, "request body is not JSON") from None
    if not isinstance(request, dict):
        raise RequestRejected(400, "request body must be a JSON object")
    if "certificateSigningRequest" not in request:
        raise RequestRejected(
            400, "missing certificateSigningRequest (only CSR-based requests are supported)"
        )
    try:
        pem = base64.b64decode(str(request["certificateSigningRequest"]), validate=True)
        csr = x509.load_pem_x509_csr(pem)
    except (binascii.Error, ValueError) as exc:
        raise RequestRejected(400, f"certificateSigningRequest is not a base64 PEM CSR: {exc}") from None
    # Proof of possession: the CSR is signed by the private key of the public key it asks to certify.
    if not csr.is_signature_valid:
        raise RequestRejected(400, "CSR signature is invalid: no proof of possession of the private key")
    key = csr.public_key()
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _ACCEPTED_CURVES)):
        raise RequestRejected(400, "unsupported CSR key: use ECDSA P-256 or P-384")
    return key


class FulcioCA:
    """The CA: an intermediate (signed by a root) that issues leaves with embedded SCTs."""

    def __init__(
        self,
        *,
        root: x509.Certificate,
        intermediate: x509.Certificate,
        intermediate_key: ec.EllipticCurvePrivateKey,
        ctlog: CTLog,
        issuer: OidcIssuer,
    ) -> None:
        """Assemble the CA from its (persisted) certificates and keys."""
        self.root = root
        self.intermediate = intermediate
        self._key = intermediate_key
        self._ctlog = ctlog
        self._issuer = issuer

    @property
    def chain(self) -> list[x509.Certificate]:
        """Intermediate then root: the ``certChain`` of the trusted root's certificate authority."""
        return [self.intermediate, self.root]

    def signing_cert(self, authorization: str | None, body: bytes) -> dict[str, Any]:
        """Handle ``POST /api/v2/signingCert``; returns the JSON response (leaf, intermediate, root)."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RequestRejected(401, "missing 'Authorization: Bearer <identity token>' header")
        claims = self._issuer.verify(token.strip())
        leaf = self.issue(claims, _csr_public_key(body))
        pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, *self.chain)]
        return {"signedCertificateEmbeddedSct": {"chain": {"certificates": pems}}}

    def issue(self, claims: Mapping[str, Any], public_key: ec.EllipticCurvePublicKey) -> x509.Certificate:
        """A leaf for ``public_key`` bound to the (already verified) token ``claims``."""
        san = subject_alternative_name(claims)
        issuer_url = str(claims["iss"])
        now = utcnow()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))  # like Fulcio: the identity lives in the SAN only
            .issuer_name(self.intermediate.subject)
            .public_key(public_key)
            .serial_number(_pki.serial_number())
            .not_valid_before(now)
            .not_valid_after(now + LEAF_LIFETIME)
            .add_extension(_pki.key_usage_digital_signature(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
            # An empty subject makes the SAN the only name, so RFC 5280 wants it critical.
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(_ISSUER_V1, issuer_url.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(_ISSUER_V2, _pki.der_utf8(issuer_url)), critical=False)
        )
        if claims.get("job_workflow_ref"):
            for suffix, claim in _GITHUB_V1.items():
                if claims.get(claim):
                    oid = x509.ObjectIdentifier(f"{_FULCIO}.{suffix}")
                    builder = builder.add_extension(
                        x509.UnrecognizedExtension(oid, str(claims[claim]).encode()), critical=False
                    )
            for suffix, value in _github_v2_values(claims).items():
                oid = x509.ObjectIdentifier(f"{_FULCIO}.{suffix}")
                builder = builder.add_extension(
                    x509.UnrecognizedExtension(oid, _pki.der_utf8(value)), critical=False
                )
        elif claims.get("ci_config_ref_uri"):
            for suffix, value in _gitlab_v2_values(claims).items():
                oid = x509.ObjectIdentifier(f"{_FULCIO}.{suffix}")
                builder = builder.add_extension(
                    x509.UnrecognizedExtension(oid, _pki.der_utf8(value)), critical=False
                )
        leaf = self._ctlog.embed(builder, self._key)
        _log.info("fulcio: issued a certificate for %s (issuer %s)", san.value, issuer_url)
        return leaf

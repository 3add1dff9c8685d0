"""Who must have signed a keyless bundle: identity (exact or regexp), issuer, and GitHub workflow claims.

Builds a sigstore ``VerificationPolicy`` (composed with sigstore's ``AllOf``) that the sigstore Verifier
checks against the Fulcio certificate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_signing.errors import InputError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate, OtherName
    from sigstore.verify.policy import VerificationPolicy


@dataclass(frozen=True)
class IdentityPolicy:
    """The expected signer of a keyless bundle.

    Exactly one of ``identity`` / ``identity_regexp`` is required, and ``issuer`` always: an identity
    is only meaningful together with the OIDC issuer that vouched for it.
    """

    issuer: str
    identity: str | None = None
    identity_regexp: str | None = None
    #: GitHub Actions claims, checked when given (``owner/repo``, ``refs/heads/main``, workflow name).
    repository: str | None = None
    ref: str | None = None
    workflow: str | None = None
    workflow_trigger: str | None = None
    workflow_sha: str | None = None

    def __post_init__(self) -> None:
        if not self.issuer:
            raise InputError("`issuer` is required: the OIDC issuer URL the signer used")
        if (self.identity is None) == (self.identity_regexp is None):
            raise InputError("pass exactly one of `identity` and `identity_regexp`")
        if self.identity is not None and not self.identity.strip():
            raise InputError("`identity` is empty: give the signer's email address or workflow URI")
        if self.identity_regexp is not None:
            try:
                re.compile(self.identity_regexp)
            except re.error as exc:
                raise InputError(f"`identity_regexp` {self.identity_regexp!r} is not a valid regexp: {exc}") from None

    def describe(self) -> str:
        """A short human description for reports."""
        who = self.identity if self.identity is not None else f"/{self.identity_regexp}/"
        return f"{who} via {self.issuer}"

    def to_sigstore(self) -> VerificationPolicy:
        """The equivalent sigstore verification policy."""
        from sigstore.verify import policy

        children: list[VerificationPolicy] = []
        if self.identity is not None:
            children.append(policy.Identity(identity=self.identity, issuer=self.issuer))
        else:
            assert self.identity_regexp is not None
            children.append(policy.OIDCIssuer(self.issuer))
            children.append(_IdentityRegexp(self.identity_regexp))
        for value, kind in (
            (self.repository, policy.GitHubWorkflowRepository),
            (self.ref, policy.GitHubWorkflowRef),
            (self.workflow, policy.GitHubWorkflowName),
            (self.workflow_trigger, policy.GitHubWorkflowTrigger),
            (self.workflow_sha, policy.GitHubWorkflowSHA),
        ):
            if value is not None:
                children.append(kind(value))
        return policy.AllOf(children)


class _IdentityRegexp:
    """A sigstore VerificationPolicy: some SAN (email, URI or Sigstore other-name) fully matches a regexp."""

    def __init__(self, pattern: str) -> None:
        self._pattern = re.compile(pattern)

    def verify(self, cert: Certificate) -> None:
        from sigstore.errors import VerificationError

        names = certificate_identities(cert)
        if not any(self._pattern.fullmatch(n) for n in names):
            raise VerificationError(
                f"no certificate identity matches /{self._pattern.pattern}/; actual identities: {sorted(names)}"
            )


def certificate_identities(cert: Certificate) -> list[str]:
    """The identities a Fulcio certificate's SAN names: emails, URIs, Sigstore other-names (none without a SAN)."""
    from cryptography.x509 import (
        ExtensionNotFound,
        OtherName,
        RFC822Name,
        SubjectAlternativeName,
        UniformResourceIdentifier,
    )

    try:
        san = cert.extensions.get_extension_for_class(SubjectAlternativeName).value
    except ExtensionNotFound:
        return []
    names: list[str] = [*san.get_values_for_type(RFC822Name), *san.get_values_for_type(UniformResourceIdentifier)]
    return names + [n for o in san.get_values_for_type(OtherName) if (n := _sigstore_other_name(o)) is not None]


#: Fulcio's SAN other-name type for identities that are neither emails nor URIs (e.g. a username).
_SIGSTORE_OTHER_NAME = "1.3.6.1.4.1.57264.1.7"


def _sigstore_other_name(other: OtherName) -> str | None:
    """The identity in a Sigstore other-name SAN (a DER UTF8String); ``None`` for any other type.

    Other types are not identities Fulcio vouches for, so a regexp must never match them (as sigstore's
    own ``Identity`` policy ignores them too).
    """
    from asn1crypto.core import UTF8String

    if other.type_id.dotted_string != _SIGSTORE_OTHER_NAME:
        return None
    try:
        return str(UTF8String.load(other.value).native)
    except ValueError:
        return None

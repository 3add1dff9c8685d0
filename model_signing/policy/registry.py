"""The trusted-publisher registry: who may sign models, with what material, since and until when.

```python
from model_signing.policy import Registry

registry = Registry.load("publishers.json")
checked = registry.verify("models/asr", "models/asr.sig")   # raises on failure
print(checked.publisher.id, checked.result.root_digest)
```

The verifier is chosen from what the signature claims (its method and signer, read with
:mod:`model_signing.inspecting`): only the publishers whose material names that signer are tried, each
with the verifier its material builds.  The claim only picks candidates; the signature itself is then
verified with the publisher's own material, so a false claim fails verification (exit 2).

Schema (``schema_version`` 1; JSON, or TOML with the same structure, read-only):

```json
{
  "schema_version": 1,
  "publishers": [
    {
      "id": "speech-team",                   // unique; [A-Za-z0-9._-]
      "name": "Speech team",                 // display name
      "trusted_since": "2026-01-01T00:00:00Z",   // optional
      "revoked_at": null,                    // optional
      "sigstore": [{"identity": "ci@example.com", "issuer": "https://issuer.example",
                    "identity_regexp": null, "repository": null, "ref": null, "workflow": null,
                    "trust_config": "tc.json"}],       // relative to the registry file; optional
      "keys": [{"key_id": "sha256:<hex>", "public_key": "-----BEGIN PUBLIC KEY-----\\n..."}],
      "certificates": [{"trust_anchors": ["-----BEGIN CERTIFICATE-----\\n..."], "subject": "CN=signer"}],
      "secrets": [{"key_id": "hmac-sha256:<hex>", "secret_env": "SPEECH_HMAC_SECRET"}]
    }
  ]
}
```

Every publisher needs at least one entry of material.  The registry never holds a secret: a ``secrets``
entry names the key id and the environment variable the verifier reads the secret from.

Times: ``revoked_at`` refuses every signature made at or after it when the bundle carries a trusted time
(keyless: the transparency log's integrated time, else the latest RFC 3161 timestamp), and every signature
once it has passed when it does not (key, certificate, secret bundles carry no trusted time).  ``trusted_since``
likewise refuses signatures made before it (or, without a trusted time, everything before that time).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model_signing._internal.types import PathLike
from model_signing.errors import (
    InputError,
    KeyMaterialError,
    ModelMismatchError,
    ModelSigningError,
    PolicyFileError,
    PublisherError,
    VerificationError,
)
from model_signing.policy.fields import Fields, dumps, format_time, read_document

if TYPE_CHECKING:
    from model_signing.inspecting import Inspection
    from model_signing.manifest import Resource
    from model_signing.methods.base import Verifier
    from model_signing.results import SignerIdentity, VerifyResult
    from model_signing.verifying import PreparedVerification

__all__ = [
    "CertificateMaterial",
    "KeyMaterial",
    "PreparedCheck",
    "Publisher",
    "PublisherCheck",
    "Registry",
    "SecretMaterial",
    "SigstoreMaterial",
    "edit_registry",
]

SCHEMA_VERSION = 1
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class SigstoreMaterial:
    """A keyless signer: identity (exact or regexp) + OIDC issuer, optionally GitHub workflow claims."""

    issuer: str
    identity: str | None = None
    identity_regexp: str | None = None
    repository: str | None = None
    ref: str | None = None
    workflow: str | None = None
    #: The Sigstore instance's ClientTrustConfig (absolute once loaded); else the verify call's.
    trust_config: str | None = None

    method = "sigstore"

    def claims(self, signer: SignerIdentity) -> bool:
        """Whether the (unverified) signer is this identity."""
        if signer.issuer != self.issuer:
            return False
        names = signer.identities or ((signer.identity,) if signer.identity else ())
        if self.identity is not None:
            return self.identity in names
        assert self.identity_regexp is not None
        return any(re.fullmatch(self.identity_regexp, n) for n in names)

    def to_dict(self, base: str) -> dict[str, Any]:
        """The registry entry (``trust_config`` relative to the registry's directory ``base``)."""
        out: dict[str, Any] = {"issuer": self.issuer}
        for key in ("identity", "identity_regexp", "repository", "ref", "workflow"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.trust_config is not None:
            rel = os.path.relpath(self.trust_config, base)
            out["trust_config"] = self.trust_config if rel.startswith("..") else rel.replace(os.sep, "/")
        return out

    def describe(self) -> str:
        """``identity via issuer``."""
        who = self.identity if self.identity is not None else f"/{self.identity_regexp}/"
        return f"sigstore {who} via {self.issuer}"


@dataclass(frozen=True)
class KeyMaterial:
    """A public key (PEM) and its key id (``sha256:`` + the bundle's key hint)."""

    key_id: str
    public_key: str

    method = "key"

    def claims(self, signer: SignerIdentity) -> bool:
        """Whether the bundle's key hint names this key."""
        return signer.key_id == self.key_id

    def to_dict(self, base: str) -> dict[str, Any]:
        """The registry entry."""
        return {"key_id": self.key_id, "public_key": self.public_key}

    def describe(self) -> str:
        """``key sha256:...``."""
        return f"key {self.key_id}"


@dataclass(frozen=True)
class CertificateMaterial:
    """Trust anchors (PEM certificates) a ``certificate`` bundle's chain must lead to, and optionally the
    signing certificate's subject (RFC 4514)."""

    trust_anchors: tuple[str, ...]
    subject: str | None = None

    method = "certificate"

    def claims(self, signer: SignerIdentity) -> bool:
        """Whether the bundle's leaf could be this publisher's (the chain is checked by verification)."""
        return self.subject is None or signer.certificate_subject == self.subject

    def to_dict(self, base: str) -> dict[str, Any]:
        """The registry entry."""
        out: dict[str, Any] = {"trust_anchors": list(self.trust_anchors)}
        if self.subject is not None:
            out["subject"] = self.subject
        return out

    def describe(self) -> str:
        """``certificate SUBJECT`` (or ``under N trust anchors``)."""
        if self.subject:
            return f"certificate {self.subject}"
        return f"certificate under {len(self.trust_anchors)} anchor(s)"


@dataclass(frozen=True)
class SecretMaterial:
    """A shared HMAC secret, by key id; the secret itself is read from ``secret_env`` when verifying."""

    key_id: str
    secret_env: str | None = None

    method = "secret"

    def claims(self, signer: SignerIdentity) -> bool:
        """Whether the bundle's key id is this secret's."""
        return signer.key_id == self.key_id

    def to_dict(self, base: str) -> dict[str, Any]:
        """The registry entry."""
        out: dict[str, Any] = {"key_id": self.key_id}
        if self.secret_env is not None:
            out["secret_env"] = self.secret_env
        return out

    def describe(self) -> str:
        """``secret hmac-sha256:...``."""
        return f"secret {self.key_id}"


Material = SigstoreMaterial | KeyMaterial | CertificateMaterial | SecretMaterial
_SECTIONS: dict[str, str] = {"sigstore": "sigstore", "keys": "key", "certificates": "certificate", "secrets": "secret"}


@dataclass(frozen=True)
class Publisher:
    """One trusted publisher: an id, a display name, its verification material and its trust period."""

    id: str
    name: str
    sigstore: tuple[SigstoreMaterial, ...] = ()
    keys: tuple[KeyMaterial, ...] = ()
    certificates: tuple[CertificateMaterial, ...] = ()
    secrets: tuple[SecretMaterial, ...] = ()
    trusted_since: dt.datetime | None = None
    revoked_at: dt.datetime | None = None

    @property
    def materials(self) -> tuple[Material, ...]:
        """Every entry of material, in file order per kind."""
        return (*self.sigstore, *self.keys, *self.certificates, *self.secrets)

    def revoked(self, now: dt.datetime | None = None) -> bool:
        """Whether ``revoked_at`` has passed."""
        return self.revoked_at is not None and (now or dt.datetime.now(dt.UTC)) >= self.revoked_at

    def to_dict(self, base: str) -> dict[str, Any]:
        """The registry entry (empty sections and unset times left out)."""
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.trusted_since is not None:
            out["trusted_since"] = format_time(self.trusted_since)
        if self.revoked_at is not None:
            out["revoked_at"] = format_time(self.revoked_at)
        for section in _SECTIONS:
            entries = getattr(self, section)
            if entries:
                out[section] = [m.to_dict(base) for m in entries]
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], registry_path: str) -> Publisher:
        """A publisher from its registry entry, validated as the registry at ``registry_path`` would be."""
        return _publisher(Fields(registry_path), os.path.dirname(os.path.abspath(registry_path)), doc, "publisher")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for listings and the audit log): no key material, only what names it."""
        return {
            "id": self.id,
            "name": self.name,
            "trusted_since": format_time(self.trusted_since),
            "revoked_at": format_time(self.revoked_at),
            "revoked": self.revoked(),
            "material": [m.describe() for m in self.materials],
        }


@dataclass(frozen=True)
class PublisherCheck:
    """The outcome of checking one model against the registry (returned, never raised, by :meth:`Registry.check`).

    ``error`` is ``None`` when the model verified and its signer is a trusted publisher; otherwise the
    error that says why (a :class:`~model_signing.errors.PublisherError` or
    :class:`~model_signing.errors.VerificationError`, exit 2; a
    :class:`~model_signing.errors.ModelMismatchError`, exit 3; an
    :class:`~model_signing.errors.InputError`, exit 1).  ``result`` is the verification's result whenever
    the signature itself verified (a mismatch included).
    """

    model_path: str
    signature_path: str
    method: str | None
    #: The signer the bundle claims (unverified unless ``result`` is set).
    signer: SignerIdentity | None
    publisher: Publisher | None
    result: VerifyResult | None
    #: The signature's trusted time (keyless bundles), when it verified.
    signed_at: dt.datetime | None = None
    error: ModelSigningError | None = None
    #: Informational remarks (a signature made before its publisher's revocation, ...).
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Verified, and signed by a trusted publisher."""
        return self.error is None

    @property
    def exit_code(self) -> int:
        """0, or the error's exit code."""
        return 0 if self.error is None else self.error.exit_code


@dataclass(frozen=True)
class Registry:
    """A loaded registry: its publishers, in file order, and the file it came from."""

    publishers: tuple[Publisher, ...] = ()
    path: str = "registry"
    #: The directory relative paths (``trust_config``) are resolved against.
    base: str = field(default=".", compare=False)

    @classmethod
    def load(cls, path: PathLike) -> Registry:
        """Read and strictly validate the registry at ``path`` (:class:`PolicyFileError` naming the field)."""
        where = os.fspath(path)
        return cls.from_document(read_document(where, "registry"), where)

    @classmethod
    def from_document(cls, doc: object, path: str) -> Registry:
        """Validate a parsed registry document (``path`` names it in messages and anchors relative paths)."""
        f = Fields(path)
        base = os.path.dirname(os.path.abspath(path))
        top = f.table(doc, "", allowed={"schema_version", "publishers"}, required={"schema_version"})
        f.version(top, SCHEMA_VERSION)
        publishers: list[Publisher] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(f.list(top.get("publishers", []), "publishers")):
            pub = _publisher(f, base, raw, f"publishers[{i}]")
            if pub.id in seen:
                f.fail(f"publishers[{i}].id", f"duplicate publisher id {pub.id!r} (also publishers[{seen[pub.id]}])",
                       "give each publisher its own id")
            seen[pub.id] = i
            publishers.append(pub)
        return cls(tuple(publishers), path, base)

    def to_document(self) -> dict[str, Any]:
        """The registry as a JSON document (relative paths kept relative to the registry's directory)."""
        return {"schema_version": SCHEMA_VERSION, "publishers": [p.to_dict(self.base) for p in self.publishers]}

    def get(self, publisher_id: str) -> Publisher:
        """The publisher with that id; :class:`InputError` naming the registry if there is none."""
        for p in self.publishers:
            if p.id == publisher_id:
                return p
        known = ", ".join(p.id for p in self.publishers) or "none"
        raise InputError(f"registry {self.path} has no publisher {publisher_id!r} (its publishers: {known})")

    def ids(self) -> tuple[str, ...]:
        """Every publisher id, in file order."""
        return tuple(p.id for p in self.publishers)

    def with_publisher(self, publisher: Publisher, *, replace: bool = False) -> Registry:
        """A copy with ``publisher`` added (or replacing the one with its id when ``replace``)."""
        exists = publisher.id in self.ids()
        if exists and not replace:
            raise InputError(f"registry {self.path} already has a publisher {publisher.id!r}; pass `replace=True` "
                             "to replace it, or choose another id")
        pubs = [publisher if p.id == publisher.id else p for p in self.publishers]
        return dataclasses.replace(self, publishers=tuple(pubs if exists else [*pubs, publisher]))

    def without_publisher(self, publisher_id: str) -> Registry:
        """A copy without the publisher ``publisher_id`` (:class:`InputError` if it is not there)."""
        self.get(publisher_id)
        return dataclasses.replace(self, publishers=tuple(p for p in self.publishers if p.id != publisher_id))

    def verify(self, model_path: PathLike, signature_path: PathLike | None = None, **options: Any) -> PublisherCheck:
        """:meth:`check`, raising its error when the model does not verify or its signer is not trusted."""
        checked = self.check(model_path, signature_path, **options)
        if checked.error is not None:
            raise checked.error
        return checked

    def check(
        self,
        model_path: PathLike,
        signature_path: PathLike | None = None,
        *,
        publisher: str | None = None,
        allowed: Sequence[str] | None = None,
        trust_config: PathLike | None = None,
        offline: bool = False,
        secrets: Mapping[str, bytes] | None = None,
        max_workers: int | None = None,
        now: dt.datetime | None = None,
    ) -> PublisherCheck:
        """Verify the model against its signature with the material of the publisher its signer claims to be.

        ``publisher`` restricts the candidates to that publisher; ``allowed`` to those ids (a lock file's
        policy).  ``trust_config`` is the Sigstore instance for keyless publishers without their own;
        ``secrets`` maps a secret key id to the secret (else each entry's ``secret_env`` is read).

        This is :meth:`prepare_check` followed by the model's own hashing and :meth:`PreparedCheck.finish`,
        so a keyless signature's check completes before the model is hashed rather than alongside (a few
        tenths of a second): with several candidates, a failed check must lead to the next candidate
        before anything is read, and ``verify-all`` shares this path.
        """
        step = self.prepare_check(model_path, signature_path, publisher=publisher, allowed=allowed,
                                  trust_config=trust_config, offline=offline, secrets=secrets,
                                  max_workers=max_workers, now=now)
        if isinstance(step, PublisherCheck):
            return step
        try:
            hashed: tuple[Resource, ...] | ModelSigningError = step.verification.hash()
        except ModelSigningError as exc:
            hashed = exc
        return step.finish(hashed)

    def prepare_check(
        self,
        model_path: PathLike,
        signature_path: PathLike | None = None,
        *,
        publisher: str | None = None,
        allowed: Sequence[str] | None = None,
        trust_config: PathLike | None = None,
        offline: bool = False,
        secrets: Mapping[str, bytes] | None = None,
        max_workers: int | None = None,
        now: dt.datetime | None = None,
    ) -> PublisherCheck | PreparedCheck:
        """:meth:`check` up to the hashing: the finished check when it is decided without reading the model
        (no candidate publisher, a signature no candidate's material verifies, a malformed statement, an
        unreadable tree), else a :class:`PreparedCheck` whose signature has verified with a candidate's
        material and whose files await hashing (``verify-all`` hashes a whole pack's in one pool).

        The candidates are tried in order; each one's signature check completes before the next is tried
        (see :func:`model_signing.verifying.prepare_verification`), so no file is hashed more than once.
        """
        from model_signing import inspecting
        from model_signing.signing import default_signature_path
        from model_signing.verifying import prepare_verification

        model = os.fspath(model_path)
        sig = os.fspath(signature_path) if signature_path is not None else default_signature_path(model)
        base = PublisherCheck(model, sig, None, None, None, None)
        try:
            if publisher is not None:
                self.get(publisher)
            for pid in allowed or ():
                self.get(pid)
            claim = inspecting.inspect(sig)
        except ModelSigningError as exc:
            return dataclasses.replace(base, error=exc)
        base = dataclasses.replace(base, method=claim.method, signer=claim.signer)
        named = [p for p in self.publishers if publisher is None or p.id == publisher]
        claimed = [(p, m) for p in named for m in p.materials if m.method == claim.method and m.claims(claim.signer)]
        candidates = [(p, m) for p, m in claimed if allowed is None or p.id in allowed]
        if not candidates:
            return dataclasses.replace(base, error=self._no_candidate(claim, claimed, publisher))
        first_error: ModelSigningError | None = None
        for pub, material in candidates:
            try:
                verifier = self._verifier(pub, material, trust_config, offline, secrets)
                prepared = prepare_verification(model, verifier, signature_path=sig, max_workers=max_workers,
                                                progress=False)
            except VerificationError as exc:
                # Another candidate may hold the right material (two keys of one publisher): try it.
                if first_error is None:
                    first_error = VerificationError(f"publisher {pub.id!r} ({material.describe()}): {exc}")
                continue
            except ModelSigningError as exc:
                return dataclasses.replace(base, publisher=pub, error=exc)
            if isinstance(material, CertificateMaterial) and material.subject is not None and (
                prepared.signer_identity.certificate_subject != material.subject
            ):
                continue
            # The time of the bundle that verified, not of the claim read before it (the file may have
            # been replaced in between: another bundle's earlier log time must not judge this one).
            verified = prepared.bundle
            signed_at = _trusted_time(inspecting.inspect_bundle(verified)) if verified.method == "sigstore" else None
            return PreparedCheck(base, pub, prepared, signed_at, now)
        return dataclasses.replace(base, error=first_error or PublisherError(
            f"{sig}: the signature verifies with none of the candidate publishers' material"))

    def _no_candidate(
        self, claim: Inspection, claimed: list[tuple[Publisher, Material]], publisher: str | None
    ) -> PublisherError:
        who = claim.signer.description
        if claimed:
            ids = ", ".join(sorted({p.id for p, _ in claimed}))
            return PublisherError(f"{claim.signature_path}: signed by {who} (publisher {ids}), which is not among the "
                                  "allowed publishers")
        scope = f"publisher {publisher!r}" if publisher else "any publisher"
        scope += f" in registry {self.path}"
        return PublisherError(f"{claim.signature_path}: the {claim.method} signer {who} is not {scope}; add it to "
                              "the registry if it is trusted")

    def _verifier(
        self,
        pub: Publisher,
        material: Material,
        trust_config: PathLike | None,
        offline: bool,
        secrets: Mapping[str, bytes] | None,
    ) -> Verifier:
        if isinstance(material, KeyMaterial):
            from model_signing.methods.key import KeyVerifier

            return KeyVerifier(_public_key(material.public_key, f"publisher {pub.id!r}"))
        if isinstance(material, CertificateMaterial):
            from model_signing.methods.certificate import CertificateVerifier

            return CertificateVerifier(_certificates(material.trust_anchors, f"publisher {pub.id!r}"))
        if isinstance(material, SecretMaterial):
            from model_signing.methods.secret import SecretVerifier

            return SecretVerifier(_secret(pub, material, secrets))
        from model_signing.methods.sigstore import SigstoreVerifier
        from model_signing.methods.sigstore.identity import IdentityPolicy

        policy = IdentityPolicy(
            issuer=material.issuer, identity=material.identity, identity_regexp=material.identity_regexp,
            repository=material.repository, ref=material.ref, workflow=material.workflow,
        )
        return SigstoreVerifier(policy, trust_config=material.trust_config or trust_config, offline=offline)


@dataclass(frozen=True)
class PreparedCheck:
    """A :meth:`Registry.prepare_check` whose signature verified with ``publisher``'s material; the model's
    files (``verification.files``) await hashing, then :meth:`finish` gives the :class:`PublisherCheck`."""

    base: PublisherCheck
    publisher: Publisher
    verification: PreparedVerification
    #: The signature's trusted time (keyless bundles).
    signed_at: dt.datetime | None
    #: The time the trust period is judged at (``None``: when :meth:`finish` runs).
    now: dt.datetime | None = None

    def finish(self, hashed: Sequence[Resource] | ModelSigningError) -> PublisherCheck:
        """The check, from the resources hashed from ``verification.files`` or the error that hashing met."""
        base, pub = self.base, self.publisher
        if isinstance(hashed, ModelSigningError):
            return dataclasses.replace(base, publisher=pub, error=hashed)
        error: ModelSigningError | None = None
        try:
            result = self.verification.finish(hashed)
        except ModelMismatchError as exc:  # the signature verified, the content did not
            assert exc.result is not None
            result, error = exc.result, exc
        except ModelSigningError as exc:
            return dataclasses.replace(base, publisher=pub, error=exc)
        refusal, notes = _trust_period(pub, self.signed_at, self.now or dt.datetime.now(dt.UTC))
        return dataclasses.replace(
            base, signer=result.signer_identity or base.signer, publisher=pub, result=result,
            signed_at=self.signed_at, error=refusal or error, notes=notes,
        )


def _trusted_time(claim: Inspection) -> dt.datetime | None:
    """When a keyless bundle that verified was signed, as the time a revocation is judged by.

    The transparency log's integrated time is covered by the entry's SET, which the verification
    checked, so it is used whenever the bundle has one.  RFC 3161 timestamps are not all necessarily
    checked when a SET is present (sigstore needs one verified time source), so they count only
    without an integrated time (Rekor v2 bundles), and then the latest of them: an earlier, forged
    time must never move a signature to before a revocation.
    """
    logged = [dt.datetime.fromisoformat(e["integrated_time"]) for e in claim.tlog_entries if e.get("integrated_time")]
    if logged:
        return max(logged)
    return max(claim.timestamps) if claim.timestamps else None


def _trust_period(
    pub: Publisher, signed_at: dt.datetime | None, now: dt.datetime
) -> tuple[PublisherError | None, tuple[str, ...]]:
    """Whether the publisher was trusted when it signed (or, without a trusted time, is trusted now)."""
    when = format_time(signed_at)
    notes: tuple[str, ...] = ()
    if pub.revoked_at is not None:
        revoked = format_time(pub.revoked_at)
        if signed_at is not None and signed_at >= pub.revoked_at:
            return PublisherError(f"signed at {when}, after publisher {pub.id!r} was revoked ({revoked})"), ()
        if signed_at is None and now >= pub.revoked_at:
            return PublisherError(f"publisher {pub.id!r} was revoked at {revoked}, and the signature carries no "
                                  "trusted time to show it was made before"), ()
        if signed_at is not None:
            # Not returned yet: a signature made before the revocation must still be inside trusted_since.
            notes = (f"signed at {when}, before publisher {pub.id!r} was revoked ({revoked})",)
    if pub.trusted_since is not None:
        since = format_time(pub.trusted_since)
        if signed_at is not None and signed_at < pub.trusted_since:
            return PublisherError(f"signed at {when}, before publisher {pub.id!r} was trusted ({since})"), ()
        if signed_at is None and now < pub.trusted_since:
            return PublisherError(f"publisher {pub.id!r} is only trusted from {since}"), ()
    return None, notes


def _public_key(pem: str, where: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError, TypeError):
        raise KeyMaterialError(f"{where}: the public key is not a PEM public key") from None


def _certificates(pems: Sequence[str], where: str) -> list[Any]:
    from cryptography import x509

    try:
        return [c for pem in pems for c in x509.load_pem_x509_certificates(pem.encode("ascii"))]
    except (ValueError, UnicodeEncodeError):
        raise KeyMaterialError(f"{where}: a trust anchor is not a PEM certificate") from None


def _secret(pub: Publisher, material: SecretMaterial, secrets: Mapping[str, bytes] | None) -> bytes:
    from model_signing.methods.secret import key_id

    secret = (secrets or {}).get(material.key_id)
    if secret is None and material.secret_env is not None:
        secret = os.environb.get(os.fsencode(material.secret_env))
        if secret is None:
            raise KeyMaterialError(f"publisher {pub.id!r}: the environment variable {material.secret_env} that holds "
                                   "its shared secret is not set")
    if secret is None:
        raise KeyMaterialError(f"publisher {pub.id!r}: no shared secret for {material.key_id}; name the variable "
                               "that holds it in the entry's secret_env")
    if key_id(secret) != material.key_id:
        raise KeyMaterialError(f"publisher {pub.id!r}: the shared secret given has key id {key_id(secret)}, not the "
                               f"registered {material.key_id}")
    return secret


# -- reading ------------------------------------------------------------------------------------------

_PUBLISHER_KEYS = {"id", "name", "trusted_since", "revoked_at", *_SECTIONS}


def _publisher(f: Fields, base: str, raw: object, where: str) -> Publisher:
    t = f.table(raw, where, allowed=_PUBLISHER_KEYS, required={"id", "name"})
    pid = f.string(t, "id", where, required=True)
    assert pid is not None
    if not _ID.fullmatch(pid):
        f.fail(f"{where}.id", f"{pid!r} is not a valid id", "use letters, digits, '.', '_' and '-' (at most 128)")
    name = f.string(t, "name", where, required=True)
    assert name is not None
    readers: dict[str, Callable[[Fields, str, object, str], Material]] = {
        "sigstore": _sigstore, "keys": _key, "certificates": _certificate, "secrets": _secret_entry,
    }
    sections: dict[str, tuple[Material, ...]] = {}
    for section, read in readers.items():
        items = f.list(t.get(section, []), f"{where}.{section}")
        sections[section] = tuple(read(f, base, item, f"{where}.{section}[{i}]") for i, item in enumerate(items))
    if not any(sections.values()):
        f.fail(where, f"publisher {pid!r} has no verification material",
               "add at least one of sigstore, keys, certificates, secrets")
    since, revoked = f.time(t, "trusted_since", where), f.time(t, "revoked_at", where)
    if since is not None and revoked is not None and revoked <= since:
        f.fail(f"{where}.revoked_at", "is not after trusted_since", "fix one of the two times")
    return Publisher(
        pid, name,
        sigstore=sections["sigstore"],  # type: ignore[arg-type]
        keys=sections["keys"],  # type: ignore[arg-type]
        certificates=sections["certificates"],  # type: ignore[arg-type]
        secrets=sections["secrets"],  # type: ignore[arg-type]
        trusted_since=since, revoked_at=revoked,
    )


def _sigstore(f: Fields, base: str, raw: object, where: str) -> Material:
    keys = {"identity", "identity_regexp", "issuer", "repository", "ref", "workflow", "trust_config"}
    t = f.table(raw, where, allowed=keys, required={"issuer"})
    identity, regexp = f.string(t, "identity", where), f.string(t, "identity_regexp", where)
    if (identity is None) == (regexp is None):
        f.fail(where, "needs exactly one of identity and identity_regexp", "give the signer's identity or a regexp")
    if regexp is not None:
        try:
            re.compile(regexp)
        except re.error as exc:
            f.fail(f"{where}.identity_regexp", f"is not a valid regexp ({exc})", "fix the pattern")
    issuer = f.string(t, "issuer", where, required=True)
    assert issuer is not None
    return SigstoreMaterial(
        issuer=issuer, identity=identity, identity_regexp=regexp, repository=f.string(t, "repository", where),
        ref=f.string(t, "ref", where), workflow=f.string(t, "workflow", where),
        trust_config=f.path(base, t, "trust_config", where, anywhere=True),
    )


def _key(f: Fields, base: str, raw: object, where: str) -> Material:
    from model_signing.keymaterial.keys import key_signer

    t = f.table(raw, where, allowed={"key_id", "public_key"}, required={"key_id", "public_key"})
    kid, pem = f.string(t, "key_id", where, required=True), f.string(t, "public_key", where, required=True)
    assert kid is not None and pem is not None
    try:
        key = _public_key(pem, where)
        actual = key_signer(key).key_id
    except ModelSigningError:
        f.fail(f"{where}.public_key", "is not a PEM public key (EC P-256/384/521 or Ed25519)",
               "paste the public key's PEM text")
    if actual != kid:
        f.fail(f"{where}.key_id", f"{kid!r} is not the public key's id ({actual})", f"write {actual}")
    return KeyMaterial(kid, pem)


def _certificate(f: Fields, base: str, raw: object, where: str) -> Material:
    t = f.table(raw, where, allowed={"trust_anchors", "subject"}, required={"trust_anchors"})
    anchors = f.strings(t, "trust_anchors", where)
    if not anchors:
        f.fail(f"{where}.trust_anchors", "is empty", "add the PEM text of the root (or intermediate) CA certificate")
    for i, pem in enumerate(anchors):
        try:
            if not _certificates([pem], where):
                raise KeyMaterialError("no certificate")
        except KeyMaterialError:
            f.fail(f"{where}.trust_anchors[{i}]", "is not a PEM certificate", "paste the certificate's PEM text")
    return CertificateMaterial(anchors, f.string(t, "subject", where))


def _secret_entry(f: Fields, base: str, raw: object, where: str) -> Material:
    from model_signing.methods.secret import HINT_PREFIX

    t = f.table(raw, where, allowed={"key_id", "secret_env"}, required={"key_id"})
    kid = f.string(t, "key_id", where, required=True)
    assert kid is not None
    if not re.fullmatch(re.escape(HINT_PREFIX) + "[0-9a-f]{64}", kid):
        f.fail(f"{where}.key_id", f"{kid!r} is not a secret key id", f"write it as {HINT_PREFIX}<64 hex digits>")
    env = f.string(t, "secret_env", where)
    if env is not None and not _ENV.fullmatch(env):
        f.fail(f"{where}.secret_env", f"{env!r} is not an environment variable name", "use letters, digits and _")
    return SecretMaterial(kid, env)


# -- editing ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path + '.lock'`` (concurrent editors wait, so no edit is lost)."""
    import fcntl

    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def edit_registry(path: PathLike, change: Callable[[Registry], Registry], *, create: bool = True) -> Registry:
    """Apply ``change`` to the registry at ``path`` and write it back atomically; the new registry.

    The edit holds a lock file beside the registry (``<path>.lock``), reads the current file, writes the
    result to a temporary file and renames it into place: concurrent edits are serialised and none is
    lost.  The result is validated as it will be read before anything is written.  TOML registries are
    read-only (edit them by hand).  ``create`` allows a registry that does not exist yet.
    """
    from model_signing._internal.atomic import write_atomic

    where = os.fspath(path)
    if where.endswith(".toml"):
        raise PolicyFileError(f"registry {where} is TOML, which is read-only here; edit it by hand or keep the "
                              "registry as JSON")
    with _locked(where):
        if os.path.exists(where):
            current = Registry.load(where)
        elif create:
            current = Registry((), where, os.path.dirname(os.path.abspath(where)))
        else:
            raise PolicyFileError(f"registry {where} does not exist")
        updated = change(current)
        text = dumps(updated.to_document())
        # What is written must read back: validate the exact document first, then write.
        from model_signing._internal import strict_json

        Registry.from_document(strict_json.loads(text.encode("utf-8")), where)
        try:
            write_atomic(where, text, overwrite=True)
        except OSError as exc:
            raise InputError(f"cannot write registry {where}: {exc.strerror or exc}") from None
        return updated

"""Verifying a model against its signature (public API), strictly and in a fixed order.

```python
import model_signing as ms

result = ms.verify("path/to/model", ms.KeyVerifier("signing-key.pub"), signature_path="model.sig")
```

Order (every method shares it; a :class:`Verifier` only does step 2):

1. parse and structurally validate the bundle (media type, OMS bundle/envelope shape);
2. check the DSSE signature with the method's trust material -> the verified payload bytes
   (a bundle made with another method is refused);
3. validate the statement (``_type``, predicate type, one subject consistent with the resources,
   resources and serialization well formed, every name safe) -- before any model file is opened;
4. re-enumerate the model with the SIGNED serialization settings (method, hash, shard size,
   allow_symlinks, ignore paths) plus the caller's extra ignore paths, and re-hash;
5. compare, reporting every difference.

A verifier with a ``verify_in_background(bundle)`` method (the ``sigstore`` one, whose check takes a
few tenths of a second) runs step 2 while steps 3-4 proceed on the bundle's statement.  Nothing is
reported before step 2's verdict (a bad signature wins over any other problem, and stops hashing at
once), the statement must be the verified payload byte for byte, and a statement that allows
symlinks waits for the verdict before any file is opened.

Errors: :class:`~model_signing.errors.SignatureFormatError` (exit 1) for unreadable/malformed
signatures or statements, :class:`~model_signing.errors.VerificationError` (exit 2) when the signature
does not verify, :class:`~model_signing.errors.ModelMismatchError` (exit 3, with every
:class:`~model_signing.errors.Difference`) when it does but the model differs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from model_signing import _bundle, _compare, _keymaterial, _paths, _statement, _walk
from model_signing._bundle import SignatureBundle
from model_signing.errors import (
    EmptyModelError,
    InputError,
    KeyMaterialError,
    ModelMismatchError,
    VerificationError,
)
from model_signing.hashing import HashingConfig, hash_files
from model_signing.manifest import Manifest, Resource
from model_signing.results import SignerIdentity, VerifyResult

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

PathLike = str | os.PathLike[str]

__all__ = [
    "CertificateVerifier",
    "KeyVerifier",
    "SignatureBundle",
    "SignerIdentity",
    "VerifiedSignature",
    "Verifier",
    "VerifyResult",
    "verify",
]


@dataclass(frozen=True)
class VerifiedSignature:
    """The outcome of a successful signature check: the payload it covers and who signed it."""

    payload: bytes
    #: A description of the signer for the report (key fingerprint, certificate subject, identity).
    signer: str
    #: The signature is over model-signing v0.2's non-standard encoding (see ``_bundle.legacy_pae``).
    legacy_encoding: bool = False
    #: Who signed, structured; a verifier that leaves it out gets ``SignerIdentity(method, identity=signer)``.
    identity: SignerIdentity | None = None


@runtime_checkable
class Verifier(Protocol):
    """Checks a bundle's signature with one method's trust material."""

    #: ``"key"``, ``"certificate"`` or ``"sigstore"``: the only bundles this verifier accepts.
    method: str

    def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
        """Verify the DSSE signature and return the verified payload; raise ``VerificationError``."""
        ...


class KeyVerifier:
    """The ``key`` method: the EC public key (PEM) paired with the signing key."""

    method = "key"

    def __init__(self, public_key: PathLike | ec.EllipticCurvePublicKey):
        """Load ``public_key`` (a PEM file path or a key object)."""
        if isinstance(public_key, str | os.PathLike):
            self._key = _keymaterial.load_public_key(public_key)
        else:
            _keymaterial.check_ec(public_key, "the public key")
            self._key = public_key
        self._hint = _bundle.public_key_hint(self._key)

    @property
    def identity(self) -> SignerIdentity:
        """The key: its id (``sha256:<hint>``) and curve."""
        return _keymaterial.key_signer(self._key)

    @property
    def description(self) -> str:
        """``P-256 key sha256:<hint>``."""
        return self.identity.description

    def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
        """Check the key hint (when present) and the ECDSA signature over the DSSE PAE."""
        _require_method(bundle, self.method)
        hint = bundle.key_hint
        if hint and hint != self._hint:
            raise VerificationError(
                f"{bundle.source} was signed with a different key (key hint {hint}, the given public key "
                f"is {self._hint})"
            )
        if not hint and bundle.legacy_public_key is not None:
            legacy = _legacy_key(bundle.legacy_public_key)
            if legacy is not None and _bundle.public_key_hint(legacy) != self._hint:
                raise VerificationError(f"{bundle.source} was signed with a different key than the one given")
        payload, legacy_encoding = _check_dsse(self._key, bundle, "the given public key")
        return VerifiedSignature(payload, self.description, legacy_encoding, self.identity)


class CertificateVerifier:
    """The ``certificate`` method: trusted root certificates (PEM) that the bundle's chain must lead to.

    The chain is validated *now* (key and certificate bundles carry no trusted timestamp): every
    certificate must be within its validity period at verification time, so a signature made with a
    certificate that has since expired stops verifying and the model must be re-signed.  ``at``
    overrides the time (for audits).

    By default the signing certificate is held to what the reference implementations accept (see
    :func:`model_signing._keymaterial.verify_chain`): basicConstraints ``CA:TRUE`` in the leaf and a
    self-signed leaf given as its own trusted certificate are accepted.  ``strict=True`` applies RFC 5280's
    end-entity rules and refuses both.
    """

    method = "certificate"

    def __init__(
        self,
        certificate_chain: Sequence[PathLike] | Sequence[x509.Certificate],
        *,
        at: dt.datetime | None = None,
        strict: bool = False,
    ):
        """Load the trusted certificates (each PEM file may hold several)."""
        from cryptography import x509

        certs = list(certificate_chain)
        if certs and all(isinstance(c, x509.Certificate) for c in certs):
            self._roots: list[x509.Certificate] = certs  # type: ignore[assignment]
        else:
            paths = [c for c in certs if isinstance(c, str | os.PathLike)]
            if len(paths) != len(certs):
                raise TypeError("certificate_chain takes file paths or x509.Certificate objects, not a mix")
            self._roots = _keymaterial.load_certificates(paths, "certificate chain file")
        if not self._roots:
            raise KeyMaterialError("no trusted certificates given; pass the root CA with --certificate-chain")
        self._at = at
        self._strict = strict

    def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
        """Validate the bundle's chain to the trusted roots, then the signature with the leaf's key."""
        _require_method(bundle, self.method)
        leaf, *intermediates = bundle.certificate_chain()
        at = self._at or dt.datetime.now(dt.UTC)
        _keymaterial.verify_chain(leaf, intermediates, self._roots, at, strict=self._strict)
        key = _keymaterial.public_key_of(leaf, "the signing certificate")
        payload, legacy_encoding = _check_dsse(key, bundle, "the signing certificate's key")
        identity = _keymaterial.certificate_signer(leaf)
        return VerifiedSignature(payload, identity.description, legacy_encoding, identity)


def _require_method(bundle: SignatureBundle, method: str) -> None:
    if bundle.method != method:
        raise VerificationError(
            f"{bundle.source} is a {bundle.method} signature, not a {method} one; verify it with "
            f"'verify {bundle.method}'"
        )


def _legacy_key(raw: bytes) -> ec.EllipticCurvePublicKey | None:
    """Best-effort parse of a pre-v1.1 ``publicKey.rawBytes`` (PEM or DER SubjectPublicKeyInfo)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    for load in (serialization.load_pem_public_key, serialization.load_der_public_key):
        try:
            key = load(raw)
        except ValueError:
            continue
        return key if isinstance(key, ec.EllipticCurvePublicKey) else None
    return None


def _check_dsse(key: ec.EllipticCurvePublicKey, bundle: SignatureBundle, what: str) -> tuple[bytes, bool]:
    """Verify the DSSE signature over the PAE; fall back to model-signing v0.2's encoding (read-only)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    payload, signature = bundle.payload, bundle.signature
    preferred = _keymaterial.signature_hash(key)
    try:
        key.verify(signature, _bundle.pae(payload, bundle.payload_type), ec.ECDSA(preferred))
        return payload, False
    except InvalidSignature:
        pass
    # v0.2 signed a different byte string, and always hashed with SHA-256.
    for algorithm in (preferred, hashes.SHA256()) if preferred.name != "sha256" else (preferred,):
        try:
            key.verify(signature, _bundle.legacy_pae(payload, bundle.payload_type), ec.ECDSA(algorithm))
            return payload, True
        except InvalidSignature:
            continue
    raise VerificationError(
        f"the signature in {bundle.source} does not verify with {what}: wrong key, or the envelope was "
        "tampered with"
    )


def verify(
    model_path: PathLike,
    verifier: Verifier,
    *,
    signature_path: PathLike,
    ignore_unsigned_files: bool = False,
    ignore_paths: Sequence[PathLike] = (),
    max_workers: int | None = None,
    progress: bool | None = None,
) -> VerifyResult:
    """Verify the model at ``model_path`` against the bundle at ``signature_path`` (see module docs).

    ``ignore_paths`` are excluded in addition to the paths the signer ignored (a signed file they name
    is reported as an ``excluded`` difference: signed, but not checked);
    ``ignore_unsigned_files`` skips files the signature does not mention (every signed file is still
    checked, and a signed file with unsigned shards still fails).
    """

    model = os.fspath(model_path)
    sig_path = os.fspath(signature_path)
    if not os.path.lexists(model):
        raise InputError(f"model {model} does not exist; give the path of the signed model directory or file")

    bundle = _bundle.read_bundle(sig_path)
    _require_method(bundle, verifier.method)  # also for third-party verifiers that forget to check
    verdict = _Verdict(verifier, bundle)
    try:
        # A verifier that checks in the background (sigstore) works while the model is hashed with the
        # settings of the statement in the bundle; nothing is reported before its verdict, and the
        # statement used must be the one it verified (checked below), so the settings used were signed.
        statement = _statement.parse_statement(bundle.payload, source=sig_path)
        if statement.manifest.serialization.allow_symlinks:
            verdict.wait()  # links are only ever followed under a verified statement
        signed = _for_model_path(statement.manifest, model)
        config = HashingConfig.from_serialization(signed.serialization, max_workers=max_workers, progress=progress)
        config.validate()
        extra = _walk.normalize_ignore_paths(model, [os.fspath(p) for p in ignore_paths])
        covered = _compare.signed_files(signed)
        try:
            # Symlinks are collected, not refused: a signed file replaced by a link is tampering (exit 3).
            walked = _walk.walk(
                model,
                allow_symlinks=config.allow_symlinks,
                ignore_paths=(*config.ignore_paths, *extra),
                signature_path=sig_path,
                collect_symlinks=True,
            )
            files, links, unmatched = walked.files, walked.symlinks, walked.unmatched_ignore_paths
        except EmptyModelError:
            # Nothing left to hash is not bad input here: every signed file is missing (exit 3, listed).
            files, links, unmatched = (), (), ()
        unsigned: tuple[str, ...] = ()
        if ignore_unsigned_files:
            # Unsigned files (and links) are never opened; the report names them.
            unsigned = tuple(sorted({f.name for f in files if f.name not in covered} | set(links) - covered))
            files = tuple(f for f in files if f.name in covered)
        resources = hash_files(files, config, poll=verdict.raise_if_failed)
        actual = dataclasses.replace(signed, resources=resources)
    except Exception:
        verdict.wait()  # a signature that does not verify outranks whatever was met before the verdict
        raise
    verified = verdict.wait()

    excluded = {f for f in covered if _walk.ignored_by(f, extra)}
    # A caller's ignore path that names a signed file was not a typo, even when the file is gone.
    unmatched = tuple(p for p in unmatched if p in extra and not any(_walk.ignored_by(f, [p]) for f in covered))
    differences = _compare.compare(
        signed, actual, ignore_unsigned_files=ignore_unsigned_files, excluded=excluded, symlinks=links
    )
    result = VerifyResult(
        model_path=model,
        signature_path=sig_path,
        method=bundle.method,
        signer=verified.signer,
        manifest=statement.manifest,
        root_digest=statement.root_digest.hex() if statement.root_digest is not None else None,
        predicate_type=statement.predicate_type,
        unsigned_files=unsigned,
        legacy_encoding=verified.legacy_encoding,
        signer_identity=verified.identity or SignerIdentity(method=bundle.method, identity=verified.signer),
        differences=tuple(differences),
        unmatched_ignore_paths=unmatched,
        model_name=_walk.model_name_of(model),
        signed_model=statement.subject_name or "",
    )
    if differences:
        # The subject name is informational (a renamed model still verifies), but on a mismatch a name
        # that differs is the likeliest explanation: the error says it first.
        raise ModelMismatchError(
            differences, signed_model=statement.subject_name, model_name=result.model_name, result=result
        )
    return result


class _Verdict:
    """The signature check of one bundle: done at once, or in the background by verifiers that can.

    Every wait also requires the verified payload to be the bundle's byte for byte, since the caller
    works on the bundle's statement: a mismatch is a signature that does not cover what is used.
    """

    def __init__(self, verifier: Verifier, bundle: SignatureBundle) -> None:
        self._bundle = bundle
        start = getattr(verifier, "verify_in_background", None)
        self._pending = start(bundle) if start is not None else None
        self._verified = verifier.verify(bundle) if start is None else None

    def raise_if_failed(self) -> None:
        """Raise the verification error at once if the check has already failed."""
        if self._pending is not None:
            self._pending.raise_if_failed()

    def wait(self) -> VerifiedSignature:
        """The verified signature, or the verification error."""
        if self._verified is None:
            assert self._pending is not None
            self._verified = self._pending.result()
        if self._verified.payload != self._bundle.payload:
            raise VerificationError(
                f"{self._bundle.source}: the verifier returned a payload other than the bundle's; refusing to compare"
            )
        return self._verified


def _for_model_path(signed: Manifest, model: str) -> Manifest:
    """Map the peer's single-file resource name ``"."`` to the file's basename (the spec's name)."""
    if not os.path.isfile(model):
        return signed
    method = signed.serialization.method
    if _compare.signed_files(signed) != {_paths.SINGLE_FILE_NAME}:
        return signed
    base = os.path.basename(os.path.normpath(model))

    def rename(r: Resource) -> Resource:
        rest = r.name[len(_paths.SINGLE_FILE_NAME) :] if method == "shards" else ""
        return Resource(name=base + rest, algorithm=r.algorithm, digest=r.digest)

    return dataclasses.replace(signed, resources=tuple(rename(r) for r in signed.resources))

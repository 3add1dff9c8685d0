"""What ``digest``, ``sign`` and ``verify`` return: one family of result dataclasses, one JSON schema.

Every result renders the same JSON document with :meth:`Result.as_dict` -- on success and on failure --
so a script reads the same keys whatever happened:

=========================  =====================================================================
key                        meaning
=========================  =====================================================================
``ok``                     the operation succeeded (``exit_code`` 0)
``exit_code``              the CLI's exit code: 0 ok, 1 bad input, 2 signature invalid, 3 mismatch
``command``                ``digest``, ``sign`` or ``verify``
``error``                  the error message, ``null`` on success
``verified``               ``verify`` only: whether the model matched (``null`` for the others)
``model_path``             the model as given
``model_name``             the informational model name (the statement's subject name)
``signature_path``         the signature written or read (``null`` for ``digest``)
``method``                 the signing method: ``key``, ``certificate`` or ``sigstore``
``signer``                 who signed, as one human-readable line
``signer_identity``        who signed, structured (:class:`SignerIdentity`)
``root_digest``            the subject digest (hex): SHA-256 over the resource digests
``predicate_type``         the statement's predicate type (``verify``)
``serialization``          the OMS ``serialization`` object (method, hash, shard size, ignore paths)
``resources``              the resources, each ``{name, algorithm, digest}``
``resource_count``         ``len(resources)``
``differences``            ``verify``: each :class:`~model_signing.errors.Difference` (``as_dict``)
``unsigned_files``         ``verify``: unsigned files accepted by ``ignore_unsigned_files``
``unmatched_ignore_paths`` user ignore paths that matched no file (a typo? globs are not expanded)
``legacy_encoding``        ``verify``: the signature uses model-signing v0.2's DSSE encoding
``timestamps``             ``verify``: the verified RFC 3161 timestamps (:class:`TrustedTimestamp`)
``scan``                   with a scan in the hashing pass: ``{files_scanned, findings, unsafe}``
``quarantine``             ``verify`` with a quarantine: where the model went (see ``incident.json``)
=========================  =====================================================================

Keys that do not apply are ``null`` (or empty lists), never absent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from model_signing.errors import (
    Difference,
    ModelMismatchError,
    ModelSigningError,
    UnsafeModelError,
    mismatch_summary,
)

if TYPE_CHECKING:
    from model_signing.manifest import Manifest

__all__ = [
    "DigestResult", "ErrorResult", "Result", "ScanOutcome", "SignResult", "SignerIdentity", "TrustedTimestamp",
    "VerifyResult",
]


class ScanOutcome(Protocol):
    """What a result needs of a scan report (:class:`model_signing.scan.ScanReport`, a layer above)."""

    @property
    def files_scanned(self) -> int: ...
    @property
    def findings(self) -> tuple[Any, ...]: ...
    @property
    def threshold(self) -> Any: ...
    def unsafe(self, threshold: Any = None) -> bool: ...
    def to_json(self, threshold: Any = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SignerIdentity:
    """Who signed, as fields a policy can compare (the human line is rendered from them).

    ``identity`` / ``issuer`` hold the method's main pair: the key id for ``key`` (no issuer), the
    certificate subject and issuer for ``certificate``, the SAN identity and OIDC issuer for ``sigstore``.
    """

    #: ``"key"``, ``"certificate"``, ``"sigstore"`` (or a plug-in's method name).
    method: str
    identity: str | None = None
    issuer: str | None = None
    #: ``sha256:<hex>`` of the public key (the bundle's key hint); ``key`` and ``certificate``.
    key_id: str | None = None
    #: ``P-256``, ``P-384`` or ``P-521``.
    key_algorithm: str | None = None
    #: The signing certificate's subject and issuer (RFC 4514) and serial (hex).
    certificate_subject: str | None = None
    certificate_issuer: str | None = None
    certificate_serial: str | None = None
    #: Every identity the certificate's SAN names (``sigstore``; ``identity`` is the first).
    identities: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """One human-readable line: ``P-256 key sha256:..``, ``certificate CN=.. (issued by ..)``, ``a via b``."""
        if self.method == "key":
            return f"{self.key_algorithm or 'EC'} key {self.key_id or '(unknown key id)'}"
        if self.method == "certificate":
            return (
                f"certificate {self.certificate_subject} (issued by {self.certificate_issuer}, serial "
                f"{self.certificate_serial})"
            )
        if self.method == "secret":
            return f"shared secret {self.key_id}"
        if self.method == "sigstore":
            names = ", ".join(self.identities) or self.identity or "no identity"
            return f"{names} via {self.issuer or 'unknown issuer'}"
        return self.identity or self.method

    def __str__(self) -> str:
        return self.description

    def as_dict(self) -> dict[str, Any]:
        """The JSON ``signer_identity`` object (every field, plus ``description``)."""
        return {
            "method": self.method,
            "identity": self.identity,
            "issuer": self.issuer,
            "key_id": self.key_id,
            "key_algorithm": self.key_algorithm,
            "certificate_subject": self.certificate_subject,
            "certificate_issuer": self.certificate_issuer,
            "certificate_serial": self.certificate_serial,
            "identities": list(self.identities),
            "description": self.description,
        }


@dataclass(frozen=True)
class TrustedTimestamp:
    """A verified RFC 3161 timestamp: when the signature existed, by the word of a trusted timestamp authority."""

    #: The token's ``genTime`` (UTC): the signature existed at this time.
    time: dt.datetime
    #: The subject (RFC 4514) and serial (hex) of the TSA certificate that signed the token.
    tsa: str
    tsa_serial: str
    #: The token's own serial number (hex), unique per TSA.
    serial: str

    @property
    def description(self) -> str:
        """``2026-01-02 03:04:05 UTC (RFC 3161 timestamp by CN=..., serial ...)``."""
        return f"{self.time:%Y-%m-%d %H:%M:%S} UTC (RFC 3161 timestamp by {self.tsa}, serial {self.tsa_serial})"

    def as_dict(self) -> dict[str, Any]:
        """The JSON object: ``time`` (ISO 8601), ``tsa``, ``tsa_serial``, ``serial``."""
        return {"time": self.time.isoformat(), "tsa": self.tsa, "tsa_serial": self.tsa_serial, "serial": self.serial}


def _document(command: str) -> dict[str, Any]:
    """The schema with every key at its "does not apply" value."""
    return {
        "ok": True,
        "exit_code": 0,
        "command": command,
        "error": None,
        "verified": None,
        "model_path": None,
        "model_name": None,
        "signature_path": None,
        "method": None,
        "signer": None,
        "signer_identity": None,
        "root_digest": None,
        "predicate_type": None,
        "serialization": None,
        "resources": [],
        "resource_count": 0,
        "differences": [],
        "unsigned_files": [],
        "unmatched_ignore_paths": [],
        "legacy_encoding": False,
        "timestamps": [],
        "scan": None,
        "quarantine": None,
    }


def _manifest_fields(manifest: Manifest) -> dict[str, Any]:
    return {
        "model_name": manifest.model_name,
        "serialization": manifest.serialization.to_dict(),
        "resources": [r.to_dict() for r in manifest.resources],
        "resource_count": len(manifest.resources),
    }


class Result:
    """Base of every result: :meth:`as_dict` renders the one schema (see the module docs)."""

    command: ClassVar[str]

    @property
    def ok(self) -> bool:
        """Whether the operation succeeded."""
        return self.exit_code == 0

    @property
    def exit_code(self) -> int:
        """The CLI exit code this result stands for."""
        return 0

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (``--json``): every schema key, those that do not apply ``null`` or empty."""
        doc = _document(self.command)
        doc.update(self._fields())
        doc["ok"], doc["exit_code"] = self.ok, self.exit_code
        return doc


@dataclass(frozen=True)
class DigestResult(Result):
    """What hashing a model produced (``model_signing.hashing.digest_model``)."""

    command: ClassVar[str] = "digest"

    model_path: str
    manifest: Manifest
    #: User ignore paths (canonical form) that matched no file of the model.
    unmatched_ignore_paths: tuple[str, ...] = ()
    #: The scan made in the hashing pass (``scan=``), else ``None``.
    scan: ScanOutcome | None = None

    @property
    def root_digest(self) -> str:
        """The subject digest (hex)."""
        return self.manifest.root_digest().hex()

    def _fields(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            **_manifest_fields(self.manifest),
            "root_digest": self.root_digest,
            "unmatched_ignore_paths": list(self.unmatched_ignore_paths),
            "scan": self.scan.to_json() if self.scan is not None else None,
        }


@dataclass(frozen=True)
class SignResult(Result):
    """What :func:`model_signing.sign` did."""

    command: ClassVar[str] = "sign"

    model_path: str
    signature_path: str
    method: str
    #: Who signed, as one line (``str(signer_identity)``).
    signer: str
    #: The signed manifest (its resources, serialization and model name).
    manifest: Manifest
    #: The statement subject digest (hex): SHA-256 over the resource digests.
    root_digest: str
    signer_identity: SignerIdentity | None = None
    #: User ignore paths (canonical form) that matched no file; they are still recorded in the statement.
    unmatched_ignore_paths: tuple[str, ...] = ()
    #: The bundle as written (with ``signature_path="-"``: for the caller to write); not part of the JSON.
    bundle_json: str = field(default="", repr=False)
    #: The scan made while hashing (``scan=``): nothing at or above its threshold, or there is no signature.
    scan: ScanOutcome | None = None

    def _fields(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "signature_path": self.signature_path,
            "method": self.method,
            "signer": self.signer,
            "signer_identity": self.signer_identity.as_dict() if self.signer_identity else None,
            **_manifest_fields(self.manifest),
            "root_digest": self.root_digest,
            "unmatched_ignore_paths": list(self.unmatched_ignore_paths),
            "scan": self.scan.to_json() if self.scan is not None else None,
        }


@dataclass(frozen=True)
class VerifyResult(Result):
    """A verification whose signature is valid: the model matched (``ok``) or it did not (``differences``).

    :func:`model_signing.verify` returns it when the model matches; when it does not, the
    :class:`~model_signing.errors.ModelMismatchError` it raises carries it as ``result``.
    """

    command: ClassVar[str] = "verify"

    model_path: str
    signature_path: str
    method: str
    signer: str
    #: The signed manifest.
    manifest: Manifest
    #: The statement subject digest (hex); ``None`` for v0.2 signatures, which have none.
    root_digest: str | None
    predicate_type: str
    #: Files present in the model but not in the signature, skipped by ``ignore_unsigned_files``.
    unsigned_files: tuple[str, ...] = ()
    legacy_encoding: bool = False
    signer_identity: SignerIdentity | None = None
    #: Every difference between the signature and the model (empty when it matched).
    differences: tuple[Difference, ...] = field(default=())
    #: The caller's extra ignore paths (canonical form) that matched neither a file nor a signed resource.
    unmatched_ignore_paths: tuple[str, ...] = ()
    #: The verified model's name (its path's basename) and the statement's subject name.
    model_name: str = ""
    signed_model: str = ""
    #: The verified RFC 3161 timestamps of the signature (empty when it carries none).
    timestamps: tuple[TrustedTimestamp, ...] = ()
    #: The root digest of what was found on disk (hex; equals ``root_digest`` when the model matched).
    actual_root_digest: str | None = None
    #: The scan made in the hashing pass (``scan=``), else ``None``.
    scan: ScanOutcome | None = None
    #: The quarantine record when the model was quarantined after this verification (``quarantine=``).
    quarantine: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        """0 when the model matched and is safe; 3 (:class:`ModelMismatchError`) when it did not match, else
        4 (:class:`UnsafeModelError`) when the scan found content at or above its threshold."""
        if self.differences:
            return ModelMismatchError.exit_code
        return UnsafeModelError.exit_code if self.scan is not None and self.scan.unsafe() else 0

    @property
    def verified(self) -> bool:
        """Whether the model matched its (valid) signature (it may still be unsafe: see :attr:`exit_code`)."""
        return not self.differences

    def _error(self) -> str | None:
        if self.differences:
            return mismatch_summary(len(self.differences), self.signed_model, self.model_name)
        if self.scan is not None and self.scan.unsafe():
            return str(unsafe_error(self.scan))
        return None

    def _fields(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "error": self._error(),
            "model_path": self.model_path,
            "signature_path": self.signature_path,
            "method": self.method,
            "signer": self.signer,
            "signer_identity": self.signer_identity.as_dict() if self.signer_identity else None,
            **_manifest_fields(self.manifest),
            "root_digest": self.root_digest,
            "predicate_type": self.predicate_type,
            "differences": [d.as_dict() for d in self.differences],
            "unsigned_files": list(self.unsigned_files),
            "unmatched_ignore_paths": list(self.unmatched_ignore_paths),
            "legacy_encoding": self.legacy_encoding,
            "timestamps": [t.as_dict() for t in self.timestamps],
            "scan": self.scan.to_json() if self.scan is not None else None,
            "quarantine": self.quarantine,
        }


@dataclass(frozen=True)
class ErrorResult(Result):
    """An operation that failed before it had a result of its own (bad input, invalid signature, ...)."""

    command: ClassVar[str] = ""  # the instance's ``operation`` names it: one class serves every command

    operation: str
    error: str
    error_exit_code: int = 1
    model_path: str | None = None
    signature_path: str | None = None
    scan: ScanOutcome | None = None
    quarantine: dict[str, Any] | None = None

    @classmethod
    def from_error(
        cls,
        command: str,
        exc: ModelSigningError,
        *,
        model_path: str | None = None,
        signature_path: str | None = None,
        message: str | None = None,
    ) -> Result:
        """The result an error stands for: a mismatch's own :class:`VerifyResult`, else an :class:`ErrorResult`.

        ``message`` replaces the error's own (the CLI passes it with its option names in place of API terms).
        """
        if isinstance(exc, (ModelMismatchError, UnsafeModelError)) and exc.result is not None:
            return exc.result
        scan = exc.report if isinstance(exc, UnsafeModelError) else None
        return cls(command, " ".join((str(exc) if message is None else message).split()), exc.exit_code, model_path,
                   signature_path, scan=scan, quarantine=exc.incident)

    @property
    def exit_code(self) -> int:
        """The error's exit code."""
        return self.error_exit_code

    def _fields(self) -> dict[str, Any]:
        return {
            "command": self.operation,
            "error": self.error,
            "verified": False if self.operation == "verify" else None,
            "model_path": self.model_path,
            "signature_path": self.signature_path,
            "scan": self.scan.to_json() if self.scan is not None else None,
            "quarantine": self.quarantine,
        }


def unsafe_error(report: ScanOutcome, result: VerifyResult | None = None) -> UnsafeModelError:
    """The :class:`UnsafeModelError` for a scan report with content at or above its threshold."""
    limit = report.threshold
    return UnsafeModelError([f for f in report.findings if f.severity >= limit], limit.label, report=report,
                            result=result)

"""The one error hierarchy of model_signing.

Every error carries a message a user can act on: it names the file or option at fault and what to do.
Options are named as the Python API spells them, between backticks -- a parameter (`ignore_paths`), a
switch (`allow_symlinks=True`) or a parameter with a value (`ignore_paths=['d/loop']`) -- never as a
command-line flag: the CLI rewrites each such term into its option (:mod:`model_signing.cli._terms`).
Only the CLI turns these into exit codes (``exit_code``), as documented in the README:

* 1 -- bad input (unreadable or malformed model, signature, key, or arguments),
* 2 -- the signature is invalid (wrong key or identity, tampered envelope, untrusted chain),
* 3 -- the signature is valid but the model content does not match it,
* 4 -- the model holds unsafe content: a scan found something at or above the threshold
  (:class:`UnsafeModelError`; see :mod:`model_signing.scan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from model_signing.results import VerifyResult

from model_signing._internal.text import plural


class ModelSigningError(Exception):
    """Base class of every error raised by model_signing."""

    exit_code: ClassVar[int] = 1
    #: When verification quarantined the model after this error (``quarantine=``): the incident record
    #: (``destination``, ``completed``, ``error`` and what ``incident.json`` holds); else ``None``.
    incident: dict[str, Any] | None = None


class InputError(ModelSigningError):
    """Bad input: a model, file, option or argument that cannot be used as given."""


class ModelPathError(InputError):
    """The model tree cannot be enumerated (symlink, special file, bad name, empty model, ...)."""


class EmptyModelError(ModelPathError):
    """The model has no file to hash (after exclusions): nothing can be signed.

    At verification this is not bad input but the most extreme mismatch: every signed file is missing.
    """


class FileChangedError(InputError):
    """A file changed while it was being hashed, so its digest would be meaningless."""


class KeyMaterialError(InputError):
    """A key, certificate or identity token is missing, unreadable or unsuitable."""


class SignatureFormatError(InputError):
    """A signature file is unreadable, malformed, or not an OMS bundle."""


class SignatureExistsError(InputError):
    """Refusing to overwrite an existing signature without ``overwrite=True``.

    ``signed_model`` / ``signed_root_digest`` say what the existing file signs (read from its statement,
    unverified; ``None`` if it is not a readable bundle, ``""`` for a v0.2 one); ``model_name`` is the
    model being signed; ``free_path`` is a nearby path that is free, if one was found.  The message says
    all of that unless one is given (the CLI names its options instead).
    """

    def __init__(
        self,
        path: str,
        *,
        model_name: str = "",
        signed_model: str | None = None,
        signed_root_digest: str | None = None,
        free_path: str | None = None,
        message: str | None = None,
    ) -> None:
        self.path = path
        self.model_name = model_name
        self.signed_model = signed_model
        self.signed_root_digest = signed_root_digest
        self.free_path = free_path
        if message is None:
            elsewhere = (
                f"write this signature to `signature_path={free_path!r}`" if free_path
                else "choose another `signature_path`"
            )
            if self.same_model:
                advice = f"replace it with `overwrite=True` if you mean to re-sign this model, or {elsewhere}"
            else:
                advice = f"{elsewhere} instead, or replace it with `overwrite=True` if you mean to"
            message = f"signature {path} already exists: {self.what_it_signs()}; {advice}"
        super().__init__(message)

    @property
    def same_model(self) -> bool:
        """Whether the existing signature names the model being signed (replacing it is then likely meant)."""
        return bool(self.signed_model) and self.signed_model == self.model_name

    def what_it_signs(self) -> str:
        """A phrase for messages: ``it signs model 'a', root digest sha256:...``, or why that is unknown."""
        if self.signed_model is None:
            return "it is not a readable signature bundle"
        if not self.signed_model:
            return "it is a v0.2 signature, which names no model"
        return f"it signs model {self.signed_model!r}, root digest sha256:{self.signed_root_digest}"


class StatementError(SignatureFormatError):
    """The signed statement inside a signature is not a well-formed OMS statement."""


class UnsafePathError(StatementError):
    """A signed resource or ignore path is absolute, contains ``..`` or otherwise escapes the model root."""


class SigningError(ModelSigningError):
    """Signing failed after the inputs were accepted (e.g. a Sigstore service refused)."""


class VerificationError(ModelSigningError):
    """The signature does not verify with the given key, certificate chain or identity policy."""

    exit_code: ClassVar[int] = 2


class WrongMethodError(VerificationError):
    """The bundle was made with another signing method than the verifier's (``signed_with`` vs ``expected``)."""

    def __init__(self, source: str, *, signed_with: str, expected: str, message: str | None = None) -> None:
        self.source, self.signed_with, self.expected = source, signed_with, expected
        super().__init__(
            message or f"{source} is a {signed_with} signature, not a {expected} one; verify it with a "
            f"{signed_with} verifier"
        )


class PolicyFileError(InputError):
    """A registry, lock or policy file is malformed: the message names the file, the field and the fix."""


class PublisherError(VerificationError):
    """The signature is valid, but its signer is no trusted publisher (unknown, not allowed, or revoked)."""


class UnsafeModelError(ModelSigningError):
    """A scan found content at or above the threshold (code that would run on load, or a tampered archive).

    ``findings`` are the findings at or above the threshold (:class:`model_signing.scan.Finding`);
    ``threshold`` the severity label they were judged against.  ``report`` is the whole scan
    (:class:`model_signing.scan.ScanReport`), when there was one; ``result`` the verification's
    :class:`~model_signing.results.VerifyResult` when the scan ran while verifying (the signature and the
    content were fine: only the content is unsafe).
    """

    exit_code: ClassVar[int] = 4

    def __init__(
        self,
        findings: Sequence[Any],
        threshold: str,
        *,
        message: str | None = None,
        report: Any = None,
        result: VerifyResult | None = None,
    ) -> None:
        self.findings = tuple(findings)
        self.threshold = threshold
        self.report = report
        self.result = result
        if message is None:
            worst = max(self.findings, key=lambda f: f.severity, default=None)
            first = f"; the worst: {worst}" if worst is not None else ""
            message = (f"unsafe model content: {plural(len(self.findings), 'finding')} at or above "
                       f"{threshold}{first}")
        super().__init__(message)


#: ``excluded``: a signed resource the verifier was asked to leave out (its ignore paths) -- not checked.
ChangeKind = Literal["modified", "missing", "extra", "excluded"]


@dataclass(frozen=True)
class Difference:
    """One difference between the signed manifest and the model on disk.

    ``expected`` / ``actual`` are hex digests, ``None`` where the resource is absent on that side.  With
    shards one difference stands for one *file*: ``name`` is its path, ``expected_size`` / ``actual_size``
    the sizes the signature and the disk give it, and ``shards`` the per-shard differences behind it.
    ``detail`` says more where the digests cannot (``now a symlink``).
    """

    kind: ChangeKind
    name: str
    expected: str | None
    actual: str | None
    expected_size: int | None = None
    actual_size: int | None = None
    detail: str | None = None
    shards: tuple[Difference, ...] = ()

    def __str__(self) -> str:
        if self.detail:
            return f"{self.kind}: {self.name} ({self.detail})"
        return f"{self.kind}: {self.name} (expected {self.expected or '-'}, actual {self.actual or '-'})"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``differences`` in ``--json``)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "expected": self.expected,
            "actual": self.actual,
            "expected_size": self.expected_size,
            "actual_size": self.actual_size,
            "detail": self.detail,
            "shards": [s.as_dict() for s in self.shards],
        }


class ModelMismatchError(ModelSigningError):
    """The signature is valid, but the model on disk differs from what was signed.

    ``result`` is the verification's :class:`~model_signing.results.VerifyResult` (signer, manifest and
    every difference), when the error comes from :func:`model_signing.verify`.
    """

    exit_code: ClassVar[int] = 3

    def __init__(
        self,
        differences: Sequence[Difference],
        *,
        signed_model: str = "",
        model_name: str = "",
        result: VerifyResult | None = None,
    ) -> None:
        self.differences = tuple(differences)
        #: The statement's subject name and the verified model's name, when they differ (else both "").
        self.signed_model = signed_model
        self.model_name = model_name
        #: The verification's full result (signer, manifest, differences), for reports.
        self.result = result
        super().__init__(mismatch_summary(len(self.differences), signed_model, model_name))


def mismatch_summary(count: int, signed_model: str = "", model_name: str = "") -> str:
    """The one-line summary of a mismatch; it leads with the model name when the signature names another."""
    summary = f"the model does not match its signature: {plural(count, 'difference')}"
    if signed_model and signed_model != model_name:
        # Usually the wrong signature (a sibling model's model.sig), which the differences alone hide.
        summary = f"the signature is for model {signed_model!r}, not {model_name!r}; {summary}"
    return summary


class LockMismatchError(ModelMismatchError):
    """A model of a lock file is not the one locked (exit 3): missing, or validly signed but with another root
    digest or other settings than the lock records (re-signed, not re-locked).

    ``kind`` is the lock's failure kind (``missing_model`` or ``lock_mismatch``); ``result`` the verification's
    result when the signature verified.
    """

    def __init__(self, message: str, *, kind: str, result: VerifyResult | None = None) -> None:
        super().__init__((), result=result)
        self.kind = kind
        self.args = (message,)  # the lock's own words, not the (empty) differences' summary


class MissingExtraError(InputError):
    """An optional feature's dependencies are not installed (``extra`` names the ``modelseal[...]`` extra)."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature, self.extra, self.module = feature, extra, module
        super().__init__(
            f"{feature} needs the {module!r} package, which is not installed; install it with "
            f"pip install 'modelseal[{extra}]'"
        )


class HubError(ModelSigningError):
    """A Hugging Face hub repository cannot be used as asked (not found, no signature, refused request).

    Exit code 1, like bad input.  Signature failures stay :class:`VerificationError` (2) and content
    mismatches :class:`ModelMismatchError` (3), whether they were found remotely or after a download.
    """


class HubNetworkError(HubError):
    """The hub could not be reached or did not answer (connection refused, timeout): transient, maybe."""


class RemoteVerificationUnsupportedError(HubError):
    """The signature's serialization cannot be checked from the hub's recorded digests (download instead)."""


class HubMismatchError(ModelMismatchError):
    """A hub repository's content does not match its valid signature (exit 3), found remotely or after a download.

    ``hub_result`` is the :class:`model_signing.integrations.hub.HubVerifyResult` (repository, pinned commit,
    what was checked how) behind ``result``.
    """

    def __init__(
        self,
        differences: Sequence[Difference],
        *,
        signed_model: str = "",
        model_name: str = "",
        result: VerifyResult | None = None,
        hub_result: Any = None,
    ) -> None:
        super().__init__(differences, signed_model=signed_model, model_name=model_name, result=result)
        self.hub_result = hub_result

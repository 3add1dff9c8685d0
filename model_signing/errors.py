"""The one error hierarchy of model_signing.

Every error carries a message a user can act on: it names the file or option at fault and what to do.
Only the CLI turns these into exit codes (``exit_code``), as documented in the README:

* 1 -- bad input (unreadable or malformed model, signature, key, or arguments),
* 2 -- the signature is invalid (wrong key or identity, tampered envelope, untrusted chain),
* 3 -- the signature is valid but the model content does not match it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from model_signing.results import VerifyResult


class ModelSigningError(Exception):
    """Base class of every error raised by model_signing."""

    exit_code: ClassVar[int] = 1


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
    """Refusing to overwrite an existing signature without ``--overwrite``."""


class StatementError(SignatureFormatError):
    """The signed statement inside a signature is not a well-formed OMS statement."""


class UnsafePathError(StatementError):
    """A signed resource or ignore path is absolute, contains ``..`` or otherwise escapes the model root."""


class SigningError(ModelSigningError):
    """Signing failed after the inputs were accepted (e.g. a Sigstore service refused)."""


class VerificationError(ModelSigningError):
    """The signature does not verify with the given key, certificate chain or identity policy."""

    exit_code: ClassVar[int] = 2


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

    def __init__(self, differences: Sequence[Difference], *, result: VerifyResult | None = None) -> None:
        self.differences = tuple(differences)
        self.result = result
        super().__init__(
            f"the model does not match its signature: {len(self.differences)} difference(s)"
        )

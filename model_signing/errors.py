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
from typing import ClassVar, Literal

from model_signing._text import plural


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


ChangeKind = Literal["modified", "missing", "extra"]


@dataclass(frozen=True)
class Difference:
    """One difference between the signed manifest and the model on disk.

    ``expected`` / ``actual`` are hex digests, ``None`` where the resource is absent on that side.
    """

    kind: ChangeKind
    name: str
    expected: str | None
    actual: str | None

    def __str__(self) -> str:
        return f"{self.kind}: {self.name} (expected {self.expected or '-'}, actual {self.actual or '-'})"


class ModelMismatchError(ModelSigningError):
    """The signature is valid, but the model on disk differs from what was signed."""

    exit_code: ClassVar[int] = 3

    def __init__(self, differences: Sequence[Difference]) -> None:
        self.differences = tuple(differences)
        super().__init__(
            f"the model does not match its signature: {plural(len(self.differences), 'difference')}"
        )

"""The protocols every signing method implements: a :class:`Signer` and a :class:`Verifier`.

A method is a pair that agrees on the bundle's verification material: the signer turns the canonical
statement payload into a Sigstore bundle, the verifier checks such a bundle's DSSE signature with its own
trust material and returns the verified payload.  Everything else (hashing, the statement, writing the
file, re-hashing and comparing) is the pipelines' (:mod:`model_signing.signing`,
:mod:`model_signing.verifying`), done once for every method.

Optional capabilities are protocols of their own, checked with ``isinstance`` by the pipelines:
:class:`Preparing` and :class:`FailsFast` for signers, :class:`BackgroundVerifier` for verifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from model_signing.errors import WrongMethodError
from model_signing.results import SignerIdentity, TrustedTimestamp

if TYPE_CHECKING:
    from sigstore_models.bundle.v1 import Bundle

    from model_signing.oms.bundle import SignatureBundle

__all__ = [
    "BackgroundVerifier",
    "ChecksOwnSignatures",
    "FailsFast",
    "IdentifiedSigner",
    "Pending",
    "Preparing",
    "SignatureBundle",
    "Signer",
    "VerifiedSignature",
    "Verifier",
    "require_method",
]

T_co = TypeVar("T_co", covariant=True)


@dataclass(frozen=True)
class VerifiedSignature:
    """The outcome of a successful signature check: the payload it covers and who signed it."""

    payload: bytes
    #: A description of the signer for the report (key fingerprint, certificate subject, identity).
    signer: str
    #: The signature is over model-signing v0.2's non-standard encoding (see ``oms.bundle.legacy_pae``).
    legacy_encoding: bool = False
    #: Who signed, structured; a verifier that leaves it out gets ``SignerIdentity(method, identity=signer)``.
    identity: SignerIdentity | None = None
    #: The signature's verified RFC 3161 timestamps (when it existed), if it carries any.
    timestamps: tuple[TrustedTimestamp, ...] = ()


@runtime_checkable
class Signer(Protocol):
    """Signs canonical statement payload bytes into a Sigstore bundle (sigstore's bundle model)."""

    #: The method's name in :data:`model_signing.methods.REGISTRY`: what ``verify`` checks it with.
    method: str

    @property
    def description(self) -> str:
        """Who signs, for reports (a key fingerprint, a certificate subject, an identity)."""
        ...

    def sign(self, payload: bytes) -> Bundle:
        """Sign the DSSE envelope of ``payload`` (in-toto JSON) and return the complete bundle."""
        ...


@runtime_checkable
class ChecksOwnSignatures(Protocol):
    """A signer that can tell whether a bundle's signature was made with its own key (or secret).

    ``sign-all`` keeps an existing signature only when this says so (and the model still matches the
    payload it returns): a bundle that merely *claims* this signer is re-signed.
    """

    def check_own(self, bundle: SignatureBundle) -> bytes:
        """The authenticated payload when ``bundle``'s DSSE signature verifies with this signer's key;
        :class:`~model_signing.errors.VerificationError` otherwise."""
        ...


@runtime_checkable
class IdentifiedSigner(Signer, Protocol):
    """A :class:`Signer` that also says who signs as fields (every built-in one does)."""

    @property
    def identity(self) -> SignerIdentity:
        """Who signs, structured (valid once :meth:`sign` has returned)."""
        ...


@runtime_checkable
class Timestamping(Protocol):
    """A signer that asks RFC 3161 timestamp authorities to timestamp each signature (key, certificate)."""

    @property
    def timestamp_authorities(self) -> tuple[str, ...]:
        """The TSA URLs asked, in order (empty: no timestamps)."""
        ...


@runtime_checkable
class Preparing(Protocol):
    """A signer with slow preparation of its own (keyless: the Fulcio certificate), started on request.

    :func:`~model_signing.signing.sign` calls :meth:`start` once the destination of the signature is known
    to be writable and right before hashing, so the preparation overlaps the hash but never happens for a
    signature that could not be written.
    """

    def start(self) -> None:
        """Begin preparing in the background (idempotent); errors surface later, in ``sign``."""


@runtime_checkable
class FailsFast(Protocol):
    """A signer whose background work can fail while the model is hashed (keyless: a refused token).

    The pipeline polls :meth:`raise_if_failed` from the hashing loop, so such a failure stops the hashing
    workers at once instead of after the whole model was read.
    """

    def raise_if_failed(self) -> None:
        """Raise the background failure now, if there is one; otherwise return at once."""


class Pending(Protocol[T_co]):
    """A result being computed elsewhere: poll it for failure, or wait for it."""

    def raise_if_failed(self) -> None:
        """Raise at once if the computation has already failed."""

    def result(self) -> T_co:
        """Wait for the result (or its error)."""
        ...


@runtime_checkable
class Verifier(Protocol):
    """Checks a bundle's signature with one method's trust material."""

    #: The method's name in :data:`model_signing.methods.REGISTRY`: the only bundles this verifier accepts.
    method: str

    def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
        """Verify the DSSE signature and return the verified payload; raise ``VerificationError``."""
        ...


@runtime_checkable
class BackgroundVerifier(Verifier, Protocol):
    """A verifier whose check is slow (keyless: a few tenths of a second) and can run while the model is hashed.

    The pipeline still reports nothing before the verdict, requires the verified payload to be the
    bundle's byte for byte, and waits for the verdict before opening any file under a statement that
    allows symlinks.
    """

    def verify_in_background(self, bundle: SignatureBundle) -> Pending[VerifiedSignature]:
        """Start checking ``bundle``; the pending result is its :class:`VerifiedSignature`."""
        ...


def require_method(bundle: SignatureBundle, method: str) -> None:
    """Refuse a bundle made with another method than ``method`` (:class:`~model_signing.errors.WrongMethodError`)."""
    if bundle.method != method:
        raise WrongMethodError(bundle.source, signed_with=bundle.method, expected=method)

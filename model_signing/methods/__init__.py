"""L5: the signing methods, one module (or package) each, and the registry that is the only list of them.

Each method module defines ``NAME``, a Signer and a Verifier implementing :mod:`.base`'s protocols, and
``claims(material, media_type)``: whether a bundle with that (normalised) verification material was made
by it.  :data:`REGISTRY` maps each name to its module; the pipelines, the bundle classification and the
CLI all ask it, so adding a method is one module, one line here and one CLI module
(``docs/architecture.md`` has the recipe).

The registry names modules instead of importing them, so that asking which methods exist (the CLI at
start-up) costs nothing; a method's module is imported when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from model_signing.errors import SignatureFormatError

if TYPE_CHECKING:
    from model_signing._internal.types import PathLike
    from model_signing.oms.bundle import SignatureBundle


@dataclass(frozen=True)
class MethodSpec:
    """One signing method: its name on the wire and the command line, and where it is implemented."""

    name: str
    #: The module defining ``NAME``, ``claims``, and the classes named below.
    module: str
    signer: str
    verifier: str
    #: One line for listings (``--help``).
    summary: str
    #: It runs the Sigstore client in the helper process: the CLI starts that before its own imports.
    uses_sigstore_helper: bool = False

    def load(self) -> ModuleType:
        """The implementation module (imported on first use)."""
        return importlib.import_module(self.module)

    def signer_class(self) -> type:
        """The method's Signer class."""
        return getattr(self.load(), self.signer)  # type: ignore[no-any-return]

    def verifier_class(self) -> type:
        """The method's Verifier class."""
        return getattr(self.load(), self.verifier)  # type: ignore[no-any-return]


#: Every signing method, in the order bundles are classified (the first whose ``claims`` accepts wins:
#: ``sigstore`` before ``certificate``, since pre-v0.3 keyless bundles carry their certificate as a chain).
REGISTRY: Mapping[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        # Before "key": its bundles carry a publicKey too (hint "hmac-sha256:...").
        MethodSpec("secret", "model_signing.methods.secret", "SecretSigner", "SecretVerifier",
                   "a shared secret (HMAC-SHA256); symmetric: whoever verifies can sign"),
        MethodSpec("key", "model_signing.methods.key", "KeySigner", "KeyVerifier",
                   "a bare EC key pair you manage (PEM)"),
        MethodSpec("sigstore", "model_signing.methods.sigstore", "SigstoreSigner", "SigstoreVerifier",
                   "keyless: an OIDC identity, a Fulcio certificate and a Rekor entry", uses_sigstore_helper=True),
        MethodSpec("certificate", "model_signing.methods.certificate", "CertificateSigner", "CertificateVerifier",
                   "a private key with its X.509 certificate chain (PEM)"),
    )
}


#: The method ``sign`` and ``verify`` use when none is named (keyless, as in model-signing).
DEFAULT = "sigstore"


def get(name: str) -> MethodSpec:
    """The method called ``name``; :class:`KeyError` if there is none."""
    return REGISTRY[name]


def names() -> tuple[str, ...]:
    """Every method's name, in registry order."""
    return tuple(REGISTRY)


def classify(material: Mapping[str, Any], media_type: str) -> str:
    """The method that made a bundle with this verification material (``oms.bundle.Classifier``)."""
    for spec in REGISTRY.values():
        if spec.load().claims(material, media_type):
            return spec.name
    raise SignatureFormatError("the bundle's verification material matches no known signing method")


def read_bundle(path: PathLike) -> SignatureBundle:
    """Read and parse the signature file at ``path``, classified by the registry."""
    from model_signing.oms import bundle

    return bundle.read_bundle(path, classify=classify)


def parse_bundle(raw: bytes, *, source: str = "signature") -> SignatureBundle:
    """Parse and structurally validate an OMS bundle, classified by the registry."""
    from model_signing.oms import bundle

    return bundle.parse_bundle(raw, source=source, classify=classify)

"""Sign and verify machine-learning models with Sigstore, in the OpenSSF Model Signing (OMS) v1.0 format.

The public API is re-exported here; see ``model_signing.hashing``, ``model_signing.manifest``,
``model_signing.signing``, ``model_signing.verifying``, ``model_signing.methods.sigstore`` and
``model_signing.errors`` for the pieces.  The re-exports are resolved lazily, so a program that only hashes
(or only shows ``--help``) does not pay for importing the signing and verification stacks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: The release (kept equal to ``version`` in pyproject.toml; a test checks it).  A literal, so that
#: ``modelseal --version`` imports nothing to find it.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from model_signing.errors import ModelSigningError
    from model_signing.hashing import HashingConfig, hash_model
    from model_signing.inspecting import inspect
    from model_signing.keymaterial.generate import GeneratedKey, generate_key
    from model_signing.loading import LoadedModel, load
    from model_signing.manifest import Manifest, Resource, Serialization
    from model_signing.methods.secret import SecretSigner, SecretVerifier
    from model_signing.methods.sigstore import IdentityPolicy, SigstoreSigner, SigstoreVerifier, TokenSource
    from model_signing.results import DigestResult, SignerIdentity
    from model_signing.signing import CertificateSigner, KeySigner, Signer, SignResult, sign
    from model_signing.verifying import CertificateVerifier, KeyVerifier, Verifier, VerifyResult, verify

_EXPORTS: dict[str, str] = {
    "ModelSigningError": "errors",
    "HashingConfig": "hashing",
    "hash_model": "hashing",
    "GeneratedKey": "keymaterial.generate",
    "generate_key": "keymaterial.generate",
    "IdentityPolicy": "keyless",
    "SigstoreSigner": "keyless",
    "SigstoreVerifier": "keyless",
    "TokenSource": "keyless",
    "Manifest": "manifest",
    "Resource": "manifest",
    "Serialization": "manifest",
    "SecretSigner": "methods.secret",
    "SecretVerifier": "methods.secret",
    "inspect": "inspecting",
    "LoadedModel": "loading",
    "load": "loading",
    "DigestResult": "results",
    "SignerIdentity": "results",
    "CertificateSigner": "signing",
    "KeySigner": "signing",
    "SignResult": "signing",
    "Signer": "signing",
    "sign": "signing",
    "CertificateVerifier": "verifying",
    "KeyVerifier": "verifying",
    "Verifier": "verifying",
    "VerifyResult": "verifying",
    "verify": "verifying",
}

__all__ = [
    "CertificateSigner",
    "CertificateVerifier",
    "DigestResult",
    "GeneratedKey",
    "HashingConfig",
    "IdentityPolicy",
    "KeySigner",
    "KeyVerifier",
    "LoadedModel",
    "Manifest",
    "ModelSigningError",
    "Resource",
    "SecretSigner",
    "SecretVerifier",
    "Serialization",
    "SignResult",
    "Signer",
    "SignerIdentity",
    "SigstoreSigner",
    "SigstoreVerifier",
    "TokenSource",
    "Verifier",
    "VerifyResult",
    "generate_key",
    "hash_model",
    "inspect",
    "load",
    "sign",
    "verify",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'model_signing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"model_signing.{module}"), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

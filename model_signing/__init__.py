"""Sign and verify machine-learning models with Sigstore, in the OpenSSF Model Signing (OMS) v1.0 format.

The public API is re-exported here; see ``model_signing.hashing``, ``model_signing.manifest``,
``model_signing.signing``, ``model_signing.verifying`` and ``model_signing.errors`` for the pieces.
"""

from model_signing.errors import ModelSigningError
from model_signing.hashing import HashingConfig, hash_model
from model_signing.keyless import IdentityPolicy, SigstoreSigner, SigstoreVerifier, TokenSource
from model_signing.manifest import Manifest, Resource, Serialization
from model_signing.signing import CertificateSigner, KeySigner, Signer, SignResult, sign
from model_signing.verifying import CertificateVerifier, KeyVerifier, Verifier, VerifyResult, verify

__all__ = [
    "CertificateSigner",
    "CertificateVerifier",
    "HashingConfig",
    "IdentityPolicy",
    "KeySigner",
    "KeyVerifier",
    "Manifest",
    "ModelSigningError",
    "Resource",
    "Serialization",
    "SignResult",
    "Signer",
    "SigstoreSigner",
    "SigstoreVerifier",
    "TokenSource",
    "Verifier",
    "VerifyResult",
    "hash_model",
    "sign",
    "verify",
]

__version__ = "0.1.0"

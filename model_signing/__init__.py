"""Sign and verify machine-learning models with Sigstore, in the OpenSSF Model Signing (OMS) v1.0 format.

The public API is re-exported here; see ``model_signing.hashing``, ``model_signing.manifest`` and
``model_signing.errors`` for the pieces.
"""

from model_signing.errors import ModelSigningError
from model_signing.hashing import HashingConfig, hash_model
from model_signing.manifest import Manifest, Resource, Serialization

__all__ = [
    "HashingConfig",
    "Manifest",
    "ModelSigningError",
    "Resource",
    "Serialization",
    "hash_model",
]

__version__ = "0.1.0"

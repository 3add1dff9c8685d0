"""Keyless signing and verification with Sigstore (compatibility module).

The implementation moved to :mod:`model_signing.methods.sigstore` (one package per signing method); this
module re-exports its public names so that ``from model_signing.keyless import SigstoreSigner`` keeps working.
"""

from __future__ import annotations

from model_signing.methods.sigstore import (
    IdentityPolicy,
    SigstoreSigner,
    SigstoreVerifier,
    TokenSource,
)

__all__ = ["IdentityPolicy", "SigstoreSigner", "SigstoreVerifier", "TokenSource"]

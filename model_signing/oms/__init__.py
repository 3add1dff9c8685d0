"""L3: the OMS v1.0 wire format only -- resource-name safety (:mod:`.names`), the in-toto statement
(:mod:`.statement`), and the DSSE envelope inside a Sigstore bundle (:mod:`.bundle`).

Nothing here knows which signing method made a bundle beyond the verification material it carries: the
method registry (:mod:`model_signing.methods`) classifies bundles.
"""

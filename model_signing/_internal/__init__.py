"""L1: small stdlib-only helpers shared by every layer (and by ``sigstore_local``).

Safe small-file reads (:mod:`.files`), the one atomic write (:mod:`.atomic`), strict JSON
(:mod:`.strict_json`), the length-prefixed message framing of the hash pool and the Sigstore helper
(:mod:`.framing`), wording (:mod:`.text`) and the shared types (:mod:`.types`).  Private to the package:
nothing outside ``model_signing`` should import it.
"""

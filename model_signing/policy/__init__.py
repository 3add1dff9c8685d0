"""L7: trust policy over many models: the trusted-publisher registry, lock files for model packs, the audit log.

* :class:`Registry` (:mod:`.registry`): publishers and their verification material; ``Registry.load(path)``,
  ``registry.verify(model_path, signature_path)``.
* :class:`Lock` (:mod:`.lock`): a pack's models, root digests and policy; ``Lock.load(path).verify(...)``
  returns each model's outcome and what to load.
* :mod:`.audit`: one JSON line per verification.
* :mod:`.batch`: ``sign_all``, every model of a directory with one signer, then its lock.

Everything here returns results as data; nothing prints.
"""

from __future__ import annotations

from model_signing.policy.lock import Lock, PackResult, Policy, create_lock
from model_signing.policy.registry import Publisher, PublisherCheck, Registry, edit_registry

__all__ = ["Lock", "PackResult", "Policy", "Publisher", "PublisherCheck", "Registry", "create_lock", "edit_registry"]

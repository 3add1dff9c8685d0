"""Signing a whole pack: every model of a directory, one signature each (``NAME.sig`` beside it), then its lock.

```python
from model_signing import KeySigner
from model_signing.policy.batch import sign_all

done = sign_all("pack", KeySigner("speech.pem"), lock="pack/model-lock.json", registry="pack/publishers.json")
```

A model whose signature is still good is skipped unless ``force``: with a ``registry``, "good" means it
verifies against the registry (signature, publisher, content); without one, that its DSSE signature
verifies with this very signer's key or secret (``methods.base.ChecksOwnSignatures``) and the model's
content and hashing settings still match the payload it authenticates.  A bundle that merely claims the
signer is signed again, and so is every model of a signer that cannot check its own signatures (keyless:
pass a ``registry`` to skip the models that still verify).  One signer signs every model (keyless: one identity
token and one signing certificate for the pack).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from model_signing._internal.types import PathLike
from model_signing.errors import ModelSigningError

if TYPE_CHECKING:
    from model_signing.hashing import HashingConfig
    from model_signing.manifest import Serialization
    from model_signing.methods.base import Signer
    from model_signing.policy.lock import Lock
    from model_signing.policy.registry import Registry
    from model_signing.results import SignerIdentity

__all__ = ["SignAllResult", "SignedModel", "sign_all"]


@dataclass(frozen=True)
class SignedModel:
    """One model of the batch: what was done (``signed`` or ``skipped``) and why."""

    name: str
    model_path: str
    signature_path: str
    action: str
    root_digest: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"name": self.name, "model_path": self.model_path, "signature_path": self.signature_path,
                "action": self.action, "root_digest": self.root_digest, "reason": self.reason}


@dataclass(frozen=True)
class SignAllResult:
    """Every model of the batch, and the lock written (if one was asked for)."""

    directory: str
    models: tuple[SignedModel, ...]
    lock: Lock | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of ``sign-all --json``."""
        return {"ok": True, "exit_code": 0, "command": "sign-all", "directory": self.directory,
                "models": [m.as_dict() for m in self.models],
                "lock_file": self.lock.path if self.lock is not None else None}


def sign_all(
    directory: PathLike,
    signer: Signer,
    *,
    hashing: HashingConfig | None = None,
    force: bool = False,
    lock: PathLike | None = None,
    registry: Registry | PathLike | None = None,
    exclude: Sequence[PathLike] = (),
    trust_config: PathLike | None = None,
    offline: bool = False,
    secrets: Mapping[str, bytes] | None = None,
) -> SignAllResult:
    """Sign every model of ``directory`` (see the module) and write or update the ``lock`` file.

    An existing lock keeps its policy, roles and fallbacks; its models are replaced by the directory's.
    """
    from model_signing.hashing import HashingConfig
    from model_signing.policy.lock import Lock, create_lock, models_in
    from model_signing.policy.registry import Registry
    from model_signing.signing import sign

    root = os.fspath(directory)
    config = hashing or HashingConfig()
    reg = Registry.load(registry) if registry is not None and not isinstance(registry, Registry) else registry
    skip = [p for p in (lock, reg.path if reg is not None else None, *exclude) if p is not None]
    done: list[SignedModel] = []
    identity: SignerIdentity | None = None
    for model in models_in(root, exclude=skip):
        name = os.path.basename(model)
        sig = os.path.join(root, f"{name}.sig")
        existed = os.path.lexists(sig)
        if existed and not force:
            if identity is None:
                identity = _identity(signer)
            reason = _still_good(model, sig, signer, identity, config=config, reg=reg, trust_config=trust_config,
                                 offline=offline, secrets=secrets)
            if reason is not None:
                done.append(SignedModel(name, model, sig, "skipped", _signed_root(sig), reason))
                continue
        result = sign(model, signer, hashing=config, signature_path=sig, overwrite=True)
        done.append(SignedModel(name, model, sig, "signed", result.root_digest,
                                "forced" if existed and force else ("re-signed" if existed else "new")))
    written: Lock | None = None
    if lock is not None:
        roles: dict[str, str] = {}
        fallbacks: dict[str, str] = {}
        policy = None
        lock_registry: Registry | PathLike | None = reg
        if os.path.exists(lock):
            old = Lock.load(lock)
            roles = {m.name: m.role for m in old.models if m.role == "shadow"}
            fallbacks = {m.name: m.fallback_for for m in old.models if m.fallback_for is not None}
            policy = old.policy
            lock_registry = reg if reg is not None else old.registry
        names = {m.name for m in done}
        written = create_lock(
            [m.model_path for m in done], lock, registry=lock_registry,
            roles={k: v for k, v in roles.items() if k in names},
            fallbacks={k: v for k, v in fallbacks.items() if k in names and v in names},
            policy=policy, overwrite=True, trust_config=trust_config, offline=offline, secrets=secrets,
        )
    return SignAllResult(root, tuple(done), written)


def _identity(signer: Signer) -> SignerIdentity | None:
    from model_signing.methods.base import IdentifiedSigner

    return signer.identity if isinstance(signer, IdentifiedSigner) else None


def _signed_root(sig: str) -> str | None:
    from model_signing import inspecting

    digest = inspecting.inspect(sig).statement.root_digest
    return digest.hex() if digest is not None else None


def _still_good(
    model: str,
    sig: str,
    signer: Signer,
    identity: SignerIdentity | None,
    *,
    config: HashingConfig,
    reg: Registry | None,
    **options: Any,
) -> str | None:
    """Why the existing signature can stay, or ``None`` when the model must be signed again."""
    from model_signing import inspecting, methods
    from model_signing.hashing import HashingConfig, hash_model
    from model_signing.hashing import walk as _walk
    from model_signing.methods.base import ChecksOwnSignatures, Timestamping
    from model_signing.oms import statement as _statement

    try:
        claim = inspecting.inspect(sig)
    except ModelSigningError:
        return None
    if identity is None or not _same_signer(claim.signer, identity):
        return None
    if isinstance(signer, Timestamping) and len(claim.rfc3161_timestamps) < len(signer.timestamp_authorities):
        # The signer now asks timestamp authorities: a signature without their timestamps is not what this
        # run would make (its time would rest on nothing but the signer's word).
        return None
    # The paths a signature ignores stay out of its coverage for good (verify ignores them too): when
    # this run would ignore others, the old signature is not what was asked for.
    try:
        ignored = _walk.walk(model, allow_symlinks=config.allow_symlinks, ignore_paths=config.ignore_paths,
                             signature_path=sig).ignore_paths
    except ModelSigningError:
        return None
    if tuple(sorted(claim.statement.manifest.serialization.ignore_paths)) != tuple(sorted(ignored)):
        return None
    if reg is not None:
        if not _same_settings(claim.statement.manifest.serialization, config):
            return None
        checked = reg.check(model, sig, max_workers=config.max_workers, **options)
        return f"verifies (publisher {checked.publisher.id})" if checked.ok and checked.publisher else None
    if not isinstance(signer, ChecksOwnSignatures):
        return None  # a claim alone is not enough to keep a signature
    try:
        # Only what the signature authenticates is trusted from here on: the settings and the root digest.
        statement = _statement.parse_statement(signer.check_own(methods.read_bundle(sig)), source=sig)
    except ModelSigningError:
        return None
    signed = statement.manifest.serialization
    if not _same_settings(signed, config) or statement.root_digest is None:
        return None
    if tuple(sorted(signed.ignore_paths)) != tuple(sorted(ignored)):
        return None
    try:
        current = hash_model(model, HashingConfig.from_serialization(signed, max_workers=config.max_workers,
                                                                     progress=False), signature_path=sig)
    except ModelSigningError:
        return None
    if statement.root_digest != current.root_digest():
        return None
    return "signature verifies with this signer's key, content unchanged"


def _same_settings(signed: Serialization, config: HashingConfig) -> bool:
    """Whether an existing signature was made with the hashing settings asked for now."""
    if (signed.method, signed.hash_type, signed.allow_symlinks) != (config.method, config.hash_type,
                                                                    config.allow_symlinks):
        return False
    return signed.method != "shards" or signed.shard_size == config.shard_size


def _same_signer(claimed: SignerIdentity, me: SignerIdentity) -> bool:
    if claimed.method != me.method:
        return False
    if me.method in ("key", "secret"):
        return claimed.key_id == me.key_id
    if me.method == "certificate":
        return (claimed.certificate_subject, claimed.certificate_issuer) == (me.certificate_subject,
                                                                              me.certificate_issuer)
    return (claimed.identity, claimed.issuer) == (me.identity, me.issuer)

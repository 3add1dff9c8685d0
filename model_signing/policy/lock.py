"""Lock files for model packs: which models, signed by whom, with which root digest, and what to do when one fails.

```python
from model_signing.policy import Lock

pack = Lock.load("model-lock.json").verify(audit="audit.log")
if pack.ok:
    asr_path = pack.to_load["asr"]          # the primary, or the fallback the policy chose
```

Lock schema (``schema_version`` 1, JSON; every path relative to the lock file, none may leave its directory):

```json
{
  "schema_version": 1,
  "registry": "publishers.json",
  "policy": {
    "require": "all",                      // "all" | "any" | ["asr", "tts"]
    "allowed_publishers": ["speech-team"], // default: every publisher of the registry
    "on_failure": {"content_mismatch": "fallback", "lock_mismatch": "fail", "missing_model": "fallback",
                   "invalid_signature": "halt", "unknown_signer": "halt"}
  },
  "models": [
    {"name": "asr", "path": "asr", "signature": "asr.sig", "root_digest": "<hex>",
     "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": false, "ignore_paths": []},
     "publishers": ["speech-team"], "role": "primary"},
    {"name": "asr-small", "path": "asr-small", "...": "...", "role": {"fallback_for": "asr"}}
  ]
}
```

Failure kinds and the actions each allows (the first is the default):

=====================  ===================  =====================================================
kind                   actions              when
=====================  ===================  =====================================================
``content_mismatch``   fail, fallback, warn  the signature verifies, the files differ (exit 3)
``lock_mismatch``      fail, fallback, warn  valid, but not the root digest or settings locked (3)
``missing_model``      fail, fallback, warn  the model's path does not exist (3)
``invalid_signature``  halt                 the signature does not verify, or is missing (2)
``unknown_signer``     halt                 no allowed publisher signed it, or it was revoked (2)
``error``              fail                 the model cannot be read as given (1)
=====================  ===================  =====================================================

``halt`` fails the whole pack whatever ``require`` says: a security failure can never be turned into a
pass or a fallback.  ``fallback`` uses the model whose role is ``{"fallback_for": NAME}``, if it
verified; ``warn`` accepts the model and says so (a missing model is then left out of ``to_load``).
Roles: ``primary`` (the default) models are what ``require: all|any`` counts; ``shadow`` models are
verified and reported, and only their halts count; fallbacks stand by.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from model_signing._internal.types import PathLike
from model_signing.errors import (
    InputError,
    LockMismatchError,
    ModelMismatchError,
    ModelSigningError,
    PolicyFileError,
    PublisherError,
    SignatureFormatError,
    VerificationError,
)
from model_signing.policy.fields import Fields, dumps, read_document

if TYPE_CHECKING:
    from model_signing.policy.registry import PreparedCheck, PublisherCheck, Registry

__all__ = [
    "Lock", "LockedModel", "ModelOutcome", "PackResult", "Policy", "create_lock", "failure_kind", "lock_error",
    "models_in",
]

SCHEMA_VERSION = 1
FailureKind = Literal[
    "content_mismatch", "lock_mismatch", "missing_model", "invalid_signature", "unknown_signer", "error"
]
#: Each failure kind's allowed actions, the default first.
ACTIONS: dict[str, tuple[str, ...]] = {
    "content_mismatch": ("fail", "fallback", "warn"),
    "lock_mismatch": ("fail", "fallback", "warn"),
    "missing_model": ("fail", "fallback", "warn"),
    "invalid_signature": ("halt",),
    "unknown_signer": ("halt",),
    "error": ("fail",),
}
#: Exit code of each failure kind.
EXIT_CODES: dict[str, int] = {
    "content_mismatch": 3, "lock_mismatch": 3, "missing_model": 3, "invalid_signature": 2, "unknown_signer": 2,
    "error": 1,
}
#: Which failure is worst when several fail the pack: a bad signature outranks a mismatch, which outranks
#: bad input (as for a single model).
_SEVERITY = {2: 3, 3: 2, 1: 1, 0: 0}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Policy:
    """What a pack needs (``require``), who may sign it (``allowed_publishers``), and the action per failure."""

    require: str | tuple[str, ...] = "all"
    #: ``None``: every publisher of the registry.
    allowed_publishers: tuple[str, ...] | None = None
    on_failure: Mapping[str, str] = field(default_factory=lambda: {k: v[0] for k, v in ACTIONS.items()})

    def __post_init__(self) -> None:
        # A policy built in Python is held to the table as a policy file is: a halt never becomes a fallback.
        # And it must require something: an empty (or mistyped) ``require`` left no model required, so a
        # model that failed (a content mismatch) passed the pack.
        req = self.require
        if isinstance(req, str) and req not in ("all", "any"):
            raise InputError(f"policy require {req!r} is neither all nor any; write \"all\", \"any\" or model names")
        if not isinstance(req, str) and (not req or not all(isinstance(n, str) for n in req)):
            raise InputError("policy require is an empty list or names a model with something other than a "
                             "string; name at least one model, or write \"all\"")
        for kind, action in self.on_failure.items():
            if action not in ACTIONS.get(kind, ()):
                raise InputError(f"policy on_failure maps {kind!r} to {action!r}, which is not an action for it; "
                                 f"use one of: {', '.join(ACTIONS.get(kind, ())) or '(no such failure kind)'}")

    def action(self, kind: str) -> str:
        """The action for failure ``kind``."""
        return self.on_failure.get(kind, ACTIONS[kind][0])

    def to_dict(self) -> dict[str, Any]:
        """The lock file's ``policy`` object."""
        out: dict[str, Any] = {"require": self.require if isinstance(self.require, str) else list(self.require)}
        if self.allowed_publishers is not None:
            out["allowed_publishers"] = list(self.allowed_publishers)
        out["on_failure"] = {k: self.action(k) for k in ACTIONS if k != "error"}
        return out

    @classmethod
    def load(cls, path: PathLike) -> Policy:
        """A policy file: the lock's ``policy`` object plus ``schema_version``."""
        where = os.fspath(path)
        doc = read_document(where, "policy")
        f = Fields(where)
        t = f.table(doc, "", allowed={"schema_version", "require", "allowed_publishers", "on_failure"},
                    required={"schema_version"})
        f.version(t, SCHEMA_VERSION)
        return _policy(f, {k: v for k, v in t.items() if k != "schema_version"}, "")


@dataclass(frozen=True)
class LockedModel:
    """One model of the pack as the lock records it (paths absolute once loaded)."""

    name: str
    path: str
    signature: str
    root_digest: str
    serialization: Mapping[str, Any]
    publishers: tuple[str, ...] = ()
    role: str = "primary"
    #: For ``role == "fallback"``: the model it stands in for.
    fallback_for: str | None = None

    def to_dict(self, base: str) -> dict[str, Any]:
        """The lock file's entry (paths relative to the lock's directory ``base``)."""
        return {
            "name": self.name,
            "path": _relative(self.path, base),
            "signature": _relative(self.signature, base),
            "root_digest": self.root_digest,
            "serialization": dict(self.serialization),
            "publishers": list(self.publishers),
            "role": {"fallback_for": self.fallback_for} if self.role == "fallback" else self.role,
        }


@dataclass(frozen=True)
class ModelOutcome:
    """What happened to one model of the pack."""

    model: LockedModel
    check: PublisherCheck | None
    #: ``None`` when it verified and matches the lock.
    kind: str | None
    #: ``verified``, ``warn``, ``fallback`` (its fallback was used), ``fail``, ``halt``, ``standby``
    #: (a fallback not needed), ``used-as-fallback``.
    action: str
    message: str | None
    seconds: float
    #: The model loaded in its place (``action == "fallback"``).
    replaced_by: str | None = None

    @property
    def exit_code(self) -> int:
        """The failure's exit code (0 when it verified)."""
        return EXIT_CODES[self.kind] if self.kind else 0

    @property
    def publisher(self) -> str | None:
        """The publisher that signed it (when the signature verified)."""
        return self.check.publisher.id if self.check and self.check.publisher and self.check.result else None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``verify-all --json``)."""
        c = self.check
        return {
            "name": self.model.name,
            "role": self.model.role,
            "fallback_for": self.model.fallback_for,
            "path": self.model.path,
            "signature_path": self.model.signature,
            "publisher": self.publisher,
            "method": c.method if c else None,
            "signer_identity": c.signer.as_dict() if c and c.signer else None,
            "root_digest_expected": self.model.root_digest,
            "root_digest_signed": c.result.root_digest if c and c.result else None,
            "root_digest_actual": c.result.actual_root_digest if c and c.result else None,
            "failure": self.kind,
            "action": self.action,
            "replaced_by": self.replaced_by,
            "exit_code": self.exit_code,
            "error": self.message,
            "differences": [d.as_dict() for d in c.result.differences] if c and c.result else [],
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class PackResult:
    """The verdict on a pack: every model's outcome, whether the policy is satisfied, and what to load."""

    lock_path: str
    models: tuple[ModelOutcome, ...]
    ok: bool
    exit_code: int
    #: Model name -> the path to load for it (the model itself, or the fallback the policy chose).
    to_load: Mapping[str, str]
    #: Why the policy is not satisfied (empty when it is).
    reasons: tuple[str, ...] = ()

    @property
    def fallbacks(self) -> dict[str, str]:
        """Model name -> the fallback used for it."""
        return {m.model.name: m.replaced_by for m in self.models if m.replaced_by}

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of ``verify-all --json``."""
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "command": "verify-all",
            "lock_file": self.lock_path,
            "error": "; ".join(self.reasons) or None,
            "models": [m.as_dict() for m in self.models],
            "fallbacks": self.fallbacks,
            "to_load": dict(self.to_load),
        }


@dataclass(frozen=True)
class Lock:
    """A loaded lock file."""

    path: str
    models: tuple[LockedModel, ...]
    policy: Policy = field(default_factory=Policy)
    #: The registry the lock names (absolute), if any.
    registry: str | None = None

    @classmethod
    def load(cls, path: PathLike) -> Lock:
        """Read and strictly validate the lock file at ``path`` (:class:`PolicyFileError` naming the field)."""
        where = os.fspath(path)
        return cls.from_document(read_document(where, "lock file"), where)

    @classmethod
    def from_document(cls, doc: object, path: str) -> Lock:
        """Validate a parsed lock document."""
        f = Fields(path)
        base = os.path.dirname(os.path.abspath(path))
        t = f.table(doc, "", allowed={"schema_version", "registry", "policy", "models"},
                    required={"schema_version", "models"})
        f.version(t, SCHEMA_VERSION)
        # The registry is shared by many packs, so it may live anywhere (only models must stay inside).
        registry = f.path(base, t, "registry", "", anywhere=True)
        policy = _policy(f, t["policy"], "policy") if "policy" in t else Policy()
        models: list[LockedModel] = []
        names: dict[str, int] = {}
        raw_models = f.list(t["models"], "models")
        if not raw_models:
            f.fail("models", "is empty", "lock at least one model")
        for i, raw in enumerate(raw_models):
            m = _model(f, base, raw, f"models[{i}]")
            if m.name in names:
                f.fail(f"models[{i}].name", f"duplicate model name {m.name!r} (also models[{names[m.name]}])",
                       "give each model its own name")
            names[m.name] = i
            models.append(m)
        for i, m in enumerate(models):
            if m.fallback_for is not None:
                if m.fallback_for not in names:
                    f.fail(f"models[{i}].role.fallback_for", f"names no model of the lock ({m.fallback_for!r})",
                           f"use one of: {', '.join(names)}")
                if m.fallback_for == m.name:
                    f.fail(f"models[{i}].role.fallback_for", "names the model itself", "name the model it replaces")
                if models[names[m.fallback_for]].role == "fallback":
                    f.fail(f"models[{i}].role.fallback_for", f"{m.fallback_for!r} is a fallback itself",
                           "name a primary or shadow model")
        lock = cls(path, tuple(models), policy, registry)
        lock._check_policy(f, policy, "policy")
        return lock

    def _check_policy(self, f: Fields, policy: Policy, where: str) -> None:
        names = [m.name for m in self.models]
        if not isinstance(policy.require, str):
            for i, name in enumerate(policy.require):
                if name not in names:
                    f.fail(f"{where}.require[{i}]", f"names no model of the lock ({name!r})",
                           f"use one of: {', '.join(names)}")

    def to_document(self) -> dict[str, Any]:
        """The lock as a JSON document."""
        base = os.path.dirname(os.path.abspath(self.path))
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        if self.registry is not None:
            out["registry"] = _relative(self.registry, base)
        out["policy"] = self.policy.to_dict()
        out["models"] = [m.to_dict(base) for m in self.models]
        return out

    def verify(
        self,
        *,
        policy: Policy | None = None,
        registry: Registry | PathLike | None = None,
        audit: PathLike | None = None,
        max_parallel: int | None = None,
        trust_config: PathLike | None = None,
        offline: bool = False,
        secrets: Mapping[str, bytes] | None = None,
        max_workers: int | None = None,
    ) -> PackResult:
        """Verify every model of the pack and apply the policy (``policy`` replaces the lock's own).

        In three phases: (1) up to ``max_parallel`` models at a time (default: the CPU count) are prepared
        in threads: signature checked with the candidate publishers' material, statement parsed, tree
        walked (:meth:`Registry.prepare_check`); (2) every prepared model's files are hashed through ONE
        worker pool of ``max_workers`` processes (default: the CPU count) per hash type, largest work items
        first across models (:func:`model_signing.hashing.hash_file_sets`), not one pool per model; (3)
        each model is compared and judged against the lock.  A model that fails in any phase (missing,
        bad signature, unreadable file, mismatch) fails alone: the others go on.  ``audit`` is an audit
        log to append one record per model to.  Each model's ``seconds`` include the shared hashing pass.
        """
        from model_signing.hashing import default_workers, hash_file_sets
        from model_signing.policy.registry import PreparedCheck, Registry

        policy = policy or self.policy
        reg = self._checked_registry(registry, policy)
        assert isinstance(reg, Registry)
        parallel = max(1, min(max_parallel or default_workers(), len(self.models)))

        def prepare(m: LockedModel) -> tuple[PublisherCheck | PreparedCheck | None, str | None, str | None, float]:
            start = time.monotonic()
            step, kind, message = self._prepare_model(
                reg, m=m, policy=policy, trust_config=trust_config, offline=offline, secrets=secrets
            )
            return step, kind, message, time.monotonic() - start

        # Phase 1, in threads: each model's signature check (sigstore waits on the network) and walk.
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="verify-all") as pool:
            steps = list(pool.map(prepare, self.models))
        # Phase 2: every prepared model's files in one pool per hash type (a failure stays its model's).
        ready = [i for i, (step, *_rest) in enumerate(steps) if isinstance(step, PreparedCheck)]
        start = time.monotonic()
        hashed = hash_file_sets(
            [(p.verification.files, p.verification.config) for p in (_prepared(steps[i][0]) for i in ready)],
            max_workers=max_workers,
        )
        shared = time.monotonic() - start
        # Phase 3: compare and judge each model against the lock.
        checked: list[tuple[PublisherCheck | None, str | None, str | None, float]] = []
        by_index = dict(zip(ready, hashed, strict=True))
        for i, (m, (step, kind, message, seconds)) in enumerate(zip(self.models, steps, strict=True)):
            if i not in by_index:
                assert not isinstance(step, PreparedCheck)
                checked.append((step, kind, message, seconds))
                continue
            start = time.monotonic()
            check = _prepared(step).finish(by_index[i])
            # A model's time includes the pack's shared hashing pass, which it waited for.
            checked.append((check, *_judge(m, check), seconds + shared + time.monotonic() - start))
        result = _decide(self, policy, checked)
        if audit is not None:
            self._audit(audit, result)
        return result

    def model(self, name_or_path: PathLike) -> LockedModel:
        """The locked model with that name, else the one at that path (:class:`InputError` naming the models)."""
        want = os.fspath(name_or_path)
        for m in self.models:
            if m.name == want:
                return m
        real = os.path.realpath(want)
        for m in self.models:
            if os.path.realpath(m.path) == real:
                return m
        raise InputError(f"lock file {self.path} locks no model named or at {want!r}; its models: "
                         f"{', '.join(m.name for m in self.models)}")

    def fallback_of(self, name: str) -> LockedModel | None:
        """The model whose role is ``{"fallback_for": name}``, if any."""
        return next((m for m in self.models if m.fallback_for == name), None)

    def prepare_model(
        self,
        model: LockedModel,
        *,
        registry: Registry | PathLike | None = None,
        trust_config: PathLike | None = None,
        offline: bool = False,
        secrets: Mapping[str, bytes] | None = None,
    ) -> PublisherCheck | PreparedCheck:
        """One model's check up to its hashing, as :meth:`verify` makes it (the lock's policy, publishers).

        A :class:`PreparedCheck` once the signature verified with an allowed publisher's material (hash
        its ``verification.files``, ``finish`` it, then :func:`lock_error`), else the finished, failed
        :class:`PublisherCheck`.  Raises, having read nothing, when the model is missing
        (:class:`~model_signing.errors.LockMismatchError`, kind ``missing_model``), unsigned
        (:class:`~model_signing.errors.VerificationError`) or no publisher may sign it
        (:class:`~model_signing.errors.PublisherError`).
        """
        reg = self._checked_registry(registry, self.policy)
        step, kind, message = self._prepare_model(reg, m=model, policy=self.policy, trust_config=trust_config,
                                                  offline=offline, secrets=secrets)
        if step is not None:
            return step
        assert kind is not None and message is not None
        if kind == "missing_model":
            raise LockMismatchError(f"{model.name}: {message}", kind=kind)
        if kind == "unknown_signer":
            raise PublisherError(message)
        raise VerificationError(message)

    def _checked_registry(self, registry: Registry | PathLike | None, policy: Policy) -> Registry:
        """The registry to verify with, once every publisher the policy and the models name is in it."""
        self._check_policy(Fields("policy"), policy, "policy")
        reg = self._registry(registry)
        known = set(reg.ids())
        for i, pid in enumerate(policy.allowed_publishers or ()):
            if pid not in known:
                raise PolicyFileError(f"{self.path}: policy.allowed_publishers[{i}]: publisher {pid!r} is not in "
                                      f"registry {reg.path}; add it there or remove it here")
        for i, m in enumerate(self.models):
            for j, pid in enumerate(m.publishers):
                if pid not in known:
                    raise PolicyFileError(f"{self.path}: models[{i}].publishers[{j}]: publisher {pid!r} is not in "
                                          f"registry {reg.path}; add it there or remove it here")
        return reg

    def _registry(self, registry: Registry | PathLike | None) -> Registry:
        from model_signing.policy.registry import Registry

        if isinstance(registry, Registry):
            return registry
        if registry is not None:
            return Registry.load(registry)
        if self.registry is None:
            raise PolicyFileError(f"{self.path}: registry: the lock names no registry; add \"registry\" or pass "
                                  "`registry`")
        return Registry.load(self.registry)

    def _prepare_model(
        self,
        reg: Registry,
        *,
        m: LockedModel,
        policy: Policy,
        trust_config: PathLike | None,
        offline: bool,
        secrets: Mapping[str, bytes] | None,
    ) -> tuple[PublisherCheck | PreparedCheck | None, str | None, str | None]:
        """The model's check up to its hashing, or its failure (kind, message) when it fails before."""
        from model_signing.policy.registry import PublisherCheck

        if not os.path.lexists(m.path):
            return None, "missing_model", f"model {m.path} does not exist"
        allowed = _allowed(m.publishers, policy.allowed_publishers)
        if allowed is not None and not allowed:
            return None, "unknown_signer", (f"no publisher may sign {m.name}: its publishers and the policy's "
                                            "allowed_publishers have none in common")
        if not os.path.lexists(m.signature):
            return None, "invalid_signature", f"signature {m.signature} does not exist; the model is unsigned"
        step = reg.prepare_check(m.path, m.signature, allowed=allowed, trust_config=trust_config, offline=offline,
                                 secrets=secrets)
        if isinstance(step, PublisherCheck):
            kind, message = _judge(m, step)
            return step, kind, message
        return step, None, None

    def _audit(self, path: PathLike, result: PackResult) -> None:
        from model_signing.policy import audit

        for o in result.models:
            if o.check is not None:
                rec = audit.record_for(
                    o.check, command="verify-all", expected_root=o.model.root_digest, policy_action=o.action,
                    exit_code=o.exit_code, result=_result_word(o), error=o.message, model_name=o.model.name,
                    lock_file=self.path,
                )
            else:
                rec = audit.AuditRecord(
                    model_path=o.model.path, model_name=o.model.name, signature_path=o.model.signature,
                    root_digest_expected=o.model.root_digest, result=_result_word(o), exit_code=o.exit_code,
                    policy_action=o.action, error=o.message, command="verify-all", lock_file=self.path,
                )
            audit.append(path, rec)


def _prepared(step: PublisherCheck | PreparedCheck | None) -> PreparedCheck:
    from model_signing.policy.registry import PreparedCheck

    assert isinstance(step, PreparedCheck)
    return step


def _judge(m: LockedModel, check: PublisherCheck) -> tuple[str | None, str | None]:
    """The failure kind and message of a finished check against what the lock records (``None`` if it passes)."""
    err = check.error
    if err is not None:
        return _kind(err), str(err)
    assert check.result is not None
    signed_root = check.result.root_digest
    if signed_root != m.root_digest:
        return "lock_mismatch", (
            f"{m.name} is signed with root digest {signed_root}, not the locked {m.root_digest}: re-signed "
            f"(by {check.publisher.id if check.publisher else 'an allowed publisher'}) but not re-locked; "
            "re-create the lock if the new version is meant")
    signed_ser = check.result.manifest.serialization.to_dict()
    if dict(m.serialization) != signed_ser:
        return "lock_mismatch", (f"{m.name} is signed with other serialization settings than the lock "
                                 "records; re-create the lock if they are meant")
    return None, None


def lock_error(model: LockedModel, check: PublisherCheck) -> ModelSigningError | None:
    """Why a finished ``check`` of ``model`` fails the lock (its own error, else a
    :class:`~model_signing.errors.LockMismatchError`), or ``None`` when it passes."""
    kind, message = _judge(model, check)
    if kind is None:
        return None
    if check.error is not None:
        return check.error
    assert message is not None
    return LockMismatchError(message, kind=kind, result=check.result)


def failure_kind(err: ModelSigningError) -> str:
    """The lock's failure kind for an error met verifying one of its models (see the module's table)."""
    if isinstance(err, LockMismatchError):
        return err.kind
    return _kind(err)


def _result_word(o: ModelOutcome) -> str:
    return (o.kind or "verified").replace("_", "-")


def _allowed(model: tuple[str, ...], policy: tuple[str, ...] | None) -> list[str] | None:
    if not model and policy is None:
        return None
    if not model:
        return list(policy or ())
    return [p for p in model if policy is None or p in policy]


def _kind(err: ModelSigningError) -> str:
    if isinstance(err, PublisherError):
        return "unknown_signer"
    if isinstance(err, ModelMismatchError):
        return "content_mismatch"
    if isinstance(err, VerificationError | SignatureFormatError):
        return "invalid_signature"
    return "error"


def _decide(
    lock: Lock, policy: Policy, checked: list[tuple[PublisherCheck | None, str | None, str | None, float]]
) -> PackResult:
    """Apply the policy to the per-model verdicts."""
    by_name = {m.name: (m, *c) for m, c in zip(lock.models, checked, strict=True)}
    fallbacks = {m.fallback_for: m.name for m in lock.models if m.fallback_for is not None}
    outcomes: dict[str, ModelOutcome] = {}
    satisfied: dict[str, bool] = {}
    to_load: dict[str, str] = {}
    used: set[str] = set()
    halted: list[ModelOutcome] = []
    for m, check, kind, message, seconds in by_name.values():
        if m.role == "fallback":
            continue
        replaced_by, detail = None, message
        if kind is None:
            action, ok = "verified", True
        else:
            action = policy.action(kind)
            ok = action == "warn"
            if action == "fallback":
                fb = fallbacks.get(m.name)
                if fb is not None and by_name[fb][2] is None:
                    replaced_by, ok = fb, True
                    used.add(fb)
                else:
                    why = f"its fallback {fb} did not verify" if fb else "it has no fallback"
                    detail = f"{message}; {why}"
                    action = "fail"
        o = ModelOutcome(m, check, kind, action, detail, seconds, replaced_by)
        outcomes[m.name] = o
        satisfied[m.name] = ok
        if action == "halt":
            halted.append(o)
        if ok and not (kind == "missing_model" and replaced_by is None):  # warn: go on without it
            to_load[m.name] = by_name[replaced_by][0].path if replaced_by else m.path
    for m, check, kind, message, seconds in by_name.values():
        if m.role != "fallback":
            continue
        if kind is not None and policy.action(kind) == "halt":
            action = "halt"
        elif m.name in used:
            action = "used-as-fallback"
        else:
            action = "standby" if kind is None else "fail"
        o = ModelOutcome(m, check, kind, action, message, seconds)
        outcomes[m.name] = o
        satisfied[m.name] = kind is None
        if action == "halt":
            halted.append(o)
    reasons: list[str] = [f"{o.model.name}: {o.message}" for o in halted]
    failing: list[ModelOutcome] = list(halted)
    primaries = [m.name for m in lock.models if m.role == "primary"]
    if policy.require == "all":
        required = primaries
    elif policy.require == "any":
        required = []
        if primaries and not any(satisfied[n] for n in primaries):
            reasons.append("no primary model verified (require: any)")
            failing += [outcomes[n] for n in primaries]
    else:
        required = list(policy.require)
    for name in required:
        if not satisfied[name] and outcomes[name] not in halted:
            reasons.append(f"{name}: {outcomes[name].message}")
            failing.append(outcomes[name])
    ok = not reasons
    code = 0 if ok else max((o.exit_code for o in failing), key=lambda c: _SEVERITY.get(c, 0), default=1)
    ordered = tuple(outcomes[m.name] for m in lock.models)
    return PackResult(lock.path, ordered, ok, code, to_load if ok else {}, tuple(reasons))


# -- reading ------------------------------------------------------------------------------------------


def _policy(f: Fields, raw: object, where: str) -> Policy:
    t = f.table(raw, where, allowed={"require", "allowed_publishers", "on_failure"})
    name = f"{where}.require" if where else "require"
    req = t.get("require", "all")
    require: str | tuple[str, ...]
    if isinstance(req, str):
        if req not in ("all", "any"):
            f.fail(name, f"{req!r} is neither all nor any", 'write "all", "any" or a list of model names')
        require = req
    elif isinstance(req, list):
        require = f.strings(t, "require", where)
        if not require:
            f.fail(name, "is an empty list", "name at least one model, or write \"all\"")
    else:
        f.fail(name, "is neither a string nor a list", 'write "all", "any" or a list of model names')
    allowed = f.strings(t, "allowed_publishers", where) if "allowed_publishers" in t else None
    actions = {k: v[0] for k, v in ACTIONS.items()}
    if "on_failure" in t:
        fw = f"{where}.on_failure" if where else "on_failure"
        ot = f.table(t["on_failure"], fw, allowed=[k for k in ACTIONS if k != "error"])
        for kind, value in ot.items():
            if not isinstance(value, str) or value not in ACTIONS[kind]:
                fix = ("security failures can never pass or fall back: write \"halt\"" if ACTIONS[kind] == ("halt",)
                       else f"use one of: {', '.join(ACTIONS[kind])}")
                f.fail(f"{fw}.{kind}", f"{value!r} is not an action for this failure", fix)
            actions[kind] = value
    return Policy(require, allowed, actions)


def _model(f: Fields, base: str, raw: object, where: str) -> LockedModel:
    from model_signing.manifest import Serialization

    keys = {"name", "path", "signature", "root_digest", "serialization", "publishers", "role"}
    t = f.table(raw, where, allowed=keys, required={"name", "path", "signature", "root_digest", "serialization"})
    name = f.string(t, "name", where, required=True)
    assert name is not None
    if not _NAME.fullmatch(name):
        f.fail(f"{where}.name", f"{name!r} is not a valid model name", "use letters, digits, '.', '_' and '-'")
    path = f.path(base, t, "path", where, required=True)
    signature = f.path(base, t, "signature", where, required=True)
    assert path is not None and signature is not None
    root = f.string(t, "root_digest", where, required=True)
    assert root is not None
    if not _HEX.fullmatch(root):
        f.fail(f"{where}.root_digest", f"{root!r} is not a SHA-256 hex digest", "write 64 lowercase hex digits")
    ser = f.table(t["serialization"], f"{where}.serialization",
                  allowed={"method", "hash_type", "allow_symlinks", "shard_size", "ignore_paths"},
                  required={"method", "hash_type", "allow_symlinks"})
    try:
        normal = Serialization.from_dict(ser).to_dict()
    except SignatureFormatError as exc:
        f.fail(f"{where}.serialization", str(exc).replace("predicate.serialization.", ""),
               "copy the signature's serialization object")
    role, fallback_for = "primary", None
    raw_role = t.get("role", "primary")
    if isinstance(raw_role, str):
        if raw_role not in ("primary", "shadow"):
            f.fail(f"{where}.role", f"{raw_role!r} is not a role",
                   'write "primary", "shadow" or {"fallback_for": NAME}')
        role = raw_role
    else:
        rt = f.table(raw_role, f"{where}.role", allowed={"fallback_for"}, required={"fallback_for"})
        fallback_for = f.string(rt, "fallback_for", f"{where}.role", required=True)
        role = "fallback"
    return LockedModel(name, path, signature, root, normal, f.strings(t, "publishers", where), role, fallback_for)


def _refused(name: str, err: ModelSigningError) -> ModelSigningError:
    """``err`` (same class of failure, same exit code) saying which model could not be locked."""
    if isinstance(err, ModelMismatchError):
        return err
    kind = PublisherError if isinstance(err, PublisherError) else (
        VerificationError if isinstance(err, VerificationError) else InputError)
    return kind(f"cannot lock {name}: {err}")


def _relative(path: str, base: str) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


# -- creating -----------------------------------------------------------------------------------------


def models_in(directory: PathLike, *, exclude: Sequence[PathLike] = ()) -> list[str]:
    """The models of a pack directory: each immediate subdirectory and each top-level file, by name.

    Signatures (``*.sig``), hidden entries, lock files of registry edits (``*.lock``), the files in
    ``exclude``, and registries, lock files and policies (``.json``/``.toml`` documents with a
    ``schema_version`` and their keys) are not models.
    """
    root = os.fspath(directory)
    skip = {os.path.realpath(os.fspath(p)) for p in exclude}
    out = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name.endswith((".sig", ".lock")):
            continue
        if os.path.realpath(entry.path) in skip:
            continue
        if entry.is_file(follow_symlinks=False) and _policy_document(entry.path):
            continue
        if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
            out.append(entry.path)
    if not out:
        raise InputError(f"{root} holds no model (no subdirectory and no file besides signatures)")
    return out


def _policy_document(path: str) -> bool:
    """Whether ``path`` is one of this package's documents (a registry, lock or policy), not a model file."""
    if not path.endswith((".json", ".toml")) or os.path.getsize(path) > 1 << 20:
        return False
    try:
        doc = read_document(path, "file")
    except ModelSigningError:
        return False
    keys = {"models", "publishers", "require", "on_failure", "allowed_publishers"}
    return isinstance(doc, dict) and "schema_version" in doc and bool(keys & set(doc))


def find_signature(model: str) -> str:
    """The signature of ``model``: ``<name>.sig`` beside it, else a ``model.sig`` beside it that names it."""
    from model_signing import inspecting

    parent, name = os.path.split(os.path.abspath(model))
    own = os.path.join(parent, f"{name}.sig")
    if os.path.lexists(own):
        return own
    shared = os.path.join(parent, "model.sig")
    if os.path.lexists(shared):
        try:
            if inspecting.inspect(shared).statement.subject_name == name:
                return shared
        except ModelSigningError:
            pass
    raise InputError(f"no signature found for model {model} (looked for {own} and a {shared} that names it); "
                     "sign it first")


def create_lock(
    models: Sequence[PathLike],
    output: PathLike,
    *,
    registry: Registry | PathLike | None = None,
    roles: Mapping[str, str] | None = None,
    fallbacks: Mapping[str, str] | None = None,
    policy: Policy | None = None,
    signatures: Mapping[str, PathLike] | None = None,
    overwrite: bool = False,
    trust_config: PathLike | None = None,
    offline: bool = False,
    secrets: Mapping[str, bytes] | None = None,
) -> Lock:
    """Write a lock file for ``models`` to ``output``; the lock.

    With a ``registry`` each model is verified now and locked with the publisher that signed it
    (a model that does not verify is refused); without one the root digests the signatures claim are
    recorded (unverified) and any publisher of the registry used at verification may sign them.
    ``roles`` maps a model name to ``shadow``; ``fallbacks`` a fallback's name to the model it stands in for.
    Nothing is written when any model is refused.
    """
    from model_signing import inspecting
    from model_signing._internal.atomic import write_atomic
    from model_signing.policy.registry import Registry

    out = os.fspath(output)
    if os.path.lexists(out) and not overwrite:
        raise InputError(f"lock file {out} already exists; pass `overwrite=True` to replace it")
    base = os.path.dirname(os.path.abspath(out))
    reg = Registry.load(registry) if registry is not None and not isinstance(registry, Registry) else registry
    roles, fallbacks, signatures = dict(roles or {}), dict(fallbacks or {}), dict(signatures or {})
    locked: list[LockedModel] = []
    for model in models:
        path = os.path.abspath(os.fspath(model))
        name = os.path.basename(path)
        if os.path.commonpath([os.path.realpath(base), os.path.realpath(path)]) != os.path.realpath(base):
            raise InputError(f"model {model} is outside the lock file's directory {base}; write the lock beside "
                             "the models (paths in a lock are relative to it)")
        if not os.path.lexists(path):
            raise InputError(f"model {model} does not exist")
        sig = os.path.abspath(os.fspath(signatures[name])) if name in signatures else find_signature(path)
        if os.path.commonpath([os.path.realpath(base), os.path.realpath(sig)]) != os.path.realpath(base):
            raise InputError(f"signature {sig} is outside the lock file's directory {base}")
        publishers: tuple[str, ...] = ()
        if reg is not None:
            check = reg.check(path, sig, trust_config=trust_config, offline=offline, secrets=secrets)
            if check.error is not None:
                raise _refused(name, check.error)
            assert check.result is not None and check.publisher is not None
            root, ser = check.result.root_digest, check.result.manifest.serialization.to_dict()
            publishers = (check.publisher.id,)
        else:
            claim = inspecting.inspect(sig)
            digest = claim.statement.root_digest
            root, ser = (digest.hex() if digest else None), claim.statement.manifest.serialization.to_dict()
        if root is None:
            raise InputError(f"cannot lock {name}: its signature {sig} is a v0.2 signature without a root digest; "
                             "re-sign it")
        role = roles.get(name, "primary")
        if role not in ("primary", "shadow"):
            raise InputError(f"role {role!r} of {name} is not a role; use primary or shadow (or a fallback)")
        if name in fallbacks:
            role = "fallback"
        locked.append(LockedModel(name, path, sig, root, ser, publishers, role, fallbacks.get(name)))
    lock = Lock(out, tuple(locked), policy or Policy(),
                os.path.abspath(os.fspath(reg.path)) if reg is not None else None)
    for label, given in (("role", roles), ("fallback", fallbacks)):
        for name in given:
            if name not in {m.name for m in locked}:
                raise InputError(f"the {label} given for {name!r} names no model being locked")
    text = dumps(lock.to_document())
    # The document must read back as written (names unique, fallbacks naming models, policy valid).
    from model_signing._internal import strict_json

    checked = Lock.from_document(strict_json.loads(text.encode("utf-8")), out)
    try:
        write_atomic(out, text, overwrite=overwrite)
    except FileExistsError:
        raise InputError(f"lock file {out} appeared meanwhile; pass `overwrite=True` to replace it") from None
    except OSError as exc:
        raise InputError(f"cannot write lock file {out}: {exc.strerror or exc}") from None
    return dataclasses.replace(checked)

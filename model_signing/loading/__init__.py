"""Verified loading (L8): verify, rehash, scan, then load exactly the bytes that were hashed.

```python
import model_signing as ms

loaded = ms.load("model.safetensors", verifier=ms.KeyVerifier("key.pub"))
tensors = loaded.value                      # {name: numpy.ndarray}
state = ms.load("ckpt.pt", verifier=v, loader="torch").value   # torch.load(weights_only=True)
```

No window between verification and loading: the model is hashed in this process, and the tap on the
hashing pass (:class:`_Retain`) keeps each file's bytes as they are read, from the very buffer they are
hashed from.  The loaders parse those bytes -- never the file again -- so a file swapped or rewritten
after hashing cannot be what gets loaded.  After loading, every loaded file's identity on disk (device,
inode, size, mtime, ctime) is checked against what the walk saw: a file changed since is an error
(:class:`~model_signing.errors.FileChangedError`), never a silent pass, even though its new content was
not used.

The price is memory: each loaded file is held whole (the loaders need it whole anyway: ``torch.load``,
``safetensors.numpy.load`` and ``onnx.load_model_from_string`` all parse bytes in memory), twice for a
moment while it is handed to the loader.  Files that are not loaded are hashed (and scanned) but not kept.

Loaders (libraries imported only when used; a missing one is an :class:`~model_signing.errors.InputError`
naming the extra that installs it):

* ``"safetensors"`` -- ``safetensors.numpy.load``: ``{name: numpy.ndarray}`` (extra ``modelseal[safetensors]``);
* ``"torch"`` -- ``torch.load(BytesIO(bytes), weights_only=True, map_location="cpu")`` (``modelseal[torch]``);
* ``"onnx"`` -- ``onnx.load_model_from_string``: an ``onnx.ModelProto`` (``modelseal[onnx]``);
* ``"bytes"`` -- the raw bytes;
* ``"auto"`` -- by content, never by name: a safetensors header, a zip or a pickle (``torch``), a protobuf
  (``onnx``; one that is no ONNX model, such as a TensorFlow graph, is skipped in a directory and listed in
  ``LoadedModel.skipped``).

A single-file model gives the loaded object; a directory gives ``{name: object}`` for every file the loader
handles, judged by content as ``auto`` does (``bytes``: every file; ``files=`` names them instead).

Lock file policies
------------------

```python
loaded = ms.load("asr", policy="pack/model-lock.json")    # the lock's registry; no verifier needed
loaded.model, loaded.path, loaded.reason                 # "asr-small", ".../asr-small", "fallback for asr: ..."
```

With ``policy`` (a :class:`~model_signing.policy.Lock` or the path of a lock file), ``path`` names one model
of the lock, by its name or its path.  It is verified as ``verify-all`` verifies it -- the signature the lock
records, checked with the material of the publishers the lock and its policy allow (the registry's
verifiers), the root digest and settings locked -- and loaded through the same path as without a policy:
hashed once in this process, scanned in that pass, and only the bytes hashed are loaded.  When it fails
with a kind the policy maps to ``fallback`` (``content_mismatch``, ``lock_mismatch``, ``missing_model``)
and the lock has a model whose role is ``{"fallback_for": NAME}``, that model is verified, scanned and
loaded the same way instead; ``LoadedModel.model`` names the model loaded and ``reason`` says why
(``"fallback for asr: content mismatch (3): ..."``; ``"verified"`` for the model asked for).  Otherwise
the model's own error is raised.  Choices where the lock's table says more than loading can do:

* ``halt`` (a bad or missing signature, an unknown, disallowed or revoked signer) never falls back: the
  error is raised, and the fallback is not even read;
* ``warn`` raises like ``fail``: ``verify-all`` may accept a pack with a warning, but ``load`` only ever
  hands out a model that matched both its signature and the lock;
* unsafe content (a scan finding, exit 4) raises and never falls back: the lock's policy has no action
  for it (v1 schema), and an authentic model that would run code is a publisher's failure, not a fault a
  smaller model should hide;
* a fallback that fails too raises its own error (chained from the primary's: ``__cause__``); ``loader``,
  ``files`` and ``scan`` apply to it as to the model asked for;
* ``quarantine`` moves each model that failed verification or the scan (the primary before its fallback
  is tried), as :func:`model_signing.verify` does; a missing or unsigned model is never moved.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from model_signing.errors import FileChangedError, InputError

if TYPE_CHECKING:
    from model_signing._internal.types import PathLike
    from model_signing.hashing import Task
    from model_signing.hashing.walk import FileEntry
    from model_signing.methods.base import Verifier
    from model_signing.policy.lock import Lock, LockedModel
    from model_signing.policy.registry import Registry
    from model_signing.results import ScanOutcome, VerifyResult
    from model_signing.scan import ScanConfig
    from model_signing.verifying import TapFactory

__all__ = ["LOADERS", "LoadError", "LoadedModel", "Loader", "load"]

Loader = Literal["auto", "safetensors", "torch", "onnx", "bytes"]
LOADERS: tuple[str, ...] = ("auto", "safetensors", "torch", "onnx", "bytes")

#: The extra that installs each loader's library.
EXTRAS = {"safetensors": "safetensors", "torch": "torch", "onnx": "onnx"}

#: Private test seam: called with the model path after verification and before loading (tests swap a
#: file there); production code never sets it.
_before_load_hook: Callable[[str], None] | None = None


class LoadError(InputError):
    """A verified file could not be loaded by the loader chosen (or found) for it."""


@dataclass(frozen=True)
class LoadedModel:
    """What :func:`load` loaded, and why it may be trusted."""

    #: The loaded object (single file), or ``{name: object}`` for a directory.
    value: Any
    #: The model that was loaded (with a policy, possibly a fallback).
    path: str
    #: The loader used for each loaded file, by manifest name.
    loaders: dict[str, str]
    #: The verification (signer, manifest; its ``scan`` is the scan made in the same pass, if any).
    verification: VerifyResult
    #: Why this model was loaded: ``"verified"``, or with a policy ``"fallback for NAME: KIND (EXIT): ..."``.
    reason: str = "verified"
    #: ``auto`` over a directory: verified files that looked loadable but were not, with the reason.
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    #: With a lock file ``policy``: the lock's name of the model loaded (the one asked for, or its fallback).
    model: str | None = None

    @property
    def scan(self) -> ScanOutcome | None:
        """The scan made while hashing (``None`` with ``scan=False``)."""
        return self.verification.scan


def _sniff(head: bytes) -> str | None:
    """The loader ``auto`` picks for content starting with ``head`` (``None``: not a model file it loads)."""
    if len(head) >= 9:
        (n,) = struct.unpack_from("<Q", head)
        if 2 <= n <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and head[1] <= 5):
        return "torch"
    if head[:1] == b"\x08":  # protobuf field 1 as a varint: ONNX's ir_version (a SavedModel's too: see below)
        return "onnx"
    return None


class _Retain:
    """The tap that keeps the bytes of the files to load as they are hashed (in this process only)."""

    def __init__(self, files: Sequence[FileEntry], loader: str, names: Sequence[str] | None) -> None:
        self.pid = os.getpid()
        self.loader = loader
        self.by_path = {f.path: f for f in files}
        self.wanted = set(names) if names is not None else None
        self.buffers: dict[str, bytearray] = {}  # by manifest name
        self.chosen: dict[str, str] = {}  # manifest name -> loader

    def feed_for(self, task: Task) -> Callable[[memoryview], object] | None:
        if os.getpid() != self.pid:  # pragma: no cover - a planning bug: bytes kept in a worker are lost
            raise RuntimeError("internal error: verified loading must hash in the calling process")
        entry = self.by_path[task.path]
        name = entry.name
        if self.wanted is not None and name not in self.wanted:
            return None
        if task.start != 0 and name not in self.buffers:
            return None  # not kept at its first byte: not a file to load
        pos = task.start

        def keep(view: memoryview) -> None:
            nonlocal pos
            buf = self.buffers.get(name)
            if buf is None:
                sniffed = _sniff(bytes(view[:16]))
                chosen = self.loader if self.loader != "auto" else sniffed
                # Over a whole directory, a loader takes the files that look like its format (bytes: all).
                if self.wanted is None and self.loader != "bytes" and sniffed != chosen:
                    return
                if chosen is None and self.wanted is None:
                    return
                self.chosen[name] = chosen or "bytes"
                buf = self.buffers[name] = bytearray(task.size)
            buf[pos:pos + len(view)] = view
            pos += len(view)

        if task.size == 0 and (self.wanted is not None or self.loader == "bytes"):
            self.buffers[name], self.chosen[name] = bytearray(), self.loader if self.loader != "auto" else "bytes"
        return keep

    def task_done(self, task: Task) -> None:
        return None

    def wants_rest(self, task: Task) -> bool:
        return True  # it keeps every byte of the files it loads: their shards are never released

    def release(self, task: Task) -> None:  # pragma: no cover - never called: wants_rest is always true
        raise RuntimeError("internal error: verified loading needs every byte; nothing can be released")

    def collect(self) -> None:
        return None

    def merge(self, collected: object) -> None:
        return None


def _import(what: str) -> Any:
    import importlib

    module = {"safetensors": "safetensors.numpy", "torch": "torch", "onnx": "onnx"}[what]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(
            f"loading with `loader='{what}'` needs the {what} package ({exc}); install the extra: "
            f"pip install 'modelseal[{EXTRAS[what]}]'"
        ) from None


def _load_one(name: str, data: bytes, loader: str) -> Any:
    if loader == "bytes":
        return data
    lib = _import(loader)
    try:
        if loader == "safetensors":
            return lib.load(data)
        if loader == "torch":
            return lib.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        model = lib.load_model_from_string(data)
        if not model.opset_import:  # protobuf parses almost anything: an ONNX model names its operator sets
            raise ValueError("not an ONNX model (no opset_import)")
        return model
    except Exception as exc:  # noqa: BLE001 - any parser failure is this file's load error, named
        raise LoadError(f"{name}: verified, but {loader} cannot load it ({type(exc).__name__}: {exc}); choose "
                        "another `loader`, or name the files to load with `files`") from None


def _check_unchanged(entries: Sequence[FileEntry]) -> None:
    """Every loaded file is still the one that was hashed (identity, size, times)."""
    for f in entries:
        try:
            st = os.stat(f.path, follow_symlinks=f.follow)
        except OSError as exc:
            raise FileChangedError(f"{f.path} changed after it was verified ({exc.strerror or exc}); the verified "
                                   "bytes were loaded, but the file on disk is no longer them: load it again") from None
        now = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if now != (f.dev, f.ino, f.size, f.mtime_ns, f.ctime_ns):
            raise FileChangedError(f"{f.path} changed after it was verified (replaced or rewritten); refusing to "
                                   "hand out what was loaded: load it again once nothing writes to the model")


def load(
    path: PathLike,
    verifier: Verifier | None = None,
    *,
    signature_path: PathLike | None = None,
    loader: Loader | str = "auto",
    scan: bool | ScanConfig = True,
    policy: Lock | PathLike | None = None,
    registry: Registry | PathLike | None = None,
    secrets: Mapping[str, bytes] | None = None,
    trust_config: PathLike | None = None,
    quarantine: PathLike | None = None,
    files: Sequence[str] | None = None,
    ignore_unsigned_files: bool = False,
) -> LoadedModel:
    """Verify the model at ``path`` with ``verifier``, rehash and scan it, and load the bytes that were hashed.

    ``signature_path`` defaults to ``model.sig`` beside the model.  ``scan``: ``True`` scans with the default
    settings (unsafe at ``medium``), a :class:`~model_signing.scan.ScanConfig` with those, ``False`` not at all
    (the loaders still refuse code: ``torch.load`` runs with ``weights_only=True``).  ``quarantine``: as for
    :func:`model_signing.verify`.  ``files``: manifest names of the files to load (default: see the module).

    ``policy``: a lock file (a :class:`~model_signing.policy.Lock` or its path) instead of ``verifier`` and
    ``signature_path``: ``path`` is then the name (or path) of one of its models, verified with the
    signature, root digest and publishers the lock records (``registry``: the lock's own by default;
    ``secrets``, ``trust_config``: as for :meth:`~model_signing.policy.Lock.verify`), and the fallback the
    policy allows is loaded in its place when it fails (see the module's *Lock file policies*).

    Raises what :func:`model_signing.verify` raises (a bad signature, a mismatch, unsafe content: nothing is
    loaded then), :class:`LoadError` when a verified file cannot be loaded,
    :class:`~model_signing.errors.FileChangedError` when a file changed while or after it was hashed.
    """
    from model_signing.signing import default_signature_path
    from model_signing.verifying import verify

    if loader not in LOADERS:
        raise InputError(f"unknown `loader` {loader!r}; use one of {', '.join(LOADERS)}")
    scan_config = _scan_config(scan)
    if policy is not None:
        if verifier is not None or signature_path is not None or ignore_unsigned_files:
            raise InputError("with a lock file `policy`, the lock names each model's signature and publishers: "
                             "drop `verifier`, `signature_path` and `ignore_unsigned_files`")
        return _load_locked(path, policy, registry=registry, secrets=secrets, trust_config=trust_config,
                            loader=loader, scan=scan_config, quarantine=quarantine, files=files)
    if verifier is None:
        raise InputError("`verifier` is missing: give the verifier of the model's signer, or a lock file `policy`")
    if registry is not None or secrets is not None or trust_config is not None:
        raise InputError("`registry`, `secrets` and `trust_config` go with a lock file `policy`; pass one, or "
                         "drop them")
    model = os.fspath(path)
    sig = os.fspath(signature_path) if signature_path is not None else default_signature_path(model)

    def verified(tap: TapFactory) -> VerifyResult:
        # One worker: the bytes must be kept in this process (forked workers' memory does not come back).
        return verify(model, verifier, signature_path=sig, scan=scan_config, quarantine=quarantine, max_workers=1,
                      progress=False, ignore_unsigned_files=ignore_unsigned_files, _tap=tap)

    return _load_verified(model, verified, loader=loader, files=files)


def _load_verified(
    model: str, verified: Callable[[TapFactory], VerifyResult], *, loader: str, files: Sequence[str] | None
) -> LoadedModel:
    """Run ``verified`` (a verification that hashes through the tap it is given), then load the kept bytes.

    The one path every load takes, with or without a policy: nothing is loaded unless ``verified`` returned.
    """
    taps: list[_Retain] = []

    def retain(entries: Sequence[FileEntry]) -> _Retain:
        tap = _Retain(entries, loader, files)
        taps.append(tap)
        return tap

    result = verified(retain)
    (tap,) = taps
    if files is not None:
        missing = sorted(set(files) - set(tap.buffers))
        if missing:
            raise InputError(f"`files` names {', '.join(map(repr, missing))}, which the verified model does not "
                             "contain")
    if _before_load_hook is not None:
        _before_load_hook(model)
    if not tap.buffers:
        raise InputError(f"{model}: verified, but no file in it is one `loader='{loader}'` loads; choose another "
                         "`loader` or name the files with `files`")
    # ``auto`` over a directory picked candidates by their first bytes; one that its loader cannot parse (a
    # TensorFlow graph is a protobuf too, a .keras or .npz file a zip) is skipped and listed, not an error.
    lenient = loader == "auto" and files is None and not os.path.isfile(model)
    loaded: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in sorted(tap.buffers):
        data = bytes(tap.buffers.pop(name))  # the loaders want bytes; the bytearray goes at once
        try:
            loaded[name] = _load_one(name, data, tap.chosen[name])
        except LoadError as exc:
            if not lenient:
                raise
            skipped[name] = str(exc)
        del data
    entries = [f for f in tap.by_path.values() if f.name in loaded]
    _check_unchanged(entries)
    single = os.path.isfile(model) and len(loaded) == 1
    return LoadedModel(
        value=next(iter(loaded.values())) if single else loaded,
        path=model,
        loaders={n: tap.chosen[n] for n in loaded},
        verification=result,
        skipped=skipped,
    )


def _load_locked(
    target: PathLike,
    policy: Lock | PathLike,
    *,
    registry: Registry | PathLike | None,
    secrets: Mapping[str, bytes] | None,
    trust_config: PathLike | None,
    loader: str,
    scan: ScanConfig | None,
    quarantine: PathLike | None,
    files: Sequence[str] | None,
) -> LoadedModel:
    """:func:`load` under a lock file: the model, or the fallback its policy allows (see the module)."""
    from model_signing.errors import ModelSigningError
    from model_signing.policy.lock import ACTIONS, EXIT_CODES, Lock, failure_kind

    if isinstance(policy, Lock):
        lock = policy
    elif isinstance(policy, str | os.PathLike):
        lock = Lock.load(policy)
    else:
        raise InputError(f"`policy` must be a Lock or the path of a lock file, not {policy!r}")
    wanted = lock.model(target)

    def attempt(m: LockedModel) -> LoadedModel:
        return _load_verified(m.path, _locked_verification(lock, m, registry=registry, secrets=secrets,
                                                           trust_config=trust_config, scan=scan,
                                                           quarantine=quarantine),
                              loader=loader, files=files)

    try:
        return dataclasses.replace(attempt(wanted), model=wanted.name)
    except ModelSigningError as exc:
        kind = failure_kind(exc)
        fallback = lock.fallback_of(wanted.name)
        # Only a kind the policy may turn into a fallback: halts (a bad signature, an unknown or revoked
        # signer) and plain errors have no such action, and unsafe content (kind ``error``) raises too.
        if fallback is None or "fallback" not in ACTIONS[kind] or lock.policy.action(kind) != "fallback":
            raise
        why = f"fallback for {wanted.name}: {kind.replace('_', ' ')} ({EXIT_CODES[kind]}): {exc}"
        try:
            loaded = attempt(fallback)
        except ModelSigningError as fallback_exc:
            raise fallback_exc from exc  # the fallback's own failure, caused by the primary's
        return dataclasses.replace(loaded, model=fallback.name, reason=why)


def _locked_verification(
    lock: Lock,
    m: LockedModel,
    *,
    registry: Registry | PathLike | None,
    secrets: Mapping[str, bytes] | None,
    trust_config: PathLike | None,
    scan: ScanConfig | None,
    quarantine: PathLike | None,
) -> Callable[[TapFactory], VerifyResult]:
    """The verification of the locked model ``m`` for :func:`_load_verified`: what ``verify-all`` checks
    (the lock's publishers, root digest and settings), hashed in this process through the tap, scanned in
    the same pass, and quarantined on failure as :func:`model_signing.verify` does."""

    def verified(tap_factory: TapFactory) -> VerifyResult:
        from model_signing import quarantine as _quarantine
        from model_signing.errors import ModelMismatchError, UnsafeModelError, VerificationError
        from model_signing.hashing import combine_taps, hash_files, scan_tap
        from model_signing.policy.lock import lock_error
        from model_signing.policy.registry import PublisherCheck
        from model_signing.results import unsafe_error

        # A bad quarantine directory fails before any work, as in verify.
        destination = _quarantine.check_destination(m.path, os.fspath(quarantine)) if quarantine else None
        # Missing, unsigned, or no publisher in common: raised before anything is read (nothing to move).
        step = lock.prepare_model(m, registry=registry, trust_config=trust_config, secrets=secrets)
        try:
            if isinstance(step, PublisherCheck):
                assert step.error is not None
                raise step.error
            prepared = step.verification
            scanning = scan_tap(prepared.files, scan) if scan is not None else None
            taps = [t for t in (scanning, tap_factory(prepared.files)) if t is not None]
            # One worker, no progress bar: the kept bytes must stay in this process (as in load).
            config = dataclasses.replace(prepared.config, max_workers=1, progress=False)
            resources = hash_files(prepared.files, config, tap=taps[0] if len(taps) == 1 else combine_taps(*taps))
            check = step.finish(resources)
            error = lock_error(m, check)
            if error is not None:
                raise error
            assert check.result is not None
            report = scanning.report() if scanning is not None else None
            result = dataclasses.replace(check.result, scan=report)
            if report is not None and report.unsafe():
                raise unsafe_error(report, result)
            return result
        except (VerificationError, ModelMismatchError, UnsafeModelError) as exc:
            if destination is not None:
                _quarantine.quarantine_after_failure(m.path, m.signature, destination, exc)
            raise

    return verified


def _scan_config(scan: bool | ScanConfig) -> ScanConfig | None:
    from model_signing.scan import ScanConfig, make_config

    if scan is True:
        return make_config()
    if scan is False:
        return None
    if isinstance(scan, ScanConfig):
        return scan
    raise InputError(f"`scan` must be True, False or a ScanConfig, not {scan!r}")

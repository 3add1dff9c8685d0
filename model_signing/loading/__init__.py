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
``policy=`` (a lock file policy choosing a fallback model) is a seam for the policy layer: only ``None`` is
accepted until it exists.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from model_signing.errors import FileChangedError, InputError

if TYPE_CHECKING:
    from model_signing._internal.types import PathLike
    from model_signing.hashing import Task
    from model_signing.hashing.walk import FileEntry
    from model_signing.methods.base import Verifier
    from model_signing.results import ScanOutcome, VerifyResult
    from model_signing.scan import ScanConfig

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
    #: Why this model was loaded: ``"verified"`` (a policy will add its reasons, e.g. a fallback).
    reason: str = "verified"
    #: ``auto`` over a directory: verified files that looked loadable but were not, with the reason.
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

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
    verifier: Verifier,
    *,
    signature_path: PathLike | None = None,
    loader: Loader | str = "auto",
    scan: bool | ScanConfig = True,
    policy: object | None = None,
    quarantine: PathLike | None = None,
    files: Sequence[str] | None = None,
    ignore_unsigned_files: bool = False,
) -> LoadedModel:
    """Verify the model at ``path`` with ``verifier``, rehash and scan it, and load the bytes that were hashed.

    ``signature_path`` defaults to ``model.sig`` beside the model.  ``scan``: ``True`` scans with the default
    settings (unsafe at ``medium``), a :class:`~model_signing.scan.ScanConfig` with those, ``False`` not at all
    (the loaders still refuse code: ``torch.load`` runs with ``weights_only=True``).  ``quarantine``: as for
    :func:`model_signing.verify`.  ``files``: manifest names of the files to load (default: see the module).

    Raises what :func:`model_signing.verify` raises (a bad signature, a mismatch, unsafe content: nothing is
    loaded then), :class:`LoadError` when a verified file cannot be loaded,
    :class:`~model_signing.errors.FileChangedError` when a file changed while or after it was hashed.
    """
    from model_signing.signing import default_signature_path
    from model_signing.verifying import verify

    if policy is not None:
        raise InputError("`policy` (lock file policies) is not available in this version; pass None")
    if loader not in LOADERS:
        raise InputError(f"unknown `loader` {loader!r}; use one of {', '.join(LOADERS)}")
    scan_config = _scan_config(scan)
    model = os.fspath(path)
    sig = os.fspath(signature_path) if signature_path is not None else default_signature_path(model)
    taps: list[_Retain] = []

    def retain(entries: Sequence[FileEntry]) -> _Retain:
        tap = _Retain(entries, loader, files)
        taps.append(tap)
        return tap

    # One worker: the bytes must be kept in this process (forked workers' memory does not come back).
    result = verify(model, verifier, signature_path=sig, scan=scan_config, quarantine=quarantine, max_workers=1,
                    progress=False, ignore_unsigned_files=ignore_unsigned_files, _tap=retain)
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


def _scan_config(scan: bool | ScanConfig) -> ScanConfig | None:
    from model_signing.scan import ScanConfig, make_config

    if scan is True:
        return make_config()
    if scan is False:
        return None
    if isinstance(scan, ScanConfig):
        return scan
    raise InputError(f"`scan` must be True, False or a ScanConfig, not {scan!r}")


def replace_reason(loaded: LoadedModel, reason: str) -> LoadedModel:
    """``loaded`` with another ``reason`` (for the policy layer's fallbacks)."""
    return dataclasses.replace(loaded, reason=reason)

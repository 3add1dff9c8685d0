"""Write a PyTorch checkpoint (``torch.save``'s zip format) of any size without torch and without RAM.

A ``torch.save`` file is an uncompressed zip: ``<archive>/data.pkl`` (a protocol-2 pickle of the state
dict whose tensors refer to storages by persistent id), one record ``<archive>/data/<key>`` per storage,
and small ``version`` / ``byteorder`` records.  Generating multi-GB ``.bin`` / ``.pth`` weights this way
keeps the real structure (``torch.load(..., weights_only=True)`` reads the result) while streaming the
payload, so memory stays flat whatever the size.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness._wire import Fill, write_parts

#: storage class name and element size for the dtypes the layouts use
DTYPES: dict[str, tuple[str, int]] = {"bfloat16": ("BFloat16Storage", 2), "float32": ("FloatStorage", 4),
                                      "float16": ("HalfStorage", 2)}


class _Global:
    """A reference to ``module.name`` written as a pickle GLOBAL (torch need not be importable)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pragma: no cover - pickle only checks callability
        raise TypeError("placeholder")


class _Storage:
    def __init__(self, key: str, storage_type: str, numel: int) -> None:
        self.key, self.storage_type, self.numel = key, storage_type, numel


class _Tensor:
    def __init__(self, storage: _Storage, shape: Sequence[int]) -> None:
        self.storage, self.shape = storage, tuple(shape)

    def __reduce__(self) -> tuple[Any, ...]:
        stride = tuple(math.prod(self.shape[i + 1:]) for i in range(len(self.shape)))
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, 0, self.shape, stride, False, collections.OrderedDict()))


# the pure-Python pickler: its save() can be extended to write GLOBALs for names torch would provide
_PyPickler: Any = getattr(pickle, "_Pickler")  # noqa: B009 - private name, not in the stubs


class _Pickler(_PyPickler):  # type: ignore[misc]
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", obj.storage_type), obj.key, "cpu", obj.numel)
        return None

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)


def write_checkpoint(path: Path, tensors: Sequence[tuple[str, Sequence[int]]], dtype: str, seed: int = 0) -> int:
    """Write a state dict of ``(name, shape)`` tensors filled with pseudo-random data; return the file size."""
    storage_type, itemsize = DTYPES[dtype]
    archive = path.stem.replace(".", "_") or "archive"
    state: collections.OrderedDict[str, _Tensor] = collections.OrderedDict()
    sizes: list[tuple[str, int]] = []
    for index, (name, shape) in enumerate(tensors):
        numel = math.prod(shape)
        state[name] = _Tensor(_Storage(str(index), storage_type, numel), shape)
        sizes.append((str(index), numel * itemsize))
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(f"{archive}/data.pkl", buf.getvalue())
        zf.writestr(f"{archive}/byteorder", "little")
        for key, nbytes in sizes:
            info = zipfile.ZipInfo(f"{archive}/data/{key}", date_time=(2024, 1, 1, 0, 0, 0))
            info.file_size = nbytes  # lets zipfile choose zip64 up front for records over 4 GiB
            with zf.open(info, "w") as out:
                write_parts(out, [Fill(nbytes, seed + int(key))])
        zf.writestr(f"{archive}/version", "3\n")
    return path.stat().st_size

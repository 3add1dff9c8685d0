"""``model_signing.load``: verify, rehash, scan, then load exactly the bytes that were hashed.

Real torch 2.13.0, safetensors, onnx and numpy; expected values built independently in the test.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from safetensors.numpy import save as st_save

import model_signing as ms
from model_signing import loading
from model_signing.errors import FileChangedError, InputError, ModelMismatchError, UnsafeModelError
from tests import _scan_samples as samples

Keypair = Callable[..., tuple[Path, Path]]


@pytest.fixture
def keys(ec_keypair: Keypair) -> tuple[Path, Path]:
    return ec_keypair()


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "canary-executed"
    yield path
    assert not path.exists(), "a payload was executed"


def _sign(model: Path, keys: tuple[Path, Path], **kw: object) -> Path:
    sig = model.parent / f"{model.name}.sig"
    ms.sign(model, ms.KeySigner(keys[0]), signature_path=sig, hashing=ms.HashingConfig(**kw))  # type: ignore[arg-type]
    return sig


def _onnx_model() -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_each_loader_loads_the_verified_file(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    arrays: dict[str, np.ndarray] = {"w": np.arange(12, dtype=np.float32).reshape(3, 4),
                                     "b": np.ones(3, dtype=np.int64)}
    st = tmp_path / "model.safetensors"
    st.write_bytes(st_save(arrays))
    state = {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "layer.bias": torch.zeros(2)}
    pt = tmp_path / "ckpt.pt"
    torch.save(state, pt)
    legacy = tmp_path / "legacy.pt"
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    ox = tmp_path / "m.onnx"
    ox.write_bytes(_onnx_model().SerializeToString())
    raw = tmp_path / "blob.bin"
    raw.write_bytes(b"\xff" + os.urandom(3000))
    verifier = ms.KeyVerifier(keys[1])

    got = ms.load(st, verifier, signature_path=_sign(st, keys)).value
    assert set(got) == set(arrays) and all(np.array_equal(got[k], arrays[k]) for k in arrays)
    for path in (pt, legacy):
        loaded = ms.load(path, verifier, signature_path=_sign(path, keys), loader="torch")
        assert set(loaded.value) == set(state) and all(torch.equal(loaded.value[k], state[k]) for k in state)
        assert loaded.loaders == {path.name: "torch"} and loaded.reason == "verified"
        assert loaded.scan is not None and not loaded.scan.unsafe()
    model = ms.load(ox, verifier, signature_path=_sign(ox, keys)).value
    assert isinstance(model, onnx.ModelProto) and model.SerializeToString() == ox.read_bytes()
    assert ms.load(raw, verifier, signature_path=_sign(raw, keys), loader="bytes").value == raw.read_bytes()


def test_directory_auto_loads_weights_by_content(make_model: Callable[..., Path], keys: tuple[Path, Path]) -> None:
    buf = io.BytesIO()
    torch.save({"a": torch.ones(2)}, buf)
    arrays: dict[str, np.ndarray] = {"x": np.zeros(4, dtype=np.float16)}
    model = make_model({
        "config.json": b'{"layers": 1}',
        "weights/pytorch_model.bin": buf.getvalue(),  # a zip whatever it is called
        "weights/model.data": st_save(arrays),        # safetensors by content, not by name
        "saved_model.pb": b"\x08\x01\x12\x02\x08\x01",  # a protobuf that is no ONNX model: skipped
    })
    sig = _sign(model, keys, method="shards", shard_size=100)  # shards: each file's bytes kept in order
    loaded = ms.load(model, ms.KeyVerifier(keys[1]), signature_path=sig)
    assert loaded.loaders == {"weights/model.data": "safetensors", "weights/pytorch_model.bin": "torch"}
    assert torch.equal(loaded.value["weights/pytorch_model.bin"]["a"], torch.ones(2))
    assert np.array_equal(loaded.value["weights/model.data"]["x"], arrays["x"])
    assert list(loaded.skipped) == ["saved_model.pb"]
    named = ms.load(model, ms.KeyVerifier(keys[1]), signature_path=sig, loader="bytes", files=["config.json"])
    assert named.value == {"config.json": b'{"layers": 1}'}


def test_a_file_swapped_after_hashing_is_an_error_not_its_content(tmp_path: Path, keys: tuple[Path, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    good = {"w": torch.ones(3)}
    path = tmp_path / "ckpt.pt"
    torch.save(good, path)
    sig = _sign(path, keys)
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.full((3,), 666.0)}, evil)
    seen: list[object] = []
    real_load = torch.load

    def recording_load(*args: object, **kwargs: object) -> object:
        value = real_load(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(value)
        return value

    monkeypatch.setattr(torch, "load", recording_load)
    monkeypatch.setattr(loading, "_before_load_hook", lambda model: os.replace(evil, path))
    with pytest.raises(FileChangedError, match="changed after it was verified"):
        ms.load(path, ms.KeyVerifier(keys[1]), signature_path=sig)
    # What was parsed were the verified bytes, never the swapped file's.
    assert len(seen) == 1 and torch.equal(seen[0]["w"], good["w"])  # type: ignore[index]


def test_a_file_rewritten_in_place_after_hashing_is_an_error(tmp_path: Path, keys: tuple[Path, Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "blob.bin"
    data = b"\xff" + os.urandom(5000)  # a first byte no format starts with: nothing for the scan to flag
    path.write_bytes(data)
    sig = _sign(path, keys)

    def rewrite(model: str) -> None:
        with open(model, "r+b") as f:
            f.write(b"X")

    monkeypatch.setattr(loading, "_before_load_hook", rewrite)
    with pytest.raises(FileChangedError):
        ms.load(path, ms.KeyVerifier(keys[1]), signature_path=sig, loader="bytes")


def test_verified_bytes_are_the_hashed_bytes(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    path = tmp_path / "blob.bin"
    data = b"\xff" + os.urandom(3 * 1024 * 1024 + 16)  # several read buffers; no format starts with 0xff
    path.write_bytes(data)
    sig = _sign(path, keys, method="shards", shard_size=1_000_000)
    loaded = ms.load(path, ms.KeyVerifier(keys[1]), signature_path=sig, loader="bytes")
    assert hashlib.sha256(loaded.value).hexdigest() == hashlib.sha256(data).hexdigest()
    assert len(loaded.verification.manifest.resources) == 4


def test_unsafe_or_tampered_models_are_never_loaded(make_model: Callable[..., Path], keys: tuple[Path, Path],
                                                    tmp_path: Path, canary: Path) -> None:
    evil = samples.torch_zip(samples.p_reduce(samples.Asm(2), f"touch {canary}"))
    model = make_model({"pytorch_model.bin": evil})
    sig = _sign(model, keys)
    verifier = ms.KeyVerifier(keys[1])
    with pytest.raises(UnsafeModelError):
        ms.load(model, verifier, signature_path=sig)
    # Without the scan, torch's weights_only unpickler still refuses it: a load error, and nothing runs.
    with pytest.raises(loading.LoadError, match=r"pytorch_model\.bin"):
        ms.load(model, verifier, signature_path=sig, scan=False, files=["pytorch_model.bin"])
    (model / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(ModelMismatchError):
        ms.load(model, verifier, signature_path=sig, quarantine=tmp_path / "q")
    assert not model.exists() and len(list((tmp_path / "q").iterdir())) == 1


def test_bad_arguments_and_missing_extras(tmp_path: Path, keys: tuple[Path, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_onnx_model().SerializeToString())
    sig = _sign(path, keys)
    verifier = ms.KeyVerifier(keys[1])
    with pytest.raises(InputError, match="`loader`"):
        ms.load(path, verifier, signature_path=sig, loader="pickle")
    with pytest.raises(InputError, match="drop `verifier`"):
        ms.load(path, verifier, signature_path=sig, policy=tmp_path / "model-lock.json")
    with pytest.raises(InputError, match="`policy` must be a Lock"):
        ms.load(path, policy=object())  # type: ignore[arg-type]
    with pytest.raises(InputError, match="`verifier` is missing"):
        ms.load(path, signature_path=sig)
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the extra were not installed
    with pytest.raises(InputError, match=r"pip install 'modelseal\[onnx\]'"):
        ms.load(path, verifier, signature_path=sig)


def test_an_explicit_loader_over_a_directory_takes_its_format_only(make_model: Callable[..., Path],
                                                                   keys: tuple[Path, Path]) -> None:
    buf = io.BytesIO()
    torch.save({"a": torch.ones(1)}, buf)
    model = make_model({"config.json": b"{}", "ckpt.pt": buf.getvalue(), "w.safetensors": st_save(
        {"x": np.ones(2, dtype=np.float32)})})
    sig = _sign(model, keys)
    loaded = ms.load(model, ms.KeyVerifier(keys[1]), signature_path=sig, loader="torch")
    assert loaded.loaders == {"ckpt.pt": "torch"}
    everything = ms.load(model, ms.KeyVerifier(keys[1]), signature_path=sig, loader="bytes")
    assert set(everything.value) == {"config.json", "ckpt.pt", "w.safetensors"}
    assert everything.value["config.json"] == b"{}"

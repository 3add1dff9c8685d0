"""``model_signing.load`` under a lock file policy: the model, or the fallback the policy allows, and why.

One real pack per module: ``asr`` (safetensors weights, signed with a key by publisher ``speech``) and its
fallback ``asr-small`` (signed with a certificate chain by publisher ``vendor``), a registry written with
``edit_registry`` and a lock written with ``create_lock``.  Tests that change the pack work on a copy.
Expected bytes are the ones the test wrote; nothing is mocked.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from safetensors.numpy import save as st_save

import model_signing as ms
from model_signing import loading
from model_signing.errors import (
    InputError,
    LockMismatchError,
    ModelMismatchError,
    PublisherError,
    UnsafeModelError,
    VerificationError,
)
from model_signing.policy import Lock, Policy, create_lock, edit_registry
from model_signing.policy.registry import CertificateMaterial, KeyMaterial, Publisher
from tests import _pki
from tests import _scan_samples as samples

FAST = ms.HashingConfig(max_workers=1)
ASR_ARRAYS: dict[str, np.ndarray] = {"w": np.arange(12, dtype=np.float32).reshape(3, 4),
                                     "b": np.ones(3, dtype=np.int64)}
SMALL_ARRAYS: dict[str, np.ndarray] = {"w": np.full((2, 2), 0.5, dtype=np.float32)}
FILES: dict[str, dict[str, bytes]] = {
    "asr": {"model.safetensors": st_save(ASR_ARRAYS), "config.json": b'{"arch": "conformer"}'},
    "asr-small": {"model.safetensors": st_save(SMALL_ARRAYS), "vocab.txt": b"a\nb\n"},
}
ALL_FALLBACK = {"content_mismatch": "fallback", "lock_mismatch": "fallback", "missing_model": "fallback"}


@dataclass(frozen=True)
class Pack:
    root: Path
    keys: Path

    @property
    def lock(self) -> Path:
        return self.root / "model-lock.json"


def _key_id(public_pem: bytes) -> str:
    """``sha256:`` + SHA-256 of the PEM SubjectPublicKeyInfo, computed here (the registry checks it)."""
    key = serialization.load_pem_public_key(public_pem)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(pem).hexdigest()


def _write(root: Path, files: dict[str, bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Pack:
    base = tmp_path_factory.mktemp("lockload")
    keys, root = base / "keys", base / "pack"
    keys.mkdir()
    for name, files in FILES.items():
        _write(root / name, files)
    speech = _pki.ec_key()
    _pki.write_private_key(speech, keys / "speech.pem")
    _pki.write_public_key(speech, keys / "speech.pub")
    pki = _pki.Pki(keys / "pki")
    ms.sign(root / "asr", ms.KeySigner(keys / "speech.pem"), signature_path=root / "asr.sig", hashing=FAST)
    ms.sign(root / "asr-small", ms.CertificateSigner(pki.key_pem, pki.leaf_pem, [pki.chain_pem]),
            signature_path=root / "asr-small.sig", hashing=FAST)
    pub = (keys / "speech.pub").read_bytes()
    publishers = [
        Publisher("speech", "Speech team", keys=(KeyMaterial(_key_id(pub), pub.decode()),)),
        Publisher("vendor", "ASR vendor",
                  certificates=(CertificateMaterial((pki.root_pem.read_text(),), "O=Test,CN=signer"),)),
    ]
    for p in publishers:
        edit_registry(root / "publishers.json", lambda r, p=p: r.with_publisher(p))  # type: ignore[misc]
    create_lock([root / "asr", root / "asr-small"], root / "model-lock.json", registry=root / "publishers.json",
                fallbacks={"asr-small": "asr"}, policy=Policy(on_failure=ALL_FALLBACK))
    return Pack(root, keys)


@pytest.fixture
def copy(pack: Pack, tmp_path: Path) -> Pack:
    shutil.copytree(pack.root, tmp_path / "pack")
    return Pack(tmp_path / "pack", pack.keys)


@pytest.fixture
def loaded_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The models handed to a loader (the hook runs after verification, before any byte is loaded)."""
    seen: list[str] = []
    monkeypatch.setattr(loading, "_before_load_hook", seen.append)
    yield seen


def _with_policy(lock_path: Path, **on_failure: str) -> Lock:
    lock = Lock.load(lock_path)
    return dataclasses.replace(lock, policy=Policy(on_failure=on_failure))


def _tamper_signature(sig: Path) -> None:
    doc = json.loads(sig.read_text())
    entry = doc["dsseEnvelope"]["signatures"][0]
    raw = bytearray(base64.b64decode(entry["sig"]))
    raw[-1] ^= 1
    entry["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(doc))


def test_the_primary_that_verifies_is_loaded(pack: Pack, loaded_paths: list[str]) -> None:
    lock = Lock.load(pack.lock)
    loaded = ms.load("asr", policy=pack.lock)  # by name; the lock's own registry
    assert loaded.model == "asr" and loaded.reason == "verified"
    assert loaded.path == str(pack.root / "asr") == lock.model("asr").path
    assert set(loaded.value["model.safetensors"]) == set(ASR_ARRAYS)
    assert all(np.array_equal(loaded.value["model.safetensors"][k], v) for k, v in ASR_ARRAYS.items())
    assert loaded.verification.method == "key" and loaded.scan is not None and not loaded.scan.unsafe()
    root = hashlib.sha256()
    for name in sorted(FILES["asr"]):
        root.update(hashlib.sha256(FILES["asr"][name]).digest())
    assert loaded.verification.actual_root_digest == root.hexdigest() == lock.model("asr").root_digest
    # By path, with a Lock object, the bytes loader: the exact bytes written here.
    raw = ms.load(pack.root / "asr", policy=lock, loader="bytes")
    assert raw.model == "asr" and raw.value == FILES["asr"]
    assert loaded_paths == [str(pack.root / "asr")] * 2


def test_content_mismatch_with_fallback_loads_the_verified_fallback(copy: Pack, loaded_paths: list[str]) -> None:
    (copy.root / "asr" / "config.json").write_bytes(b'{"arch": "evil"}')
    lock = _with_policy(copy.lock, content_mismatch="fallback")
    loaded = ms.load("asr", policy=lock, loader="bytes")
    assert loaded.model == "asr-small" and loaded.path == str(copy.root / "asr-small")
    assert loaded.value == FILES["asr-small"]  # the fallback's bytes, as written by the test
    assert loaded.reason.startswith("fallback for asr: content mismatch (3): ")
    assert "does not match its signature" in loaded.reason
    assert loaded.verification.method == "certificate"
    assert loaded_paths == [str(copy.root / "asr-small")]  # the tampered primary never reached a loader
    tensors = ms.load("asr", policy=lock).value["model.safetensors"]
    assert np.array_equal(tensors["w"], SMALL_ARRAYS["w"])


def test_content_mismatch_with_fail_raises(copy: Pack, loaded_paths: list[str]) -> None:
    (copy.root / "asr" / "model.safetensors").write_bytes(st_save({"w": np.zeros(1, dtype=np.float32)}))
    for action in ("fail", "warn"):  # warn: load never hands out content that did not verify
        with pytest.raises(ModelMismatchError) as info:
            ms.load("asr", policy=_with_policy(copy.lock, content_mismatch=action))
        assert [d.name for d in info.value.differences] == ["model.safetensors"]
    assert loaded_paths == []


def test_a_tampered_signature_halts_and_the_fallback_is_never_loaded(copy: Pack, loaded_paths: list[str]) -> None:
    _tamper_signature(copy.root / "asr.sig")
    (copy.root / "asr" / "config.json").write_bytes(b"{}")  # a mismatch too: the bad signature outranks it
    with pytest.raises(VerificationError) as info:
        ms.load("asr", policy=copy.lock, quarantine=copy.root.parent / "q")  # the lock falls back on all it may
    assert info.value.exit_code == 2 and "publisher 'speech'" in str(info.value)
    assert loaded_paths == []
    # No policy built in Python can turn a halt into a fallback either.
    with pytest.raises(InputError, match="'invalid_signature' to 'fallback'"):
        Policy(on_failure={"invalid_signature": "fallback"})
    # The primary was quarantined (a failed verification); the fallback was not touched.
    assert not (copy.root / "asr").exists() and (copy.root / "asr-small").is_dir()
    (incident,) = (copy.root.parent / "q").iterdir()
    assert json.loads((incident / "incident.json").read_text())["exit_code"] == 2


def test_an_unknown_signer_halts(copy: Pack, tmp_path: Path, loaded_paths: list[str]) -> None:
    stranger = _pki.ec_key()
    _pki.write_private_key(stranger, tmp_path / "stranger.pem")
    ms.sign(copy.root / "asr", ms.KeySigner(tmp_path / "stranger.pem"), signature_path=copy.root / "asr.sig",
            hashing=FAST, overwrite=True)
    with pytest.raises(PublisherError, match="is not any publisher"):
        ms.load("asr", policy=copy.lock)
    assert loaded_paths == []


def test_a_missing_primary_with_fallback_loads_the_fallback(copy: Pack) -> None:
    shutil.rmtree(copy.root / "asr")
    loaded = ms.load("asr", policy=copy.lock, loader="bytes")
    assert loaded.model == "asr-small" and loaded.value == FILES["asr-small"]
    assert loaded.reason.startswith("fallback for asr: missing model (3): ")
    with pytest.raises(LockMismatchError, match="does not exist") as info:
        ms.load("asr", policy=_with_policy(copy.lock, missing_model="fail"))
    assert info.value.exit_code == 3 and info.value.kind == "missing_model"


def test_a_model_re_signed_but_not_re_locked(copy: Pack) -> None:
    (copy.root / "asr" / "config.json").write_bytes(b'{"arch": "v2"}')
    ms.sign(copy.root / "asr", ms.KeySigner(copy.keys / "speech.pem"), signature_path=copy.root / "asr.sig",
            hashing=FAST, overwrite=True)
    loaded = ms.load("asr", policy=copy.lock, loader="bytes")
    assert loaded.model == "asr-small" and loaded.reason.startswith("fallback for asr: lock mismatch (3): ")
    with pytest.raises(LockMismatchError, match="not the locked") as info:
        ms.load("asr", policy=_with_policy(copy.lock, lock_mismatch="fail"))
    assert info.value.kind == "lock_mismatch" and info.value.result is not None  # the signature did verify


def test_a_fallback_that_fails_too_raises_its_own_error(copy: Pack, loaded_paths: list[str]) -> None:
    (copy.root / "asr" / "config.json").write_bytes(b"{}")
    (copy.root / "asr-small" / "vocab.txt").write_bytes(b"x\n")
    with pytest.raises(ModelMismatchError) as info:
        ms.load("asr", policy=copy.lock)
    assert [d.name for d in info.value.differences] == ["vocab.txt"]  # the fallback's
    assert isinstance(info.value.__cause__, ModelMismatchError)
    assert [d.name for d in info.value.__cause__.differences] == ["config.json"]  # caused by the primary's
    assert loaded_paths == []


def test_quarantine_moves_the_failed_primary_then_loads_the_fallback(copy: Pack) -> None:
    (copy.root / "asr" / "config.json").write_bytes(b"{}")
    q = copy.root.parent / "q"
    loaded = ms.load("asr", policy=copy.lock, loader="bytes", quarantine=q)
    assert loaded.model == "asr-small" and loaded.value == FILES["asr-small"]
    assert not (copy.root / "asr").exists()
    (incident,) = q.iterdir()
    record = json.loads((incident / "incident.json").read_text())
    assert record["exit_code"] == 3 and [d["name"] for d in record["differences"]] == ["config.json"]
    assert (incident / "asr" / "config.json").read_bytes() == b"{}"


def test_unsafe_content_never_falls_back(copy: Pack, tmp_path: Path, loaded_paths: list[str]) -> None:
    canary = tmp_path / "canary-executed"
    (copy.root / "asr" / "extra.pkl").write_bytes(samples.p_reduce(samples.Asm(2), f"touch {canary}"))
    ms.sign(copy.root / "asr", ms.KeySigner(copy.keys / "speech.pem"), signature_path=copy.root / "asr.sig",
            hashing=FAST, overwrite=True)
    create_lock([copy.root / "asr", copy.root / "asr-small"], copy.lock, registry=copy.root / "publishers.json",
                fallbacks={"asr-small": "asr"}, policy=Policy(on_failure=ALL_FALLBACK), overwrite=True)
    with pytest.raises(UnsafeModelError) as info:
        ms.load("asr", policy=copy.lock)
    assert info.value.result is not None and info.value.result.method == "key"  # authentic, but unsafe
    assert loaded_paths == [] and not canary.exists()


def test_bad_arguments_with_a_policy(pack: Pack) -> None:
    with pytest.raises(InputError, match="locks no model named or at 'tts'; its models: asr, asr-small"):
        ms.load("tts", policy=pack.lock)
    with pytest.raises(InputError, match="drop `verifier`"):
        ms.load("asr", ms.KeyVerifier(pack.keys / "speech.pub"), policy=pack.lock)
    with pytest.raises(InputError, match="go with a lock file `policy`"):
        ms.load(pack.root / "asr", ms.KeyVerifier(pack.keys / "speech.pub"), signature_path=pack.root / "asr.sig",
                registry=pack.root / "publishers.json")

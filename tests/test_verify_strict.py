"""Strictness where the peer is lax: each rule of the issue has a test here.

Signatures with hostile or odd statements are made with a real key (the signature is valid), so the
tests show that the *statement* checks and the *comparison* catch them, not the signature check.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import model_signing as ms
from model_signing.errors import ModelMismatchError, ModelPathError, UnsafePathError
from model_signing.oms import bundle as _bundle
from tests import _pki

FAST = ms.HashingConfig(max_workers=1)


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return _pki.ec_key()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signed(path: Path, key: ec.EllipticCurvePrivateKey, resources: list[tuple[str, str]], **ser: Any) -> Path:
    """Sign (validly) a hand-made OMS statement listing ``resources`` = [(name, sha256 hex)]."""
    serialization = {"method": "files", "hash_type": "sha256", "allow_symlinks": False, "ignore_paths": [".git"]}
    serialization.update(ser)
    root = hashlib.sha256(b"".join(bytes.fromhex(d) for _, d in resources)).hexdigest()
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model", "digest": {"sha256": root}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "resources": [{"name": n, "algorithm": "sha256", "digest": d} for n, d in resources],
            "serialization": serialization,
        },
    }
    path.write_text(_bundle.bundle_json(ms.KeySigner(key).sign(json.dumps(statement).encode())))
    return path


def _verify(model: Path, key: ec.EllipticCurvePrivateKey, sig: Path, **kw: Any) -> ms.VerifyResult:
    return ms.verify(model, ms.KeyVerifier(key.public_key()), signature_path=sig, max_workers=1, **kw)


def _diffs(exc: pytest.ExceptionInfo[ModelMismatchError]) -> list[tuple[str, str]]:
    return [(d.kind, d.name) for d in exc.value.differences]


def _shard_diffs(exc: pytest.ExceptionInfo[ModelMismatchError]) -> list[tuple[str, str]]:
    """Shards: the one per-file difference is ``modified``; the per-shard detail behind it."""
    (difference,) = exc.value.differences
    assert difference.kind == "modified"
    return [(d.kind, d.name) for d in difference.shards]


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "sub/../../secret", "a\\..\\..\\secret"])
def test_escaping_names_are_rejected_before_any_file_is_opened(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path, name: str
) -> None:
    model = make_model({"ok.bin": b"ok"})
    (tmp_path / "secret").write_bytes(b"secret")
    # A FIFO in the model: enumerating it would fail with ModelPathError (and reading it would block),
    # so getting UnsafePathError proves the statement was rejected before the model was touched.
    os.mkfifo(model / "pipe")
    sig = _signed(tmp_path / "m.sig", key, [("ok.bin", _sha(b"ok")), (name, _sha(b"secret"))])
    with pytest.raises(UnsafePathError) as info:
        _verify(model, key, sig)
    assert info.value.exit_code == 1


def test_hostile_signed_ignore_path_is_rejected(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    model = make_model({"ok.bin": b"ok"})
    sig = _signed(tmp_path / "m.sig", key, [("ok.bin", _sha(b"ok"))], ignore_paths=["../elsewhere"])
    with pytest.raises(UnsafePathError, match="ignore_paths"):
        _verify(model, key, sig)


def test_names_with_colons_work_in_shards_mode(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    data = bytes(range(250))
    model = make_model({"ckpt:step=10.bin": data, "a:1:2": b"xy"})
    sig = tmp_path / "m.sig"
    cfg = ms.HashingConfig(method="shards", shard_size=100, max_workers=1)
    result = ms.sign(model, ms.KeySigner(key), signature_path=sig, hashing=cfg)
    assert {r.name for r in result.manifest.resources} == {
        "a:1:2:0:2",
        "ckpt:step=10.bin:0:100",
        "ckpt:step=10.bin:100:200",
        "ckpt:step=10.bin:200:250",
    }
    assert _verify(model, key, sig).manifest.serialization.method == "shards"
    changed = data[:100] + b"\0" + data[101:]
    (model / "ckpt:step=10.bin").write_bytes(changed)
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig)
    # One difference per file (paths may contain ':'), the changed shard behind it.
    (difference,) = info.value.differences
    assert (difference.kind, difference.name, difference.expected_size, difference.actual_size) == (
        "modified", "ckpt:step=10.bin", 250, 250
    )
    assert [(d.kind, d.name, d.expected, d.actual) for d in difference.shards] == [
        ("modified", "ckpt:step=10.bin:100:200", _sha(data[100:200]), _sha(changed[100:200]))
    ]


def test_empty_files_are_covered_in_files_mode(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    model = make_model({"w.bin": b"w", "marker": b""})
    sig = tmp_path / "m.sig"
    result = ms.sign(model, ms.KeySigner(key), signature_path=sig, hashing=FAST)
    assert ("marker", _sha(b"")) in [(r.name, r.hex) for r in result.manifest.resources]
    (model / "marker").unlink()
    (model / "new-empty").write_bytes(b"")
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig)
    assert [(d.kind, d.name, d.expected, d.actual) for d in info.value.differences] == [
        ("missing", "marker", _sha(b""), None),
        ("extra", "new-empty", None, _sha(b"")),
    ]


def test_a_missing_shard_is_a_mismatch(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    data = bytes(range(256)) + bytes(44)  # 300 bytes: shards [0,100) [100,200) [200,300)
    model = make_model({"f.bin": data})
    shards = [(f"f.bin:{s}:{s + 100}", _sha(data[s : s + 100])) for s in (0, 100, 200)]
    sig = _signed(tmp_path / "gap.sig", key, [shards[0], shards[2]], method="shards", shard_size=100)
    for kwargs in ({}, {"ignore_unsigned_files": True}):
        with pytest.raises(ModelMismatchError) as info:
            _verify(model, key, sig, **kwargs)
        assert _shard_diffs(info) == [("extra", "f.bin:100:200")]
    # A signed manifest that stops early (the tail of the file is not covered) fails the same way.
    sig = _signed(tmp_path / "short.sig", key, shards[:2], method="shards", shard_size=100)
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig, ignore_unsigned_files=True)
    assert _shard_diffs(info) == [("extra", "f.bin:200:300")]
    assert (info.value.differences[0].expected_size, info.value.differences[0].actual_size) == (200, 300)


def test_overlapping_or_misaligned_shards_are_a_mismatch(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    data = bytes(range(200))
    model = make_model({"f.bin": data})
    resources = [
        ("f.bin:0:100", _sha(data[0:100])),
        ("f.bin:50:150", _sha(data[50:150])),  # overlaps both neighbours
        ("f.bin:100:200", _sha(data[100:200])),
    ]
    sig = _signed(tmp_path / "m.sig", key, resources, method="shards", shard_size=100)
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig)
    assert _shard_diffs(info) == [("missing", "f.bin:50:150")]


def test_symlinked_directory_is_never_silently_skipped(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    model = make_model({"w.bin": b"w", "real/x.bin": b"x"})
    sig = tmp_path / "m.sig"
    ms.sign(model, ms.KeySigner(key), signature_path=sig, hashing=FAST)
    # Replace the directory by a symlink to an identical copy elsewhere: the signed settings forbid
    # symlinks, so verification does not follow the link: the link is reported (an unsigned extra
    # file) and so is every signed file behind it (missing) -- a mismatch, never a silent skip.
    outside = tmp_path / "outside"
    (model / "real").rename(outside)
    (model / "real").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig)
    assert [(d.kind, d.name, d.detail) for d in info.value.differences] == [
        ("extra", "real", "a symlink"), ("missing", "real/x.bin", None)
    ]
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig, ignore_unsigned_files=True)
    assert _diffs(info) == [("missing", "real/x.bin")]
    with pytest.raises(ModelPathError, match="symlink"):
        ms.sign(model, ms.KeySigner(key), signature_path=tmp_path / "again.sig", hashing=FAST)


def test_symlinks_follow_the_signed_setting(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    model = make_model({"w.bin": b"w"})
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "t.bin").write_bytes(b"t")
    (model / "linked").symlink_to(tmp_path / "shared", target_is_directory=True)
    sig = tmp_path / "m.sig"
    cfg = ms.HashingConfig(allow_symlinks=True, max_workers=1)
    ms.sign(model, ms.KeySigner(key), signature_path=sig, hashing=cfg)
    result = _verify(model, key, sig)  # no option needed: allow_symlinks comes from the signature
    assert {r.name for r in result.manifest.resources} == {"w.bin", "linked/t.bin"}
    (tmp_path / "shared" / "t.bin").write_bytes(b"changed")
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig)
    assert _diffs(info) == [("modified", "linked/t.bin")]


def test_ignore_unsigned_files(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    model = make_model({"a.bin": b"a", "b.bin": b"b"})
    sig = tmp_path / "m.sig"
    ms.sign(model, ms.KeySigner(key), signature_path=sig, hashing=FAST)
    (model / "notes.txt").write_bytes(b"added later")
    with pytest.raises(ModelMismatchError):
        _verify(model, key, sig)
    result = _verify(model, key, sig, ignore_unsigned_files=True)
    assert result.unsigned_files == ("notes.txt",)
    # Signed files are still checked, and still required.
    (model / "a.bin").write_bytes(b"A")
    (model / "b.bin").unlink()
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig, ignore_unsigned_files=True)
    assert _diffs(info) == [("modified", "a.bin"), ("missing", "b.bin")]


def test_extra_ignore_paths_add_to_the_signed_ones(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    model = make_model({"a.bin": b"a", "cache/x": b"1"})
    sig = tmp_path / "m.sig"
    cfg = ms.HashingConfig(ignore_paths=("cache",), max_workers=1)
    ms.sign(model, ms.KeySigner(key), signature_path=sig, hashing=cfg)
    (model / "cache" / "x").write_bytes(b"2")  # ignored by the signer: no option needed
    (model / "logs").mkdir()
    (model / "logs" / "run.log").write_bytes(b"log")
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig)
    assert _diffs(info) == [("extra", "logs/run.log")]
    assert _verify(model, key, sig, ignore_paths=["logs"]).method == "key"


def test_peer_single_file_name_dot_is_the_file(
    make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    model = make_model({"w.bin": b"weights"}) / "w.bin"
    sig = _signed(tmp_path / "m.sig", key, [(".", _sha(b"weights"))])
    assert [r.name for r in _verify(model, key, sig).manifest.resources] == ["."]
    model.write_bytes(b"other")
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig)
    assert _diffs(info) == [("modified", "w.bin")]


def test_legacy_v02_bundle(make_model: Callable[..., Path], key: ec.EllipticCurvePrivateKey, tmp_path: Path) -> None:
    """A v0.2 bundle: Digests/v0.1 predicate, signed over v0.2's non-standard encoding with SHA-256."""
    model = make_model({"a.bin": b"a", "d/b.bin": b"b"})
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "a.bin", "digest": {"sha256": _sha(b"a")}},
            {"name": "d/b.bin", "digest": {"sha256": _sha(b"b")}},
        ],
        "predicateType": "https://model_signing/Digests/v0.1",
        "predicate": {"unused": "Unused, just passed due to API requirements"},
    }
    payload = json.dumps(statement).encode()
    legacy = f"DSSEV1 28 application/vnd.in-toto+json {len(payload)} {payload!r}".encode()  # what v0.2 signed
    signature = key.sign(legacy, ec.ECDSA(hashes.SHA256()))
    doc = json.loads(
        _bundle.bundle_json(_bundle.assemble(payload, signature, _bundle.key_material(key.public_key())))
    )
    pem_spki = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    doc["verificationMaterial"] = {"publicKey": {"rawBytes": base64.b64encode(pem_spki).decode()}}
    doc["dsseEnvelope"]["signatures"][0]["keyid"] = None
    sig = tmp_path / "v02.sig"
    sig.write_text(json.dumps(doc))
    result = _verify(model, key, sig)
    assert result.legacy_encoding and result.root_digest is None
    (model / "a.bin").write_bytes(b"A")
    with pytest.raises(ModelMismatchError) as info:
        _verify(model, key, sig)
    assert _diffs(info) == [("modified", "a.bin")]

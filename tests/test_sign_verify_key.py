"""The ``key`` method end to end through the Python API (real cryptography, real hashing)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import model_signing as ms
from model_signing.errors import (
    InputError,
    KeyMaterialError,
    ModelMismatchError,
    SignatureExistsError,
    SignatureFormatError,
    VerificationError,
)
from model_signing.oms.bundle import pae, public_key_hint
from tests import _pki

Keypair = Callable[..., tuple[Path, Path]]
FAST = ms.HashingConfig(max_workers=1)


def _sign(model: Path, priv: Path, sig: Path, **kw: object) -> ms.SignResult:
    kw.setdefault("hashing", FAST)
    return ms.sign(model, ms.KeySigner(priv), signature_path=sig, **kw)  # type: ignore[arg-type]


def _verify(model: Path, pub: Path, sig: Path, **kw: object) -> ms.VerifyResult:
    return ms.verify(model, ms.KeyVerifier(pub), signature_path=sig, max_workers=1, **kw)  # type: ignore[arg-type]


def _bundle(sig: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(sig.read_text())
    return doc


@pytest.mark.parametrize(
    ("curve", "digest"), [("P-256", hashes.SHA256), ("P-384", hashes.SHA384), ("P-521", hashes.SHA512)]
)
def test_round_trip_each_curve(
    small_model: Path, ec_keypair: Keypair, tmp_path: Path, curve: str, digest: type
) -> None:
    priv, pub = ec_keypair(curve)
    sig = tmp_path / "model.sig"
    result = _sign(small_model, priv, sig)
    assert result.method == "key" and curve in result.signer
    verified = _verify(small_model, pub, sig)
    assert verified.root_digest == result.root_digest
    # Independently: ECDSA with the curve's hash over the DSSE PAE of the payload.
    env = _bundle(sig)["dsseEnvelope"]
    payload = base64.b64decode(env["payload"])
    key = _load_pub(pub)
    key.verify(base64.b64decode(env["signatures"][0]["sig"]), pae(payload), ec.ECDSA(digest()))


def _load_pub(path: Path) -> ec.EllipticCurvePublicKey:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(path.read_bytes())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


@pytest.mark.parametrize(
    "config",
    [
        ms.HashingConfig(hash_type="blake2b", max_workers=1),
        ms.HashingConfig(hash_type="blake3", max_workers=2),
        ms.HashingConfig(method="shards", shard_size=100, max_workers=2),
        ms.HashingConfig(method="shards", shard_size=7, hash_type="blake3", max_workers=1),
    ],
)
def test_round_trip_hashing_settings(
    small_model: Path, ec_keypair: Keypair, tmp_path: Path, config: ms.HashingConfig
) -> None:
    priv, pub = ec_keypair()
    sig = tmp_path / "model.sig"
    _sign(small_model, priv, sig, hashing=config)
    result = _verify(small_model, pub, sig)
    ser = result.manifest.serialization
    assert (ser.method, ser.hash_type) == (config.method, config.hash_type)
    assert ser.shard_size == (config.shard_size if config.method == "shards" else None)


def test_signed_digests_are_the_file_hashes(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    priv, _ = ec_keypair()
    sig = tmp_path / "model.sig"
    _sign(small_model, priv, sig, hashing=ms.HashingConfig(hash_type="blake3", max_workers=1))
    statement = json.loads(base64.b64decode(_bundle(sig)["dsseEnvelope"]["payload"]))
    got = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    expected = {
        str(p.relative_to(small_model)): blake3.blake3(p.read_bytes()).hexdigest()
        for p in small_model.rglob("*")
        if p.is_file()
    }
    assert got == expected


def test_encrypted_key(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    priv, pub = ec_keypair("P-384", password=b"s3cret")
    sig = tmp_path / "model.sig"
    ms.sign(small_model, ms.KeySigner(priv, password="s3cret"), signature_path=sig, hashing=FAST)
    assert _verify(small_model, pub, sig).method == "key"
    with pytest.raises(KeyMaterialError, match="wrong password"):
        ms.KeySigner(priv, password="nope")
    with pytest.raises(KeyMaterialError, match="is encrypted"):
        ms.KeySigner(priv)


def test_unusable_keys(tmp_path: Path, ec_keypair: Keypair) -> None:
    rsa = _pki.write_private_key(_pki.rsa_key(), tmp_path / "rsa.pem")
    with pytest.raises(KeyMaterialError, match=r"not a supported key \(RSA\)"):
        ms.KeySigner(rsa)
    k1 = _pki.write_private_key(ec.generate_private_key(ec.SECP256K1()), tmp_path / "k1.pem")
    with pytest.raises(KeyMaterialError, match="secp256k1"):
        ms.KeySigner(k1)
    with pytest.raises(KeyMaterialError, match="does not exist"):
        ms.KeySigner(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(KeyMaterialError, match="not a PEM private key"):
        ms.KeySigner(tmp_path / "junk.pem")
    priv, _ = ec_keypair()
    with pytest.raises(KeyMaterialError, match="holds a private key"):
        ms.KeyVerifier(priv)
    with pytest.raises(KeyMaterialError, match="not a PEM public key"):
        ms.KeyVerifier(tmp_path / "junk.pem")


def test_wrong_key_is_rejected(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    priv, _ = ec_keypair(name="a")
    _, other_pub = ec_keypair(name="b")
    sig = tmp_path / "model.sig"
    _sign(small_model, priv, sig)
    with pytest.raises(VerificationError, match="different key"):
        _verify(small_model, other_pub, sig)
    # Without the hint to short-cut, the signature check itself fails.
    doc = _bundle(sig)
    doc["verificationMaterial"]["publicKey"] = {"hint": public_key_hint(_load_pub(other_pub))}
    sig.write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="does not verify"):
        _verify(small_model, other_pub, sig)


def test_tampered_envelope_is_rejected(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    priv, pub = ec_keypair()
    sig = tmp_path / "model.sig"
    _sign(small_model, priv, sig)
    original = sig.read_text()

    doc = json.loads(original)
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    sig.write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="tampered"):
        _verify(small_model, pub, sig)

    doc = json.loads(original)
    raw = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 1
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(doc))
    with pytest.raises(VerificationError):
        _verify(small_model, pub, sig)


def test_every_difference_is_reported(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    priv, pub = ec_keypair()
    sig = tmp_path / "model.sig"
    _sign(small_model, priv, sig)
    old_config = hashlib.sha256((small_model / "config.json").read_bytes()).hexdigest()
    old_empty = hashlib.sha256(b"").hexdigest()
    (small_model / "config.json").write_bytes(b"{}")
    (small_model / "empty.txt").unlink()
    (small_model / "weights" / "new.bin").write_bytes(b"new")
    with pytest.raises(ModelMismatchError) as info:
        _verify(small_model, pub, sig)
    got = [(d.kind, d.name, d.expected, d.actual) for d in info.value.differences]
    assert got == [
        ("modified", "config.json", old_config, hashlib.sha256(b"{}").hexdigest()),
        ("missing", "empty.txt", old_empty, None),
        ("extra", "weights/new.bin", None, hashlib.sha256(b"new").hexdigest()),
    ]
    assert info.value.exit_code == 3


def test_emptied_model_lists_every_missing_file(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    """A model whose files are all gone is a mismatch (exit 3, each file listed), not bad input."""
    import shutil

    priv, pub = ec_keypair()
    sig = tmp_path / "model.sig"
    result = _sign(small_model, priv, sig)
    expected = {
        str(p.relative_to(small_model)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in small_model.rglob("*")
        if p.is_file()
    }
    shutil.rmtree(small_model)
    small_model.mkdir()
    with pytest.raises(ModelMismatchError) as info:
        _verify(small_model, pub, sig)
    got = {d.name: (d.kind, d.expected, d.actual) for d in info.value.differences}
    assert got == {name: ("missing", digest, None) for name, digest in expected.items()}
    assert len(got) == len(result.manifest.resources)
    with pytest.raises(ModelMismatchError):
        _verify(small_model, pub, sig, ignore_unsigned_files=True)


def test_default_signature_path_is_beside_the_model(small_model: Path, ec_keypair: Keypair) -> None:
    priv, pub = ec_keypair()
    result = ms.sign(small_model, ms.KeySigner(priv), hashing=FAST)
    assert Path(result.signature_path) == small_model.parent / "model.sig"
    assert not (small_model / "model.sig").exists()
    assert ms.verify(small_model, ms.KeyVerifier(pub), signature_path=result.signature_path).method == "key"


def test_existing_signature_needs_overwrite(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    priv, pub = ec_keypair()
    sig = tmp_path / "model.sig"
    sig.write_text("precious")
    with pytest.raises(SignatureExistsError, match="already exists: it is not a readable signature bundle") as exc:
        _sign(small_model, priv, sig)
    assert exc.value.signed_model is None and exc.value.free_path == str(tmp_path / "model-2.sig")
    assert sig.read_text() == "precious"
    _sign(small_model, priv, sig, overwrite=True)
    assert _verify(small_model, pub, sig).method == "key"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_signature_inside_the_model_is_excluded(small_model: Path, ec_keypair: Keypair) -> None:
    priv, pub = ec_keypair()
    sig = small_model / "model.sig"
    result = _sign(small_model, priv, sig)
    assert "model.sig" in result.manifest.serialization.ignore_paths
    assert "model.sig" not in {r.name for r in result.manifest.resources}
    assert _verify(small_model, pub, sig).method == "key"


def test_signing_never_touches_the_model(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in small_model.rglob("*") if p.is_file()}
    priv, _ = ec_keypair()
    _sign(small_model, priv, tmp_path / "model.sig")
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in small_model.rglob("*") if p.is_file()}
    assert before == after


def test_payload_is_deterministic_across_signatures(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    priv, _ = ec_keypair()
    a, b = tmp_path / "a.sig", tmp_path / "b.sig"
    _sign(small_model, priv, a)
    _sign(small_model, priv, b, hashing=ms.HashingConfig(max_workers=2))
    assert _bundle(a)["dsseEnvelope"]["payload"] == _bundle(b)["dsseEnvelope"]["payload"]


def test_single_file_model(make_model: Callable[..., Path], ec_keypair: Keypair, tmp_path: Path) -> None:
    model = make_model({"weights.bin": b"w" * 50}) / "weights.bin"
    priv, pub = ec_keypair()
    sig = tmp_path / "w.sig"
    result = _sign(model, priv, sig)
    assert [r.name for r in result.manifest.resources] == ["weights.bin"]
    assert result.manifest.model_name == "weights.bin"
    assert _verify(model, pub, sig).root_digest == hashlib.sha256(hashlib.sha256(b"w" * 50).digest()).hexdigest()
    model.write_bytes(b"changed")
    with pytest.raises(ModelMismatchError):
        _verify(model, pub, sig)


def test_missing_paths_are_input_errors(small_model: Path, ec_keypair: Keypair, tmp_path: Path) -> None:
    priv, pub = ec_keypair()
    with pytest.raises(InputError, match="does not exist"):
        _sign(tmp_path / "nope", priv, tmp_path / "x.sig")
    with pytest.raises(InputError, match=r"directory .* does not exist"):
        _sign(small_model, priv, tmp_path / "no" / "dir" / "x.sig")
    with pytest.raises(SignatureFormatError, match="does not exist"):
        _verify(small_model, pub, tmp_path / "missing.sig")
    assert not os.path.exists(tmp_path / "x.sig")


def test_overwrite_never_replaces_a_model_file(small_model: Path, ec_keypair: Keypair) -> None:
    priv, pub = ec_keypair()
    target = small_model / "config.json"
    before = target.read_bytes()
    with pytest.raises(InputError, match="part of the model and not a signature"):
        _sign(small_model, priv, target, overwrite=True)
    assert target.read_bytes() == before
    # An old signature inside the model may be replaced.
    sig = small_model / "model.sig"
    _sign(small_model, priv, sig)
    _sign(small_model, priv, sig, overwrite=True)
    assert _verify(small_model, pub, sig).method == "key"

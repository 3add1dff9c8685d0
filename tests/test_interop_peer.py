"""Interoperability with the real peer, ``model-signing==1.1.1``, in its own venv (``benchmarks/peer.py``).

* the peer verifies our ``key`` and ``certificate`` bundles (files/sha256 with its CLI; blake2b and blake3
  with its Python API, the only way it can hash them);
* we verify the peer's bundles in every mode it produces (files, shards, sha256, blake2b, blake3, single
  file, ignore paths, signature inside the model, P-384 encrypted key, certificate) and reject tampered ones;
* one known peer limitation is pinned down: it labels shard digests ``"<hash>-sharded-<size>"``, which the
  OMS schema does not allow, so it cannot match spec-conformant shard bundles (ours) -- the digests agree,
  only its label differs.

The peer always runs as ``python -I`` from a temporary working directory, so this project (also named
``model_signing``) can never shadow it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import model_signing as ms
from benchmarks.peer import ensure_peer_venv, peer_cli
from model_signing.errors import ModelMismatchError, VerificationError
from tests import _pki

FAST = ms.HashingConfig(max_workers=1)


@pytest.fixture(scope="module")
def peer() -> Path:
    return ensure_peer_venv()


@pytest.fixture
def model(make_model: Callable[..., Path]) -> Path:
    data = bytes(range(256)) * 2 + b"tail"
    return make_model({"config.json": b'{"a": 1}', "weights/w.bin": data, "weights/empty": b"", "cache/tmp": b"c"})


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key = _pki.ec_key("P-256")
    return _pki.write_private_key(key, tmp_path / "k.pem"), _pki.write_public_key(key, tmp_path / "k.pub")


def _peer_cli(peer: Path, cwd: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*peer_cli(peer), *(str(a) for a in args)], cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )


def _peer_api(peer: Path, cwd: Path, code: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in the peer's interpreter; ``sys.argv[1:]`` are ``args``."""
    return subprocess.run(
        [str(peer), "-I", "-c", "import sys, model_signing as m\n" + code, *(str(a) for a in args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _verify_key(model: Path, pub: Path, sig: Path, **kw: object) -> ms.VerifyResult:
    return ms.verify(model, ms.KeyVerifier(pub), signature_path=sig, max_workers=1, **kw)  # type: ignore[arg-type]


# --- the peer verifies our bundles -----------------------------------------------------------------------


def test_peer_cli_verifies_our_key_bundle(peer: Path, model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    priv, pub = keys
    sig = tmp_path / "ours.sig"
    ms.sign(model, ms.KeySigner(priv), signature_path=sig, hashing=FAST)
    _ok(_peer_cli(peer, tmp_path, "verify", "key", "--public_key", pub, "--signature", sig, model))
    (model / "weights" / "w.bin").write_bytes(b"tampered")
    assert _peer_cli(peer, tmp_path, "verify", "key", "--public_key", pub, "--signature", sig, model).returncode != 0


@pytest.mark.parametrize("curve", ["P-384", "P-521"])
def test_peer_cli_verifies_our_key_bundle_other_curves(peer: Path, model: Path, tmp_path: Path, curve: str) -> None:
    key = _pki.ec_key(curve)
    pub = _pki.write_public_key(key, tmp_path / "k.pub")
    sig = tmp_path / "ours.sig"
    ms.sign(model, ms.KeySigner(key), signature_path=sig, hashing=FAST)
    _ok(_peer_cli(peer, tmp_path, "verify", "key", "--public_key", pub, "--signature", sig, model))


def test_peer_cli_verifies_our_certificate_bundle(peer: Path, model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    sig = tmp_path / "ours.sig"
    ms.sign(model, ms.CertificateSigner(pki.key_pem, pki.leaf_pem, [pki.chain_pem]), signature_path=sig, hashing=FAST)
    _ok(
        _peer_cli(
            peer, tmp_path, "verify", "certificate", "--certificate_chain", pki.root_pem, "--signature", sig, model
        )
    )
    other = _pki.Pki(tmp_path / "other")
    rejected = _peer_cli(
        peer, tmp_path, "verify", "certificate", "--certificate_chain", other.root_pem, "--signature", sig, model
    )
    assert rejected.returncode != 0


def test_peer_cli_verifies_our_bundle_with_signature_inside_and_ignored_paths(
    peer: Path, model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    sig = model / "model.sig"
    ms.sign(
        model,
        ms.KeySigner(priv),
        signature_path=sig,
        hashing=ms.HashingConfig(ignore_paths=("cache",), max_workers=1),
    )
    (model / "cache" / "tmp").write_bytes(b"changed, but ignored by the signer")
    _ok(_peer_cli(peer, tmp_path, "verify", "key", "--public_key", pub, "--signature", sig, model))


@pytest.mark.parametrize(("hash_type", "peer_name"), [("blake3", "blake3"), ("blake2b", "blake2")])
def test_peer_api_verifies_our_blake_bundles(
    *, peer: Path, model: Path, keys: tuple[Path, Path], tmp_path: Path, hash_type: str, peer_name: str
) -> None:
    priv, pub = keys
    sig = tmp_path / "ours.sig"
    ms.sign(
        model,
        ms.KeySigner(priv),
        signature_path=sig,
        hashing=ms.HashingConfig(hash_type=hash_type, max_workers=1),  # type: ignore[arg-type]
    )
    # The peer cannot map "blake2b" (its own hash_type label) back to a hasher, so name the config explicitly.
    code = (
        "cfg = m.hashing.Config().use_file_serialization(hashing_algorithm=sys.argv[4])\n"
        "m.verifying.Config().use_elliptic_key_verifier(public_key=sys.argv[1])"
        ".set_hashing_config(cfg).verify(sys.argv[2], sys.argv[3])\n"
    )
    _ok(_peer_api(peer, tmp_path, code, pub, model, sig, peer_name))


def test_peer_cannot_match_spec_shard_labels(
    peer: Path, model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Known peer limitation: its shard digests are labelled "sha256-sharded-<N>", ours "sha256" (schema)."""
    priv, pub = keys
    sig = tmp_path / "ours.sig"
    ms.sign(
        model,
        ms.KeySigner(priv),
        signature_path=sig,
        hashing=ms.HashingConfig(method="shards", shard_size=64, max_workers=1),
    )
    code = "m.verifying.Config().use_elliptic_key_verifier(public_key=sys.argv[1]).verify(sys.argv[2], sys.argv[3])"
    proc = _peer_api(peer, tmp_path, code, pub, model, sig)
    assert proc.returncode != 0
    assert "algorithm='sha256-sharded-64'" in proc.stderr and "Extra files" not in proc.stderr
    # ...while a bundle the peer itself makes for the same model has the same digests, only relabelled.
    peer_sig = tmp_path / "peer.sig"
    _ok(
        _peer_api(
            peer,
            tmp_path,
            "cfg = m.hashing.Config().use_shard_serialization(shard_size=64)\n"
            "m.signing.Config().use_elliptic_key_signer(private_key=sys.argv[1]).set_hashing_config(cfg)"
            ".sign(sys.argv[2], sys.argv[3])",
            priv,
            model,
            peer_sig,
        )
    )

    def digests(path: Path) -> dict[str, str]:
        payload = json.loads(base64.b64decode(json.loads(path.read_text())["dsseEnvelope"]["payload"]))
        return {r["name"]: r["digest"] for r in payload["predicate"]["resources"]}

    assert digests(sig) == digests(peer_sig)


# --- we verify the peer's bundles --------------------------------------------------------------------------


def _peer_sign_api(peer: Path, cwd: Path, priv: Path, model: Path, sig: Path, *, hashing: str) -> None:
    code = (
        f"cfg = m.hashing.Config().{hashing}\n"
        "m.signing.Config().use_elliptic_key_signer(private_key=sys.argv[1]).set_hashing_config(cfg)"
        ".sign(sys.argv[2], sys.argv[3])\n"
    )
    _ok(_peer_api(peer, cwd, code, priv, model, sig))


@pytest.mark.parametrize(
    "hashing",
    [
        "use_file_serialization()",
        "use_file_serialization(hashing_algorithm='blake2')",
        "use_file_serialization(hashing_algorithm='blake3')",
        "use_shard_serialization(shard_size=100)",
        "use_shard_serialization(shard_size=100, hashing_algorithm='blake2')",
    ],
)
def test_we_verify_peer_api_bundles(
    peer: Path, model: Path, keys: tuple[Path, Path], tmp_path: Path, hashing: str
) -> None:
    priv, pub = keys
    sig = tmp_path / "peer.sig"
    _peer_sign_api(peer, tmp_path, priv, model, sig, hashing=hashing)
    result = _verify_key(model, pub, sig)
    expected_hash = "blake2b" if "blake2" in hashing else "blake3" if "blake3" in hashing else "sha256"
    assert result.manifest.serialization.hash_type == expected_hash
    assert result.manifest.serialization.method == ("shards" if "shard" in hashing else "files")
    # Tampering with a byte in the middle of the big file is reported precisely.
    data = bytearray((model / "weights" / "w.bin").read_bytes())
    data[150] ^= 0xFF
    (model / "weights" / "w.bin").write_bytes(bytes(data))
    with pytest.raises(ModelMismatchError) as info:
        _verify_key(model, pub, sig)
    names = [d.name for d in info.value.differences]
    assert names == ["weights/w.bin"]  # shards are reported per file, as in files mode
    assert info.value.differences[0].kind == "modified"


def test_we_verify_peer_cli_bundle_and_reject_tampering(
    peer: Path, model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    sig = tmp_path / "peer.sig"
    _ok(_peer_cli(peer, tmp_path, "sign", "key", "--private_key", priv, "--signature", sig, model))
    result = _verify_key(model, pub, sig)
    peer_root = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))["subject"][0]
    assert result.root_digest == peer_root["digest"]["sha256"]
    # Same model, same settings: our root digest equals the peer's.
    ours = ms.sign(model, ms.KeySigner(priv), signature_path=tmp_path / "ours.sig", hashing=FAST)
    assert ours.root_digest == result.root_digest

    doc = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = hashlib.sha256(b"evil").hexdigest()
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    tampered = tmp_path / "tampered.sig"
    tampered.write_text(json.dumps(doc))
    with pytest.raises(VerificationError):
        _verify_key(model, pub, tampered)
    (model / "config.json").write_bytes(b"{}")
    with pytest.raises(ModelMismatchError) as info:
        _verify_key(model, pub, sig)
    assert [(d.kind, d.name) for d in info.value.differences] == [("modified", "config.json")]


def test_we_verify_peer_single_file_bundle(peer: Path, model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    priv, pub = keys
    sig = tmp_path / "peer.sig"
    target = model / "weights" / "w.bin"
    _ok(_peer_cli(peer, tmp_path, "sign", "key", "--private_key", priv, "--signature", sig, target))
    assert _verify_key(target, pub, sig).manifest.resources[0].name == "."  # the peer's name for the file
    target.write_bytes(b"other")
    with pytest.raises(ModelMismatchError) as info:
        _verify_key(target, pub, sig)
    assert [(d.kind, d.name) for d in info.value.differences] == [("modified", "w.bin")]


def test_we_verify_peer_bundle_with_ignore_paths_and_inner_signature(
    peer: Path, model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    sig = model / "model.sig"
    _ok(
        _peer_cli(
            peer,
            tmp_path,
            "sign",
            "key",
            "--private_key",
            priv,
            "--signature",
            sig,
            "--ignore-paths",
            model / "cache",
            model,
        )
    )
    result = _verify_key(model, pub, sig)
    assert {"cache", "model.sig"} <= set(result.manifest.serialization.ignore_paths)
    (model / "cache" / "tmp").write_bytes(b"ignored")
    (model / "new.txt").write_bytes(b"not ignored")
    with pytest.raises(ModelMismatchError) as info:
        _verify_key(model, pub, sig)
    assert [(d.kind, d.name) for d in info.value.differences] == [("extra", "new.txt")]
    assert _verify_key(model, pub, sig, ignore_paths=["new.txt"]).method == "key"


def test_we_verify_peer_encrypted_p384_key_bundle(peer: Path, model: Path, tmp_path: Path) -> None:
    key = _pki.ec_key("P-384")
    priv = _pki.write_private_key(key, tmp_path / "enc.pem", b"pw")
    pub = _pki.write_public_key(key, tmp_path / "enc.pub")
    sig = tmp_path / "peer.sig"
    # (The peer's CLI --password passes a str where cryptography needs bytes, so use its API.)
    code = (
        "m.signing.Config().use_elliptic_key_signer(private_key=sys.argv[1], password=sys.argv[4].encode())"
        ".sign(sys.argv[2], sys.argv[3])"
    )
    _ok(_peer_api(peer, tmp_path, code, priv, model, sig, "pw"))
    assert _verify_key(model, pub, sig).signer.startswith("P-384 key")


def test_we_verify_peer_certificate_bundle(peer: Path, model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    sig = tmp_path / "peer.sig"
    _ok(
        _peer_cli(
            peer,
            tmp_path,
            "sign",
            "certificate",
            "--private_key",
            pki.key_pem,
            "--signing_certificate",
            pki.leaf_pem,
            "--certificate_chain",
            pki.chain_pem,
            "--signature",
            sig,
            model,
        )
    )
    result = ms.verify(model, ms.CertificateVerifier([pki.root_pem]), signature_path=sig, max_workers=1)
    assert "CN=signer" in result.signer
    other = _pki.Pki(tmp_path / "other")
    with pytest.raises(VerificationError):
        ms.verify(model, ms.CertificateVerifier([other.root_pem]), signature_path=sig, max_workers=1)
    pub = _pki.write_public_key(pki.leaf_key, tmp_path / "leaf.pub")
    with pytest.raises(VerificationError, match="certificate signature"):
        _verify_key(model, pub, sig)

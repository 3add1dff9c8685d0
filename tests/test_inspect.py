"""``inspect``: what a bundle claims, NOT verified -- key, certificate, keyless, secret, peer and v0.2 bundles."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import model_signing as ms
from model_signing.sigstore_local import LocalSigstore, github_claims
from tests import _pki
from tests._cli import Run

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "data" / "oms-v1.0" / "test-vectors" / "v1.0"
FAST = ms.HashingConfig(max_workers=1)
SECRET = b"k" * 40
FILES = {"a.bin": b"alpha", "d/b.bin": bytes(range(200)), "z": b""}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _root(names: list[str]) -> str:
    return hashlib.sha256(b"".join(bytes.fromhex(_sha(FILES[n])) for n in names)).hexdigest()


@pytest.fixture
def model(make_model: Callable[..., Path]) -> Path:
    return make_model(FILES)


def _inspect_json(run: Run, sig: Path, *extra: str) -> dict[str, Any]:
    code, out, err = run("inspect", sig, "--json", *extra)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    assert doc["verified"] is False
    return doc


def test_key_bundle(run: Run, model: Path, tmp_path: Path) -> None:
    key = _pki.ec_key("P-256")
    priv = _pki.write_private_key(key, tmp_path / "k.pem", None)
    sig = tmp_path / "k.sig"
    ms.sign(model, ms.KeySigner(priv), signature_path=sig, hashing=FAST)
    doc = _inspect_json(run, sig, "--files")
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert doc["method"] == "key"
    assert doc["signer_identity"]["key_id"] == "sha256:" + _sha(pem)
    assert doc["model_name"] == "model"
    assert doc["root_digest"] == _root(["a.bin", "d/b.bin", "z"])
    assert doc["resource_count"] == 3 and doc["file_count"] == 3 and doc["total_size"] is None
    assert {r["name"]: r["digest"] for r in doc["resources"]} == {n: _sha(d) for n, d in FILES.items()}
    assert doc["serialization"]["method"] == "files" and doc["serialization"]["hash_type"] == "sha256"
    assert doc["certificate"] is None and doc["tlog_entries"] == [] and doc["timestamps"] == []
    code, out, _ = run("inspect", sig)
    assert code == 0 and out.startswith("NOT VERIFIED") and "sha256:" + _sha(pem) in out
    assert "d/b.bin" not in out  # resources only with --files


def test_shard_bundle_sizes(run: Run, model: Path, tmp_path: Path) -> None:
    sig = tmp_path / "s.sig"
    config = ms.HashingConfig(method="shards", shard_size=64, max_workers=1)
    ms.sign(model, ms.SecretSigner(SECRET), signature_path=sig, hashing=config)
    doc = _inspect_json(run, sig)
    assert doc["method"] == "secret"
    kid = "hmac-sha256:" + hashlib.sha256(b"modelseal secret key id v1\x00" + SECRET).hexdigest()
    assert doc["signer_identity"]["key_id"] == kid
    # An empty file has no shard, so a shard manifest does not name it.
    assert doc["total_size"] == 5 + 200 and doc["file_count"] == 2
    assert doc["serialization"]["shard_size"] == 64
    assert doc["resource_count"] == 1 + 4  # 200 bytes in 64-byte shards: 4
    assert doc["resources"] == []


def test_certificate_bundle(run: Run, model: Path, tmp_path: Path, pki: _pki.Pki) -> None:
    sig = tmp_path / "c.sig"
    ms.sign(model, ms.CertificateSigner(pki.key_pem, pki.leaf_pem, [pki.chain_pem]), signature_path=sig,
            hashing=FAST)
    doc = _inspect_json(run, sig)
    assert doc["method"] == "certificate"
    cert = doc["certificate"]
    assert cert["subject"] == pki.leaf.subject.rfc4514_string()
    assert cert["issuer"] == pki.inter.subject.rfc4514_string()
    assert cert["not_after"] == pki.leaf.not_valid_after_utc.isoformat()
    assert doc["chain"] == [pki.leaf.subject.rfc4514_string(), pki.inter.subject.rfc4514_string()]


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


def test_keyless_github_bundle(run: Run, inst: LocalSigstore, model: Path, tmp_path: Path) -> None:
    claims = github_claims("octo-org/models", ref="refs/tags/v1.0", workflow=".github/workflows/sign.yml")
    token = inst.mint_token(str(claims["sub"]), extra_claims=claims)
    signer = ms.SigstoreSigner(trust_config=inst.trust_config_path, token_source=ms.TokenSource(identity_token=token))
    sig = tmp_path / "kl.sig"
    ms.sign(model, signer, signature_path=sig, hashing=FAST)
    doc = _inspect_json(run, sig)
    raw = json.loads(sig.read_text())
    entry = raw["verificationMaterial"]["tlogEntries"][0]
    assert doc["method"] == "sigstore"
    assert doc["signer_identity"]["identity"] == (
        "https://github.com/octo-org/models/.github/workflows/sign.yml@refs/tags/v1.0"
    )
    assert doc["signer_identity"]["issuer"] == inst.oidc_issuer == doc["certificate"]["oidc_issuer"]
    ext = doc["certificate"]["extensions"]
    assert ext["source_repository_uri"] == "https://github.com/octo-org/models"
    assert ext["source_repository_ref"] == "refs/tags/v1.0"
    assert doc["tlog_entries"][0]["log_index"] == entry["logIndex"]
    when = dt.datetime.fromtimestamp(int(entry["integratedTime"]), dt.UTC)
    assert doc["tlog_entries"][0]["integrated_time"] == when.isoformat()
    stamps = raw["verificationMaterial"].get("timestampVerificationData", {}).get("rfc3161Timestamps", [])
    assert len(doc["timestamps"]) == len(stamps)
    for t in doc["timestamps"]:
        assert abs(dt.datetime.fromisoformat(t) - when) < dt.timedelta(minutes=5)
    code, out, _ = run("inspect", sig)
    assert code == 0 and "NOT VERIFIED" in out and "source_repository_uri: https://github.com/octo-org/models" in out


def test_v02_predicate_bundle(run: Run, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "a.bin", "digest": {"sha256": _sha(b"a")}}],
        "predicateType": "https://model_signing/Digests/v0.1",
        "predicate": {"unused": "Unused, just passed due to API requirements"},
    }
    payload = json.dumps(statement).encode()
    legacy = f"DSSEV1 28 application/vnd.in-toto+json {len(payload)} {payload!r}".encode()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    doc = {
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "verificationMaterial": {"publicKey": {"rawBytes": base64.b64encode(pem).decode()}},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64.b64encode(key.sign(legacy, ec.ECDSA(hashes.SHA256()))).decode()}],
        },
    }
    sig = tmp_path / "v02.sig"
    sig.write_text(json.dumps(doc))
    out = _inspect_json(run, sig, "--files")
    assert out["method"] == "key" and out["predicate_type"] == "https://model_signing/Digests/v0.1"
    assert out["root_digest"] is None and out["resources"][0]["digest"] == _sha(b"a")


@pytest.mark.parametrize("name", ["key", "certificate", "sigstore"])
def test_oms_vectors(run: Run, name: str) -> None:
    sig = VECTORS / "valid" / f"{name}.bundle.json"
    doc = _inspect_json(run, sig)
    payload = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    assert doc["method"] == name
    assert doc["root_digest"] == payload["subject"][0]["digest"]["sha256"]
    assert doc["model_name"] == payload["subject"][0]["name"]


@pytest.mark.parametrize("path", sorted((VECTORS / "invalid").glob("*.json")), ids=lambda p: p.name)
def test_malformed_is_one_line_exit_1(run: Run, path: Path) -> None:
    code, out, err = run("inspect", path)
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("error:")


def test_not_json_and_missing(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "bad.sig"
    bad.write_bytes(b"\xff{")
    code, _, err = run("inspect", bad)
    assert code == 1 and err.count("\n") == 1
    code, _, err = run("inspect", tmp_path / "missing.sig")
    assert code == 1 and err.count("\n") == 1


def test_peer_key_bundle(run: Run, model: Path, tmp_path: Path) -> None:
    from benchmarks.peer import ensure_peer_venv

    peer = ensure_peer_venv()
    key = _pki.ec_key("P-256")
    priv = _pki.write_private_key(key, tmp_path / "k.pem", None)
    sig = tmp_path / "peer.sig"
    code = ("import sys, model_signing as m\nm.signing.Config().use_elliptic_key_signer(private_key=sys.argv[1])"
            ".set_hashing_config(m.hashing.Config().use_shard_serialization(shard_size=64))"
            ".sign(sys.argv[2], sys.argv[3])")
    proc = subprocess.run([str(peer), "-I", "-c", code, str(priv), str(model), str(sig)], cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = _inspect_json(run, sig)
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert doc["method"] == "key" and doc["signer_identity"]["key_id"] == "sha256:" + _sha(pem)
    assert doc["total_size"] == 205 and doc["file_count"] == 2


def test_key_bundle_inspect_imports_no_sigstore(model: Path, tmp_path: Path) -> None:
    key = _pki.ec_key("P-256")
    priv = _pki.write_private_key(key, tmp_path / "k.pem", None)
    sig = tmp_path / "k.sig"
    ms.sign(model, ms.KeySigner(priv), signature_path=sig, hashing=FAST)
    code = (
        "import sys\nfrom model_signing.cli import main\n"
        "try:\n    main(['inspect', sys.argv[1]])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "bad = [m for m in sys.modules if m == 'sigstore' or m.startswith('sigstore.')]\n"
        "print('SIGSTORE', bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(sig)], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "NOT VERIFIED" in proc.stdout and "SIGSTORE []" in proc.stdout

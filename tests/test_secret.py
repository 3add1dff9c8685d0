"""The ``secret`` method (HMAC-SHA256 over the DSSE PAE): API, CLI, refusals, schema validity."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import referencing

import model_signing as ms
from model_signing.errors import KeyMaterialError, ModelMismatchError, VerificationError, WrongMethodError
from tests import _pki
from tests._cli import Run

SECRET = b"s" * 20 + b"0123456789ab"  # 32 bytes
FAST = ms.HashingConfig(max_workers=1)
SCHEMAS = Path(__file__).parent / "data" / "oms-v1.0" / "schemas" / "v1.0"


def _pae(payload: bytes) -> bytes:
    t = b"application/vnd.in-toto+json"
    return b"DSSEv1 " + str(len(t)).encode() + b" " + t + b" " + str(len(payload)).encode() + b" " + payload


def _kid(secret: bytes) -> str:
    return "hmac-sha256:" + hashlib.sha256(b"modelseal secret key id v1\x00" + secret).hexdigest()


def _signed(small_model: Path, tmp_path: Path) -> Path:
    sig = tmp_path / "model.sig"
    ms.sign(small_model, ms.SecretSigner(SECRET), signature_path=sig, hashing=FAST)
    return sig


def test_round_trip_and_independent_hmac(small_model: Path, tmp_path: Path) -> None:
    sig = _signed(small_model, tmp_path)
    result = ms.verify(small_model, ms.SecretVerifier(SECRET), signature_path=sig, max_workers=1)
    assert result.method == "secret"
    doc = json.loads(sig.read_text())
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"])
    expected = hmac.new(SECRET, _pae(payload), hashlib.sha256).digest()
    assert base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]) == expected
    assert doc["verificationMaterial"]["publicKey"]["hint"] == _kid(SECRET)
    assert doc["dsseEnvelope"]["signatures"][0]["keyid"] == _kid(SECRET)
    assert SECRET.decode() not in sig.read_text() and base64.b64encode(SECRET).decode() not in sig.read_text()


def test_bundle_is_schema_valid(small_model: Path, tmp_path: Path) -> None:
    sig = _signed(small_model, tmp_path)
    resources = []
    for name in ("bundle", "envelope", "statement", "predicate"):
        schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
        resources.append((schema["$id"], referencing.Resource.from_contents(schema)))
    registry = referencing.Registry().with_resources(resources)
    bundle_schema = json.loads((SCHEMAS / "bundle.schema.json").read_text())
    jsonschema.Draft202012Validator(bundle_schema, registry=registry).validate(json.loads(sig.read_text()))


def test_short_secret_refused() -> None:
    with pytest.raises(KeyMaterialError, match="at least 32 bytes"):
        ms.SecretSigner(b"x" * 31)
    with pytest.raises(KeyMaterialError, match="at least 32 bytes"):
        ms.SecretVerifier(b"x" * 31)


def test_wrong_secret_is_exit_2(small_model: Path, tmp_path: Path) -> None:
    sig = _signed(small_model, tmp_path)
    with pytest.raises(VerificationError, match="different shared secret") as exc:
        ms.verify(small_model, ms.SecretVerifier(SECRET[:-1] + b"X"), signature_path=sig, max_workers=1)
    assert exc.value.exit_code == 2


def test_tampered_envelope_is_exit_2(small_model: Path, tmp_path: Path) -> None:
    sig = _signed(small_model, tmp_path)
    doc = json.loads(sig.read_text())
    mac = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    mac[0] ^= 1
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(mac)).decode()
    sig.write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="does not verify"):
        ms.verify(small_model, ms.SecretVerifier(SECRET), signature_path=sig, max_workers=1)


def test_tampered_model_is_exit_3(small_model: Path, tmp_path: Path) -> None:
    sig = _signed(small_model, tmp_path)
    (small_model / "config.json").write_bytes(b"{}")
    with pytest.raises(ModelMismatchError) as exc:
        ms.verify(small_model, ms.SecretVerifier(SECRET), signature_path=sig, max_workers=1)
    assert exc.value.exit_code == 3


def test_key_verifier_refuses_secret_bundle_as_wrong_method(
    small_model: Path, tmp_path: Path, ec_keypair: Callable[..., tuple[Path, Path]]
) -> None:
    sig = _signed(small_model, tmp_path)
    _, pub = ec_keypair()
    with pytest.raises(WrongMethodError, match="secret signature, not a key one"):
        ms.verify(small_model, ms.KeyVerifier(pub), signature_path=sig, max_workers=1)


def test_secret_verifier_refuses_key_bundle(small_model: Path, tmp_path: Path) -> None:
    key = _pki.ec_key("P-256")
    priv = _pki.write_private_key(key, tmp_path / "k.pem", None)
    sig = tmp_path / "k.sig"
    ms.sign(small_model, ms.KeySigner(priv), signature_path=sig, hashing=FAST)
    with pytest.raises(WrongMethodError, match="key signature, not a secret one"):
        ms.verify(small_model, ms.SecretVerifier(SECRET), signature_path=sig, max_workers=1)


def test_cli_sign_verify_and_refusals(
    run: Run, small_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sig = tmp_path / "cli.sig"
    monkeypatch.setenv("MODEL_SIGNING_KEY", SECRET.decode())
    code, _, err = run("sign", "secret", small_model, "--signature", sig)
    assert code == 0, err
    assert run("verify", "secret", small_model, "--signature", sig)[0] == 0
    monkeypatch.setenv("OTHER", "y" * 40)
    code, _, err = run("verify", "secret", small_model, "--signature", sig, "--secret-env", "OTHER")
    assert code == 2 and "different shared secret" in err
    monkeypatch.setenv("MODEL_SIGNING_KEY", "short")
    code, _, err = run("sign", "secret", small_model, "--signature", tmp_path / "x.sig")
    assert code == 1 and "at least 32 bytes" in err and err.count("\n") == 1
    monkeypatch.delenv("MODEL_SIGNING_KEY")
    code, _, err = run("verify", "secret", small_model, "--signature", sig)
    assert code == 1 and "MODEL_SIGNING_KEY is not set" in err
    monkeypatch.setenv("MODEL_SIGNING_KEY", SECRET.decode())
    (small_model / "empty.txt").write_bytes(b"now not empty")
    assert run("verify", "secret", small_model, "--signature", sig)[0] == 3


def test_cli_help_says_symmetric_and_no_secret_option(run: Run) -> None:
    code, out, _ = run("sign", "secret", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "anyone who can verify can also sign" in text and "keyless" in text
    assert "--secret-env" in text and "--secret " not in text


def test_not_the_default_method() -> None:
    from model_signing import methods

    assert methods.DEFAULT != "secret"
    assert methods.names().index("secret") < methods.names().index("key")


def test_the_peer_cannot_take_an_hmac_bundle_for_a_key_signature(small_model: Path, tmp_path: Path) -> None:
    """model-signing 1.1.1 has no HMAC method; given an EC public key, its `verify key` must refuse our bundle."""
    import subprocess

    from benchmarks.peer import ensure_peer_venv, peer_cli

    sig = _signed(small_model, tmp_path)
    pub = _pki.write_public_key(_pki.ec_key(), tmp_path / "key.pub")
    proc = subprocess.run([*peer_cli(ensure_peer_venv()), "verify", "key", "--public_key", str(pub), "--signature",
                           str(sig), str(small_model)], capture_output=True, text=True, check=False, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    # and ours verifies the same bundle with the secret
    assert ms.verify(small_model, ms.SecretVerifier(SECRET), signature_path=sig, max_workers=1).method == "secret"

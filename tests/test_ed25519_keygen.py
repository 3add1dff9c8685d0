"""Ed25519 in the key and certificate methods, and key generation (``keygen`` / ``generate_key``), with real keys
and the real peer (model-signing 1.1.1)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import model_signing as ms
from model_signing.cli import _keygen
from model_signing.keymaterial import algorithms
from tests import _pki
from tests._cli import Run
from tests.test_oms_vectors import _validate

FAST = ms.HashingConfig(max_workers=1)
WARNING = "warning: model-signing 1.1.1 cannot verify Ed25519 signatures"


def _spki_id(pem: bytes) -> str:
    """The key id computed here: SHA-256 over the PEM SubjectPublicKeyInfo (what oms.bundle.public_key_hint says)."""
    key = serialization.load_pem_public_key(pem)
    spki = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _ed_pair(tmp_path: Path, name: str = "ed") -> tuple[Path, Path]:
    key = ed25519.Ed25519PrivateKey.generate()
    priv = _pki.write_private_key(key, tmp_path / f"{name}.pem")
    return priv, _pki.write_public_key(key, tmp_path / f"{name}.pub")  # type: ignore[arg-type]


def _ed_leaf(
    key: ed25519.Ed25519PrivateKey, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    """An Ed25519 code-signing leaf issued by an ECDSA CA (a mixed chain)."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed-signer")]))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
        .sign(issuer[1], hashes.SHA256())
    )


# -- the algorithm table -------------------------------------------------------------------------------------


def test_algorithm_table() -> None:
    rows = {a.name: (a.label, a.curve, a.hash, a.peer_verifies) for a in algorithms.ALGORITHMS}
    assert rows == {
        "ecdsa-p256": ("P-256", "secp256r1", "sha256", True),
        "ecdsa-p384": ("P-384", "secp384r1", "sha384", True),
        "ecdsa-p521": ("P-521", "secp521r1", "sha512", True),
        "ed25519": ("Ed25519", None, None, False),
    }
    assert algorithms.names() == _keygen.ALGORITHM_NAMES
    assert algorithms.DEFAULT.name == "ecdsa-p256"


# -- Ed25519: key method ---------------------------------------------------------------------------------------


def test_ed25519_key_sign_verify_cli(run: Run, small_model: Path, tmp_path: Path) -> None:
    priv, pub = _ed_pair(tmp_path)
    sig = tmp_path / "m.sig"
    code, _, err = run("sign", "key", small_model, "--private-key", priv, "--signature", sig)
    assert code == 0, err
    assert err.count(WARNING) == 1 and len([ln for ln in err.splitlines() if ln.startswith("warning:")]) == 1
    _validate(sig.read_bytes())
    doc = json.loads(sig.read_bytes())
    assert doc["verificationMaterial"]["publicKey"]["hint"] == _spki_id(pub.read_bytes()).removeprefix("sha256:")
    # PureEdDSA over the DSSE PAE, checked here with cryptography directly.
    payload = base64.b64decode(doc["dsseEnvelope"]["payload"])
    pae = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(payload), payload)
    loaded = serialization.load_pem_public_key(pub.read_bytes())
    assert isinstance(loaded, ed25519.Ed25519PublicKey)
    loaded.verify(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]), pae)

    code, out, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, "--json")
    assert code == 0, err
    identity = json.loads(out)["signer_identity"]
    assert identity["key_algorithm"] == "Ed25519" and identity["key_id"] == _spki_id(pub.read_bytes())

    _, other = _ed_pair(tmp_path, "other")
    assert run("verify", "key", small_model, "--public-key", other, "--signature", sig)[0] == 2
    (small_model / "config.json").write_bytes(b"tampered")
    assert run("verify", "key", small_model, "--public-key", pub, "--signature", sig)[0] == 3


def test_ec_key_sign_has_no_peer_warning(run: Run, small_model: Path, ec_keypair: object, tmp_path: Path) -> None:
    priv, _ = ec_keypair()  # type: ignore[operator]
    code, _, err = run("sign", "key", small_model, "--private-key", priv, "--signature", tmp_path / "s.sig")
    assert code == 0 and "model-signing 1.1.1 cannot verify" not in err


def test_ed25519_tampered_envelope_exit_2(run: Run, small_model: Path, tmp_path: Path) -> None:
    priv, pub = _ed_pair(tmp_path)
    sig = tmp_path / "m.sig"
    ms.sign(small_model, ms.KeySigner(priv), signature_path=sig, hashing=FAST)
    doc = json.loads(sig.read_bytes())
    raw = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[0] ^= 1
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(doc))
    code, _, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig)
    assert code == 2 and "does not verify" in err


# -- Ed25519: certificate method (Ed25519 leaf under ECDSA CAs) --------------------------------------------------


def test_ed25519_certificate_sign_verify(run: Run, small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    leaf = _ed_leaf(key, (pki.inter, pki.inter_key))
    key_pem = _pki.write_private_key(key, tmp_path / "ed-leaf.key")
    leaf_pem = _pki.write_certs(tmp_path / "ed-leaf.pem", leaf)
    sig = tmp_path / "c.sig"
    code, _, err = run("sign", "certificate", small_model, "--private-key", key_pem, "--signing-certificate", leaf_pem,
                       "--certificate-chain", pki.chain_pem, "--signature", sig)
    assert code == 0, err
    assert err.count(WARNING) == 1
    _validate(sig.read_bytes())
    code, out, err = run("verify", "certificate", small_model, "--certificate-chain", pki.root_pem, "--signature", sig,
                         "--json")
    assert code == 0, err
    assert json.loads(out)["signer_identity"]["key_algorithm"] == "Ed25519"
    other = _pki.Pki(tmp_path / "other")
    assert run("verify", "certificate", small_model, "--certificate-chain", other.root_pem, "--signature", sig)[0] == 2
    (small_model / "empty.txt").write_bytes(b"x")
    assert run("verify", "certificate", small_model, "--certificate-chain", pki.root_pem, "--signature", sig)[0] == 3


# -- the peer ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer() -> Path:
    from benchmarks.peer import ensure_peer_venv

    return ensure_peer_venv()


def _peer_verify_key(peer: Path, cwd: Path, pub: Path, sig: Path, model: Path) -> subprocess.CompletedProcess[str]:
    from benchmarks.peer import peer_cli

    return subprocess.run([*peer_cli(peer), "verify", "key", "--public_key", str(pub), "--signature", str(sig),
                           str(model)], cwd=cwd, capture_output=True, text=True, check=False, timeout=300)


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521"])
def test_peer_verifies_keygen_ecdsa(peer: Path, run: Run, small_model: Path, tmp_path: Path, algorithm: str) -> None:
    out_dir = tmp_path / "keys"
    assert run("keygen", "--algorithm", algorithm, "--output", out_dir)[0] == 0
    sig = tmp_path / "m.sig"
    assert run("sign", "key", small_model, "--private-key", out_dir / "private.pem", "--signature", sig)[0] == 0
    proc = _peer_verify_key(peer, tmp_path, out_dir / "public.pem", sig, small_model)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_peer_refuses_ed25519(peer: Path, run: Run, small_model: Path, tmp_path: Path) -> None:
    """Documented limitation: model-signing 1.1.1 accepts only EC keys, so it cannot verify Ed25519 bundles."""
    out_dir = tmp_path / "keys"
    assert run("keygen", "--algorithm", "ed25519", "--output", out_dir)[0] == 0
    sig = tmp_path / "m.sig"
    assert run("sign", "key", small_model, "--private-key", out_dir / "private.pem", "--signature", sig)[0] == 0
    assert _peer_verify_key(peer, tmp_path, out_dir / "public.pem", sig, small_model).returncode != 0
    assert run("verify", "key", small_model, "--public-key", out_dir / "public.pem", "--signature", sig)[0] == 0


# -- keygen ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519"])
def test_keygen_files_and_output(run: Run, tmp_path: Path, algorithm: str) -> None:
    out_dir = tmp_path / "k"
    code, out, err = run("keygen", "--algorithm", algorithm, "--output", out_dir)
    assert code == 0, err
    priv, pub = out_dir / "private.pem", out_dir / "public.pem"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    key = serialization.load_pem_private_key(priv.read_bytes(), None)
    pub_from_priv = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pub_from_priv == pub.read_bytes()
    key_id = _spki_id(pub.read_bytes())
    assert f"key id:      {key_id}" in out
    assert f"modelseal sign key MODEL --private-key {priv}" in out
    assert f"modelseal verify key MODEL --public-key {pub}" in out
    assert (WARNING in err) == (algorithm == "ed25519")


def test_keygen_encrypted_from_env(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_model: Path
) -> None:
    monkeypatch.setenv("KEY_PW", "correct horse")
    out_dir = tmp_path / "k"
    code, out, err = run("keygen", "--output", out_dir, "--password-env", "KEY_PW")
    assert code == 0, err
    data = (out_dir / "private.pem").read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(data, b"correct horse")
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(data, b"wrong")
    assert "--password-env KEY_PW" in out
    sig = tmp_path / "s.sig"
    assert run("sign", "key", small_model, "--private-key", out_dir / "private.pem", "--password-env", "KEY_PW",
               "--signature", sig)[0] == 0
    assert run("verify", "key", small_model, "--public-key", out_dir / "public.pem", "--signature", sig)[0] == 0


def test_keygen_never_overwrites(run: Run, tmp_path: Path) -> None:
    out_dir = tmp_path / "k"
    out_dir.mkdir()
    (out_dir / "public.pem").write_bytes(b"keep me")
    code, _, err = run("keygen", "--output", out_dir)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--overwrite" in err and "public.pem" in err
    assert (out_dir / "public.pem").read_bytes() == b"keep me" and not (out_dir / "private.pem").exists()
    assert run("keygen", "--output", out_dir, "--overwrite")[0] == 0
    assert (out_dir / "public.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_keygen_no_partial_pair(tmp_path: Path) -> None:
    """The private key's write fails (a directory in its place): the public key just written is removed."""
    out_dir = tmp_path / "k"
    (out_dir / "private.pem").mkdir(parents=True)
    (out_dir / "private.pem" / "x").write_bytes(b"")
    with pytest.raises(ms.ModelSigningError, match="nothing was left behind"):
        ms.generate_key("ed25519", out_dir, overwrite=True)
    assert sorted(os.listdir(out_dir)) == ["private.pem"]  # no public.pem, no temporary file


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--algorithm", "rsa"], "--algorithm"),
        (["--password-env", "NO_SUCH_VARIABLE_XYZ"], "NO_SUCH_VARIABLE_XYZ"),
        (["--bogus"], "--bogus"),
    ],
)
def test_keygen_bad_options(run: Run, tmp_path: Path, args: list[str], needle: str) -> None:
    code, _, err = run("keygen", "--output", tmp_path / "k", *args)
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "k").exists()


def test_keygen_help_says_why_p256(run: Run) -> None:
    code, out, _ = run("keygen", "--help")
    assert code == 0 and "ecdsa-p256" in out and "model-signing 1.1.1" in out


def test_generate_key_api(tmp_path: Path, small_model: Path) -> None:
    made = ms.generate_key("ed25519")  # in memory: nothing written
    assert made.private_path is None and made.algorithm is algorithms.ED25519 and not made.algorithm.peer_verifies
    assert made.key_id == _spki_id(made.public_pem)
    written = ms.generate_key(output_dir=tmp_path / "k", password="pw")
    assert written.encrypted and written.private_path == tmp_path / "k" / "private.pem"
    assert written.algorithm.name == "ecdsa-p256"
    sig = tmp_path / "s.sig"
    ms.sign(small_model, ms.KeySigner(written.private_path, password="pw"), signature_path=sig, hashing=FAST)
    _validate(sig.read_bytes())
    verified = ms.verify(small_model, ms.KeyVerifier(written.public_key), signature_path=sig, max_workers=1)
    assert verified.signer_identity is not None and verified.signer_identity.key_id == written.key_id
    with pytest.raises(ms.ModelSigningError, match="not supported"):
        ms.generate_key("rsa-2048")

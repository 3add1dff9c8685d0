"""The ``certificate`` method: chain to the given roots, validity now, signing usage, signature by the leaf."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import model_signing as ms
from model_signing.errors import KeyMaterialError, VerificationError
from model_signing.keymaterial.keys import signature_hash
from model_signing.oms import bundle as _bundle
from tests import _pki

FAST = ms.HashingConfig(max_workers=1)


def _sign(model: Path, pki: _pki.Pki, sig: Path) -> ms.SignResult:
    signer = ms.CertificateSigner(pki.key_pem, pki.leaf_pem, [pki.chain_pem])
    return ms.sign(model, signer, signature_path=sig, hashing=FAST)


def _verify(model: Path, roots: list[Path], sig: Path, **kw: object) -> ms.VerifyResult:
    return ms.verify(model, ms.CertificateVerifier(roots, **kw), signature_path=sig, max_workers=1)  # type: ignore[arg-type]


def _forge(model: Path, sig: Path, key: ec.EllipticCurvePrivateKey, chain: list) -> None:  # type: ignore[type-arg]
    """A certificate bundle for ``model`` signed by ``key`` with an arbitrary chain (bypassing signer checks)."""
    from model_signing.oms.statement import statement_payload

    payload = statement_payload(ms.hash_model(model, FAST))
    signature = key.sign(_bundle.pae(payload), ec.ECDSA(signature_hash(key)))
    sig.write_text(_bundle.bundle_json(_bundle.assemble(payload, signature, _bundle.certificate_material(chain))))


def test_round_trip(small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    result = _sign(small_model, pki, sig)
    assert result.method == "certificate" and "CN=signer" in result.signer
    chain = json.loads(sig.read_text())["verificationMaterial"]["x509CertificateChain"]["certificates"]
    assert len(chain) == 2  # leaf first, then the intermediate
    verified = _verify(small_model, [pki.root_pem], sig)
    assert verified.root_digest == result.root_digest
    assert "CN=signer" in verified.signer and "Test Intermediate CA" in verified.signer


@pytest.mark.parametrize("curve", ["P-384", "P-521"])
def test_other_curves(small_model: Path, tmp_path: Path, curve: str) -> None:
    pki = _pki.Pki(tmp_path / "pki", curve=curve)
    sig = tmp_path / "model.sig"
    _sign(small_model, pki, sig)
    assert _verify(small_model, [pki.root_pem], sig).method == "certificate"


def test_chain_in_the_leaf_file_and_encrypted_key(small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    bundle_pem = _pki.write_certs(tmp_path / "leaf+chain.pem", pki.leaf, pki.inter)
    enc_key = _pki.write_private_key(pki.leaf_key, tmp_path / "enc.key", b"pw")
    sig = tmp_path / "model.sig"
    ms.sign(small_model, ms.CertificateSigner(enc_key, bundle_pem, password="pw"), signature_path=sig, hashing=FAST)
    assert _verify(small_model, [pki.root_pem], sig).method == "certificate"


def test_another_root_is_rejected(small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    other = _pki.Pki(tmp_path / "other")
    sig = tmp_path / "model.sig"
    _sign(small_model, pki, sig)
    with pytest.raises(VerificationError, match="does not chain"):
        _verify(small_model, [other.root_pem], sig)
    # A chain from another root, with a key that really signed the model, is still refused.
    _sign(small_model, other, sig := tmp_path / "other.sig")
    with pytest.raises(VerificationError, match="does not chain"):
        _verify(small_model, [pki.root_pem], sig)


def test_missing_intermediate_is_rejected(small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    _forge(small_model, sig, pki.leaf_key, [pki.leaf])
    with pytest.raises(VerificationError, match="does not chain"):
        _verify(small_model, [pki.root_pem], sig)
    # Trusting the intermediate itself is an explicit choice the user can make.
    assert _verify(small_model, [pki.chain_pem], sig).method == "certificate"


def test_expired_leaf(small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    past = _pki.NOW - dt.timedelta(days=10)
    key_path, cert_path = pki.other_leaf("old", not_before=past, not_after=past + dt.timedelta(days=1))
    with pytest.raises(KeyMaterialError, match="expired"):
        ms.CertificateSigner(key_path, cert_path, [pki.chain_pem])
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from cryptography.x509 import load_pem_x509_certificate

    key = load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sig = tmp_path / "model.sig"
    _forge(small_model, sig, key, [load_pem_x509_certificate(cert_path.read_bytes()), pki.inter])
    with pytest.raises(VerificationError, match="expired"):
        _verify(small_model, [pki.root_pem], sig)
    # At a time inside its validity period (an audit), the same bundle verifies.
    assert _verify(small_model, [pki.root_pem], sig, at=past + dt.timedelta(hours=12)).method == "certificate"


def test_validity_is_checked_now_not_at_issuance(small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    _sign(small_model, pki, sig)
    with pytest.raises(VerificationError, match="expired"):
        _verify(small_model, [pki.root_pem], sig, at=_pki.NOW + dt.timedelta(days=400))
    with pytest.raises(VerificationError, match="not valid before"):
        _verify(small_model, [pki.root_pem], sig, at=_pki.NOW - dt.timedelta(days=5))


def test_expired_intermediate_is_rejected(small_model: Path, tmp_path: Path) -> None:
    pki = _pki.Pki(tmp_path / "pki")
    past = _pki.NOW - dt.timedelta(days=100)
    inter = _pki.make_ca(
        "Old Intermediate",
        pki.inter_key,
        (pki.root, pki.root_key),
        not_before=past,
        not_after=past + dt.timedelta(days=1),
    )
    sig = tmp_path / "model.sig"
    _forge(small_model, sig, pki.leaf_key, [pki.leaf, inter])
    with pytest.raises(VerificationError, match="does not chain"):
        _verify(small_model, [pki.root_pem], sig)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"code_signing": False}, "codeSigning"), ({"digital_signature": False}, "digitalSignature")],
)
def test_leaf_must_allow_code_signing(
    small_model: Path, pki: _pki.Pki, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    key_path, cert_path = pki.other_leaf("tls", **kwargs)
    with pytest.raises(KeyMaterialError, match=message):
        ms.CertificateSigner(key_path, cert_path, [pki.chain_pem])
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from cryptography.x509 import load_pem_x509_certificate

    key = load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sig = tmp_path / "model.sig"
    _forge(small_model, sig, key, [load_pem_x509_certificate(cert_path.read_bytes()), pki.inter])
    with pytest.raises(VerificationError, match=message):
        _verify(small_model, [pki.root_pem], sig)


def test_leaf_swapped_for_another_is_rejected(small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    """A valid chain whose leaf did not make the signature: the DSSE check with the leaf key fails."""
    from cryptography.x509 import load_pem_x509_certificate

    sig = tmp_path / "model.sig"
    _sign(small_model, pki, sig)
    _, other_cert = pki.other_leaf("mallory")
    doc = json.loads(sig.read_text())
    forged = _bundle.certificate_material([load_pem_x509_certificate(other_cert.read_bytes()), pki.inter])
    doc["verificationMaterial"] = json.loads(forged.to_json())
    sig.write_text(json.dumps(doc))
    with pytest.raises(VerificationError, match="does not verify"):
        _verify(small_model, [pki.root_pem], sig)


def test_key_and_certificate_mismatch(pki: _pki.Pki, tmp_path: Path) -> None:
    other_key = _pki.write_private_key(_pki.ec_key(), tmp_path / "other.key")
    with pytest.raises(KeyMaterialError, match="does not belong to the private key"):
        ms.CertificateSigner(other_key, pki.leaf_pem, [pki.chain_pem])
    with pytest.raises(KeyMaterialError, match="holds no PEM certificate"):
        ms.CertificateSigner(pki.key_pem, pki.key_pem)
    with pytest.raises(KeyMaterialError, match="no trusted certificates"):
        ms.CertificateVerifier([])


def test_methods_cannot_be_swapped(small_model: Path, pki: _pki.Pki, ec_keypair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cert_sig = tmp_path / "cert.sig"
    _sign(small_model, pki, cert_sig)
    _, pub = ec_keypair()
    with pytest.raises(VerificationError, match="is a certificate signature, not a key one"):
        ms.verify(small_model, ms.KeyVerifier(pub), signature_path=cert_sig)
    # Even with the leaf's own public key: a certificate bundle is only trusted through its chain.
    leaf_pub = _pki.write_public_key(pki.leaf_key, tmp_path / "leaf.pub")
    with pytest.raises(VerificationError, match="certificate signature"):
        ms.verify(small_model, ms.KeyVerifier(leaf_pub), signature_path=cert_sig)
    key_sig = tmp_path / "key.sig"
    ms.sign(small_model, ms.KeySigner(pki.key_pem), signature_path=key_sig, hashing=FAST)
    with pytest.raises(VerificationError, match="is a key signature, not a certificate one"):
        _verify(small_model, [pki.root_pem], key_sig)

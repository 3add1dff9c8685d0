"""DSSE envelope and Sigstore bundle: PAE agrees with sigstore, structure checks, pre-v1.1 relaxations."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from model_signing import KeySigner
from model_signing.errors import SignatureFormatError
from model_signing.methods import parse_bundle, read_bundle
from model_signing.oms.bundle import (
    BUNDLE_MEDIA_TYPE,
    legacy_pae,
    pae,
    public_key_hint,
)
from tests import _pki


def _key_bundle(payload: bytes = b'{"x": 1}') -> dict[str, Any]:
    bundle = KeySigner(_pki.ec_key()).sign(payload)
    doc: dict[str, Any] = json.loads(bundle.to_json())
    return doc


def _parse(doc: Any) -> Any:
    return parse_bundle(json.dumps(doc).encode(), source="sig.json")


def test_pae_matches_sigstore_dsse() -> None:
    from sigstore.dsse import Envelope
    from sigstore_models.intoto import Envelope as RawEnvelope
    from sigstore_models.intoto import Signature

    payload = '{"_type":"https://in-toto.io/Statement/v1","ü":1}'.encode()
    env = Envelope(
        RawEnvelope(
            payload=base64.b64encode(payload),
            payload_type="application/vnd.in-toto+json",
            signatures=[Signature(sig=base64.b64encode(b"s"))],
        )
    )
    assert pae(payload) == env.pae()
    assert pae(payload) == b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(payload), payload)


def test_legacy_pae_is_the_v02_encoding() -> None:
    assert legacy_pae(b"{}") == b"DSSEV1 28 application/vnd.in-toto+json 2 b'{}'"
    assert not legacy_pae(b"{}").startswith(b"DSSEv1")


def test_key_bundle_shape() -> None:
    key = _pki.ec_key()
    doc = json.loads(KeySigner(key).sign(b"{}").to_json())
    assert doc["mediaType"] == BUNDLE_MEDIA_TYPE
    assert doc["verificationMaterial"] == {
        "publicKey": {"hint": public_key_hint(key.public_key())},
        "tlogEntries": [],
    }
    env = doc["dsseEnvelope"]
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert base64.b64decode(env["payload"]) == b"{}"
    assert len(env["signatures"]) == 1 and env["signatures"][0]["keyid"] == ""


def test_hint_is_sha256_of_the_pem_public_key(tmp_path: Path) -> None:
    import hashlib

    key = _pki.ec_key("P-384")
    pem = _pki.write_public_key(key, tmp_path / "k.pub").read_bytes()
    assert public_key_hint(key.public_key()) == hashlib.sha256(pem).hexdigest()


def test_parse_valid_bundle() -> None:
    parsed = _parse(_key_bundle(b"payload"))
    assert parsed.method == "key"
    assert parsed.payload == b"payload"
    assert parsed.payload_type == "application/vnd.in-toto+json"
    assert parsed.key_hint and len(parsed.key_hint) == 64


@pytest.mark.parametrize("keyid", ["absent", "", None, "some-key"])
def test_keyid_absent_empty_null_accepted(keyid: Any) -> None:
    doc = _key_bundle()
    sig = doc["dsseEnvelope"]["signatures"][0]
    if keyid == "absent":
        del sig["keyid"]
    else:
        sig["keyid"] = keyid
    assert _parse(doc).method == "key"


def test_pre_v11_public_key_raw_bytes_accepted() -> None:
    doc = _key_bundle()
    doc["verificationMaterial"]["publicKey"] = {
        "rawBytes": base64.b64encode(b"\x30\x59").decode(),
        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
    }
    del doc["verificationMaterial"]["tlogEntries"]
    parsed = _parse(doc)
    assert parsed.method == "key" and parsed.legacy_public_key == b"\x30\x59" and parsed.key_hint is None


def test_methods_are_detected(pki: _pki.Pki) -> None:
    from model_signing import CertificateSigner

    cert_doc = json.loads(CertificateSigner(pki.key_pem, pki.leaf_pem, [pki.chain_pem]).sign(b"{}").to_json())
    parsed = _parse(cert_doc)
    assert parsed.method == "certificate"
    assert [c.subject for c in parsed.certificate_chain()] == [pki.leaf.subject, pki.inter.subject]
    keyless = dict(cert_doc)
    keyless["verificationMaterial"] = {
        "certificate": cert_doc["verificationMaterial"]["x509CertificateChain"]["certificates"][0],
        "tlogEntries": [],
    }
    with pytest.raises(SignatureFormatError, match="must carry tlogEntries"):
        _parse(keyless)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update({"mediaType": "application/json"}), "not a Sigstore bundle media type"),
        (lambda d: d.pop("mediaType"), "not a Sigstore bundle media type"),
        (lambda d: d.pop("dsseEnvelope"), "no dsseEnvelope"),
        (lambda d: d.update({"messageSignature": {}}) or d.pop("dsseEnvelope"), "single blob"),
        (lambda d: d.update({"extra": 1}), "unexpected bundle fields"),
        (lambda d: d.pop("verificationMaterial"), "no verificationMaterial"),
        (lambda d: d["verificationMaterial"].pop("publicKey"), "exactly one of"),
        (
            lambda d: d["verificationMaterial"].update({"certificate": {"rawBytes": "AA=="}}),
            "exactly one of",
        ),
        (lambda d: d["verificationMaterial"].update({"publicKey": {"hint": 5}}), "hint must be a string"),
        (lambda d: d["dsseEnvelope"].update({"payloadType": "text/plain"}), "payloadType"),
        (lambda d: d["dsseEnvelope"].update({"payload": ""}), "payload is empty"),
        (lambda d: d["dsseEnvelope"].update({"payload": "not base64!"}), "not valid base64"),
        (lambda d: d["dsseEnvelope"].update({"signatures": []}), "exactly one signature"),
        (
            lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0]),
            "exactly one signature",
        ),
        (lambda d: d["dsseEnvelope"]["signatures"][0].update({"sig": ""}), "sig is empty"),
        (lambda d: d["dsseEnvelope"]["signatures"][0].update({"keyid": 3}), "keyid"),
        (lambda d: d["dsseEnvelope"]["signatures"][0].update({"other": 3}), "only 'sig' and 'keyid'"),
        (lambda d: d["dsseEnvelope"].update({"extra": 3}), "unexpected dsseEnvelope fields"),
        (lambda d: d["verificationMaterial"].update({"tlogEntries": "no"}), "malformed Sigstore bundle"),
    ],
)
def test_malformed_bundles_are_rejected(mutate: Any, message: str) -> None:
    doc = _key_bundle()
    mutate(doc)
    with pytest.raises(SignatureFormatError, match=message):
        _parse(doc)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"mediaType": "a", "mediaType": "b"}', "repeats the JSON key 'mediaType'"),
        (b'{"mediaType": NaN}', "non-JSON constant NaN"),
    ],
)
def test_unreadable_files_are_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(SignatureFormatError, match=message):
        parse_bundle(raw, source="sig.json")


def test_read_bundle_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(SignatureFormatError, match="does not exist"):
        read_bundle(tmp_path / "missing.sig")
    with pytest.raises(SignatureFormatError, match="is a directory"):
        read_bundle(tmp_path)


def test_certificate_chain_with_garbage_der_is_rejected(pki: _pki.Pki) -> None:
    from model_signing import CertificateSigner

    doc = json.loads(CertificateSigner(pki.key_pem, pki.leaf_pem).sign(b"{}").to_json())
    doc["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"] = base64.b64encode(
        b"junk"
    ).decode()
    with pytest.raises(SignatureFormatError, match=r"not a DER X\.509 certificate"):
        _parse(doc).certificate_chain()


def test_read_bundle_refuses_special_files(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "fifo")  # opening it for reading would block without O_NONBLOCK
    for special in (tmp_path / "fifo", Path("/dev/zero")):
        with pytest.raises(SignatureFormatError, match="not a regular file"):
            read_bundle(special)


def test_sigstore_statement_keeps_our_canonical_bytes(small_model: Path) -> None:
    """The keyless signer hands ``sigstore.dsse.Statement(payload)`` to ``sign_dsse``: same bytes, same PAE."""
    from sigstore.dsse import Statement

    from model_signing import HashingConfig, hash_model
    from model_signing.oms.statement import statement_payload

    payload = statement_payload(hash_model(small_model, HashingConfig(max_workers=1)))
    statement = Statement(payload)
    assert statement._contents == payload
    assert statement._pae() == pae(payload)

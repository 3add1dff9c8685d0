"""The local instance's services over HTTP: what Fulcio, Rekor, the TSA and the issuer accept and refuse.

Requests are made with ``requests`` against the running server; keys, CSRs and signatures are built with
``cryptography`` here, and expected Merkle hashes come from an independent RFC 6962 implementation below.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import stat
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from rfc3161_client import TimestampRequestBuilder, VerifierBuilder, decode_timestamp_response

from model_signing.errors import InputError
from model_signing.sigstore_local import LocalSigstore
from model_signing.sigstore_local._merkle import MerkleTree

EMAIL = "alice@example.com"


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


def oidc_key(inst: LocalSigstore) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((inst.state_dir / "keys" / "oidc.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def raw_token(key: ec.EllipticCurvePrivateKey, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iat": now, "nbf": now, "exp": now + 600, "aud": "sigstore", "sub": EMAIL, **claims}
    return jwt.encode(payload, key, algorithm="ES256")


# -- Fulcio -------------------------------------------------------------------------------------------


def csr_request(key: ec.EllipticCurvePrivateKey | None = None, *, break_signature: bool = False) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    if break_signature:
        der[-1] ^= 0x01  # the last byte belongs to the ECDSA signature's s value
    pem = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    return json.dumps({"certificateSigningRequest": base64.b64encode(pem).decode()})


def ask_fulcio(inst: LocalSigstore, token: str | None, body: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{inst.base_url}/api/v2/signingCert", data=body or csr_request(), headers=headers,
                         timeout=30)


def test_fulcio_issues_a_chain_for_a_valid_token(inst: LocalSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    response = ask_fulcio(inst, inst.mint_token(EMAIL), csr_request(key))
    assert response.status_code == 201, response.text
    pems = response.json()["signedCertificateEmbeddedSct"]["chain"]["certificates"]
    leaf, intermediate, root = (x509.load_pem_x509_certificate(p.encode()) for p in pems)
    assert leaf.public_key() == key.public_key()
    assert leaf.issuer == intermediate.subject and intermediate.issuer == root.subject
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(minutes=10)
    # The embedded SCT names the CT key listed in the trust config.
    sct = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value[0]
    ctlog = json.loads(inst.trust_config_json())["trustedRoot"]["ctlogs"][0]
    assert base64.b64encode(sct.log_id).decode() == ctlog["logId"]["keyId"]


@pytest.mark.parametrize(
    ("make_token", "message"),
    [
        (lambda inst: raw_token(ec.generate_private_key(ec.SECP256R1()), iss=inst.oidc_issuer), "signature"),
        (lambda inst: inst.mint_token(EMAIL, audience="not-sigstore"), "audience"),
        (
            lambda inst: inst.mint_token(
                EMAIL, extra_claims={"iat": int(time.time()) - 1200, "nbf": int(time.time()) - 1200,
                                     "exp": int(time.time()) - 600}
            ),
            "expired",
        ),
        (lambda inst: raw_token(oidc_key(inst), iss="https://accounts.example.com"), "issuer"),
        (lambda inst: inst.mint_token(EMAIL, extra_claims={"nbf": int(time.time()) + 3600}), "not yet valid"),
        (lambda inst: "not-a-jwt", "malformed"),
    ],
    ids=["bad-signature", "wrong-aud", "expired", "wrong-iss", "not-yet-valid", "garbage"],
)
def test_fulcio_rejects_bad_tokens(inst: LocalSigstore, make_token: Any, message: str) -> None:
    response = ask_fulcio(inst, make_token(inst))
    assert response.status_code == 401
    assert message in response.json()["message"]


def test_fulcio_requires_a_token(inst: LocalSigstore) -> None:
    response = ask_fulcio(inst, None)
    assert response.status_code == 401
    assert "Authorization" in response.json()["message"]


def test_fulcio_requires_proof_of_possession(inst: LocalSigstore) -> None:
    response = ask_fulcio(inst, inst.mint_token(EMAIL), csr_request(break_signature=True))
    assert response.status_code == 400
    assert "proof of possession" in response.json()["message"]


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"email": EMAIL, "email_verified": False}, "not verified"),
        ({"sub": "just-a-name"}, "names no identity"),
    ],
)
def test_fulcio_rejects_tokens_without_a_usable_identity(
    inst: LocalSigstore, claims: dict[str, Any], message: str
) -> None:
    response = ask_fulcio(inst, raw_token(oidc_key(inst), iss=inst.oidc_issuer, **claims))
    assert response.status_code == 400
    assert message in response.json()["message"]


# -- Rekor --------------------------------------------------------------------------------------------


def hashedrekord(data: bytes, key: ec.EllipticCurvePrivateKey, *, signer: ec.EllipticCurvePrivateKey | None = None,
                 kind: str = "hashedrekord") -> dict[str, Any]:
    digest = hashlib.sha256(data).digest()
    signature = (signer or key).sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "apiVersion": "0.0.1",
        "kind": kind,
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
            "signature": {"content": base64.b64encode(signature).decode(),
                          "publicKey": {"content": base64.b64encode(pem).decode()}},
        },
    }


def rekor_post(inst: LocalSigstore, proposed: dict[str, Any]) -> requests.Response:
    return requests.post(f"{inst.base_url}/api/v1/log/entries", json=proposed, timeout=30)


def test_rekor_integrates_an_entry_with_a_valid_proof(inst: LocalSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    response = rekor_post(inst, hashedrekord(b"rekor entry", key))
    assert response.status_code == 201, response.text
    [(uuid, entry)] = response.json().items()
    body = base64.b64decode(entry["body"])
    assert json.loads(body)["spec"]["data"]["hash"]["value"] == hashlib.sha256(b"rekor entry").hexdigest()
    proof = entry["verification"]["inclusionProof"]
    leaf = hashlib.sha256(b"\x00" + body).digest()
    assert uuid.endswith(leaf.hex())
    assert root_from_proof(leaf, proof["logIndex"], proof["treeSize"],
                           [bytes.fromhex(h) for h in proof["hashes"]]) == bytes.fromhex(proof["rootHash"])
    # The same entry, by index and by uuid.
    by_index = requests.get(f"{inst.base_url}/api/v1/log/entries", params={"logIndex": entry["logIndex"]}, timeout=30)
    by_uuid = requests.get(f"{inst.base_url}/api/v1/log/entries/{uuid}", timeout=30)
    assert by_index.json()[uuid]["body"] == by_uuid.json()[uuid]["body"] == entry["body"]
    info = requests.get(f"{inst.base_url}/api/v1/log", timeout=30).json()
    assert info["treeSize"] >= entry["logIndex"] + 1
    assert info["signedTreeHead"].startswith(f"modelseal-local-rekor - {info['treeID']}\n{info['treeSize']}\n")


def test_rekor_refuses_duplicates(inst: LocalSigstore) -> None:
    proposed = hashedrekord(b"twice", ec.generate_private_key(ec.SECP256R1()))
    assert rekor_post(inst, proposed).status_code == 201
    second = rekor_post(inst, proposed)
    assert second.status_code == 409
    assert "already exists" in second.json()["message"]


@pytest.mark.parametrize(
    ("proposed", "message"),
    [
        (hashedrekord(b"x", ec.generate_private_key(ec.SECP256R1()), signer=ec.generate_private_key(ec.SECP256R1())),
         "does not verify"),
        (hashedrekord(b"x", ec.generate_private_key(ec.SECP256R1()), kind="rpm"), "unsupported entry kind"),
        ({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {}}, "missing"),
        ({"apiVersion": "0.0.1", "kind": "dsse", "spec": {"proposedContent": {
            "envelope": json.dumps({"payloadType": "t", "payload": base64.b64encode(b"p").decode(),
                                    "signatures": [{"sig": base64.b64encode(b"\x30\x00").decode()}]}),
            "verifiers": [base64.b64encode(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()]}}},
         "does not verify"),
    ],
    ids=["wrong-signature", "unsupported-kind", "missing-fields", "dsse-wrong-signature"],
)
def test_rekor_rejects_bad_entries(inst: LocalSigstore, proposed: dict[str, Any], message: str) -> None:
    response = rekor_post(inst, proposed)
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_rekor_unknown_entries_are_404(inst: LocalSigstore) -> None:
    assert requests.get(f"{inst.base_url}/api/v1/log/entries/{'00' * 32}", timeout=30).status_code == 404
    assert requests.get(f"{inst.base_url}/api/v1/log/entries", params={"logIndex": 10**6},
                        timeout=30).status_code == 404


def test_rekor_log_survives_a_torn_last_line_and_refuses_corruption(tmp_path: Any) -> None:
    state = tmp_path / "state"
    with LocalSigstore(state) as first:
        assert rekor_post(first, hashedrekord(b"kept", ec.generate_private_key(ec.SECP256R1()))).status_code == 201
    log = state / "rekor" / "entries.jsonl"
    kept = log.read_bytes()
    log.write_bytes(kept + b'{"body": "trunc')  # a crash in the middle of an append
    with LocalSigstore(state) as again:
        assert requests.get(f"{again.base_url}/api/v1/log", timeout=30).json()["treeSize"] == 1
    assert log.read_bytes() == kept
    log.write_bytes(kept + b"not json\n")
    with pytest.raises(InputError, match=r"entries\.jsonl:2: corrupt transparency log entry"):
        LocalSigstore(state).start()


def test_state_dir_secrets_are_private_to_the_owner(tmp_path: Any) -> None:
    state = tmp_path / "state"
    with LocalSigstore(state):
        pass
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # Every key the instance signs with is persisted (so a restart keeps its identity) ...
    keys = {p.name for p in (state / "keys").iterdir()}
    assert keys == {f"{n}.pem" for n in ("ctlog", "fulcio-intermediate", "fulcio-root", "oidc", "rekor",
                                         "tsa", "tsa-root")}
    # ... and readable by the owner only.
    for secret in [*(state / "keys").iterdir(), state / "oidc-client.secret"]:
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret


def test_a_state_dir_serves_one_instance_at_a_time(tmp_path: Any) -> None:
    with LocalSigstore(tmp_path / "state"), pytest.raises(InputError, match="in use by another running"):
        LocalSigstore(tmp_path / "state").start()


# An independent RFC 6962 / RFC 9162 implementation to check the tree against.


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def root_from_proof(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root implied by an inclusion proof."""
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    assert sn == 0, "proof too short"
    return r


def test_merkle_tree_matches_rfc6962() -> None:
    data = [f"leaf {i}".encode() for i in range(33)]
    tree = MerkleTree()
    for item in data:
        tree.append(hashlib.sha256(b"\x00" + item).digest())
    assert tree.root(0) == hashlib.sha256(b"").digest()
    for size in range(1, len(data) + 1):
        expected_root = mth(data[:size])
        assert tree.root(size) == expected_root
        for index in range(size):
            leaf = hashlib.sha256(b"\x00" + data[index]).digest()
            assert root_from_proof(leaf, index, size, tree.inclusion_proof(index, size)) == expected_root


# -- TSA ----------------------------------------------------------------------------------------------


def test_tsa_timestamps_verify_against_the_trusted_chain(inst: LocalSigstore) -> None:
    message = b"signature bytes to timestamp"
    request = TimestampRequestBuilder().data(message).nonce(nonce=True).cert_request(cert_request=True).build()
    response = requests.post(inst.tsa_url, data=request.as_bytes(),
                             headers={"Content-Type": "application/timestamp-query"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/timestamp-reply"
    stamp = decode_timestamp_response(response.content)
    assert stamp.tst_info.nonce == request.nonce
    assert len(stamp.signed_data.certificates) == 1  # certReq was true
    chain = [
        x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"]))
        for c in json.loads(inst.trust_config_json())["trustedRoot"]["timestampAuthorities"][0]["certChain"][
            "certificates"]
    ]
    verifier = VerifierBuilder().tsa_certificate(chain[0]).add_root_certificate(chain[-1]).nonce(request.nonce).build()
    assert verifier.verify_message(stamp, message)
    assert abs(stamp.tst_info.gen_time.timestamp() - time.time()) < 600


def test_tsa_omits_the_certificate_unless_asked_and_rejects_garbage(inst: LocalSigstore) -> None:
    request = TimestampRequestBuilder().data(b"m").cert_request(cert_request=False).build()
    response = requests.post(inst.tsa_url, data=request.as_bytes(), timeout=30)
    assert len(decode_timestamp_response(response.content).signed_data.certificates) == 0
    garbage = requests.post(inst.tsa_url, data=b"not DER", timeout=30)
    assert garbage.status_code == 400
    assert "TimeStampReq" in garbage.json()["message"]


# -- OIDC issuer --------------------------------------------------------------------------------------


def test_discovery_and_jwks_verify_minted_tokens(inst: LocalSigstore) -> None:
    config = requests.get(f"{inst.oidc_issuer}/.well-known/openid-configuration", timeout=30).json()
    assert config["issuer"] == inst.oidc_issuer
    jwks = requests.get(config["jwks_uri"], timeout=30).json()
    token = inst.mint_token(EMAIL)
    kid = jwt.get_unverified_header(token)["kid"]
    [jwk] = [k for k in jwks["keys"] if k["kid"] == kid]
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["ES256"], audience="sigstore",
                        issuer=inst.oidc_issuer)
    assert claims["email"] == EMAIL and claims["email_verified"] is True and claims["sub"] == EMAIL


def test_token_endpoint_needs_the_client_secret(inst: LocalSigstore) -> None:
    secret = (inst.state_dir / "oidc-client.secret").read_text().strip()
    ok = requests.post(f"{inst.oidc_issuer}/token", auth=("sigstore", secret),
                       data={"grant_type": "client_credentials", "identity": EMAIL}, timeout=30)
    assert ok.status_code == 200
    claims = jwt.decode(ok.json()["access_token"], oidc_key(inst).public_key(), algorithms=["ES256"],
                        audience="sigstore")
    assert claims["email"] == EMAIL
    bad = requests.post(f"{inst.oidc_issuer}/token", auth=("sigstore", "guess"),
                        data={"grant_type": "client_credentials", "identity": EMAIL}, timeout=30)
    assert bad.status_code == 401


def test_actions_endpoint_needs_a_request_token(inst: LocalSigstore) -> None:
    url = f"{inst.base_url}/github-actions/token"
    assert requests.get(url, timeout=30).status_code == 401
    # An ID token is not a request token: different audience.
    as_bearer = requests.get(url, headers={"Authorization": f"bearer {inst.mint_token(EMAIL)}"}, timeout=30)
    assert as_bearer.status_code == 401
    env = inst.github_actions_env("octo-org/models")
    ok = requests.get(url, params={"audience": "sigstore"},
                      headers={"Authorization": f"bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"}, timeout=30)
    claims = jwt.decode(ok.json()["value"], oidc_key(inst).public_key(), algorithms=["ES256"], audience="sigstore")
    assert claims["repository"] == "octo-org/models"
    assert claims["job_workflow_ref"] == "octo-org/models/.github/workflows/release.yml@refs/heads/main"

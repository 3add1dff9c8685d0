"""Rekor v2: the local instance's v2 log, and keyless sign/verify against it with the unmodified sigstore client.

Everything runs over 127.0.0.1: the log's HTTP API is driven with ``requests`` and hand-built requests, and
the CLI (``python main.py``) signs and verifies with sigstore's own Rekor v2 client.  Expected values are
computed here, independently of the code under test: RFC 6962 hashes with hashlib, the C2SP signed-note
key hash from the trusted root's public key, checkpoint signatures with cryptography, the entry bodies as
the v0.0.2 protobuf-JSON the client compares them with.

Exit codes checked: 0 verified, 1 bad input, 2 signature/log/time failure, 3 model mismatch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from model_signing.sigstore_local import LocalSigstore
from model_signing.sigstore_local._merkle import MerkleTree
from model_signing.sigstore_local._rekor2 import tile_index, tile_path

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "alice@example.com"
FILES = {"config.json": b'{"layers": 2}\n', "weights/w.bin": bytes(range(256)) * 3}
_AMBIENT_PREFIXES = ("GITHUB_", "ACTIONS_", "SIGSTORE_", "GITLAB_", "CI_", "BUILDKITE", "CIRCLECI", "GOOGLE_")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- RFC 6962, computed here -------------------------------------------------------------------------------


def leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH over leaf hashes, straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def root_from_proof(leaf_hash: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root an inclusion proof leads to."""
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        assert sn != 0
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def test_merkle_roots_proofs_and_tile_nodes_match_rfc6962() -> None:
    data = [f"entry {i}".encode() for i in range(37)]
    hashes_ = [leaf(d) for d in data]
    tree = MerkleTree()
    for h in hashes_:
        tree.append(h)
    assert tree.root(0) == hashlib.sha256(b"").digest()
    for size in range(1, len(data) + 1):
        assert tree.root(size) == mth(hashes_[:size])
        for index in (0, size // 2, size - 1):
            path = tree.inclusion_proof(index, size)
            assert root_from_proof(hashes_[index], index, size, path) == mth(hashes_[:size])
    # A tile's node at height h, index i hashes leaves [i*2^h, (i+1)*2^h).
    assert tree.subtree(8, 16) == mth(hashes_[8:16])
    assert tree.subtree(32, 33) == hashes_[32]
    # A 2-leaf tree by hand: SHA-256(0x01 || SHA-256(0x00 || a) || SHA-256(0x00 || b)).
    two = MerkleTree()
    two.append(hashlib.sha256(b"\x00a").digest())
    two.append(hashlib.sha256(b"\x00b").digest())
    by_hand = hashlib.sha256(b"\x01" + hashlib.sha256(b"\x00a").digest() + hashlib.sha256(b"\x00b").digest()).digest()
    assert two.root() == by_hand


def test_tile_paths_follow_tlog_tiles() -> None:
    # c2sp.org/tlog-tiles: 3-digit groups, all but the last prefixed with "x".
    assert tile_path(0) == "000"
    assert tile_path(5) == "005"
    assert tile_path(1234067) == "x001/x234/067"
    assert tile_index("x001/x234/067") == 1234067
    assert tile_index("067") == 67
    assert tile_index("67") is None and tile_index("x1/067") is None and tile_index("001/067") is None


# -- the log's HTTP API ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSigstore]:
    with LocalSigstore(tmp_path_factory.mktemp("v2") / "state", rekor_version=2) as instance:
        yield instance


def v2_tlog(config: dict[str, Any]) -> dict[str, Any]:
    tlogs: list[dict[str, Any]] = config["trustedRoot"]["tlogs"]
    [tlog] = [t for t in tlogs if t["publicKey"]["keyDetails"] == "PKIX_ED25519"]
    return tlog


def log_key(config: dict[str, Any]) -> ed25519.Ed25519PublicKey:
    key = serialization.load_der_public_key(base64.b64decode(v2_tlog(config)["publicKey"]["rawBytes"]))
    assert isinstance(key, ed25519.Ed25519PublicKey)
    return key


def c2sp_key_hash(origin: str, key: ed25519.Ed25519PublicKey) -> bytes:
    """c2sp.org/signed-note: SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(origin.encode() + b"\n\x01" + raw).digest()


def parse_checkpoint(envelope: str) -> tuple[str, int, bytes, str, str, bytes]:
    """(origin, size, root, note text, key name, signature bytes incl. the 4-byte key ID) of a signed note."""
    note, sep, signatures = envelope.partition("\n\n")
    assert sep and signatures.endswith("\n")
    lines = note.split("\n")
    [signature_line] = signatures.rstrip("\n").split("\n")
    dash, name, sig = signature_line.split(" ")
    assert dash == "\u2014"
    return lines[0], int(lines[1]), base64.b64decode(lines[2]), note + "\n", name, base64.b64decode(sig)


def test_trust_config_offers_v2_first_with_the_tsa(inst: LocalSigstore) -> None:
    config = inst.trust_config()
    assert inst.rekor_v2_url == f"{inst.base_url}/rekor-v2"
    services = config["signingConfig"]["rekorTlogUrls"]
    assert [(s["url"], s["majorApiVersion"]) for s in services] == [(inst.rekor_v2_url, 2), (inst.base_url, 1)]
    assert len({s["operator"] for s in services}) == 1  # one operator: the client takes its highest version
    assert [s["url"] for s in config["signingConfig"]["tsaUrls"]] == [inst.tsa_url]
    tlog = v2_tlog(config)
    assert tlog["baseUrl"] == inst.rekor_v2_url
    checkpoint = requests.get(f"{inst.rekor_v2_url}/checkpoint", timeout=30).text
    origin = parse_checkpoint(checkpoint)[0]
    assert base64.b64decode(tlog["logId"]["keyId"]) == c2sp_key_hash(origin, log_key(config))


def test_a_v1_instance_offers_no_v2(tmp_path: Path) -> None:
    with LocalSigstore(tmp_path / "state") as v1:
        config = v1.trust_config()
        assert [s["majorApiVersion"] for s in config["signingConfig"]["rekorTlogUrls"]] == [1]
        assert len(config["trustedRoot"]["tlogs"]) == 1 and v1.rekor_v2_url is None
        assert requests.get(f"{v1.base_url}/rekor-v2/checkpoint", timeout=30).status_code == 404
    assert not (tmp_path / "state" / "keys" / "rekor-v2.pem").exists()


def self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rekor v2 test")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(hours=1)).sign(key, hashes.SHA256()))


def hashedrekord_request(data: bytes, key: ec.EllipticCurvePrivateKey, *, as_certificate: bool = True,
                         signer: ec.EllipticCurvePrivateKey | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A CreateEntryRequest (as sigstore's v2 client writes it) and the v0.0.2 entry body Rekor must record."""
    digest = hashlib.sha256(data).digest()
    signature = (signer or key).sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    if as_certificate:
        verifier = {"x509Certificate": {"rawBytes": b64(self_signed(key).public_bytes(serialization.Encoding.DER))},
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256"}
    else:
        spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        verifier = {"publicKey": {"rawBytes": b64(spki)}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}
    request = {"hashedRekordRequestV002": {"digest": b64(digest),
                                           "signature": {"content": b64(signature), "verifier": verifier}}}
    body = {"kind": "hashedrekord", "apiVersion": "0.0.2", "spec": {"hashedRekordV002": {
        "data": {"algorithm": "SHA2_256", "digest": b64(digest)},
        "signature": {"content": b64(signature), "verifier": verifier}}}}
    return request, body


def post(inst: LocalSigstore, request: Any) -> requests.Response:
    assert inst.rekor_v2_url is not None
    return requests.post(f"{inst.rekor_v2_url}/api/v2/log/entries", json=request, timeout=30)


def check_entry(inst: LocalSigstore, entry: dict[str, Any], body: dict[str, Any], kind: str) -> None:
    """The entry's body, log id, inclusion proof and checkpoint, each checked independently."""
    config = inst.trust_config()
    raw_body = base64.b64decode(entry["canonicalizedBody"])
    assert json.loads(raw_body) == body
    assert entry["kindVersion"] == {"kind": kind, "version": "0.0.2"}
    assert "integratedTime" not in entry and "inclusionPromise" not in entry  # v2: no time, no SET
    proof = entry["inclusionProof"]
    index, size = int(proof["logIndex"]), int(proof["treeSize"])
    assert int(entry["logIndex"]) == index and size == index + 1
    root = base64.b64decode(proof["rootHash"])
    path = [base64.b64decode(h) for h in proof["hashes"]]
    assert root_from_proof(leaf(raw_body), index, size, path) == root
    origin, cp_size, cp_root, note, name, signature = parse_checkpoint(proof["checkpoint"]["envelope"])
    key_hash = c2sp_key_hash(origin, log_key(config))
    assert (cp_size, cp_root, name) == (size, root, origin)
    assert base64.b64decode(entry["logId"]["keyId"]) == key_hash
    assert signature[:4] == key_hash[:4]
    log_key(config).verify(signature[4:], note.encode())  # raises if the checkpoint is not the log key's


def test_hashedrekord_entries_are_integrated_with_proof_and_checkpoint(inst: LocalSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for data, as_certificate in ((b"first artifact", True), (b"second artifact", False), (b"third", True)):
        request, body = hashedrekord_request(data, key, as_certificate=as_certificate)
        response = post(inst, request)
        assert response.status_code == 201, response.text
        check_entry(inst, response.json(), body, "hashedrekord")
    assert post(inst, request).status_code == 409  # the same entry again


def test_dsse_entries_record_the_payload_hash_and_verified_signatures(inst: LocalSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    payload, payload_type = b'{"_type": "test"}', "application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)
    sig = key.sign(pae, ec.ECDSA(hashes.SHA256()))
    verifier = {"x509Certificate": {"rawBytes": b64(self_signed(key).public_bytes(serialization.Encoding.DER))},
                "keyDetails": "PKIX_ECDSA_P256_SHA_256"}
    request = {"dsseRequestV002": {"envelope": {"payload": b64(payload), "payloadType": payload_type,
                                                "signatures": [{"sig": b64(sig), "keyid": ""}]},
                                   "verifiers": [verifier]}}
    response = post(inst, request)
    assert response.status_code == 201, response.text
    body = {"kind": "dsse", "apiVersion": "0.0.2", "spec": {"dsseV002": {
        "payloadHash": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(payload).digest())},
        "signatures": [{"content": b64(sig), "verifier": verifier}]}}}
    check_entry(inst, response.json(), body, "dsse")
    other = ec.generate_private_key(ec.SECP256R1())
    request["dsseRequestV002"]["envelope"]["signatures"] = [  # type: ignore[index]
        {"sig": b64(other.sign(pae, ec.ECDSA(hashes.SHA256())))}]
    refused = post(inst, request)
    assert refused.status_code == 400 and "does not verify" in refused.json()["message"]


def _edit(request: dict[str, Any], edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(request))
    edit(copy)
    return copy


def _spec(r: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = r["hashedRekordRequestV002"]
    return spec


def _verifier(r: dict[str, Any]) -> dict[str, Any]:
    verifier: dict[str, Any] = _spec(r)["signature"]["verifier"]
    return verifier


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: "not an object", "must be a JSON object"),
        (lambda r: {}, "exactly one of hashedRekordRequestV002 and dsseRequestV002"),
        (lambda r: {**r, "dsseRequestV002": {}}, "exactly one of"),
        (lambda r: {**r, "extra": 1}, "unknown field 'extra'"),
        (lambda r: _edit(r, lambda c: _spec(c).pop("digest")), "missing 'digest'"),
        (lambda r: _edit(r, lambda c: _spec(c).update(digest="***")), "not valid base64"),
        (lambda r: _edit(r, lambda c: _spec(c).update(digest=b64(b"short"))), "not a SHA2_256 digest"),
        (lambda r: _edit(r, lambda c: _verifier(c).update(keyDetails="PKIX_RSA_PKCS1V15_2048_SHA256")),
         "is not supported"),
        (lambda r: _edit(r, lambda c: _verifier(c).update(keyDetails="PKIX_ECDSA_P384_SHA_384")),
         "does not match keyDetails"),
        (lambda r: _edit(r, lambda c: _verifier(c)["x509Certificate"].update(rawBytes=b64(b"junk"))),
         "is not a DER x509Certificate"),
    ],
    ids=["not-object", "empty", "both-kinds", "unknown-field", "no-digest", "bad-base64", "short-digest",
         "unsupported-key", "wrong-curve", "not-a-certificate"],
)
def test_malformed_requests_are_400(
    inst: LocalSigstore, make: Callable[[dict[str, Any]], Any], message: str
) -> None:
    request, _ = hashedrekord_request(b"malformed", ec.generate_private_key(ec.SECP256R1()))
    response = post(inst, make(request))
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]


def test_a_signature_by_another_key_is_400(inst: LocalSigstore) -> None:
    request, _ = hashedrekord_request(b"x", ec.generate_private_key(ec.SECP256R1()),
                                      signer=ec.generate_private_key(ec.SECP256R1()))
    response = post(inst, request)
    assert response.status_code == 400 and "does not verify" in response.json()["message"]
    assert requests.post(f"{inst.rekor_v2_url}/api/v2/log/entries", data=b"{", timeout=30).status_code == 400


def test_checkpoint_and_tiles_serve_the_tree(inst: LocalSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for i in range(3):
        assert post(inst, hashedrekord_request(f"tile {i}".encode(), key)[0]).status_code == 201
    base = inst.rekor_v2_url
    _, size, root, note, _, signature = parse_checkpoint(requests.get(f"{base}/checkpoint", timeout=30).text)
    log_key(inst.trust_config()).verify(signature[4:], note.encode())
    bundle = requests.get(f"{base}/tile/entries/000.p/{size}", timeout=30)
    assert bundle.status_code == 200
    bodies, raw = [], bundle.content
    while raw:  # each entry: a big-endian uint16 length, then the entry
        length = int.from_bytes(raw[:2], "big")
        bodies.append(raw[2 : 2 + length])
        raw = raw[2 + length :]
    assert len(bodies) == size and all(json.loads(b)["apiVersion"] == "0.0.2" for b in bodies)
    tile = requests.get(f"{base}/tile/0/000.p/{size}", timeout=30).content
    assert tile == b"".join(leaf(b) for b in bodies)
    assert mth([tile[i : i + 32] for i in range(0, len(tile), 32)]) == root
    for missing in (f"tile/0/000.p/{size + 1}", "tile/0/000", "tile/1/000.p/1", "tile/0/1", "tile/x/000"):
        assert requests.get(f"{base}/{missing}", timeout=30).status_code == 404, missing


def test_tiles_on_disk_follow_the_tlog_tiles_layout(tmp_path: Path) -> None:
    from model_signing.sigstore_local._rekor2 import TransparencyLogV2

    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "rekor-v2" / "entries.jsonl"
    log = TransparencyLogV2(key, 7, path)
    signer = ec.generate_private_key(ec.SECP256R1())
    count = 300  # past one full tile, so level 1 gets its first node
    for i in range(count):
        request, _ = hashedrekord_request(f"tile entry {i}".encode(), signer, as_certificate=False)
        log.add(json.dumps(request).encode())
    bodies = [base64.b64decode(json.loads(line)["body"]) for line in path.read_text().splitlines()]
    leaves = [leaf(b) for b in bodies]
    tiles = tmp_path / "rekor-v2" / "tiles"

    def bundle(part: list[bytes]) -> bytes:
        return b"".join(len(b).to_bytes(2, "big") + b for b in part)

    expected = {
        "tile/0/000": b"".join(leaves[:256]),
        f"tile/0/001.p/{count - 256}": b"".join(leaves[256:]),
        "tile/1/000.p/1": mth(leaves[:256]),  # the one complete height-8 node
        "tile/entries/000": bundle(bodies[:256]),
        f"tile/entries/001.p/{count - 256}": bundle(bodies[256:]),
    }
    on_disk = {str(p.relative_to(tiles)): p.read_bytes() for p in tiles.rglob("*") if p.is_file()}
    assert on_disk.pop("checkpoint") == log.checkpoint().encode()
    assert on_disk == expected  # older partial tiles are not kept
    origin, size, root, note, name, signature = parse_checkpoint(log.checkpoint())
    assert (origin, name, size, root) == ("modelseal.local/rekor-v2/7", origin, count, mth(leaves))
    key.public_key().verify(signature[4:], note.encode())
    assert signature[:4] == c2sp_key_hash(origin, key.public_key())[:4]
    assert log.tile(0, 1, count - 256) == expected[f"tile/0/001.p/{count - 256}"]
    # Tiles are derived: a lost one is rewritten at the next start, and a torn last entry is dropped.
    (tiles / "tile/0/000").unlink()
    with path.open("ab") as f:
        f.write(b'{"body": "tor')
    reopened = TransparencyLogV2(key, 7, path)
    assert (tiles / "tile/0/000").read_bytes() == expected["tile/0/000"]
    assert reopened.checkpoint() == log.checkpoint()
    assert path.read_text().count("\n") == count and path.read_bytes().endswith(b"\n")


# -- keyless sign and verify with the CLI and the unmodified sigstore client ------------------------------


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT_PREFIXES) and k != "CI"}


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "main.py", *(str(a) for a in args)], cwd=ROOT, env=clean_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def write_model(root: Path) -> Path:
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def sign(inst: LocalSigstore, model: Path, signature: Path, *extra: object) -> subprocess.CompletedProcess[str]:
    return cli("sign", "sigstore", model, "--trust-config", inst.trust_config_path, "--identity-token",
               inst.mint_token(EMAIL), "--signature", signature, "--max-workers", 1, *extra)


def verify(inst: LocalSigstore, model: Path, signature: Path) -> subprocess.CompletedProcess[str]:
    return cli("verify", "sigstore", model, "--trust-config", inst.trust_config_path, "--identity", EMAIL,
               "--identity-provider", inst.oidc_issuer, "--signature", signature, "-q")


@dataclass(frozen=True)
class Signed:
    model: Path
    signature: Path


@pytest.fixture(scope="module")
def signed(inst: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    tmp = tmp_path_factory.mktemp("signed")
    model = write_model(tmp / "model")
    ok(sign(inst, model, tmp / "model.sig"))
    return Signed(model, tmp / "model.sig")


def tlog_entry(doc: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = doc["verificationMaterial"]["tlogEntries"][0]
    return entry


def edited(signed: Signed, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads(signed.signature.read_text())
    edit(doc)
    path = signed.signature.with_name(name)
    path.write_text(json.dumps(doc))
    return path


def test_keyless_sign_logs_a_v002_entry_with_a_timestamp_and_verifies(inst: LocalSigstore, signed: Signed) -> None:
    doc = json.loads(signed.signature.read_text())
    entry = tlog_entry(doc)
    # sigstore's v2 client logs a DSSE envelope as a hashedrekord over the PAE (rekor-v2 spec 6.1.4).
    envelope = doc["dsseEnvelope"]
    payload, payload_type = base64.b64decode(envelope["payload"]), envelope["payloadType"]
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)
    cert_der = base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"])
    body = {"kind": "hashedrekord", "apiVersion": "0.0.2", "spec": {"hashedRekordV002": {
        "data": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(pae).digest())},
        "signature": {"content": envelope["signatures"][0]["sig"],
                      "verifier": {"x509Certificate": {"rawBytes": b64(cert_der)},
                                   "keyDetails": "PKIX_ECDSA_P256_SHA_256"}}}}}
    check_entry(inst, entry, body, "hashedrekord")
    assert doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    assert f"verified {signed.model}" in ok(verify(inst, signed.model, signed.signature)).stdout


def test_inspect_shows_the_v2_entry(signed: Signed) -> None:
    index = tlog_entry(json.loads(signed.signature.read_text()))["logIndex"]
    text = ok(cli("inspect", signed.signature)).stdout
    assert f"tlog entry:      index {index}, hashedrekord 0.0.2, no integrated time (Rekor v2)" in text
    assert "timestamp:       " in text and "(RFC 3161, by " in text
    [entry] = json.loads(ok(cli("inspect", signed.signature, "--json")).stdout)["tlog_entries"]
    assert entry == {"log_index": index, "integrated_time": None, "kind": "hashedrekord", "version": "0.0.2"}


def test_a_changed_model_exits_3(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(signed.model, model)
    (model / "config.json").write_bytes(b'{"layers": 3}\n')
    proc = verify(inst, model, signed.signature)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "config.json" in proc.stdout + proc.stderr


def _foreign_checkpoint(doc: dict[str, Any]) -> None:
    """Re-sign the checkpoint with a key the trusted root does not list (same name and key ID)."""
    proof = tlog_entry(doc)["inclusionProof"]
    note, _, signatures = proof["checkpoint"]["envelope"].partition("\n\n")
    dash, name, sig = signatures.strip("\n").split(" ")
    forged = ed25519.Ed25519PrivateKey.generate().sign((note + "\n").encode())
    proof["checkpoint"]["envelope"] = f"{note}\n\n{dash} {name} {b64(base64.b64decode(sig)[:4] + forged)}\n"


def _flip(value: str) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[-1] ^= 1
    return b64(bytes(raw))


def _no_timestamp(doc: dict[str, Any]) -> None:
    del doc["verificationMaterial"]["timestampVerificationData"]


def _empty_timestamps(doc: dict[str, Any]) -> None:
    doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"] = []


def _altered_root(doc: dict[str, Any]) -> None:
    proof = tlog_entry(doc)["inclusionProof"]
    proof["rootHash"] = _flip(proof["rootHash"])


def _altered_index(doc: dict[str, Any]) -> None:
    proof = tlog_entry(doc)["inclusionProof"]
    proof["logIndex"] = str(int(proof["logIndex"]) + 1)
    proof["treeSize"] = str(int(proof["treeSize"]) + 1)


def _altered_checkpoint_root(doc: dict[str, Any]) -> None:
    proof = tlog_entry(doc)["inclusionProof"]
    lines = proof["checkpoint"]["envelope"].split("\n")
    lines[2] = _flip(lines[2])
    proof["checkpoint"]["envelope"] = "\n".join(lines)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_foreign_checkpoint, "checkpoint"),
        (_altered_checkpoint_root, "checkpoint"),
        (_altered_root, "inclusion"),
        (_altered_index, "inclusion"),
        (_no_timestamp, "no verified signing time"),
        (_empty_timestamps, "time"),
    ],
    ids=["checkpoint-other-key", "checkpoint-altered", "proof-root-altered", "proof-index-altered",
         "timestamp-missing", "timestamps-empty"],
)
def test_tampered_v2_bundles_exit_2(
    inst: LocalSigstore, signed: Signed, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    line = error_line(verify(inst, signed.model, edited(signed, f"{edit.__name__}.sig", edit)), 2)
    assert message in line.lower(), line


def test_a_proof_hash_altered_exits_2(inst: LocalSigstore, signed: Signed) -> None:
    # A second entry gives the later bundle a non-empty audit path to alter.
    second = signed.signature.with_name("second.sig")
    ok(sign(inst, signed.model, second))
    proof = tlog_entry(json.loads(second.read_text()))["inclusionProof"]
    assert proof["hashes"]

    def altered(doc: dict[str, Any]) -> None:
        doc.update(json.loads(second.read_text()))
        hashes_ = tlog_entry(doc)["inclusionProof"]["hashes"]
        hashes_[0] = _flip(hashes_[0])

    assert "inclusion" in error_line(verify(inst, signed.model, edited(signed, "hash.sig", altered)), 2).lower()
    ok(verify(inst, signed.model, second))


def test_rekor_version_1_on_an_instance_offering_both(inst: LocalSigstore, signed: Signed) -> None:
    signature = signed.signature.with_name("v1.sig")
    ok(sign(inst, signed.model, signature, "--rekor-version", 1))
    entry = tlog_entry(json.loads(signature.read_text()))
    assert entry["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
    assert entry["integratedTime"] and entry["inclusionPromise"]
    ok(verify(inst, signed.model, signature))
    forced = signed.signature.with_name("v2.sig")
    ok(sign(inst, signed.model, forced, "--rekor-version", 2))
    assert tlog_entry(json.loads(forced.read_text()))["kindVersion"]["version"] == "0.0.2"


def test_rekor_version_2_needs_an_instance_that_offers_it(tmp_path: Path) -> None:
    model = write_model(tmp_path / "model")
    with LocalSigstore(tmp_path / "state") as v1:
        line = error_line(sign(v1, model, tmp_path / "m.sig", "--rekor-version", 2), 1)
        assert "no usable Rekor v2 transparency log" in line and "--rekor-version" in line
        assert "1<=x<=2" in error_line(sign(v1, model, tmp_path / "m.sig", "--rekor-version", 3), 1)
    assert not (tmp_path / "m.sig").exists()


def test_api_rekor_version(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    import model_signing as ms
    from model_signing.errors import InputError

    token = ms.TokenSource(identity_token=inst.mint_token(EMAIL))
    for bad in (3, 0, True, "2"):
        with pytest.raises(InputError, match="`rekor_version` must be 1 or 2"):
            ms.SigstoreSigner(trust_config=inst.trust_config_path, token_source=token, rekor_version=bad)  # type: ignore[arg-type]
    signer = ms.SigstoreSigner(trust_config=inst.trust_config_path, token_source=token, rekor_version=1)
    ms.sign(signed.model, signer, signature_path=tmp_path / "api.sig")
    assert tlog_entry(json.loads((tmp_path / "api.sig").read_text()))["kindVersion"]["version"] == "0.0.1"
    ok(verify(inst, signed.model, tmp_path / "api.sig"))


def test_v2_without_a_timestamp_authority_is_refused_before_signing(inst: LocalSigstore, tmp_path: Path) -> None:
    config = inst.trust_config()
    config["signingConfig"]["tsaUrls"] = []
    trust = tmp_path / "no-tsa.json"
    trust.write_text(json.dumps(config))
    model = write_model(tmp_path / "model")
    proc = cli("sign", "sigstore", model, "--trust-config", trust, "--identity-token", inst.mint_token(EMAIL),
               "--signature", tmp_path / "m.sig")
    assert "lists no timestamp authority" in error_line(proc, 1)
    assert not (tmp_path / "m.sig").exists()


def test_v2_signing_whose_timestamp_fails_writes_nothing(inst: LocalSigstore, tmp_path: Path) -> None:
    config = inst.trust_config()
    config["signingConfig"]["tsaUrls"][0]["url"] = f"{inst.base_url}/no-such-tsa"
    trust = tmp_path / "broken-tsa.json"
    trust.write_text(json.dumps(config))
    model = write_model(tmp_path / "model")
    proc = cli("sign", "sigstore", model, "--trust-config", trust, "--identity-token", inst.mint_token(EMAIL),
               "--signature", tmp_path / "m.sig")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error: the timestamp authority gave no timestamp" in proc.stderr  # after sigstore's own warning
    assert "--rekor-version" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.sig").exists()


def test_the_v2_log_persists_across_restarts(tmp_path: Path) -> None:
    state, model = tmp_path / "state", write_model(tmp_path / "model")
    with LocalSigstore(state, rekor_version=2) as first:
        ok(sign(first, model, tmp_path / "old.sig"))
        port = first.base_url
    with LocalSigstore(state, rekor_version=2) as second:
        assert second.base_url == port  # same state dir, same port: the issuer URL is unchanged
        ok(verify(second, model, tmp_path / "old.sig"))
        ok(sign(second, model, tmp_path / "new.sig"))
        proof = tlog_entry(json.loads((tmp_path / "new.sig").read_text()))["inclusionProof"]
        assert (proof["logIndex"], proof["treeSize"]) == ("1", "2")  # appended after the entry of the first run
        old_body = base64.b64decode(tlog_entry(json.loads((tmp_path / "old.sig").read_text()))["canonicalizedBody"])
        new_body = base64.b64decode(tlog_entry(json.loads((tmp_path / "new.sig").read_text()))["canonicalizedBody"])
        assert base64.b64decode(proof["rootHash"]) == node(leaf(old_body), leaf(new_body))
    # Served with v1 only afterwards, the v2 key stays trusted: old v2 bundles still verify.
    with LocalSigstore(state) as third:
        assert [s["majorApiVersion"] for s in third.trust_config()["signingConfig"]["rekorTlogUrls"]] == [1]
        ok(verify(third, model, tmp_path / "old.sig"))
        assert parse_checkpoint(requests.get(f"{third.rekor_v2_url}/checkpoint", timeout=30).text)[1] == 2
        refused = post(third, hashedrekord_request(b"late", ec.generate_private_key(ec.SECP256R1()))[0])
        assert refused.status_code == 404 and "read-only" in refused.json()["message"]  # not offered: no writes


def test_serve_rekor_version_2(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "main.py", "sigstore-local", "serve", "--state-dir", str(tmp_path / "state"),
         "--trust-config-out", str(tmp_path / "tc.json"), "--rekor-version", "2", "--port", "0", "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    banner: list[str] = []
    try:
        while not banner or banner[-1] != "Press Ctrl-C to stop.":
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            banner.append(line.rstrip("\n"))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    [v2_line] = [line for line in banner if "Rekor v2:" in line]
    assert "/rekor-v2 (offered to signers)" in v2_line
    config = json.loads((tmp_path / "tc.json").read_text())
    assert [s["majorApiVersion"] for s in config["signingConfig"]["rekorTlogUrls"]] == [2, 1]
    bad = subprocess.run([sys.executable, "main.py", "sigstore-local", "serve", "--rekor-version", "3"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "--rekor-version" in bad.stderr


def test_the_peer_verifies_our_v2_bundle(inst: LocalSigstore, signed: Signed) -> None:
    from benchmarks.peer import ensure_peer_venv, peer_cli

    peer = ensure_peer_venv()

    def peer_verify(model: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*peer_cli(peer), "verify", "sigstore", "--trust_config", str(inst.trust_config_path), "--identity", EMAIL,
             "--identity_provider", inst.oidc_issuer, "--signature", str(signed.signature), str(model)],
            cwd=signed.model.parent, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=300, check=False,
        )

    assert "Verification succeeded" in ok(peer_verify(signed.model)).stdout

"""The local Rekor v1-compatible transparency log.

``POST /api/v1/log/entries`` accepts ``hashedrekord`` and ``dsse`` (0.0.1) proposals, checks their
signatures against the submitted certificate or key, canonicalises them the way Rekor does (RFC 8785 JSON;
for dsse: envelope hash, payload hash and signatures with their verifiers), appends them to an RFC 6962
Merkle tree and answers with the integrated entry: inclusion proof, signed checkpoint (a signed note) and
signed entry timestamp (SET).  The log is persisted as append-only JSON lines in the state directory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from model_signing.sigstore_local._ct import spki_sha256
from model_signing.sigstore_local._errors import RequestRejected
from model_signing.sigstore_local._journal import load_entries
from model_signing.sigstore_local._merkle import MerkleTree, leaf_hash

_log = logging.getLogger("model_signing.sigstore_local")

LOG_NAME = "modelseal-local-rekor"
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
_CURVE_HASH: dict[str, hashes.HashAlgorithm] = {"secp256r1": hashes.SHA256(), "secp384r1": hashes.SHA384()}


def _b64decode(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise RequestRejected(400, f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise RequestRejected(400, f"{what} is not valid base64") from None


def _field(obj: object, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            raise RequestRejected(400, f"proposed entry is missing {'.'.join(path)}")
        obj = obj[key]
    return obj


def _verifier_key(b64_pem: object, what: str) -> ec.EllipticCurvePublicKey:
    """The public key of a base64 PEM certificate or public key."""
    pem = _b64decode(b64_pem, what)
    try:
        key: object = (
            x509.load_pem_x509_certificate(pem).public_key()
            if b"CERTIFICATE" in pem
            else serialization.load_pem_public_key(pem)
        )
    except ValueError as exc:
        raise RequestRejected(400, f"{what} is not a PEM certificate or public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _CURVE_HASH:
        raise RequestRejected(400, f"{what}: only ECDSA P-256/P-384 keys are supported")
    return key


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding (DSSEv1)."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _canonical_hashedrekord(spec: Mapping[str, Any]) -> dict[str, Any]:
    algorithm = _field(spec, "data", "hash", "algorithm")
    value = _field(spec, "data", "hash", "value")
    if algorithm not in _HASHES:
        raise RequestRejected(400, f"unsupported hash algorithm {algorithm!r}")
    hash_alg = _HASHES[algorithm]
    try:
        digest = bytes.fromhex(str(value))
    except ValueError:
        raise RequestRejected(400, "data.hash.value is not hex") from None
    if len(digest) != hash_alg.digest_size:
        raise RequestRejected(400, f"data.hash.value is not a {algorithm} digest")
    signature_b64 = _field(spec, "signature", "content")
    key_b64 = _field(spec, "signature", "publicKey", "content")
    signature = _b64decode(signature_b64, "signature.content")
    key = _verifier_key(key_b64, "signature.publicKey.content")
    try:
        key.verify(signature, digest, ec.ECDSA(Prehashed(hash_alg)))
    except InvalidSignature:
        raise RequestRejected(400, "signature does not verify against the submitted key/certificate") from None
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": algorithm, "value": digest.hex()}},
            "signature": {"content": base64.b64encode(signature).decode(), "publicKey": {"content": key_b64}},
        },
    }


def _canonical_dsse(spec: Mapping[str, Any]) -> dict[str, Any]:
    envelope_text = _field(spec, "proposedContent", "envelope")
    verifiers = _field(spec, "proposedContent", "verifiers")
    if not isinstance(envelope_text, str):
        raise RequestRejected(400, "proposedContent.envelope must be a JSON string")
    if not isinstance(verifiers, list) or not verifiers:
        raise RequestRejected(400, "proposedContent.verifiers must list at least one verifier")
    try:
        envelope = json.loads(envelope_text)
    except ValueError:
        raise RequestRejected(400, "proposedContent.envelope is not JSON") from None
    payload_type = _field(envelope, "payloadType")
    if not isinstance(payload_type, str):
        raise RequestRejected(400, "envelope payloadType must be a string")
    payload = _b64decode(_field(envelope, "payload"), "envelope payload")
    signatures = _field(envelope, "signatures")
    if not isinstance(signatures, list) or not signatures:
        raise RequestRejected(400, "envelope has no signatures")
    keys = [(v, _verifier_key(v, "verifier")) for v in verifiers]
    pae = _pae(payload_type, payload)
    recorded = []
    # Like Rekor: every signature must verify under one of the submitted verifiers.
    for entry in signatures:
        sig = _b64decode(_field(entry, "sig"), "envelope signature")
        for verifier, key in keys:
            try:
                key.verify(sig, pae, ec.ECDSA(_CURVE_HASH[key.curve.name]))
            except InvalidSignature:
                continue
            recorded.append({"signature": base64.b64encode(sig).decode(), "verifier": verifier})
            break
        else:
            raise RequestRejected(400, "a DSSE signature does not verify against any submitted verifier")
    return {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope_text.encode()).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": recorded,
        },
    }


def canonical_body(proposed: bytes) -> bytes:
    """The canonical entry body (RFC 8785 JSON) of a proposed entry, after checking its signatures."""
    try:
        entry = json.loads(proposed)
    except ValueError:
        raise RequestRejected(400, "request body is not JSON") from None
    kind = _field(entry, "kind")
    version = _field(entry, "apiVersion")
    spec = _field(entry, "spec")
    if version != "0.0.1":
        raise RequestRejected(400, f"unsupported {kind} apiVersion {version!r} (only 0.0.1)")
    if kind == "hashedrekord":
        canonical = _canonical_hashedrekord(spec)
    elif kind == "dsse":
        canonical = _canonical_dsse(spec)
    else:
        raise RequestRejected(400, f"unsupported entry kind {kind!r} (hashedrekord and dsse are accepted)")
    return rfc8785.dumps(canonical)


class TransparencyLog:
    """The log: Merkle tree + persisted entries, signing checkpoints and SETs with one key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, tree_id: int, path: Path) -> None:
        """Open the log persisted at ``path`` (JSON lines; created on first append)."""
        self.key = key
        self.log_id = spki_sha256(key.public_key())
        self.tree_id = tree_id
        self.origin = f"{LOG_NAME} - {tree_id}"
        self._path = path
        self._lock = threading.Lock()
        self._tree = MerkleTree()
        self._entries: list[dict[str, Any]] = []
        self._index: dict[bytes, int] = {}
        self._load()

    # -- persistence -------------------------------------------------------------------------------

    def _load(self) -> None:
        for body, record in load_entries(self._path, "rekor", _check_v1_record):
            self._append(body, record)

    def _append(self, body: bytes, record: dict[str, Any]) -> int:
        leaf = leaf_hash(body)
        index = self._tree.append(leaf)
        self._index[leaf] = index
        self._entries.append(record)
        return index

    # -- operations --------------------------------------------------------------------------------

    def add(self, proposed: bytes) -> tuple[str, dict[str, Any]]:
        """Validate, integrate and persist a proposed entry; returns (uuid, entry JSON)."""
        body = canonical_body(proposed)
        with self._lock:
            if leaf_hash(body) in self._index:
                raise RequestRejected(409, "an equivalent entry already exists in the transparency log")
            index = len(self._tree)
            integrated_time = int(time.time())
            body_b64 = base64.b64encode(body).decode()
            set_payload: dict[str, str | int] = {
                "body": body_b64,
                "integratedTime": integrated_time,
                "logID": self.log_id.hex(),
                "logIndex": index,
            }
            signed_entry_timestamp = self.key.sign(rfc8785.dumps(set_payload), ec.ECDSA(hashes.SHA256()))
            record = {
                "body": body_b64,
                "integratedTime": integrated_time,
                "set": base64.b64encode(signed_entry_timestamp).decode(),
            }
            # Persist before acknowledging: an entry the client saw is never lost on restart.
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._path, "ab") as f:
                f.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            self._append(body, record)
            _log.info("rekor: integrated entry %d", index)
            return self._entry(index)

    def get(self, *, index: int | None = None, uuid: str | None = None) -> tuple[str, dict[str, Any]]:
        """An entry by log index or uuid (64 hex leaf hash, optionally prefixed by the 16 hex tree id)."""
        with self._lock:
            if uuid is not None:
                text = uuid.lower()
                if len(text) == 80 and text[:16] == f"{self.tree_id:016x}":
                    text = text[16:]
                try:
                    found = self._index.get(bytes.fromhex(text))
                except ValueError:
                    found = None
                if found is None:
                    raise RequestRejected(404, f"no entry with uuid {uuid!r}")
                index = found
            if index is None or not 0 <= index < len(self._entries):
                raise RequestRejected(404, f"no entry with log index {index}")
            return self._entry(index)

    def info(self) -> dict[str, Any]:
        """``GET /api/v1/log``: current tree head and signed checkpoint."""
        with self._lock:
            size = len(self._tree)
            root = self._tree.root(size)
            return {
                "rootHash": root.hex(),
                "treeSize": size,
                "signedTreeHead": self.checkpoint(size, root),
                "treeID": str(self.tree_id),
                "inactiveShards": [],
            }

    def public_key_pem(self) -> str:
        """``GET /api/v1/log/publicKey``."""
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def checkpoint(self, size: int, root: bytes) -> str:
        """A signed note over the tree head (origin, size, root hash, timestamp)."""
        note = f"{self.origin}\n{size}\n{base64.b64encode(root).decode()}\nTimestamp: {time.time_ns()}\n"
        signature = self.key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        # The signature line carries a 4-byte key hint (the first bytes of the log id) before the signature.
        signed = base64.b64encode(self.log_id[:4] + signature).decode()
        return f"{note}\n\u2014 {LOG_NAME} {signed}\n"

    def _entry(self, index: int) -> tuple[str, dict[str, Any]]:
        record = self._entries[index]
        body = base64.b64decode(record["body"])
        size = len(self._tree)
        root = self._tree.root(size)
        uuid = f"{self.tree_id:016x}{leaf_hash(body).hex()}"
        entry = {
            "body": record["body"],
            "integratedTime": record["integratedTime"],
            "logID": self.log_id.hex(),
            "logIndex": index,
            "verification": {
                "inclusionProof": {
                    "logIndex": index,
                    "rootHash": root.hex(),
                    "treeSize": size,
                    "hashes": [h.hex() for h in self._tree.inclusion_proof(index, size)],
                    "checkpoint": self.checkpoint(size, root),
                },
                "signedEntryTimestamp": record["set"],
            },
        }
        return uuid, entry


def _check_v1_record(record: dict[str, Any]) -> None:
    """A v1 entry also carries its integrated time and SET (what the client verifies)."""
    int(record["integratedTime"])
    base64.b64decode(record["set"], validate=True)

"""The local Rekor v2 transparency log (the tile-backed API of rekor-tiles, as the sigstore client uses it).

``POST <log>/api/v2/log/entries`` takes a ``CreateEntryRequest`` (protobuf JSON) holding either a
``hashedRekordRequestV002`` (a digest, a signature over it and the verifier: an X.509 certificate or a
public key with its ``keyDetails``) or a ``dsseRequestV002`` (a DSSE envelope and its verifiers).  Like
Rekor v2 it checks every signature with the submitted verifier (400 otherwise), stores the v0.0.2 entry
body (RFC 8785 JSON), appends it to an RFC 6962 Merkle tree and answers synchronously with the
``TransparencyLogEntry``: log index, log id, kind and version, canonicalized body and an inclusion proof
whose checkpoint is a C2SP signed note.  There is no integrated time and no SET: a v2 entry proves
inclusion, not time, so signers need an RFC 3161 timestamp beside it.

The key is Ed25519, as on Sigstore's public v2 logs, and the C2SP signed-note rules name it:

    key hash = SHA-256(origin || 0x0A || 0x01 || 32-byte public key)
    log id   = the whole key hash (the trusted root's ``logId.keyId``)
    signature line = "\u2014 <origin> " base64(key hash[:4] || Ed25519 signature over the note text)

Read side (C2SP tlog-tiles): ``GET <log>/checkpoint``, ``GET <log>/tile/<L>/<N>[.p/<W>]`` and
``GET <log>/tile/entries/<N>[.p/<W>]``.  The state directory keeps the entry bodies as append-only JSON
lines (``rekor-v2/entries.jsonl``, the source of truth, written before an entry is acknowledged) and, beside
them, the same tree in the tlog-tiles layout (``rekor-v2/tiles/``: ``checkpoint``, ``tile/...``), so any
static file server can serve the read API; the tiles are derived, and rewritten at start if a crash left
them behind the entries.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from model_signing.sigstore_local._errors import RequestRejected
from model_signing.sigstore_local._journal import load_entries
from model_signing.sigstore_local._keys import atomic_write
from model_signing.sigstore_local._merkle import MerkleTree, leaf_hash

_log = logging.getLogger("model_signing.sigstore_local")

#: Where the v2 log lives under the instance's base URL (its ``/api/v2/...`` and tiles).
PATH_PREFIX = "/rekor-v2"
ENTRY_VERSION = "0.0.2"
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
#: C2SP signed-note signature type of Ed25519.
_ED25519_TYPE = b"\x01"

# keyDetails -> (curve name, hash, HashAlgorithm name in the entry), for ECDSA verifiers.
_ECDSA: dict[str, tuple[str, hashes.HashAlgorithm, str]] = {
    "PKIX_ECDSA_P256_SHA_256": ("secp256r1", hashes.SHA256(), "SHA2_256"),
    "PKIX_ECDSA_P384_SHA_384": ("secp384r1", hashes.SHA384(), "SHA2_384"),
    "PKIX_ECDSA_P521_SHA_512": ("secp521r1", hashes.SHA512(), "SHA2_512"),
}
_ED25519 = "PKIX_ED25519"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise RequestRejected(400, f"{what} must be a non-empty base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise RequestRejected(400, f"{what} is not valid base64") from None


def _object(value: object, what: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RequestRejected(400, f"{what} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:  # protojson refuses unknown fields too
        raise RequestRejected(400, f"{what} has an unknown field {unknown[0]!r}")
    return value


def _required(obj: Mapping[str, Any], key: str, what: str) -> Any:
    if key not in obj:
        raise RequestRejected(400, f"{what} is missing {key!r}")
    return obj[key]


class _Verifier:
    """A submitted ``Verifier``: its public key, key details and the form the entry records."""

    def __init__(self, value: object, what: str) -> None:
        spec = _object(value, what, {"publicKey", "x509Certificate", "keyDetails"})
        details = _required(spec, "keyDetails", what)
        if details not in _ECDSA and details != _ED25519:
            raise RequestRejected(
                400, f"{what}.keyDetails {details!r} is not supported (ECDSA P-256/P-384/P-521 or Ed25519)"
            )
        if ("publicKey" in spec) == ("x509Certificate" in spec):
            raise RequestRejected(400, f"{what} must hold exactly one of publicKey and x509Certificate")
        form = "x509Certificate" if "x509Certificate" in spec else "publicKey"
        inner = _object(spec[form], f"{what}.{form}", {"rawBytes"})
        der = _unb64(_required(inner, "rawBytes", f"{what}.{form}"), f"{what}.{form}.rawBytes")
        try:
            key: object = (
                x509.load_der_x509_certificate(der).public_key()
                if form == "x509Certificate"
                else serialization.load_der_public_key(der)
            )
        except ValueError as exc:
            raise RequestRejected(400, f"{what}.{form} is not a DER {form}: {exc}") from None
        if details == _ED25519:
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise RequestRejected(400, f"{what}: the key is not an Ed25519 key ({details})")
        elif not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _ECDSA[details][0]:
            raise RequestRejected(400, f"{what}: the key does not match keyDetails {details}")
        self.key = key
        self.details: str = details
        self.recorded = {form: {"rawBytes": _b64(der)}, "keyDetails": details}

    def verify_prehashed(self, signature: bytes, digest: bytes, what: str) -> str:
        """Check ``signature`` over ``digest``; the entry's hash algorithm name."""
        if self.details == _ED25519:
            # Rekor v2 takes pre-hashed Ed25519 (Ed25519ph) only for hashedrekord; not offered here.
            raise RequestRejected(400, f"{what}: hashedrekord with Ed25519 needs Ed25519ph, which this log lacks")
        _, hash_alg, name = _ECDSA[self.details]
        if len(digest) != hash_alg.digest_size:
            raise RequestRejected(400, f"{what}: the digest is not a {name} digest ({len(digest)} bytes)")
        assert isinstance(self.key, ec.EllipticCurvePublicKey)
        try:
            self.key.verify(signature, digest, ec.ECDSA(Prehashed(hash_alg)))
        except InvalidSignature:
            raise RequestRejected(400, f"{what}: the signature does not verify with the verifier's key") from None
        return name

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's over ``message``."""
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, message)
            else:
                assert isinstance(self.key, ec.EllipticCurvePublicKey)
                self.key.verify(signature, message, ec.ECDSA(_ECDSA[self.details][1]))
        except InvalidSignature:
            return False
        return True


def _pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _hashedrekord(request: object) -> dict[str, Any]:
    what = "hashedRekordRequestV002"
    spec = _object(request, what, {"digest", "signature"})
    digest = _unb64(_required(spec, "digest", what), f"{what}.digest")
    signature = _object(_required(spec, "signature", what), f"{what}.signature", {"content", "verifier"})
    content = _unb64(_required(signature, "content", f"{what}.signature"), f"{what}.signature.content")
    verifier = _Verifier(_required(signature, "verifier", f"{what}.signature"), f"{what}.signature.verifier")
    algorithm = verifier.verify_prehashed(content, digest, what)
    return {
        "kind": "hashedrekord",
        "apiVersion": ENTRY_VERSION,
        "spec": {
            "hashedRekordV002": {
                "data": {"algorithm": algorithm, "digest": _b64(digest)},
                "signature": {"content": _b64(content), "verifier": verifier.recorded},
            }
        },
    }


def _dsse(request: object) -> dict[str, Any]:
    what = "dsseRequestV002"
    spec = _object(request, what, {"envelope", "verifiers"})
    envelope = _object(_required(spec, "envelope", what), f"{what}.envelope", {"payload", "payloadType", "signatures"})
    payload = _unb64(_required(envelope, "payload", f"{what}.envelope"), f"{what}.envelope.payload")
    payload_type = _required(envelope, "payloadType", f"{what}.envelope")
    if not isinstance(payload_type, str) or not payload_type:
        raise RequestRejected(400, f"{what}.envelope.payloadType must be a non-empty string")
    signatures = _required(envelope, "signatures", f"{what}.envelope")
    if not isinstance(signatures, list) or not signatures:
        raise RequestRejected(400, f"{what}.envelope.signatures must list at least one signature")
    raw_verifiers = _required(spec, "verifiers", what)
    if not isinstance(raw_verifiers, list) or not raw_verifiers:
        raise RequestRejected(400, f"{what}.verifiers must list at least one verifier")
    verifiers = [_Verifier(v, f"{what}.verifiers[{i}]") for i, v in enumerate(raw_verifiers)]
    pae = _pae(payload_type, payload)
    recorded = []
    # As Rekor v2: every signature must verify under one of the verifiers, recorded with it.
    for i, entry in enumerate(signatures):
        where = f"{what}.envelope.signatures[{i}]"
        sig = _unb64(_required(_object(entry, where, {"sig", "keyid"}), "sig", where), f"{where}.sig")
        match = next((v for v in verifiers if v.verifies(sig, pae)), None)
        if match is None:
            raise RequestRejected(400, f"{where} does not verify under any of the verifiers")
        recorded.append({"content": _b64(sig), "verifier": match.recorded})
    return {
        "kind": "dsse",
        "apiVersion": ENTRY_VERSION,
        "spec": {
            "dsseV002": {
                "payloadHash": {"algorithm": "SHA2_256", "digest": _b64(hashlib.sha256(payload).digest())},
                "signatures": recorded,
            }
        },
    }


def entry_body(request: bytes) -> tuple[str, bytes]:
    """The kind and the canonical v0.0.2 entry body (RFC 8785 JSON) of a CreateEntryRequest, once checked."""
    try:
        document = json.loads(request)
    except (ValueError, RecursionError):
        raise RequestRejected(400, "request body is not JSON") from None
    spec = _object(document, "CreateEntryRequest", {"hashedRekordRequestV002", "dsseRequestV002"})
    if len(spec) != 1:
        raise RequestRejected(400, "CreateEntryRequest must hold exactly one of hashedRekordRequestV002 and "
                                   "dsseRequestV002")
    body = _hashedrekord(spec["hashedRekordRequestV002"]) if "hashedRekordRequestV002" in spec else _dsse(
        spec["dsseRequestV002"]
    )
    return str(body["kind"]), rfc8785.dumps(body)


def key_hash(origin: str, key: ed25519.Ed25519PublicKey) -> bytes:
    """The C2SP signed-note key hash of an Ed25519 log key (its first 4 bytes are the note's key ID)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(origin.encode() + b"\n" + _ED25519_TYPE + raw).digest()


def tile_index(text: str) -> int | None:
    """The tile index of a tlog-tiles path part (``x001/x234/067``), or None if it is not one."""
    parts = text.split("/")
    if not all(re.fullmatch(r"x\d{3}", p) for p in parts[:-1]) or not re.fullmatch(r"\d{3}", parts[-1]):
        return None
    return int("".join(p.lstrip("x") for p in parts))


def tile_path(index: int) -> str:
    """The tlog-tiles path part of a tile index: 3-digit groups, all but the last prefixed with ``x``."""
    digits = f"{index:d}"
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*(f"x{g}" for g in groups[:-1]), groups[-1]])


class TransparencyLogV2:
    """The v2 log: Merkle tree, persisted entry bodies, checkpoints signed with one Ed25519 key."""

    def __init__(self, key: ed25519.Ed25519PrivateKey, tree_id: int, path: Path, *, accepting: bool = True) -> None:
        """Open the log persisted at ``path`` (JSON lines; created on first append).

        ``accepting`` False keeps the log read-only (an instance that no longer offers it to signers).
        """
        self.key = key
        self.accepting = accepting
        self.origin = f"modelseal.local/rekor-v2/{tree_id}"
        self.log_id = key_hash(self.origin, key.public_key())
        self._path = path
        self.tiles_dir = path.parent / "tiles"
        self._lock = threading.Lock()
        self._tree = MerkleTree()
        self._bodies: list[bytes] = []
        self._index: dict[bytes, int] = {}
        self._load()
        self._write_tiles(range(len(self._bodies)), missing_only=True)

    def public_key_der(self) -> bytes:
        """The log key as DER SubjectPublicKeyInfo (the trusted root's ``publicKey.rawBytes``)."""
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    # -- persistence -------------------------------------------------------------------------------

    def _load(self) -> None:
        for body, _record in load_entries(self._path, "rekor v2"):
            self._append(body)

    def _append(self, body: bytes) -> int:
        leaf = leaf_hash(body)
        index = self._tree.append(leaf)
        self._index[leaf] = index
        self._bodies.append(body)
        return index

    # -- write API ---------------------------------------------------------------------------------

    def add(self, request: bytes) -> dict[str, Any]:
        """Check, integrate and persist a CreateEntryRequest; the TransparencyLogEntry (protobuf JSON)."""
        if not self.accepting:
            raise RequestRejected(
                404, "this instance keeps its Rekor v2 log read-only; serve it with `--rekor-version 2` to add entries"
            )
        kind, body = entry_body(request)
        with self._lock:
            if leaf_hash(body) in self._index:
                raise RequestRejected(409, "an equivalent entry already exists in the transparency log")
            # Persist before acknowledging: an entry the client saw is never lost on restart.
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._path, "ab") as f:
                f.write(json.dumps({"body": _b64(body)}, separators=(",", ":")).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            index = self._append(body)
            self._write_tiles(range(index, index + 1))
            _log.info("rekor v2: integrated %s entry %d", kind, index)
            return self._entry(index, kind)

    def _write_tiles(self, new: range, *, missing_only: bool = False) -> None:
        """Store the tiles that the leaves ``new`` completed or extended, and the checkpoint (tlog-tiles layout).

        ``missing_only``: only tiles not on disk yet (at start, after a crash between the two writes).
        """
        size = len(self._bodies)
        if not new and (self.tiles_dir / "checkpoint").exists():
            return
        try:
            # The tiles each new leaf changed: its entry bundle, and on each level the tile holding the node
            # the leaf completed (a leaf completes a node of height h when the new size is a multiple of 2^h).
            touched: set[tuple[int | str, int]] = set()
            for leaf_index in new:
                grown = leaf_index + 1
                touched.add(("entries", leaf_index // TILE_WIDTH))
                level = 0
                while (nodes := grown >> (level * TILE_HEIGHT)) > 0:
                    if grown % (1 << (level * TILE_HEIGHT)) == 0:
                        touched.add((level, (nodes - 1) // TILE_WIDTH))
                    level += 1
            for which, index in sorted(touched, key=str):
                available = (size if which == "entries" else size >> (int(which) * TILE_HEIGHT)) - index * TILE_WIDTH
                width = min(available, TILE_WIDTH)
                if width <= 0:
                    continue
                name = f"tile/{which}/{tile_path(index)}" + ("" if width == TILE_WIDTH else f".p/{width}")
                target = self.tiles_dir / name
                if missing_only and target.exists():
                    continue
                data = (self.entry_bundle(index, None if width == TILE_WIDTH else width, locked=True)
                        if which == "entries"
                        else self.tile(int(which), index, None if width == TILE_WIDTH else width, locked=True))
                atomic_write(target, data)
                self._drop_partials(self.tiles_dir / f"tile/{which}/{tile_path(index)}.p", keep=target)
            atomic_write(self.tiles_dir / "checkpoint", self._checkpoint(size, self._tree.root(size)).encode())
        except OSError as exc:  # derived data: the entry is safe in the JSON lines; the next start rewrites it
            _log.warning("rekor v2: cannot write the tiles under %s (%s)", self.tiles_dir, exc.strerror or exc)

    @staticmethod
    def _drop_partials(directory: Path, keep: Path) -> None:
        # Only the newest partial tile is kept on disk (an entry bundle's partials would otherwise add up to
        # ~128 copies of each entry); the HTTP read API still computes any width.
        if not directory.is_dir():
            return
        for old in directory.iterdir():
            if old != keep:
                old.unlink(missing_ok=True)
        if keep.parent != directory:
            with contextlib.suppress(OSError):
                directory.rmdir()

    def _entry(self, index: int, kind: str) -> dict[str, Any]:
        size = len(self._tree)
        root = self._tree.root(size)
        return {
            # protobuf JSON: 64-bit integers as strings, bytes as base64.
            "logIndex": str(index),
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": kind, "version": ENTRY_VERSION},
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": _b64(root),
                "treeSize": str(size),
                "hashes": [_b64(h) for h in self._tree.inclusion_proof(index, size)],
                "checkpoint": {"envelope": self._checkpoint(size, root)},
            },
            "canonicalizedBody": _b64(self._bodies[index]),
        }

    def _checkpoint(self, size: int, root: bytes) -> str:
        note = f"{self.origin}\n{size}\n{_b64(root)}\n"
        signature = self.key.sign(note.encode())
        return f"{note}\n\u2014 {self.origin} {_b64(self.log_id[:4] + signature)}\n"

    # -- read API (C2SP tlog-tiles) ----------------------------------------------------------------

    def checkpoint(self) -> str:
        """``GET /checkpoint``: the signed note of the current tree."""
        with self._lock:
            size = len(self._tree)
            return self._checkpoint(size, self._tree.root(size))

    def tile(self, level: int, index: int, width: int | None, *, locked: bool = False) -> bytes:
        """``GET /tile/<L>/<N>[.p/<W>]``: the concatenated hashes of a tile (``width`` None: a full one)."""
        with contextlib.nullcontext() if locked else self._lock:
            height = level * TILE_HEIGHT
            available = len(self._tree) >> height  # complete nodes at this height
            width = self._width(available, index, width)
            start = index * TILE_WIDTH
            span = 1 << height
            return b"".join(self._tree.subtree((start + i) * span, (start + i + 1) * span) for i in range(width))

    def entry_bundle(self, index: int, width: int | None, *, locked: bool = False) -> bytes:
        """``GET /tile/entries/<N>[.p/<W>]``: each entry body prefixed by its big-endian 16-bit length."""
        with contextlib.nullcontext() if locked else self._lock:
            width = self._width(len(self._bodies), index, width)
            start = index * TILE_WIDTH
            bodies = self._bodies[start : start + width]
            return b"".join(len(b).to_bytes(2, "big") + b for b in bodies)

    @staticmethod
    def _width(available: int, index: int, width: int | None) -> int:
        have = min(max(available - index * TILE_WIDTH, 0), TILE_WIDTH)
        wanted = TILE_WIDTH if width is None else width
        if not 0 < wanted <= have or (width is not None and not 0 < width < TILE_WIDTH):
            raise RequestRejected(404, "no such tile in the log")
        return wanted

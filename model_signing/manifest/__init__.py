"""The manifest: what a model hashes to, independent of how it is signed.

A :class:`Manifest` is the output of hashing (``model_signing.hashing``) and the input of the statement
stage; verification rebuilds one from the signed predicate and compares it with a fresh one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from model_signing.errors import SignatureFormatError

#: How a model is cut into resources: one per file, or one per fixed-size shard of each file.  Named apart
#: from the *signing* method (key, certificate, sigstore: :mod:`model_signing.methods`).
SerializationMethod = Literal["files", "shards"]
#: The earlier name of :data:`SerializationMethod`, kept for callers of earlier releases.
Method = SerializationMethod
HashType = Literal["sha256", "blake2b", "blake3"]

METHODS: tuple[str, ...] = get_args(SerializationMethod)
HASH_TYPES: tuple[str, ...] = get_args(HashType)
DEFAULT_SHARD_SIZE = 1_000_000_000
#: Top-level names every enumeration skips, as the OMS spec and the peer do.
DEFAULT_IGNORED: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")


@dataclass(frozen=True)
class Serialization:
    """How a model was enumerated and hashed (the OMS ``serialization`` object)."""

    method: SerializationMethod = "files"
    hash_type: HashType = "sha256"
    allow_symlinks: bool = False
    shard_size: int | None = None
    #: Paths relative to the model root (POSIX) that were excluded, defaults included.
    ignore_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SignatureFormatError(f"unknown serialization method {self.method!r}; use one of {METHODS}")
        if self.hash_type not in HASH_TYPES:
            raise SignatureFormatError(f"unknown hash type {self.hash_type!r}; use one of {HASH_TYPES}")
        if self.method == "shards":
            if not isinstance(self.shard_size, int) or isinstance(self.shard_size, bool) or self.shard_size <= 0:
                raise SignatureFormatError("shards serialization needs a positive integer shard_size")
        elif self.shard_size is not None:
            raise SignatureFormatError("files serialization must not carry a shard_size")

    def to_dict(self) -> dict[str, Any]:
        """The OMS ``serialization`` JSON object."""
        out: dict[str, Any] = {
            "method": self.method,
            "hash_type": self.hash_type,
            "allow_symlinks": self.allow_symlinks,
        }
        if self.method == "shards":
            out["shard_size"] = self.shard_size
        out["ignore_paths"] = list(self.ignore_paths)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Serialization:
        """Parse and validate an OMS ``serialization`` object."""
        if not isinstance(data, Mapping):
            raise SignatureFormatError("predicate.serialization must be a JSON object")
        method = data.get("method")
        hash_type = data.get("hash_type")
        allow_symlinks = data.get("allow_symlinks")
        ignore = data.get("ignore_paths", [])
        if not isinstance(allow_symlinks, bool):
            raise SignatureFormatError("predicate.serialization.allow_symlinks must be a boolean")
        if not isinstance(ignore, list) or not all(isinstance(p, str) and p for p in ignore):
            raise SignatureFormatError("predicate.serialization.ignore_paths must be a list of non-empty strings")
        return cls(
            method=cast(SerializationMethod, method),
            hash_type=cast(HashType, hash_type),
            allow_symlinks=allow_symlinks,
            shard_size=data.get("shard_size"),
            ignore_paths=tuple(ignore),
        )


@dataclass(frozen=True)
class Resource:
    """One hashed resource: a whole file (``files``) or a byte range ``path:start:end`` (``shards``)."""

    name: str
    algorithm: HashType
    digest: bytes

    @property
    def hex(self) -> str:
        """The digest in lowercase hex."""
        return self.digest.hex()

    def to_dict(self) -> dict[str, str]:
        """The OMS resource descriptor."""
        return {"name": self.name, "algorithm": self.algorithm, "digest": self.digest.hex()}


@dataclass(frozen=True)
class Manifest:
    """A model's resources in OMS order (sorted by name, by Unicode code point) plus its serialization."""

    model_name: str
    serialization: Serialization
    resources: tuple[Resource, ...] = field(default_factory=tuple)

    def root_digest(self) -> bytes:
        """SHA-256 over the concatenated raw resource digests, in resource order (the subject digest)."""
        h = hashlib.sha256()
        for r in self.resources:
            h.update(r.digest)
        return h.digest()

    def to_predicate(self) -> dict[str, Any]:
        """The OMS v1.0 predicate: ``resources`` and ``serialization``."""
        return {
            "resources": [r.to_dict() for r in self.resources],
            "serialization": self.serialization.to_dict(),
        }

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (used by ``digest --json``)."""
        return {"model_name": self.model_name, "root_digest": self.root_digest().hex(), **self.to_predicate()}

    @classmethod
    def from_predicate(cls, model_name: str, predicate: Mapping[str, Any]) -> Manifest:
        """Parse and validate an OMS v1.0 predicate (shape only; path safety is the verifier's job)."""
        if not isinstance(predicate, Mapping):
            raise SignatureFormatError("the statement predicate must be a JSON object")
        serialization = Serialization.from_dict(predicate.get("serialization"))  # type: ignore[arg-type]
        raw = predicate.get("resources")
        if not isinstance(raw, list):
            raise SignatureFormatError("predicate.resources must be a list")
        resources = []
        for i, item in enumerate(raw):
            resources.append(_parse_resource(i, item))
        return cls(model_name=model_name, serialization=serialization, resources=tuple(resources))


def _parse_resource(i: int, item: object) -> Resource:
    where = f"predicate.resources[{i}]"
    if not isinstance(item, Mapping):
        raise SignatureFormatError(f"{where} must be a JSON object")
    name, algorithm, digest = item.get("name"), item.get("algorithm"), item.get("digest")
    if not isinstance(name, str) or not name:
        raise SignatureFormatError(f"{where}.name must be a non-empty string")
    if algorithm not in HASH_TYPES:
        raise SignatureFormatError(f"{where}.algorithm must be one of {HASH_TYPES}")
    if not isinstance(digest, str) or not digest or digest != digest.lower():
        raise SignatureFormatError(f"{where}.digest must be lowercase hex")
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        raise SignatureFormatError(f"{where}.digest is not hex") from None
    return Resource(name=name, algorithm=cast(HashType, algorithm), digest=raw)

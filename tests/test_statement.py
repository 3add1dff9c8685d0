"""The in-toto statement: canonical deterministic payload, strict parsing, peer/v0.2 compatibility, path safety."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from model_signing import HashingConfig, hash_model
from model_signing.errors import StatementError, UnsafePathError
from model_signing.manifest import Manifest, Resource, Serialization
from model_signing.oms.statement import (
    LEGACY_PREDICATE_TYPE,
    PREDICATE_TYPE,
    parse_statement,
    statement_payload,
)

SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()


def _statement(
    resources: list[dict[str, Any]], serialization: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    """A statement whose subject digest is computed here from the resource digests."""
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    doc: dict[str, Any] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model", "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "resources": resources,
            "serialization": serialization
            or {"method": "files", "hash_type": "sha256", "allow_symlinks": False, "ignore_paths": [".git"]},
        },
    }
    doc.update(top)
    return doc


def _payload(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_payload_is_canonical_and_deterministic(small_model: Path) -> None:
    cfg = HashingConfig(max_workers=1)
    first = statement_payload(hash_model(small_model, cfg))
    second = statement_payload(hash_model(small_model, cfg))
    assert first == second
    doc = json.loads(first)
    # RFC 8785 for ASCII-only content without floats is: sorted keys, no whitespace.
    assert first == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_payload_content_matches_the_model(small_model: Path) -> None:
    doc = json.loads(statement_payload(hash_model(small_model, HashingConfig(max_workers=1))))
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == "https://model_signing/signature/v1.0"
    assert len(doc["subject"]) == 1 and doc["subject"][0]["name"] == "model"
    by_name = {r["name"]: r for r in doc["predicate"]["resources"]}
    for rel in ("config.json", "weights/part-0.bin", "weights/part-1.bin", "empty.txt"):
        assert by_name[rel]["digest"] == hashlib.sha256((small_model / rel).read_bytes()).hexdigest()
        assert by_name[rel]["algorithm"] == "sha256"
    ordered = [bytes.fromhex(r["digest"]) for r in doc["predicate"]["resources"]]
    assert doc["subject"][0]["digest"]["sha256"] == hashlib.sha256(b"".join(ordered)).hexdigest()
    ser = doc["predicate"]["serialization"]
    assert ser == {
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": False,
        "ignore_paths": sorted(ser["ignore_paths"]),
    }
    assert {".git", ".gitattributes", ".github", ".gitignore"} <= set(ser["ignore_paths"])


def test_non_ascii_names_are_utf8_not_escaped(make_model: Any) -> None:
    model = make_model({"modèle/权重.bin": b"x"})
    payload = statement_payload(hash_model(model, HashingConfig(max_workers=1)))
    assert "modèle/权重.bin".encode() in payload
    assert parse_statement(payload).manifest.resources[0].name == "modèle/权重.bin"


def test_round_trip_through_parse(small_model: Path) -> None:
    manifest = hash_model(
        small_model, HashingConfig(method="shards", shard_size=100, hash_type="blake2b", max_workers=1)
    )
    parsed = parse_statement(statement_payload(manifest))
    assert parsed.manifest.resources == manifest.resources
    assert parsed.manifest.serialization.shard_size == 100
    assert parsed.root_digest == manifest.root_digest()
    assert not parsed.legacy


def test_empty_manifest_cannot_be_signed() -> None:
    manifest = Manifest("m", Serialization(), ())
    with pytest.raises(StatementError, match="empty model"):
        statement_payload(manifest)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update({"_type": "https://in-toto.io/Statement/v0.1"}), "in-toto Statement v1"),
        (lambda d: d.update({"predicateType": "https://example.com/other"}), "predicateType"),
        (lambda d: d["subject"].append(d["subject"][0]), "exactly one subject"),
        (lambda d: d.update({"subject": []}), "exactly one subject"),
        (lambda d: d["subject"][0].update({"name": ""}), "subject\\[0\\].name"),
        (lambda d: d["subject"][0]["digest"].update({"sha256": "00" * 32}), "inconsistent"),
        (lambda d: d["subject"][0].update({"digest": {"sha512": "00" * 64}}), "sha256"),
        (lambda d: d.pop("predicate"), "no predicate"),
        (lambda d: d.update({"extra": 1}), "unexpected fields"),
        (lambda d: d["predicate"].update({"resources": []}), "no resources"),
        (lambda d: d["predicate"]["resources"][0].update({"algorithm": "md5"}), "algorithm"),
        (lambda d: d["predicate"]["resources"][0].update({"algorithm": "blake3"}), "hash_type"),
        (lambda d: d["predicate"]["resources"][0].update({"digest": "ABCD"}), "lowercase hex"),
        (lambda d: d["predicate"]["resources"][0].update({"digest": "abcd"}), "2 bytes"),
        (lambda d: d["predicate"]["serialization"].update({"method": "weird"}), "malformed"),
        (lambda d: d["predicate"]["serialization"].update({"allow_symlinks": "false"}), "allow_symlinks"),
        (lambda d: d["predicate"]["serialization"].update({"shard_size": 10}), "shard_size"),
        (lambda d: d["predicate"].update({"serialization": None}), "malformed"),
    ],
)
def test_malformed_statements_are_rejected(mutate: Any, message: str) -> None:
    doc = _statement([{"name": "a", "algorithm": "sha256", "digest": SHA_A}])
    mutate(doc)
    with pytest.raises(StatementError, match=message):
        parse_statement(_payload(doc))


def test_duplicate_resource_names_are_rejected() -> None:
    doc = _statement(
        [{"name": "a", "algorithm": "sha256", "digest": SHA_A}, {"name": "a", "algorithm": "sha256", "digest": SHA_B}]
    )
    with pytest.raises(StatementError, match="more than once"):
        parse_statement(_payload(doc))


def test_duplicate_json_keys_and_non_json_constants_are_rejected() -> None:
    good = _payload(_statement([{"name": "a", "algorithm": "sha256", "digest": SHA_A}]))
    with pytest.raises(StatementError, match="repeats the JSON key"):
        parse_statement(good[:-1] + b', "_type": "x"}')
    with pytest.raises(StatementError, match="non-JSON constant"):
        parse_statement(good.replace(b'"allow_symlinks": false', b'"allow_symlinks": NaN'))
    with pytest.raises(StatementError, match="not valid JSON"):
        parse_statement(b"{")
    with pytest.raises(StatementError, match="UTF-8"):
        parse_statement(b"\xff\xfe{}")


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../outside", "a/../../b", "a/./b", "a//b", "a/", "./a", "a\\..\\b", "nul\x00byte", ".."],
)
def test_unsafe_resource_names_are_rejected(name: str) -> None:
    doc = _statement([{"name": name, "algorithm": "sha256", "digest": SHA_A}])
    with pytest.raises(UnsafePathError):
        parse_statement(_payload(doc))


@pytest.mark.parametrize("ignored", ["../x", "/abs", "."])
def test_unsafe_ignore_paths_are_rejected(ignored: str) -> None:
    ser = {"method": "files", "hash_type": "sha256", "allow_symlinks": False, "ignore_paths": [ignored]}
    doc = _statement([{"name": "a", "algorithm": "sha256", "digest": SHA_A}], ser)
    with pytest.raises(UnsafePathError):
        parse_statement(_payload(doc))


def test_shard_names_use_the_last_two_colon_fields() -> None:
    ser = {"method": "shards", "hash_type": "sha256", "allow_symlinks": False, "shard_size": 4}
    doc = _statement(
        [
            {"name": "a:b.bin:0:4", "algorithm": "sha256", "digest": SHA_A},
            {"name": "a:b.bin:4:6", "algorithm": "sha256", "digest": SHA_B},
        ],
        ser,
    )
    parsed = parse_statement(_payload(doc))
    assert [r.name for r in parsed.manifest.resources] == ["a:b.bin:0:4", "a:b.bin:4:6"]


@pytest.mark.parametrize("name", ["f", "f:0", "f:x:4", "f:4:0", "f:3:3", "f:01:4", "f:-1:4", "f:+0:4", "../f:0:4"])
def test_malformed_shard_names_are_rejected(name: str) -> None:
    ser = {"method": "shards", "hash_type": "sha256", "allow_symlinks": False, "shard_size": 4}
    doc = _statement([{"name": name, "algorithm": "sha256", "digest": SHA_A}], ser)
    with pytest.raises(UnsafePathError):
        parse_statement(_payload(doc))


def test_peer_shard_quirks_are_read() -> None:
    # model-signing 1.x writes shard_size as a double and "<hash>-sharded-<size>" algorithms.
    ser = {"method": "shards", "hash_type": "sha256", "allow_symlinks": False, "shard_size": 4.0}
    doc = _statement([{"name": "f:0:4", "algorithm": "sha256-sharded-4", "digest": SHA_A}], ser)
    parsed = parse_statement(_payload(doc))
    assert parsed.manifest.serialization.shard_size == 4
    assert parsed.manifest.resources[0].algorithm == "sha256"
    # ...but only when the suffix matches the signed shard size.
    doc = _statement([{"name": "f:0:4", "algorithm": "sha256-sharded-8", "digest": SHA_A}], ser)
    with pytest.raises(StatementError):
        parse_statement(_payload(doc))


def test_ignore_paths_may_be_absent() -> None:
    doc = _statement(
        [{"name": "a", "algorithm": "sha256", "digest": SHA_A}],
        {"method": "files", "hash_type": "sha256", "allow_symlinks": False},
    )
    assert parse_statement(_payload(doc)).manifest.serialization.ignore_paths == ()


def test_unknown_resource_fields_are_ignored() -> None:
    doc = _statement([{"name": "a", "algorithm": "sha256", "digest": SHA_A, "annotations": {"x": "y"}}])
    assert parse_statement(_payload(doc)).manifest.resources == (Resource("a", "sha256", bytes.fromhex(SHA_A)),)


def test_legacy_v02_statement_is_read() -> None:
    doc: dict[str, Any] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {"name": "a", "digest": {"sha256": SHA_A}},
            {"name": "d/b", "digest": {"sha256": SHA_B}, "annotations": {"actual_hash_algorithm": "file-sha256"}},
        ],
        "predicateType": LEGACY_PREDICATE_TYPE,
        "predicate": {"unused": "Unused, just passed due to API requirements"},
    }
    parsed = parse_statement(_payload(doc))
    assert parsed.legacy and parsed.root_digest is None
    assert [(r.name, r.hex) for r in parsed.manifest.resources] == [("a", SHA_A), ("d/b", SHA_B)]
    assert parsed.manifest.serialization == Serialization(method="files", hash_type="sha256", allow_symlinks=False)
    doc["subject"][1]["name"] = "../escape"
    with pytest.raises(UnsafePathError):
        parse_statement(_payload(doc))

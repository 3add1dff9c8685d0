"""The OMS v1.0 JSON schemas and test vectors: the vectors behave as published, and every bundle we write
(each method and hashing mode) validates against the bundle schema, its payload against the statement schema.

Schemas and vectors are a copy of the spec's (tests/data/oms-v1.0, see its README).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

import model_signing as ms
from model_signing.errors import SignatureFormatError, StatementError
from model_signing.methods import parse_bundle
from model_signing.oms.statement import parse_statement
from tests import _pki

DATA = Path(__file__).parent / "data" / "oms-v1.0"
SCHEMAS = DATA / "schemas" / "v1.0"
VECTORS = DATA / "test-vectors" / "v1.0"


def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMAS.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=REGISTRY)


BUNDLE = _validator("bundle")
STATEMENT = _validator("statement")


def _validate(raw: bytes) -> None:
    """Bundle schema on the file, statement schema on the decoded DSSE payload."""
    doc = json.loads(raw)
    BUNDLE.validate(doc)
    STATEMENT.validate(json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"])))


def _vectors(kind: str) -> list[Path]:
    found = sorted((VECTORS / kind).glob("*.bundle.json"))
    assert found, f"no {kind} vectors"
    return found


@pytest.mark.parametrize("path", _vectors("valid"), ids=lambda p: p.name)
def test_valid_vectors_validate_and_parse(path: Path) -> None:
    _validate(path.read_bytes())
    parsed = parse_bundle(path.read_bytes(), source=path.name)
    assert parsed.method == path.name.split(".")[0]  # key / certificate / sigstore
    statement = parse_statement(parsed.payload)  # structure only: the signature is not checked here
    assert statement.manifest.resources


@pytest.mark.parametrize("path", _vectors("invalid"), ids=lambda p: p.name)
def test_invalid_vectors_fail_the_schema_and_our_parser(path: Path) -> None:
    raw = path.read_bytes()
    with pytest.raises((ValidationError, json.JSONDecodeError)):
        BUNDLE.validate(json.loads(raw))
    with pytest.raises(SignatureFormatError):
        parse_bundle(raw, source=path.name)


@pytest.mark.parametrize("path", _vectors("invalid-payload"), ids=lambda p: p.name)
def test_invalid_payload_vectors_fail_the_statement_schema_and_our_parser(path: Path) -> None:
    raw = path.read_bytes()
    BUNDLE.validate(json.loads(raw))  # the bundle itself is well formed...
    payload = base64.b64decode(json.loads(raw)["dsseEnvelope"]["payload"])
    with pytest.raises(ValidationError):  # ...its statement is not
        STATEMENT.validate(json.loads(payload))
    with pytest.raises(StatementError):
        parse_statement(parse_bundle(raw, source=path.name).payload)


@pytest.mark.parametrize(
    "config",
    [
        ms.HashingConfig(max_workers=1),
        ms.HashingConfig(hash_type="blake2b", max_workers=1),
        ms.HashingConfig(hash_type="blake3", max_workers=1),
        ms.HashingConfig(method="shards", shard_size=64, max_workers=1),
        ms.HashingConfig(
            method="shards", shard_size=64, hash_type="blake3", ignore_paths=("empty.txt",), max_workers=1
        ),
    ],
    ids=["files-sha256", "files-blake2b", "files-blake3", "shards-sha256", "shards-blake3-ignore"],
)
@pytest.mark.parametrize("method", ["key", "certificate"])
def test_every_bundle_we_write_validates(
    small_model: Path, tmp_path: Path, pki: _pki.Pki, config: ms.HashingConfig, method: str
) -> None:
    signer: Any = (
        ms.KeySigner(_pki.ec_key("P-384"))
        if method == "key"
        else ms.CertificateSigner(pki.key_pem, pki.leaf_pem, [pki.chain_pem])
    )
    sig = tmp_path / "model.sig"
    ms.sign(small_model, signer, signature_path=sig, hashing=config)
    _validate(sig.read_bytes())

"""The in-toto Statement v1 that an OMS signature signs, to and from a :class:`Manifest`.

Writing: :func:`statement_payload` turns a manifest into the DSSE payload bytes.  The bytes are canonical
JSON (RFC 8785, via the ``rfc8785`` package sigstore already depends on), so the same model hashed with the
same settings always gives byte-identical payloads.

Reading: :func:`parse_statement` validates a *verified* payload strictly (``_type``, predicate type,
exactly one subject, subject digest consistent with the resources, resources well formed and path-safe,
serialization well formed) and returns the signed manifest.  It also reads, never writes, the older
forms the peer produced: the v0.2 ``https://model_signing/Digests/v0.1`` predicate (file digests as
subjects) and the v1.0 shard quirks of model-signing 1.x (``"sha256-sharded-<N>"`` resource algorithms,
``shard_size`` serialised as a float).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model_signing._internal import strict_json as _strict_json
from model_signing.errors import ModelSigningError, StatementError
from model_signing.manifest import Manifest, Resource, Serialization
from model_signing.manifest import compare as _compare
from model_signing.oms import names as _paths

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
#: The deprecated v0.2 predicate (file digests in ``subject``); read-only.
LEGACY_PREDICATE_TYPE = "https://model_signing/Digests/v0.1"

_DIGEST_SIZES = {"sha256": 32, "blake2b": 64, "blake3": 32}
_STATEMENT_KEYS = frozenset({"_type", "subject", "predicateType", "predicate"})


@dataclass(frozen=True)
class SignedStatement:
    """A validated statement: the signed manifest plus what the subject says about it."""

    manifest: Manifest
    #: ``subject[0].name`` (informational only, per the spec).
    subject_name: str
    #: The root digest the subject carries (``None`` for v0.2 statements, which have none).
    root_digest: bytes | None
    predicate_type: str

    @property
    def legacy(self) -> bool:
        """Whether this is a deprecated v0.2 (``Digests/v0.1``) statement."""
        return self.predicate_type == LEGACY_PREDICATE_TYPE


def canonical_manifest(manifest: Manifest) -> Manifest:
    """The manifest as it is signed: ignore paths sorted and de-duplicated.

    The resource order is the hasher's (the manifest's) on purpose: it is the order the root digest is
    computed in, so ``digest`` and the signed subject always agree.
    """
    ignore = tuple(sorted(set(manifest.serialization.ignore_paths)))
    if ignore == manifest.serialization.ignore_paths:
        return manifest
    return dataclasses.replace(
        manifest, serialization=dataclasses.replace(manifest.serialization, ignore_paths=ignore)
    )


def statement_dict(manifest: Manifest) -> dict[str, Any]:
    """The OMS v1.0 in-toto statement for ``manifest`` (already canonical), as a JSON-ready dict.

    The statement is also built and validated with the in-toto attestation library's own ``Statement`` /
    ``ResourceDescriptor`` types (subject rules, digest presence, predicate type).  The JSON is serialised
    from our dict rather than from its protobuf form, because protobuf's ``Struct`` turns every number into
    a float (``shard_size`` would become ``1000000000.0``, as model-signing 1.x writes it).
    """
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.v1.statement import Statement

    subject = {"name": manifest.model_name, "digest": {"sha256": manifest.root_digest().hex()}}
    predicate = manifest.to_predicate()
    try:
        Statement([ResourceDescriptor(**subject).pb], PREDICATE_TYPE, predicate).validate()
    except ValueError as exc:
        raise StatementError(
            f"the statement for {manifest.model_name!r} is not a valid in-toto statement: {exc}"
        ) from None
    return {"_type": STATEMENT_TYPE, "subject": [subject], "predicateType": PREDICATE_TYPE, "predicate": predicate}


def statement_payload(manifest: Manifest) -> bytes:
    """The canonical (RFC 8785) payload bytes of the statement for ``manifest``.

    The manifest is first put in canonical form (:func:`canonical_manifest`) and checked the way a
    verifier will check it, so we never produce a signature that we would refuse to verify.
    """
    import rfc8785

    manifest = canonical_manifest(manifest)
    if not manifest.model_name:
        raise StatementError("the model name (subject name) must not be empty")
    if not manifest.resources:
        raise StatementError("the model has no files to sign; an empty model cannot be signed")
    _check_resources(manifest, single_file=_is_single_file(manifest))
    return rfc8785.dumps(statement_dict(manifest))


def parse_statement(payload: bytes, *, source: str | None = None) -> SignedStatement:
    """Validate a verified DSSE payload and return the signed manifest.

    Raises :class:`StatementError` (or its subclass :class:`UnsafePathError`) when the payload is not
    a well-formed OMS statement.
    """
    doc = _load_json(payload, source)
    if not isinstance(doc, dict):
        raise StatementError("the signed payload is not a JSON object")
    if doc.get("_type") != STATEMENT_TYPE:
        raise StatementError(f"the signed payload is not an in-toto Statement v1 (_type {doc.get('_type')!r})")
    predicate_type = doc.get("predicateType")
    if predicate_type == LEGACY_PREDICATE_TYPE:
        return _parse_legacy(doc)
    if predicate_type != PREDICATE_TYPE:
        raise StatementError(
            f"the signed statement has predicateType {predicate_type!r}, not an OMS model signature "
            f"({PREDICATE_TYPE})"
        )
    unknown = sorted(set(doc) - _STATEMENT_KEYS)
    if unknown:
        raise StatementError(f"the signed statement has unexpected fields: {', '.join(unknown)}")
    subject_name, root_digest = _parse_subject(doc.get("subject"))
    predicate = doc.get("predicate")
    if not isinstance(predicate, dict):
        raise StatementError("the signed statement has no predicate object")
    try:
        manifest = Manifest.from_predicate(subject_name, _normalise_predicate(predicate))
    except StatementError:
        raise
    except ModelSigningError as exc:
        raise StatementError(f"the signed predicate is malformed: {exc}") from None
    if not manifest.resources:
        raise StatementError("the signed statement lists no resources")
    _check_resources(manifest, single_file=_is_single_file(manifest))
    for i, ignored in enumerate(manifest.serialization.ignore_paths):
        _paths.check_relative_path(ignored, what=f"predicate.serialization.ignore_paths[{i}]")
    if manifest.root_digest() != root_digest:
        raise StatementError(
            "the signed statement is inconsistent: subject digest "
            f"{root_digest.hex()} does not match its resources ({manifest.root_digest().hex()})"
        )
    return SignedStatement(manifest, subject_name, root_digest, PREDICATE_TYPE)


def _load_json(payload: bytes, source: str | None) -> Any:
    try:
        return _strict_json.loads(payload)
    except _strict_json.StrictJSONError as exc:
        of = f" of {source}" if source else ""
        raise StatementError(f"the signed payload{of} {exc.reason}") from None


def _parse_subject(subjects: object) -> tuple[str, bytes]:
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise StatementError("an OMS statement must have exactly one subject (the model)")
    subject = subjects[0]
    if not isinstance(subject, dict):
        raise StatementError("subject[0] must be a JSON object")
    name = subject.get("name")
    if not isinstance(name, str) or not name:
        raise StatementError("subject[0].name must be a non-empty string")
    digest = subject.get("digest")
    hexdigest = digest.get("sha256") if isinstance(digest, dict) else None
    return name, _hex(hexdigest, "subject[0].digest.sha256", 32)


def _hex(value: object, what: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or value != value.lower():
        raise StatementError(f"{what} must be {2 * size} lowercase hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise StatementError(f"{what} is not hex") from None


def _normalise_predicate(predicate: Mapping[str, Any]) -> dict[str, Any]:
    """Undo the peer's (model-signing 1.x) known deviations from the schema, read-only.

    * ``shard_size`` written as ``1000.0`` (protobuf Struct numbers are doubles);
    * shard resources whose ``algorithm`` is ``"<hash_type>-sharded-<shard_size>"``.

    Anything else that deviates is left alone and rejected by the strict parser.
    """
    out = dict(predicate)
    serialization = predicate.get("serialization")
    if not isinstance(serialization, Mapping):
        return out
    ser = dict(serialization)
    size = ser.get("shard_size")
    if isinstance(size, float) and size.is_integer() and size > 0:
        ser["shard_size"] = int(size)
    out["serialization"] = ser
    resources = predicate.get("resources")
    if ser.get("method") == "shards" and isinstance(resources, list):
        peer_name = f"{ser.get('hash_type')}-sharded-{ser.get('shard_size')}"
        out["resources"] = [
            {**r, "algorithm": ser.get("hash_type")}
            if isinstance(r, Mapping) and r.get("algorithm") == peer_name
            else r
            for r in resources
        ]
    return out


def _is_single_file(manifest: Manifest) -> bool:
    # The peer names the only file of a single-file model "." (the spec says: its basename).
    return _compare.signed_files(manifest) == {_paths.SINGLE_FILE_NAME}


def _check_resources(manifest: Manifest, *, single_file: bool) -> None:
    """Per-resource checks shared by signing and verification: names, algorithms, digest sizes."""
    serialization = manifest.serialization
    seen: set[str] = set()
    for i, resource in enumerate(manifest.resources):
        where = f"predicate.resources[{i}]"
        if resource.name in seen:
            raise StatementError(f"{where}.name {resource.name!r} appears more than once")
        seen.add(resource.name)
        if serialization.method == "shards":
            _paths.split_shard_name(resource.name, what=f"{where}.name", single_file=single_file)
        else:
            _paths.check_resource_name(resource.name, what=f"{where}.name", single_file=single_file)
        if resource.algorithm != serialization.hash_type:
            raise StatementError(
                f"{where}.algorithm is {resource.algorithm!r} but serialization.hash_type is "
                f"{serialization.hash_type!r}"
            )
        if len(resource.digest) != _DIGEST_SIZES[resource.algorithm]:
            raise StatementError(
                f"{where}.digest has {len(resource.digest)} bytes; {resource.algorithm} digests have "
                f"{_DIGEST_SIZES[resource.algorithm]}"
            )


def _parse_legacy(doc: Mapping[str, Any]) -> SignedStatement:
    """The v0.2 statement: one subject per file (name + sha256), no serialization (files, sha256)."""
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise StatementError("the v0.2 statement has no subjects")
    resources = []
    for i, subject in enumerate(subjects):
        where = f"subject[{i}]"
        if not isinstance(subject, dict):
            raise StatementError(f"{where} must be a JSON object")
        name = _paths.check_relative_path(subject.get("name"), what=f"{where}.name")
        digest = subject.get("digest")
        raw = _hex(digest.get("sha256") if isinstance(digest, dict) else None, f"{where}.digest.sha256", 32)
        resources.append(Resource(name=name, algorithm="sha256", digest=raw))
    manifest = Manifest(
        model_name="",
        serialization=Serialization(method="files", hash_type="sha256", allow_symlinks=False),
        resources=tuple(resources),
    )
    _check_resources(manifest, single_file=False)
    return SignedStatement(manifest, "", None, LEGACY_PREDICATE_TYPE)


"""L6: what a signature bundle claims, WITHOUT verifying it (``inspect``).

Nothing here checks a signature, a certificate chain or a log entry: every field is what the file says.
Key, certificate and secret bundles are read without importing ``sigstore``; keyless ones too (the
certificate is parsed with ``cryptography``, log entries and timestamps from the bundle's JSON, RFC 3161
tokens with ``rfc3161_client``).

The manifest carries no file sizes: ``total_size`` is only known for shard manifests (the sum of the
shard lengths in their names) and is ``None`` for file manifests.

:meth:`Inspection.as_dict` keys (all always present; ``null`` / empty where they do not apply):
``verified`` (always ``false``), ``signature_path``, ``media_type``, ``method``, ``signer_identity``
(:class:`~model_signing.results.SignerIdentity` ``as_dict``), ``certificate`` (``subject``, ``issuer``,
``serial``, ``not_before``, ``not_after``, ``oidc_issuer``, ``extensions``: Fulcio OID -> value),
``chain`` (subjects), ``tlog_entries`` (``log_index``, ``integrated_time``, ``kind``, ``version``),
``timestamps`` (RFC 3161 ``gen_time``), ``rfc3161_timestamps`` (each ``time``, ``tsa``: the subject of
the TSA certificate embedded in the token, ``tsa_serial``, ``serial``: the token's), ``predicate_type``,
``model_name``, ``root_digest``, ``serialization``, ``resource_count``, ``file_count``, ``total_size``,
``resources`` (``--files``: ``{name, algorithm, digest}``).
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model_signing import methods
from model_signing._internal import strict_json as _strict_json
from model_signing.errors import SignatureFormatError
from model_signing.manifest import compare as _compare
from model_signing.oms import statement as _statement
from model_signing.results import SignerIdentity

if TYPE_CHECKING:
    from cryptography import x509

    from model_signing._internal.types import PathLike
    from model_signing.oms.bundle import SignatureBundle

#: Fulcio certificate extensions (Fulcio docs/oid-info.md): OID -> name.
FULCIO_OIDS: dict[str, str] = {
    "1.3.6.1.4.1.57264.1.1": "issuer (deprecated)",
    "1.3.6.1.4.1.57264.1.2": "github_workflow_trigger",
    "1.3.6.1.4.1.57264.1.3": "github_workflow_sha",
    "1.3.6.1.4.1.57264.1.4": "github_workflow_name",
    "1.3.6.1.4.1.57264.1.5": "github_workflow_repository",
    "1.3.6.1.4.1.57264.1.6": "github_workflow_ref",
    "1.3.6.1.4.1.57264.1.8": "issuer",
    "1.3.6.1.4.1.57264.1.9": "build_signer_uri",
    "1.3.6.1.4.1.57264.1.10": "build_signer_digest",
    "1.3.6.1.4.1.57264.1.11": "runner_environment",
    "1.3.6.1.4.1.57264.1.12": "source_repository_uri",
    "1.3.6.1.4.1.57264.1.13": "source_repository_digest",
    "1.3.6.1.4.1.57264.1.14": "source_repository_ref",
    "1.3.6.1.4.1.57264.1.15": "source_repository_identifier",
    "1.3.6.1.4.1.57264.1.16": "source_repository_owner_uri",
    "1.3.6.1.4.1.57264.1.17": "source_repository_owner_identifier",
    "1.3.6.1.4.1.57264.1.18": "build_config_uri",
    "1.3.6.1.4.1.57264.1.19": "build_config_digest",
    "1.3.6.1.4.1.57264.1.20": "build_trigger",
    "1.3.6.1.4.1.57264.1.21": "run_invocation_uri",
    "1.3.6.1.4.1.57264.1.22": "source_repository_visibility_at_signing",
}
#: Up to .1.6 the value is the raw string; from .1.8 on a DER UTF8String.
_RAW_OIDS = frozenset(f"1.3.6.1.4.1.57264.1.{i}" for i in range(1, 7))


@dataclass(frozen=True)
class CertificateInfo:
    """The signing certificate's claims (unverified)."""

    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    oidc_issuer: str | None
    extensions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON ``certificate`` object."""
        return {
            "subject": self.subject, "issuer": self.issuer, "serial": self.serial,
            "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
            "oidc_issuer": self.oidc_issuer, "extensions": dict(self.extensions),
        }


@dataclass(frozen=True)
class Inspection:
    """Everything a bundle claims; nothing of it verified."""

    signature_path: str
    media_type: str
    method: str
    signer: SignerIdentity
    certificate: CertificateInfo | None
    chain: tuple[str, ...]
    tlog_entries: tuple[dict[str, Any], ...]
    timestamps: tuple[dt.datetime, ...]
    statement: _statement.SignedStatement
    #: Each RFC 3161 timestamp: ``time``, ``tsa`` (who signed it, unverified), ``tsa_serial``, ``serial``.
    rfc3161_timestamps: tuple[dict[str, Any], ...] = ()

    @property
    def file_count(self) -> int:
        """Distinct files the manifest names (shards of one file count once)."""
        m = self.statement.manifest
        return len({_compare.file_of(r.name, m.serialization.method) for r in m.resources})

    @property
    def total_size(self) -> int | None:
        """Bytes signed: known from shard names only (file manifests carry no sizes)."""
        m = self.statement.manifest
        if m.serialization.method != "shards":
            return None
        total = 0
        for r in m.resources:
            _, start, end = r.name.rsplit(":", 2)
            total += int(end) - int(start)
        return total

    def as_dict(self, *, files: bool = False) -> dict[str, Any]:
        """The JSON document (keys in the module docs); ``resources`` only filled with ``files``."""
        m = self.statement.manifest
        root = self.statement.root_digest
        return {
            "verified": False,
            "signature_path": self.signature_path,
            "media_type": self.media_type,
            "method": self.method,
            "signer_identity": self.signer.as_dict(),
            "certificate": self.certificate.as_dict() if self.certificate else None,
            "chain": list(self.chain),
            "tlog_entries": [dict(e) for e in self.tlog_entries],
            "timestamps": [t.isoformat() for t in self.timestamps],
            "rfc3161_timestamps": [{**t, "time": t["time"].isoformat()} for t in self.rfc3161_timestamps],
            "predicate_type": self.statement.predicate_type,
            "model_name": self.statement.subject_name,
            "root_digest": root.hex() if root is not None else None,
            "serialization": m.serialization.to_dict(),
            "resource_count": len(m.resources),
            "file_count": self.file_count,
            "total_size": self.total_size,
            "resources": [r.to_dict() for r in m.resources] if files else [],
        }


def inspect(signature_path: PathLike) -> Inspection:
    """Read the bundle at ``signature_path`` and return what it claims (NOT verified)."""
    return _inspect(methods.read_bundle(signature_path))


def inspect_bytes(raw: bytes, *, source: str = "signature") -> Inspection:
    """Like :func:`inspect`, for bundle bytes already read."""
    return _inspect(methods.parse_bundle(raw, source=source))


def inspect_bundle(bundle: SignatureBundle) -> Inspection:
    """Like :func:`inspect`, for a bundle already parsed (what it claims, NOT verified by this call)."""
    return _inspect(bundle)


def _inspect(bundle: SignatureBundle) -> Inspection:
    doc = _strict_json.loads(bundle.raw)
    material = doc.get("verificationMaterial", {})
    statement = _statement.parse_statement(bundle.payload, source=bundle.source)
    cert: x509.Certificate | None = None
    chain: tuple[str, ...] = ()
    if bundle.method in ("key", "secret"):
        hint = bundle.key_hint
        kid = (f"sha256:{hint}" if hint else None) if bundle.method == "key" else hint
        signer = SignerIdentity(method=bundle.method, identity=kid, key_id=kid,
                                key_algorithm="HMAC-SHA256" if bundle.method == "secret" else None)
    else:
        certs = _certificates(material, bundle.source)
        cert = certs[0]
        chain = tuple(c.subject.rfc4514_string() for c in certs)
        signer = _cert_signer(bundle.method, cert)
    info = _certificate_info(cert) if cert is not None else None
    stamps = _timestamps(material, bundle.source)
    if info is not None and bundle.method == "sigstore":
        import dataclasses

        signer = dataclasses.replace(signer, issuer=info.oidc_issuer)
    return Inspection(
        signature_path=bundle.source,
        media_type=str(doc.get("mediaType")),
        method=bundle.method,
        signer=signer,
        certificate=info,
        chain=chain,
        tlog_entries=tuple(_tlog(e) for e in material.get("tlogEntries") or () if isinstance(e, dict)),
        timestamps=tuple(t["time"] for t in stamps),
        statement=statement,
        rfc3161_timestamps=stamps,
    )


def _certificates(material: dict[str, Any], source: str) -> list[x509.Certificate]:
    from cryptography import x509

    if "certificate" in material:
        raws = [material["certificate"].get("rawBytes")]
    else:
        raws = [c.get("rawBytes") for c in material["x509CertificateChain"]["certificates"]]
    out = []
    for i, raw in enumerate(raws):
        try:
            out.append(x509.load_der_x509_certificate(base64.b64decode(raw, validate=True)))
        except (ValueError, TypeError):
            raise SignatureFormatError(f"{source}: certificate {i} is not a base64 DER X.509 certificate") from None
    return out


def _cert_signer(method: str, cert: x509.Certificate) -> SignerIdentity:
    from model_signing.keymaterial.certificates import certificate_signer
    from model_signing.methods.sigstore.identity import certificate_identities

    if method == "certificate":
        return certificate_signer(cert)
    names = certificate_identities(cert)
    return SignerIdentity(
        method=method, identity=names[0] if names else None,
        certificate_subject=cert.subject.rfc4514_string() or None,
        certificate_issuer=cert.issuer.rfc4514_string() or None,
        certificate_serial=f"{cert.serial_number:x}", identities=tuple(names),
    )


def _certificate_info(cert: x509.Certificate) -> CertificateInfo:
    from asn1crypto.core import UTF8String
    from cryptography import x509

    extensions: dict[str, str] = {}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if oid not in FULCIO_OIDS or not isinstance(ext.value, x509.UnrecognizedExtension):
            continue
        value = ext.value.value
        try:
            text = value.decode("utf-8", "replace") if oid in _RAW_OIDS else str(UTF8String.load(value).native)
        except ValueError:
            text = value.hex()
        extensions[FULCIO_OIDS[oid]] = text
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=f"{cert.serial_number:x}",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        oidc_issuer=extensions.get("issuer") or extensions.get("issuer (deprecated)"),
        extensions=extensions,
    )


def _tlog(entry: dict[str, Any]) -> dict[str, Any]:
    raw_kv = entry.get("kindVersion")
    kv: dict[str, Any] = raw_kv if isinstance(raw_kv, dict) else {}
    integrated = entry.get("integratedTime")
    when = None
    if isinstance(integrated, str | int) and str(integrated).isdigit():
        when = dt.datetime.fromtimestamp(int(integrated), dt.UTC).isoformat()
    return {"log_index": entry.get("logIndex"), "integrated_time": when, "kind": kv.get("kind"),
            "version": kv.get("version")}


def _timestamps(material: dict[str, Any], source: str) -> tuple[dict[str, Any], ...]:
    data = material.get("timestampVerificationData")
    tokens = data.get("rfc3161Timestamps") if isinstance(data, dict) else None
    if not tokens:
        return ()
    from model_signing.methods.timestamps import describe_token

    out = []
    for i, token in enumerate(tokens):
        try:
            out.append(describe_token(base64.b64decode(token["signedTimestamp"])))
        except (ValueError, TypeError, KeyError):
            raise SignatureFormatError(f"{source}: RFC 3161 timestamp {i} is not a DER timestamp response") from None
    return tuple(out)

"""The DSSE envelope and the Sigstore bundle (v0.3) around an OMS statement: build, parse, check.

Building and parsing go through sigstore's own types (``sigstore_models``: the Bundle / Envelope models
that ``sigstore.models.Bundle`` wraps), so what we write is what the Sigstore ecosystem reads.
``sigstore.models.Bundle`` itself only represents keyless bundles (it requires a Fulcio certificate and a
log entry), which is why the key and certificate methods use the underlying models directly.

Parsing is strict and happens before any signature check: the file must be UTF-8 JSON without duplicate
keys, carry a Sigstore bundle media type, and have the shape the OMS bundle/envelope schemas require
(exactly one DSSE signature, in-toto payload type, canonical base64, one kind of verification material).
Pre-v1.1 relaxations are applied as the OMS spec (section 11.2) says: ``publicKey.rawBytes`` instead of
``hint``, ``keyid`` absent/empty/null, ``tlogEntries`` absent.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from model_signing._internal import strict_json as _strict_json
from model_signing._internal.files import MAX_SIGNATURE_FILE, read_small_file
from model_signing.errors import SignatureFormatError
from model_signing.oms.statement import PAYLOAD_TYPE

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
    from sigstore_models.bundle.v1 import Bundle, VerificationMaterial

BUNDLE_MEDIA_TYPE: Final = "application/vnd.dev.sigstore.bundle.v0.3+json"
#: Every Sigstore bundle media type sigstore-python accepts (the OMS schema allows any of them).
KNOWN_MEDIA_TYPES = (
    BUNDLE_MEDIA_TYPE,
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
)



_TOP_KEYS = frozenset({"mediaType", "verificationMaterial", "dsseEnvelope"})
_ENVELOPE_KEYS = frozenset({"payload", "payloadType", "signatures"})
_MATERIAL_KINDS = ("publicKey", "x509CertificateChain", "certificate")


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed (DSSE protocol.md).

    sigstore only exposes this through an already-signed ``Envelope``; the tests check that both agree.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def legacy_pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """The encoding model-signing v0.2 actually signed (read-only compatibility).

    That version formatted the payload's Python ``repr`` (``b'...'``) into the string and wrote
    ``DSSEV1``; its signatures only verify over this exact byte string.  The different prefix means it
    can never collide with a real DSSE PAE.
    """
    return f"DSSEV1 {len(payload_type)} {payload_type} {len(payload)} {payload!r}".encode()


def public_key_hint(public_key: PublicKeyTypes) -> str:
    """The ``publicKey.hint`` of a key: hex SHA-256 of its PEM SubjectPublicKeyInfo (as the peer writes)."""
    import hashlib

    from cryptography.hazmat.primitives import serialization

    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def key_material(public_key: PublicKeyTypes) -> VerificationMaterial:
    """Verification material of the ``key`` method: only a hint; the verifier brings the key."""
    from sigstore_models.bundle.v1 import VerificationMaterial
    from sigstore_models.common.v1 import PublicKeyIdentifier

    return VerificationMaterial(public_key=PublicKeyIdentifier(hint=public_key_hint(public_key)), tlog_entries=[])


def certificate_material(chain: Sequence[x509.Certificate]) -> VerificationMaterial:
    """Verification material of the ``certificate`` method: leaf first, then the rest of the chain."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from sigstore_models.bundle.v1 import VerificationMaterial
    from sigstore_models.common.v1 import X509Certificate, X509CertificateChain

    certs = [X509Certificate(raw_bytes=base64.b64encode(c.public_bytes(Encoding.DER))) for c in chain]
    return VerificationMaterial(x509_certificate_chain=X509CertificateChain(certificates=certs), tlog_entries=[])


def assemble(
    payload: bytes,
    signature: bytes,
    material: VerificationMaterial,
    *,
    keyid: str = "",
    timestamps: Sequence[bytes] = (),
) -> Bundle:
    """A v0.3 bundle holding the DSSE envelope of ``payload`` signed as ``signature`` (DSSE ``keyid``).

    ``timestamps`` are DER RFC 3161 timestamp responses over ``signature``; they go where Sigstore bundles
    carry them, ``verificationMaterial.timestampVerificationData.rfc3161Timestamps``.
    """
    from sigstore_models.bundle.v1 import Bundle, VerificationMaterial
    from sigstore_models.intoto import Envelope, Signature

    if timestamps:
        # The models serialise only the fields that were set: rebuild the material with the timestamps set.
        material = VerificationMaterial.from_dict({
            **material.to_dict(),
            "timestampVerificationData": {
                "rfc3161Timestamps": [{"signedTimestamp": base64.b64encode(t).decode()} for t in timestamps]
            },
        })

    envelope = Envelope(
        payload=base64.b64encode(payload),
        payload_type=PAYLOAD_TYPE,
        # keyid "" by default, as the reference implementation and the spec's example write it.
        signatures=[Signature(sig=base64.b64encode(signature), keyid=keyid)],
    )
    return Bundle(media_type=BUNDLE_MEDIA_TYPE, verification_material=material, dsse_envelope=envelope)


def bundle_json(bundle: Bundle) -> str:
    """The bundle as the JSON text written to the signature file."""
    return bundle.to_json()


@dataclass(frozen=True)
class SignatureBundle:
    """A parsed, structurally valid OMS bundle whose signature has NOT been checked yet."""

    #: The file as read: a keyless verifier hands it to ``sigstore.models.Bundle.from_json`` unchanged.
    raw: bytes
    #: The bundle as sigstore's model (pre-v1.1 fields already normalised).
    bundle: Bundle
    #: The signing method that made it (a name in :data:`model_signing.methods.REGISTRY`).
    method: str
    #: Where it came from, for messages.
    source: str
    #: ``publicKey.rawBytes`` of a pre-v1.1 key bundle, if that is what it carried instead of a hint.
    legacy_public_key: bytes | None = None

    @property
    def payload(self) -> bytes:
        """The DSSE payload bytes (unverified until a verifier says otherwise)."""
        assert self.bundle.dsse_envelope is not None  # guaranteed by parse_bundle
        return self.bundle.dsse_envelope.payload

    @property
    def payload_type(self) -> str:
        """The DSSE payload type."""
        assert self.bundle.dsse_envelope is not None
        return self.bundle.dsse_envelope.payload_type

    @property
    def signature(self) -> bytes:
        """The (single) DSSE signature."""
        assert self.bundle.dsse_envelope is not None
        return self.bundle.dsse_envelope.signatures[0].sig

    @property
    def rfc3161_timestamps(self) -> list[bytes]:
        """The DER RFC 3161 timestamp responses of ``timestampVerificationData`` (unverified; empty if none)."""
        data = self.bundle.verification_material.timestamp_verification_data
        return [t.signed_timestamp for t in data.rfc3161_timestamps] if data is not None else []

    @property
    def key_hint(self) -> str | None:
        """``publicKey.hint`` of a key bundle (``None`` if absent)."""
        pk = self.bundle.verification_material.public_key
        return pk.hint if pk is not None else None

    def certificate_chain(self) -> list[x509.Certificate]:
        """The ``x509CertificateChain`` certificates (leaf first); empty for other methods."""
        from cryptography import x509

        chain = self.bundle.verification_material.x509_certificate_chain
        if chain is None:
            return []
        out = []
        for i, cert in enumerate(chain.certificates):
            try:
                out.append(x509.load_der_x509_certificate(cert.raw_bytes))
            except ValueError:
                raise SignatureFormatError(
                    f"{self.source}: verificationMaterial.x509CertificateChain.certificates[{i}] is not a "
                    "DER X.509 certificate"
                ) from None
        return out


#: Which signing method made a bundle, from its (normalised) verification material and media type; the
#: method registry provides it (:func:`model_signing.methods.classify`), since this layer knows no methods.
Classifier = Callable[[Mapping[str, Any], str], str]


def read_bundle(path: str | os.PathLike[str], *, classify: Classifier) -> SignatureBundle:
    """Read and parse the signature file at ``path`` (see :func:`parse_bundle`)."""
    raw = read_small_file(
        path, "signature", limit=MAX_SIGNATURE_FILE, error=SignatureFormatError,
        missing_hint="; pass the bundle with `signature_path`",
    )
    return parse_bundle(raw, source=os.fspath(path), classify=classify)


def parse_bundle(raw: bytes, *, source: str = "signature", classify: Classifier) -> SignatureBundle:
    """Parse and structurally validate an OMS bundle; raise :class:`SignatureFormatError` if it is not one."""
    doc = _load(raw, source)
    media_type = doc.get("mediaType")
    if media_type not in KNOWN_MEDIA_TYPES:
        raise SignatureFormatError(
            f"{source}: mediaType {media_type!r} is not a Sigstore bundle media type; expected {BUNDLE_MEDIA_TYPE}"
        )
    if "dsseEnvelope" not in doc:
        what = "signs a single blob (messageSignature)" if "messageSignature" in doc else "has no dsseEnvelope"
        raise SignatureFormatError(f"{source}: not an OMS model signature: the bundle {what}")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise SignatureFormatError(f"{source}: unexpected bundle fields: {', '.join(unknown)}")
    _check_envelope(doc["dsseEnvelope"], source)
    material, legacy_key = _normalise_material(doc.get("verificationMaterial"), source)
    doc = {**doc, "verificationMaterial": material}

    from sigstore_models.bundle.v1 import Bundle

    try:
        bundle = Bundle.from_dict(doc)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        errors = getattr(exc, "errors", None)
        first = errors()[0] if callable(errors) else {"msg": str(exc)}
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise SignatureFormatError(
            f"{source}: malformed Sigstore bundle at {loc or 'top level'}: {first['msg']}"
        ) from None
    return SignatureBundle(
        raw=raw, bundle=bundle, method=classify(material, media_type), source=source, legacy_public_key=legacy_key
    )


def _load(raw: bytes, source: str) -> dict[str, Any]:
    try:
        doc = _strict_json.loads(raw)
    except _strict_json.StrictJSONError as exc:
        raise SignatureFormatError(f"{source} {exc.reason}; it is not a valid signature bundle") from None
    if not isinstance(doc, dict):
        raise SignatureFormatError(f"{source}: a signature bundle is a JSON object")
    return doc


def _b64(value: object, what: str, source: str, *, allow_empty: bool = False) -> bytes:
    if not isinstance(value, str):
        raise SignatureFormatError(f"{source}: {what} must be a base64 string")
    try:
        out = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureFormatError(f"{source}: {what} is not valid base64") from None
    if not out and not allow_empty:
        raise SignatureFormatError(f"{source}: {what} is empty")
    return out


def _check_envelope(env: object, source: str) -> None:
    if not isinstance(env, dict):
        raise SignatureFormatError(f"{source}: dsseEnvelope must be a JSON object")
    unknown = sorted(set(env) - _ENVELOPE_KEYS)
    if unknown:
        raise SignatureFormatError(f"{source}: unexpected dsseEnvelope fields: {', '.join(unknown)}")
    _b64(env.get("payload"), "dsseEnvelope.payload", source)
    if env.get("payloadType") != PAYLOAD_TYPE:
        raise SignatureFormatError(
            f"{source}: dsseEnvelope.payloadType is {env.get('payloadType')!r}, expected {PAYLOAD_TYPE}"
        )
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1:
        count = len(sigs) if isinstance(sigs, list) else "no"
        raise SignatureFormatError(f"{source}: dsseEnvelope must carry exactly one signature (it has {count})")
    sig = sigs[0]
    if not isinstance(sig, dict) or set(sig) - {"sig", "keyid"}:
        raise SignatureFormatError(f"{source}: dsseEnvelope.signatures[0] must hold only 'sig' and 'keyid'")
    _b64(sig.get("sig"), "dsseEnvelope.signatures[0].sig", source)
    if sig.get("keyid") is not None and not isinstance(sig["keyid"], str):
        raise SignatureFormatError(f"{source}: dsseEnvelope.signatures[0].keyid must be a string or null")


def _normalise_material(material: object, source: str) -> tuple[dict[str, Any], bytes | None]:
    if not isinstance(material, dict):
        raise SignatureFormatError(f"{source}: the bundle has no verificationMaterial object")
    kinds = [k for k in _MATERIAL_KINDS if k in material]
    if len(kinds) != 1:
        raise SignatureFormatError(
            f"{source}: verificationMaterial must hold exactly one of publicKey, x509CertificateChain or "
            f"certificate (found {', '.join(kinds) or 'none'})"
        )
    out = dict(material)
    if kinds[0] == "certificate" and not material.get("tlogEntries"):
        # A lone certificate is the keyless (sigstore) method, which needs its transparency-log entry.
        raise SignatureFormatError(f"{source}: a keyless (sigstore) bundle must carry tlogEntries; it has none")
    out.setdefault("tlogEntries", [])  # optional for key/certificate (OMS 11.1)
    legacy_key = None
    if kinds[0] == "publicKey":
        pk = material["publicKey"]
        if not isinstance(pk, dict):
            raise SignatureFormatError(f"{source}: verificationMaterial.publicKey must be a JSON object")
        hint = pk.get("hint")
        if hint is not None and not isinstance(hint, str):
            raise SignatureFormatError(f"{source}: verificationMaterial.publicKey.hint must be a string")
        if "rawBytes" in pk:
            legacy_key = _b64(pk["rawBytes"], "verificationMaterial.publicKey.rawBytes", source)
        # Neither is fine: the hint is optional (protobuf JSON writes an empty one as {}), and the
        # verifier brings the key anyway; the DSSE signature is what binds the bundle to it.
        # sigstore's model knows only "hint"; pre-v1.1 bundles carried rawBytes (+ keyDetails) instead.
        out["publicKey"] = {"hint": hint}
    elif kinds[0] == "x509CertificateChain":
        chain = material["x509CertificateChain"]
        certs = chain.get("certificates") if isinstance(chain, dict) else None
        if not isinstance(certs, list) or not certs:
            raise SignatureFormatError(f"{source}: verificationMaterial.x509CertificateChain has no certificates")
        for i, cert in enumerate(certs):
            raw = cert.get("rawBytes") if isinstance(cert, dict) else None
            _b64(raw, f"verificationMaterial.x509CertificateChain.certificates[{i}].rawBytes", source)
    return out, legacy_key

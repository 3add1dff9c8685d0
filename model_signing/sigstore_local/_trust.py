"""The ClientTrustConfig (trusted root + signing config) that describes a local instance to clients."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from model_signing.sigstore_local._ct import spki_sha256
from model_signing.sigstore_local._pki import ORGANIZATION

MEDIA_TYPE = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
SIGNING_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
OPERATOR = "modelseal-local"


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _log_instance(url: str, key: ec.EllipticCurvePublicKey, start: dt.datetime) -> dict[str, Any]:
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "baseUrl": url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": _b64(spki),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": {"start": _time(start)},
        },
        "logId": {"keyId": _b64(spki_sha256(key))},
    }


def _authority(common_name: str, url: str, chain: list[x509.Certificate]) -> dict[str, Any]:
    return {
        "subject": {"organization": ORGANIZATION, "commonName": common_name},
        "uri": url,
        "certChain": {
            "certificates": [{"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))} for c in chain]
        },
        # The chain is trusted from the moment its root was created.
        "validFor": {"start": _time(chain[-1].not_valid_before_utc)},
    }


def _service(url: str, start: dt.datetime, version: int = 1) -> dict[str, Any]:
    return {"url": url, "majorApiVersion": version, "validFor": {"start": _time(start)}, "operator": OPERATOR}


def _v2_log_instance(url: str, spki_der: bytes, log_id: bytes, start: dt.datetime) -> dict[str, Any]:
    # An Ed25519 log: its log id is the C2SP signed-note key hash (as on Sigstore's v2 logs), not SHA-256(SPKI).
    return {
        "baseUrl": url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {"rawBytes": _b64(spki_der), "keyDetails": "PKIX_ED25519", "validFor": {"start": _time(start)}},
        "logId": {"keyId": _b64(log_id)},
    }


def client_trust_config(
    *,
    base_url: str,
    oidc_url: str,
    tsa_url: str,
    fulcio_chain: list[x509.Certificate],
    ctlog_key: ec.EllipticCurvePublicKey,
    rekor_key: ec.EllipticCurvePublicKey,
    tsa_chain: list[x509.Certificate],
    keys_created: dt.datetime,
    rekor_v2: tuple[str, bytes, bytes, dt.datetime] | None = None,
    offer_rekor_v2: bool = False,
) -> dict[str, Any]:
    """The ClientTrustConfig document for an instance serving everything under ``base_url``.

    ``rekor_v2`` (URL, DER public key, log id, key creation time) lists a Rekor v2 log in the trusted root,
    so its entries verify; ``offer_rekor_v2`` also lists it in the signing config, beside v1 and under the
    same operator, so that the client signs to v2 (it takes the highest version per operator) unless told
    otherwise.
    """
    tlogs = [_log_instance(base_url, rekor_key, keys_created)]
    rekor_services = [_service(base_url, keys_created)]
    if rekor_v2 is not None:
        v2_url, v2_key, v2_log_id, v2_created = rekor_v2
        tlogs.append(_v2_log_instance(v2_url, v2_key, v2_log_id, v2_created))
        if offer_rekor_v2:
            rekor_services.insert(0, _service(v2_url, v2_created, version=2))
    trusted_root = {
        "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": tlogs,
        "certificateAuthorities": [_authority("local fulcio", base_url, fulcio_chain)],
        "ctlogs": [_log_instance(base_url, ctlog_key, keys_created)],
        "timestampAuthorities": [_authority("local timestamp authority", tsa_url, tsa_chain)],
    }
    signing_config = {
        "mediaType": SIGNING_CONFIG_MEDIA_TYPE,
        "caUrls": [_service(base_url, keys_created)],
        "oidcUrls": [_service(oidc_url, keys_created)],
        # v1 unless v2 is offered: the client prefers v2 whenever one is. The TSA is always offered, and
        # v2 needs it (a v2 entry carries no time).
        "rekorTlogUrls": rekor_services,
        "tsaUrls": [_service(tsa_url, keys_created)],
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaConfig": {"selector": "ANY"},
    }
    return {"mediaType": MEDIA_TYPE, "trustedRoot": trusted_root, "signingConfig": signing_config}

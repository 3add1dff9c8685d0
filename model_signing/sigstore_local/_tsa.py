"""The local RFC 3161 timestamp authority: ``POST /api/v1/timestamp``, DER request in, DER response out.

Responses are CMS SignedData over a TSTInfo, signed by a TSA leaf whose certificate (critical
id-kp-timeStamping EKU) chains to a TSA root; both are listed under ``timestampAuthorities`` in the
trusted root.  Signed attributes include the RFC 5816 ESSCertIDv2 binding of the signer certificate.
``asn1crypto`` builds and parses the ASN.1 (the sigstore client parses it with ``rfc3161-client``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from typing import Any

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from model_signing.sigstore_local import _pki
from model_signing.sigstore_local._errors import RequestRejected

_log = logging.getLogger("model_signing.sigstore_local")

# anyPolicy: this TSA has a single, unnamed policy.
POLICY_OID = "2.5.29.32.0"
TSA_LIFETIME = dt.timedelta(days=3650)
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


def tsa_certificate(
    *, key: ec.EllipticCurvePrivateKey, root_key: ec.EllipticCurvePrivateKey, root: x509.Certificate,
    not_before: dt.datetime,
) -> x509.Certificate:
    """The TSA signing certificate, issued by the TSA root."""
    start = not_before - _pki.CLOCK_SKEW
    return (
        x509.CertificateBuilder()
        .subject_name(_pki.name("local timestamp authority"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(_pki.serial_number())
        .not_valid_before(start)
        .not_valid_after(start + TSA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_pki.key_usage_digital_signature(), critical=True)
        # RFC 3161 section 2.3: the only EKU, and critical.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )


class TimestampAuthority:
    """Signs RFC 3161 timestamp tokens."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate, root: x509.Certificate) -> None:
        """Sign with ``key``, whose ``certificate`` is issued by ``root``."""
        self._key = key
        self.certificate = certificate
        self.root = root
        self._cert_der = certificate.public_bytes(serialization.Encoding.DER)

    @property
    def chain(self) -> list[x509.Certificate]:
        """TSA leaf then root: the trusted root's ``timestampAuthorities`` chain."""
        return [self.certificate, self.root]

    def timestamp(self, request_der: bytes) -> bytes:
        """Answer a DER TimeStampReq with a DER TimeStampResp (granted)."""
        try:
            request = tsp.TimeStampReq.load(request_der)
            version = request["version"].native
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
            req_policy = request["req_policy"].native
        except (ValueError, TypeError, KeyError) as exc:
            raise RequestRejected(400, f"body is not a DER RFC 3161 TimeStampReq: {exc}") from None
        if version != "v1":
            raise RequestRejected(400, f"unsupported TimeStampReq version {version!r}")
        if algorithm not in _DIGEST_SIZES or len(hashed) != _DIGEST_SIZES[algorithm]:
            raise RequestRejected(400, f"unsupported message imprint (hash {algorithm!r}, {len(hashed)} bytes)")
        if req_policy is not None and req_policy != POLICY_OID:
            raise RequestRejected(400, f"unsupported TSA policy {req_policy!r} (this TSA uses {POLICY_OID})")

        now = dt.datetime.now(dt.UTC)
        tst_fields: dict[str, Any] = {
            "version": "v1",
            "policy": POLICY_OID,
            "message_imprint": {"hash_algorithm": {"algorithm": algorithm}, "hashed_message": hashed},
            "serial_number": secrets.randbits(128),
            "gen_time": now,
            "accuracy": {"seconds": 1},
            "ordering": False,
        }
        if nonce is not None:
            tst_fields["nonce"] = nonce
        tst_info = tsp.TSTInfo(tst_fields)
        response = tsp.TimeStampResp(
            {
                "status": {"status": "granted"},
                "time_stamp_token": {"content_type": "signed_data", "content": self._signed_data(tst_info, cert_req)},
            }
        )
        _log.info("tsa: timestamped a %s digest", algorithm)
        return bytes(response.dump())

    def _signed_data(self, tst_info: tsp.TSTInfo, include_certificate: bool) -> cms.SignedData:
        tst_der = tst_info.dump()
        cert = asn1_x509.Certificate.load(self._cert_der)
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]},
                {
                    "type": "signing_certificate_v2",
                    "values": [{"certs": [{"cert_hash": hashlib.sha256(self._cert_der).digest()}]}],
                },
            ]
        )
        # CMS signs the DER of the attributes as a SET OF (not the [0] IMPLICIT form they are stored in).
        signature = self._key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {"issuer_and_serial_number": {"issuer": cert.issuer, "serial_number": cert.serial_number}}
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
                "signature": core.OctetString(signature),
            }
        )
        fields: dict[str, Any] = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info", "content": tst_info},
            "signer_infos": [signer_info],
        }
        # RFC 3161 section 2.4.1: the certificate is included only when the request asks for it.
        if include_certificate:
            fields["certificates"] = [cert]
        return cms.SignedData(fields)

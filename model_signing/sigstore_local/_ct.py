"""A certificate-transparency log key that issues embedded SCTs (RFC 6962) over precertificates.

The local instance does not run a CT log; like Fulcio it only needs the log's *promise*: a Signed
Certificate Timestamp over the precertificate (the final TBS certificate without the SCT-list extension,
bound to the issuer's key hash), embedded in the issued certificate.  The client checks it against the
``ctlogs`` key of the trusted root.
"""

from __future__ import annotations

import hashlib
import struct
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from model_signing.sigstore_local import _pki

# RFC 6962 section 3.3: the X.509v3 extension carrying the SCT list.
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
_SCT_V1 = 0
_SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP = 0
_ENTRY_TYPE_PRECERT = 1
_HASH_SHA256 = 4
_SIGNATURE_ECDSA = 3


def spki_sha256(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo: the RFC 6962 key id / log id of a key."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def _u24(n: int) -> bytes:
    if n >= 1 << 24:
        raise ValueError(f"TBS certificate too large for an SCT: {n} bytes")
    return n.to_bytes(3, "big")



class CTLog:
    """The CT log key: signs SCTs for precertificates."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        """Use ``key`` (its public half is listed under ``ctlogs`` in the trusted root)."""
        self.key = key
        self.log_id = spki_sha256(key.public_key())

    def sct(self, tbs_precertificate: bytes, issuer_key: ec.EllipticCurvePublicKey) -> bytes:
        """One serialized SCT (RFC 6962 section 3.2) over the given precertificate TBS."""
        timestamp_ms = int(time.time() * 1000)
        extensions = b""
        # The "digitally-signed" input: version, signature type, timestamp, entry type, then the
        # PreCert entry (issuer key hash + TBS, u24 length-prefixed) and the (empty) extensions.
        signed = (
            struct.pack("!BBQH", _SCT_V1, _SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP, timestamp_ms, _ENTRY_TYPE_PRECERT)
            + spki_sha256(issuer_key)
            + _u24(len(tbs_precertificate))
            + tbs_precertificate
            + struct.pack("!H", len(extensions))
            + extensions
        )
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return (
            struct.pack("!B", _SCT_V1)
            + self.log_id
            + struct.pack("!Q", timestamp_ms)
            + struct.pack("!H", len(extensions))
            + extensions
            + struct.pack("!BBH", _HASH_SHA256, _SIGNATURE_ECDSA, len(signature))
            + signature
        )

    def embed(
        self,
        builder: x509.CertificateBuilder,
        issuer_key: ec.EllipticCurvePrivateKey,
    ) -> x509.Certificate:
        """Sign ``builder`` into a certificate carrying an embedded SCT for it.

        The precertificate is the same builder signed without the SCT extension; since the builder is
        deterministic (serial, validity and extensions fixed) and the SCT list goes last, the final
        certificate's TBS minus that extension is byte-for-byte the TBS the SCT covers.
        """
        precert = builder.sign(issuer_key, hashes.SHA256())
        sct = self.sct(precert.tbs_certificate_bytes, issuer_key.public_key())
        sct_list = struct.pack("!H", len(sct)) + sct
        value = _pki.der(0x04, struct.pack("!H", len(sct_list)) + sct_list)
        final = builder.add_extension(
            x509.UnrecognizedExtension(SCT_LIST_OID, value), critical=False
        ).sign(issuer_key, hashes.SHA256())
        # Fail closed rather than hand out a certificate whose SCT cannot verify.
        if final.tbs_precertificate_bytes != precert.tbs_certificate_bytes:
            raise RuntimeError("precertificate TBS differs from the issued certificate's")
        return final

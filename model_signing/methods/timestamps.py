"""RFC 3161 trusted timestamps over a DSSE signature: request one from a timestamp authority (TSA), and verify
the ones a bundle carries against trusted TSA certificate chains (with ``rfc3161-client``).

A timestamp proves that the signature existed at its ``genTime``: the ``certificate`` method then checks the
signing certificate's validity at that time instead of now (a model signed while its certificate was valid
stays verifiable after the certificate expires), and every method reports the time.  Timestamps are taken,
as Sigstore takes them for keyless bundles, over the raw DSSE signature bytes (message imprint = SHA-256 of
the signature), and carried in ``verificationMaterial.timestampVerificationData.rfc3161Timestamps``.

Verification is strict: a timestamp that is present must verify (signed by a trusted TSA whose chain was
valid at ``genTime``, over this signature), or the signature is refused; a timestamp is never skipped.
The nonce is only checked when signing (the verifier does not know the request).

Trust material comes from PEM files (one TSA's chain per file: its root, optionally intermediates and the
TSA certificate), or from the ``timestampAuthorities`` of a Sigstore trusted root (also inside a
ClientTrustConfig), parsed with ``sigstore-models`` (not ``sigstore``, which is slow to import).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from model_signing._internal import strict_json as _strict_json
from model_signing._internal.files import MAX_TRUST_FILE, read_small_file
from model_signing._internal.types import PathLike
from model_signing.errors import InputError, KeyMaterialError, SigningError, VerificationError
from model_signing.results import TrustedTimestamp

if TYPE_CHECKING:
    from cryptography import x509
    from rfc3161_client import TimeStampResponse
    from sigstore_models.trustroot.v1 import CertificateAuthority

    from model_signing.oms.bundle import SignatureBundle

__all__ = [
    "DEFAULT_TIMEOUT",
    "TimestampAuthority",
    "TimestampTrust",
    "Timestamper",
    "TrustedTimestamp",
    "request_timestamp",
    "tsa_urls",
    "verify_timestamps",
    "verify_tokens",
]

#: Seconds a timestamp authority may take to connect or to send the next bytes (the Sigstore default).
DEFAULT_TIMEOUT = 60.0
#: As sigstore: more timestamps than this in one bundle is an attack on the verifier, not a use.
MAX_TIMESTAMPS = 32
#: A timestamp response is a few kilobytes (a token and a certificate or two).
MAX_RESPONSE = 1 << 20

_SHA256_OID = "2.16.840.1.101.3.4.2.1"
_HASHES = {_SHA256_OID: "sha256", "2.16.840.1.101.3.4.2.2": "sha384", "2.16.840.1.101.3.4.2.3": "sha512"}
_NO_TRUST_HINT = (
    "pass the timestamp authority's certificate chain with `timestamp_certificate_chain`, or a `trusted_root` "
    "or `trust_config` that lists it"
)


def check_timeout(timeout: float) -> float:
    """``timeout`` as a float, or :class:`InputError` unless it is a finite number of seconds above 0."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (0 < timeout < math.inf):
        raise InputError(f"`timeout` must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


def check_urls(urls: Sequence[str]) -> tuple[str, ...]:
    """The TSA URLs, each an http(s) URL (anything else is refused before any work is done)."""
    from urllib.parse import urlsplit

    out: list[str] = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(
                f"`timestamp_authorities`: {url!r} is not an http(s) URL of an RFC 3161 timestamp authority"
            )
        if url not in out:
            out.append(url)
    return tuple(out)


# -- signing: asking a TSA ------------------------------------------------------------------------------


def request_timestamp(url: str, signature: bytes, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """An RFC 3161 timestamp over ``signature`` from the TSA at ``url``: its DER TimeStampResp.

    The request asks for SHA-256, a nonce and the TSA's certificate (``certReq``), and is POSTed as
    ``application/timestamp-query``.  Every connect and read waits at most ``timeout`` seconds, and the
    whole exchange at most 3 x ``timeout`` + 10 s (a TSA that trickles its answer).  The answer must be a
    granted timestamp over this signature with the request's nonce; anything else is a
    :class:`SigningError` naming the TSA.
    """
    import urllib.error
    import urllib.request

    from rfc3161_client import HashAlgorithm, PKIStatus, TimestampRequestBuilder, decode_timestamp_response

    where = f"the timestamp authority at {url}"
    request = (
        TimestampRequestBuilder()
        .hash_algorithm(HashAlgorithm.SHA256)
        .data(signature)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    http = urllib.request.Request(  # the scheme was checked by check_urls
        url,
        data=request.as_bytes(),
        method="POST",
        headers={"Content-Type": "application/timestamp-query", "Accept": "application/timestamp-reply"},
    )
    deadline = time.monotonic() + 3 * timeout + 10.0
    try:
        with urllib.request.urlopen(http, timeout=timeout) as response:
            body = _read_bounded(response, deadline, where, timeout)
    except urllib.error.HTTPError as exc:
        detail = " ".join(exc.read(200).decode("utf-8", "replace").split()) if exc.fp is not None else ""
        raise SigningError(
            f"{where} refused the request (HTTP {exc.code}{': ' + detail if detail else ''})"
        ) from None
    except TimeoutError:
        raise SigningError(_no_answer(where, timeout)) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise SigningError(_no_answer(where, timeout)) from None
        reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise SigningError(
            f"cannot reach {where} ({reason}); check the network and the URL (`timestamp_authorities`)"
        ) from None
    except OSError as exc:
        raise SigningError(f"cannot reach {where} ({exc.strerror or exc})") from None
    try:
        stamp = decode_timestamp_response(body)
    except ValueError:
        raise SigningError(f"{where} did not answer with a DER RFC 3161 timestamp response") from None
    if stamp.status != PKIStatus.GRANTED:
        said = "; ".join(stamp.status_string) or "no reason given"
        raise SigningError(f"{where} did not grant the timestamp (PKI status {stamp.status}: {said})")
    imprint = stamp.tst_info.message_imprint
    if imprint.hash_algorithm.dotted_string != _SHA256_OID or imprint.message != hashlib.sha256(signature).digest():
        raise SigningError(f"{where} answered with a timestamp over other data than the signature")
    if stamp.tst_info.nonce != request.nonce:
        raise SigningError(f"{where} answered with a timestamp for another request (its nonce differs)")
    return bytes(stamp.as_bytes())


def _no_answer(where: str, timeout: float) -> str:
    return (
        f"{where} did not answer within {timeout:g} s; check that it is up and that the URL is right, or allow "
        "a longer `timeout`"
    )


def _read_bounded(response: Any, deadline: float, where: str, timeout: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise SigningError(_no_answer(where, timeout))
        # read1: what one receive brings, so a TSA that trickles bytes cannot hold one call past the deadline.
        chunk = response.read1(64 << 10)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_RESPONSE:
            raise SigningError(f"{where} sent more than {MAX_RESPONSE >> 20} MiB; that is no timestamp response")
        chunks.append(chunk)


def tsa_urls(trust_config: PathLike) -> tuple[str, ...]:
    """The TSA URLs of a ClientTrustConfig's signing config that are valid now, chosen as sigstore does.

    One service per operator; the ``tsaConfig`` selector then keeps all of them (``ALL``), the first
    ``count`` (``EXACT``) or the first one (``ANY``, and no selector).
    """
    config = _load_trust_config(trust_config)
    now = dt.datetime.now(dt.UTC)
    by_operator: dict[str, str] = {}
    for service in config.signing_config.tsa_urls:
        if service.valid_for is not None and not _in_range(now, service.valid_for.start, service.valid_for.end):
            continue
        by_operator.setdefault(service.operator, service.url)
    urls = list(by_operator.values())
    selector = config.signing_config.tsa_config
    if selector is not None and selector.selector.value != "ALL":
        urls = urls[: (selector.count or 1) if selector.selector.value == "EXACT" else 1]
    if not urls:
        raise InputError(
            f"`trust_config` file {os.fspath(trust_config)} lists no timestamp authority valid now; pass its URL "
            "with `timestamp_authorities`"
        )
    return tuple(urls)


@dataclass(frozen=True)
class Timestamper:
    """The TSAs a key or certificate signer asks for a timestamp over each signature (none: no timestamp)."""

    urls: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def configure(
        cls,
        timestamp_authorities: Sequence[str] = (),
        *,
        trust_config: PathLike | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Timestamper:
        """The URLs given, then those of the ``trust_config``'s signing config; checked now, before any hashing."""
        if isinstance(timestamp_authorities, str):
            timestamp_authorities = [timestamp_authorities]
        urls = [*timestamp_authorities, *(tsa_urls(trust_config) if trust_config is not None else ())]
        return cls(check_urls(urls), check_timeout(timeout))

    def stamp(self, signature: bytes) -> list[bytes]:
        """One timestamp over ``signature`` from each TSA, in order (the first failure is a SigningError)."""
        return [request_timestamp(url, signature, timeout=self.timeout) for url in self.urls]


# -- verification: trusted TSAs -------------------------------------------------------------------------


@dataclass(frozen=True)
class TimestampAuthority:
    """A timestamp authority the verifier trusts: the roots its TSA certificate must chain to.

    ``certificate`` (the TSA's own certificate), when known, must be the one that signed; ``valid_from`` /
    ``valid_until`` (a trusted root's ``validFor``) bound the times it is trusted to vouch for.
    """

    name: str
    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    certificate: x509.Certificate | None = None
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None

    @classmethod
    def from_pem(cls, path: PathLike) -> TimestampAuthority:
        """One TSA from a PEM file holding its chain: the root (self-signed), intermediates, and optionally
        the TSA certificate itself (the one with the timeStamping extended key usage)."""
        from cryptography import x509

        from model_signing.keymaterial.certificates import cert_is_ca, is_self_signed, load_certificates

        certs = load_certificates([path], "timestamp certificate chain file")
        roots = [c for c in certs if is_self_signed(c)]
        if not roots:
            raise KeyMaterialError(
                f"timestamp certificate chain file {os.fspath(path)} holds no self-signed root certificate; give "
                "the timestamp authority's chain up to its root CA (`timestamp_certificate_chain`)"
            )
        leaf: x509.Certificate | None = None
        intermediates = []
        for cert in certs:
            if cert in roots:
                continue
            try:
                ca = cert_is_ca(cert)
            except x509.ExtensionNotFound:
                ca = False
            if not ca and leaf is None and _is_tsa_certificate(cert):
                leaf = cert
            else:
                intermediates.append(cert)
        name = (leaf or roots[0]).subject.rfc4514_string()
        return cls(name=name, roots=tuple(roots), intermediates=tuple(intermediates), certificate=leaf)

    @classmethod
    def from_trusted_root_entry(cls, entry: CertificateAuthority, where: str) -> TimestampAuthority:
        """A ``timestampAuthorities`` entry of a Sigstore trusted root (chain: TSA certificate first, root last)."""
        from cryptography import x509

        try:
            chain = [x509.load_der_x509_certificate(c.raw_bytes) for c in entry.cert_chain.certificates]
        except ValueError:
            raise InputError(f"{where}: a timestampAuthorities certificate is not DER X.509") from None
        if not chain:
            raise InputError(f"{where}: a timestampAuthorities entry has no certificates")
        subject = entry.subject
        name = ", ".join(p for p in (subject.common_name, subject.organization) if p)
        name = name or chain[0].subject.rfc4514_string()
        valid = entry.valid_for
        start, end = _utc(valid.start), _utc(valid.end)
        if len(chain) == 1:
            return cls(name=name, roots=(chain[0],), valid_from=start, valid_until=end)
        return cls(
            name=name, roots=(chain[-1],), intermediates=tuple(chain[1:-1]), certificate=chain[0],
            valid_from=start, valid_until=end,
        )


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    """A ``validFor`` bound as an aware UTC time: protobuf JSON times are UTC, so one written without an
    offset ("2026-01-01T00:00:00") means UTC -- and must still compare with the timestamps' aware times."""
    if when is None:
        return None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _is_tsa_certificate(cert: x509.Certificate) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in eku


@dataclass(frozen=True)
class TimestampTrust:
    """The timestamp authorities a key or certificate verifier trusts (none: a timestamp cannot verify)."""

    authorities: tuple[TimestampAuthority, ...] = ()

    @classmethod
    def load(
        cls,
        timestamp_certificate_chain: Sequence[PathLike] = (),
        *,
        trusted_root: PathLike | None = None,
        trust_config: PathLike | None = None,
    ) -> TimestampTrust:
        """The TSAs of the PEM chain files, plus those of a trusted root or a ClientTrustConfig file."""
        if trusted_root is not None and trust_config is not None:
            raise InputError("`trusted_root` and `trust_config` are exclusive; pass only one")
        found = [TimestampAuthority.from_pem(p) for p in timestamp_certificate_chain]
        if trusted_root is not None or trust_config is not None:
            if trusted_root is not None:
                root, where = _load_trusted_root(trusted_root), f"`trusted_root` file {os.fspath(trusted_root)}"
            else:
                assert trust_config is not None
                root, where = _load_trust_config(trust_config).trusted_root, (
                    f"`trust_config` file {os.fspath(trust_config)}"
                )
            entries = [TimestampAuthority.from_trusted_root_entry(e, where) for e in root.timestamp_authorities]
            if not entries:
                raise InputError(f"{where} lists no timestamp authority (timestampAuthorities is empty)")
            found += entries
        return cls(tuple(found))


def verify_timestamps(
    bundle: SignatureBundle, authorities: Sequence[TimestampAuthority], *, no_trust_hint: str = _NO_TRUST_HINT
) -> tuple[TrustedTimestamp, ...]:
    """Verify every RFC 3161 timestamp ``bundle`` carries; the verified times (empty when it carries none).

    Each must be a granted timestamp over the bundle's DSSE signature, signed by one of ``authorities``
    (its chain valid at the timestamp's time, within the authority's trusted period); the first that
    does not is a :class:`VerificationError` naming it.  A timestamp with no authority to check it
    against is refused too (fail closed), with ``no_trust_hint`` saying what to pass.
    """
    return verify_tokens(
        bundle.rfc3161_timestamps, bundle.signature, authorities, source=bundle.source, no_trust_hint=no_trust_hint
    )


def verify_tokens(
    tokens: Sequence[bytes],
    signature: bytes,
    authorities: Sequence[TimestampAuthority],
    *,
    source: str,
    no_trust_hint: str = _NO_TRUST_HINT,
) -> tuple[TrustedTimestamp, ...]:
    """:func:`verify_timestamps` for DER tokens over ``signature`` from the bundle at ``source``."""
    if not tokens:
        return ()
    count = len(tokens)
    if count > MAX_TIMESTAMPS:
        raise VerificationError(f"{source} carries {count} RFC 3161 timestamps; at most {MAX_TIMESTAMPS} are accepted")
    if len(set(tokens)) != count:
        raise VerificationError(f"{source} carries the same RFC 3161 timestamp twice")
    if not authorities:
        raise VerificationError(
            f"{source} carries {'an RFC 3161 timestamp' if count == 1 else f'{count} RFC 3161 timestamps'} "
            f"but no timestamp authority is trusted to verify it; {no_trust_hint}"
        )
    return tuple(
        _verify_one(token, signature, authorities, _which(i, count, source)) for i, token in enumerate(tokens)
    )


def _which(index: int, count: int, source: str) -> str:
    if count == 1:
        return f"the RFC 3161 timestamp in {source}"
    return f"RFC 3161 timestamp {index + 1} of {count} in {source}"


def _verify_one(
    token: bytes, signature: bytes, authorities: Sequence[TimestampAuthority], what: str
) -> TrustedTimestamp:
    from rfc3161_client import VerificationError as TimestampVerificationError
    from rfc3161_client import VerifierBuilder, decode_timestamp_response

    try:
        stamp = decode_timestamp_response(token)
        info = stamp.tst_info
        algorithm = info.message_imprint.hash_algorithm.dotted_string
        imprint = info.message_imprint.message
    except ValueError:
        raise VerificationError(f"{what} is not a DER RFC 3161 timestamp response (altered?)") from None
    if algorithm not in _HASHES:
        raise VerificationError(f"{what} uses an unsupported message imprint hash ({algorithm})")
    if imprint != hashlib.new(_HASHES[algorithm], signature).digest():
        raise VerificationError(
            f"{what} is not over this signature (its message imprint is the hash of other data: a timestamp "
            "taken from another signature)"
        )
    signer = _signer_certificate(stamp)
    candidates = [a for a in authorities if signer is None or _may_have_signed(a, signer)]
    if not candidates:
        assert signer is not None
        trusted = "; ".join(a.name for a in authorities)
        raise VerificationError(
            f"{what} was signed by {_describe(signer)}, which is not one of the trusted timestamp authorities "
            f"({trusted})"
        )
    problems: list[str] = []
    when = info.gen_time if info.gen_time.tzinfo is not None else info.gen_time.replace(tzinfo=dt.UTC)
    for authority in candidates:
        builder = VerifierBuilder()
        if authority.certificate is not None:
            builder = builder.tsa_certificate(authority.certificate)
        for root in authority.roots:
            builder = builder.add_root_certificate(root)
        for cert in authority.intermediates:
            builder = builder.add_intermediate_certificate(cert)
        try:
            builder.build().verify(stamp, imprint)
        except (TimestampVerificationError, ValueError) as exc:
            problems.append(f"{authority.name}: {_reason(exc)}")
            continue
        if not _in_range(when, authority.valid_from, authority.valid_until):
            problems.append(f"{authority.name} is not trusted for timestamps made at {when:%Y-%m-%d %H:%M:%S} UTC")
            continue
        tsa = signer if signer is not None else authority.certificate
        return TrustedTimestamp(
            time=when,
            tsa=tsa.subject.rfc4514_string() if tsa is not None else authority.name,
            tsa_serial=f"{tsa.serial_number:x}" if tsa is not None else "",
            serial=f"{info.serial_number:x}",
        )
    raise VerificationError(f"{what} does not verify (altered, or not signed by a trusted TSA): {'; '.join(problems)}")


def _reason(exc: Exception) -> str:
    """rfc3161-client's error in a few words (OpenSSL's error stack is no message for a user)."""
    text = " ".join(str(exc).split())
    if "signature failure" in text:
        return "the TSA's signature over the token does not verify"
    if "certificate verify error" in text or "unable to get" in text:
        return "the TSA certificate does not chain to the trusted root at the timestamp's time"
    return text.split(" ErrorStack(")[0][:200]


def _signer_certificate(stamp: TimeStampResponse) -> x509.Certificate | None:
    """The embedded certificate the token's SignerInfo names (``None`` if the token carries none)."""
    from cryptography import x509

    infos = list(stamp.signed_data.signer_infos)
    if len(infos) != 1:
        return None
    for der in stamp.signed_data.certificates:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            continue
        if cert.issuer == infos[0].issuer and cert.serial_number == infos[0].serial_number:
            return cert
    return None


def _may_have_signed(authority: TimestampAuthority, signer: x509.Certificate) -> bool:
    """Whether ``signer`` is the authority's TSA certificate, or was issued by one of its CA certificates.

    Only a pre-check for a clear message ("signed by a TSA that is not trusted"); rfc3161-client's
    verification is what decides.
    """
    from model_signing.keymaterial.certificates import issued_by

    if authority.certificate is not None:
        return signer == authority.certificate
    return any(issued_by(signer, ca) for ca in (*authority.intermediates, *authority.roots))


def _describe(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string()} (serial {cert.serial_number:x})"


def describe_token(token: bytes) -> dict[str, Any]:
    """What a timestamp token says, unverified (for ``inspect``): ``time``, ``tsa``, ``tsa_serial``, ``serial``.

    ``tsa`` is the embedded certificate that the SignerInfo names, else the token's ``tsa`` name, else
    ``None``.  Raises ``ValueError`` when ``token`` is not a DER timestamp response.
    """
    from rfc3161_client import decode_timestamp_response

    stamp = decode_timestamp_response(token)
    info = stamp.tst_info
    signer = _signer_certificate(stamp)
    tsa: str | None = signer.subject.rfc4514_string() if signer is not None else None
    if tsa is None:
        try:
            value = info.name.value  # the TSTInfo's optional tsa GeneralName
            tsa = value.rfc4514_string() if hasattr(value, "rfc4514_string") else str(value)
        except (ValueError, AttributeError):
            tsa = None
    when = info.gen_time if info.gen_time.tzinfo is not None else info.gen_time.replace(tzinfo=dt.UTC)
    return {
        "time": when,
        "tsa": tsa,
        "tsa_serial": f"{signer.serial_number:x}" if signer is not None else None,
        "serial": f"{info.serial_number:x}",
    }


def _in_range(when: dt.datetime, start: dt.datetime | None, end: dt.datetime | None) -> bool:
    return (start is None or start <= when) and (end is None or when < end)


# -- trust files ----------------------------------------------------------------------------------------


def _read_json(path: PathLike, option: str) -> bytes:
    """The file's bytes, once they are known to be a JSON object without duplicate keys or runaway depth."""
    raw = read_small_file(path, f"{option} file", limit=MAX_TRUST_FILE)
    try:
        doc = _strict_json.loads(raw)
    except _strict_json.StrictJSONError as exc:
        raise InputError(f"{option} file {os.fspath(path)} {exc.reason}; it is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InputError(f"{option} file {os.fspath(path)} is not a JSON object")
    return raw


def _load_trust_config(path: PathLike) -> Any:
    from sigstore_models.trustroot.v1 import ClientTrustConfig

    raw = _read_json(path, "`trust_config`")
    try:
        # JSON mode: the strict models take timestamps as RFC 3339 strings only there.
        return ClientTrustConfig.from_json(raw)
    except ValueError as exc:
        raise InputError(
            f"`trust_config` file {os.fspath(path)} is not a Sigstore ClientTrustConfig ({_first_error(exc)})"
        ) from None


def _load_trusted_root(path: PathLike) -> Any:
    from sigstore_models.trustroot.v1 import TrustedRoot

    raw = _read_json(path, "`trusted_root`")
    try:
        return TrustedRoot.from_json(raw)
    except ValueError as exc:
        raise InputError(
            f"`trusted_root` file {os.fspath(path)} is not a Sigstore trusted root ({_first_error(exc)})"
        ) from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc or 'top level'}: {first.get('msg')}"
    return str(exc)

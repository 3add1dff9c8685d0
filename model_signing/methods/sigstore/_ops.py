"""The Sigstore operations, as run inside the helper process (see ``_sigstore_service``).

Everything Sigstore-specific is done by the ``sigstore`` library: the identity token, the Fulcio
certificate, the DSSE signature, the Rekor entry, the RFC 3161 timestamp, and on verification the
certificate chain, SCT, inclusion proof, checkpoint, SET, timestamps and the identity policy.  This
module only turns its results into plain values and its errors into ours (one line a user can act on).

It imports sigstore at module level on purpose: the helper imports it while the caller hashes.

Deadlines: sigstore 4.5's Fulcio and Rekor clients call ``requests`` without a timeout (a service that
accepts the connection and never answers would hang the helper forever), its timestamp client uses 5 s
and TUF 30 s per read.  :func:`install_deadlines` gives every request of this process the caller's timeout
instead, without touching sigstore's files: the helper runs nothing but these operations, so a process-wide
default is exactly the request's deadline.
"""

from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING, Any

from cryptography import x509
from sigstore.dsse import Statement
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle, InvalidBundle, TrustedRoot
from sigstore.oidc import IdentityError, IdentityToken
from sigstore.sign import Signer, SigningContext
from sigstore.verify import Verifier

from model_signing.errors import (
    InputError,
    KeyMaterialError,
    SignatureFormatError,
    SigningError,
    VerificationError,
)
from model_signing.methods.sigstore import _deadline
from model_signing.methods.sigstore._token import one_line, unusable_token
from model_signing.methods.sigstore._trust import load_trust_config, signing_trust_config, verification_trusted_root
from model_signing.methods.sigstore._wire import Prepared, RootSpec, TrustSpec, service_at
from model_signing.methods.sigstore.identity import IdentityPolicy, certificate_identities
from model_signing.results import SignerIdentity, TrustedTimestamp

if TYPE_CHECKING:
    from collections.abc import Callable

    from sigstore.models import ClientTrustConfig

_IN_TOTO = "application/vnd.in-toto+json"


_handles = itertools.count(1)
_signers: dict[int, Signer] = {}
_roots: dict[RootSpec, TrustedRoot] = {}


request_timeout = _deadline.request_timeout


def run(operation: str, args: tuple[object, ...], timeout: float, contacting: Callable[[str], None]) -> object:
    """Run ``OPERATIONS[operation](*args)`` with every network operation bounded by ``timeout`` seconds.

    ``contacting`` is called with each URL before it is requested (the helper tells the parent).
    """
    _deadline.current.timeout, _deadline.current.contacting = timeout, contacting  # the one request in flight
    try:
        return OPERATIONS[operation](*args)
    finally:
        _deadline.current.reset()


def _bounded(given: Any) -> Any:
    # An explicit timeout stays if it is shorter; ``None`` (wait forever) and longer ones become ours.
    if isinstance(given, tuple):
        return tuple(_bounded(part) for part in given)
    if isinstance(given, int | float) and not isinstance(given, bool) and 0 < given <= _deadline.current.timeout:
        return given
    return _deadline.current.timeout


_installed: list[bool] = []


def install_deadlines() -> None:
    """Bound every ``requests`` call and every TUF download of this process by the current request's timeout.

    Called once by the helper (never in the caller's process, whose own requests keep their defaults).
    """
    import requests
    from tuf.ngclient import urllib3_fetcher

    if _installed:
        return
    _installed.append(True)
    request = requests.Session.request

    @functools.wraps(request)
    def bounded_request(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        # ``timeout`` is Session.request's 7th parameter after ``url`` (sigstore passes it by name, if at all).
        if len(args) > 6:
            args = (*args[:6], _bounded(args[6]), *args[7:])
        else:
            kwargs["timeout"] = _bounded(kwargs.get("timeout"))
        _deadline.current.contacting(str(url))
        return request(self, method, url, *args, **kwargs)

    requests.Session.request = bounded_request  # type: ignore[method-assign,assignment]

    fetcher = urllib3_fetcher.Urllib3Fetcher
    init, fetch = fetcher.__init__, fetcher.fetch

    @functools.wraps(init)
    def bounded_init(self: urllib3_fetcher.Urllib3Fetcher, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.socket_timeout = _bounded(self.socket_timeout)

    @functools.wraps(fetch)
    def noted_fetch(self: urllib3_fetcher.Urllib3Fetcher, url: str) -> Any:
        _deadline.current.contacting(url)
        return fetch(self, url)

    fetcher.__init__ = bounded_init  # type: ignore[method-assign]
    fetcher.fetch = noted_fetch  # type: ignore[method-assign,assignment]


def prepare_signer(trust: TrustSpec, raw_token: str, client_id: str, origin: str) -> Prepared:
    """Check the token, then get an ephemeral key and its Fulcio certificate (with the SCT checked)."""
    try:
        token = IdentityToken(raw_token, client_id=client_id)
    except IdentityError as exc:
        raise unusable_token(origin, raw_token, client_id, exc) from None
    if trust.config is not None:
        config = trust.config
    elif trust.path is not None:
        config = load_trust_config(trust.path)
    else:
        config = signing_trust_config(None, trust.staging)
    context = _signing_context(config, trust.rekor_version)
    try:
        # cache=True is required: with cache=False sigstore 4.5 generates a fresh ephemeral key on every
        # access, so the certificate and the DSSE signature would belong to different keys.  It is also
        # what makes the certificate requested here the one used by sign() later.
        signer = Signer(token, context, cache=True)
        # sigstore has no public accessor for the certificate it just obtained; this returns the cached one
        # (no second request), whose identity and expiry the caller needs before signing.
        certificate = signer._signing_cert()
    except Exception as exc:  # noqa: BLE001 - sigstore's service clients raise assorted (partly private) types
        raise SigningError(signing_failure(exc)) from None
    handle = next(_handles)
    _signers[handle] = signer
    identity = signer_identity(certificate)
    return Prepared(
        handle=handle,
        token_identity=f"{token.identity} via {token.issuer}",
        certificate_identity=identity.description,
        not_after=certificate.not_valid_after_utc.timestamp(),
        certificate_signer=identity,
    )


def _signing_context(config: ClientTrustConfig, rekor_version: int | None) -> SigningContext:
    """sigstore's signing context for ``config``, its log chosen as sigstore does or forced to ``rekor_version``."""
    from sigstore._internal.rekor.client_v2 import RekorV2Client

    # sigstore's own switch: keep only the signing config's logs of that major API version.
    config.force_tlog_version = rekor_version
    try:
        context = SigningContext.from_trust_config(config)
    except SigstoreError as exc:
        if rekor_version is not None and "Rekor" in str(exc):
            raise InputError(
                f"the signing config offers no usable Rekor v{rekor_version} transparency log (asked for with "
                "`rekor_version`); sign to the version it offers, or use an instance that offers this one"
            ) from None
        raise SigningError(signing_failure(exc)) from None
    except Exception as exc:  # noqa: BLE001 - as in prepare_signer
        raise SigningError(signing_failure(exc)) from None
    # A Rekor v2 entry carries no integrated time: without an RFC 3161 timestamp the bundle could never
    # verify (sigstore only warns when no timestamp authority answers), so refuse before any work.
    if isinstance(context._rekor, RekorV2Client) and not context._tsa_clients:
        raise InputError(
            "the signing config selects a Rekor v2 log but lists no timestamp authority (tsaUrls); v2 entries "
            "carry no time, so a timestamp is required: add one, or sign to Rekor v1 with `rekor_version`"
        )
    return context


def sign(handle: int, payload: bytes) -> str:
    """Sign ``payload`` (the canonical statement) as DSSE with a prepared signer; the bundle's JSON."""
    signer = _signers[handle]
    try:
        signed = signer.sign_dsse(Statement(payload))
    except InvalidBundle as exc:
        if "inclusion promise or signed timestamp" not in str(exc):
            raise SigningError(signing_failure(exc)) from None
        # sigstore only warns when every timestamp authority failed; with a Rekor v2 entry, which carries no
        # time, the bundle then has no verified time at all and sigstore refuses to assemble it.
        raise SigningError(
            "the timestamp authority gave no timestamp (see the warning above) and the Rekor v2 entry carries "
            "no time, so no verifiable signature could be made; retry, or sign to Rekor v1 with `rekor_version`"
        ) from None
    except Exception as exc:  # noqa: BLE001 - as in prepare_signer
        raise SigningError(signing_failure(exc)) from None
    return signed.to_json()


def forget_signer(handle: int) -> None:
    """Drop a prepared signer (its ephemeral private key) once it is no longer needed."""
    _signers.pop(handle, None)


def verify(
    raw_bundle: bytes, source: str, policy: IdentityPolicy, roots: RootSpec
) -> tuple[bytes, str, SignerIdentity, tuple[TrustedTimestamp, ...]]:
    """Run sigstore's DSSE verification with the identity policy; the verified payload, the signer and the
    verified RFC 3161 timestamps (each one present must verify).

    The signer comes as a line and as fields: the verified certificate's SAN identity and OIDC issuer.
    """
    root = _roots.get(roots)
    if root is None:
        root = _roots[roots] = verification_trusted_root(
            trust_config=roots.trust_config, trusted_root=roots.trusted_root, staging=roots.staging,
            offline=roots.offline,
        )
    try:
        bundle = Bundle.from_json(raw_bundle)
    except InvalidBundle as exc:
        if "inclusion promise or signed timestamp" in str(exc):
            # Well-formed, but nothing proves when it was signed (a Rekor v2 entry has no integrated time and
            # the RFC 3161 timestamp is gone): a signature that does not verify, not malformed input.
            raise VerificationError(
                f"{source} does not verify: no verified signing time (the transparency log entry carries none "
                "and the bundle has no RFC 3161 timestamp)"
            ) from None
        raise SignatureFormatError(f"{source}: not a valid keyless bundle: {one_line(exc)}") from None
    except ValueError as exc:
        raise SignatureFormatError(f"{source}: malformed keyless bundle ({one_line(exc)})") from None
    try:
        payload_type, payload = Verifier(trusted_root=root).verify_dsse(bundle, policy.to_sigstore())
    except SigstoreError as exc:
        # sigstore reports a certificate from another instance as a failed chain build ("candidates
        # exhausted"); say which root was used and what to pass instead.
        reason = foreign_certificate(bundle.signing_certificate, root, roots) or one_line(exc, limit=300)
        raise VerificationError(f"{source} does not verify for {policy.describe()}: {reason}") from None
    if payload_type != _IN_TOTO:
        raise VerificationError(f"{source}: DSSE payload type {payload_type!r} is not {_IN_TOTO}")
    stamps = rfc3161_timestamps(bundle, root, source)
    identity = signer_identity(bundle.signing_certificate)
    return payload, f"{identity.description} (Sigstore certificate)", identity, stamps


def rfc3161_timestamps(bundle: Bundle, root: TrustedRoot, source: str) -> tuple[TrustedTimestamp, ...]:
    """Verify every RFC 3161 timestamp of a keyless bundle against the trusted root's timestamp authorities.

    sigstore needs only one verified time and skips a timestamp that does not verify when the log's
    integrated time is there (a corrupted timestamp went unnoticed); here a timestamp that is present
    must verify, as for the key and certificate methods.
    """
    from model_signing.methods import timestamps as _timestamps

    data = bundle._inner.verification_material.timestamp_verification_data
    tokens = [t.signed_timestamp for t in data.rfc3161_timestamps] if data is not None else []
    if not tokens:
        return ()
    authorities = [
        _timestamps.TimestampAuthority.from_trusted_root_entry(entry, "the trusted root")
        for entry in root._inner.timestamp_authorities
    ]
    return _timestamps.verify_tokens(
        tokens, bundle.signature, authorities, source=source,
        no_trust_hint="pass the `trust_config` or `trusted_root` of the instance that signed it",
    )


def foreign_certificate(cert: x509.Certificate, root: TrustedRoot, roots: RootSpec) -> str | None:
    """Why ``cert`` cannot chain to ``root``, if none of the root's Fulcio CAs issued it; else ``None``."""
    from model_signing.keymaterial.certificates import issued_by

    try:
        authorities = root.get_fulcio_certs()
    except SigstoreError:
        authorities = []
    if any(issued_by(cert, ca) for ca in authorities):
        return None
    if roots.trusted_root is not None:
        in_use = f"`trusted_root={roots.trusted_root!r}`"
    elif roots.trust_config is not None:
        in_use = f"`trust_config={roots.trust_config!r}`"
    else:
        in_use = "staging" if roots.staging else "public-good"
    return (
        f"the signing certificate was not issued by the trusted root in use ({in_use}); pass the "
        "`trust_config` of the instance that signed it"
    )


def oidc_url(trust: TrustSpec) -> str | None:
    """The OIDC issuer the signing config names (the default for the interactive flow), if any."""
    if trust.config is not None:
        config = trust.config
    else:
        config = load_trust_config(trust.path) if trust.path else signing_trust_config(None, trust.staging)
    try:
        return config.signing_config.get_oidc_url()
    except Exception:  # noqa: BLE001 - a config without an OIDC URL just has no interactive default
        return None


#: What the helper process may be asked to run, by name.
OPERATIONS: dict[str, Callable[..., object]] = {
    "prepare_signer": prepare_signer,
    "sign": sign,
    "forget_signer": forget_signer,
    "verify": verify,
}


def certificate_identity(cert: x509.Certificate) -> str:
    """``<SAN identities> via <OIDC issuer>`` from a Fulcio certificate."""
    return signer_identity(cert).description


def signer_identity(cert: x509.Certificate) -> SignerIdentity:
    """The ``sigstore`` signer of a Fulcio certificate: its SAN identities and OIDC issuer, as fields."""
    from asn1crypto.core import UTF8String

    names = certificate_identities(cert)
    issuer: str | None = None
    for oid in ("1.3.6.1.4.1.57264.1.8", "1.3.6.1.4.1.57264.1.1"):
        try:
            extension = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
            value: bytes = getattr(extension.value, "value", b"")
        except x509.ExtensionNotFound:
            continue
        try:
            # .1.8 holds a DER UTF8String (any length form); the legacy .1.1 the raw string bytes.
            issuer = str(UTF8String.load(value).native) if oid.endswith(".8") else value.decode(errors="replace")
        except ValueError:
            continue
        break
    return SignerIdentity(
        method="sigstore",
        identity=names[0] if names else None,
        issuer=issuer,
        certificate_subject=cert.subject.rfc4514_string() or None,
        certificate_issuer=cert.issuer.rfc4514_string() or None,
        certificate_serial=f"{cert.serial_number:x}",
        identities=tuple(names),
    )


# sigstore's service-client errors (private classes, not ``sigstore.errors.Error``), by class name.
_SERVICES = {
    "FulcioClientError": "the Fulcio CA",
    "RekorClientError": "the Rekor transparency log",
    "TimestampError": "the timestamp authority",
}



def signing_failure(exc: Exception) -> str:
    """One line naming the service that failed and why.

    sigstore often raises its client errors without a message (the HTTP status and the service's own
    explanation sit in the chained ``requests`` exception), so the cause chain is searched.
    """
    import requests

    if isinstance(exc, KeyMaterialError | SigningError):
        return str(exc)
    service = next((_SERVICES[c.__name__] for c in type(exc).__mro__ if c.__name__ in _SERVICES), None)
    chain: list[BaseException] = [exc]
    while len(chain) < 8 and (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(nxt)
    url = next((u for link in chain if isinstance(u := getattr(getattr(link, "request", None), "url", None), str)),
               None)
    if any(isinstance(link, requests.Timeout) for link in chain):
        where = f"{service or service_at(url)} at {url}" if url else service or "a Sigstore service"
        return (
            f"{where} did not answer within {_deadline.current.timeout:g} s; check that the service is up and that "
            "the trust config names the right URL, or allow a longer timeout"
        )
    for link in chain:
        response = getattr(link, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            detail = _response_message(response)
            return (
                f"{service or 'a Sigstore service'} refused the request (HTTP {status} from "
                f"{getattr(response, 'url', '?')}{': ' + detail if detail else ''})"
            )
    if any(isinstance(link, OSError) for link in chain):  # requests' ConnectionError is an OSError
        if service is None and url is not None:
            service = service_at(url)
        # The innermost OS error says it best ("Connection refused"); requests' own message is a repr pile.
        reason = next((link.strerror for link in reversed(chain) if isinstance(link, OSError) and link.strerror),
                      None) or one_line(next(link for link in chain if isinstance(link, OSError)), limit=200)
        where = f" at {url}" if url else ""
        return (
            f"cannot reach {service or 'the Sigstore instance'}{where} ({reason}); check the network and the "
            "instance's URLs (`trust_config`)"
        )
    messages = list(dict.fromkeys(m for link in chain if (m := " ".join(str(link).split()))))
    where = f" at {service}" if service else ""
    return f"Sigstore signing failed{where}: {'; '.join(messages) or type(exc).__name__}"


def _response_message(response: object) -> str:
    try:
        body = response.json()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not JSON: fall back to the text
        body = None
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return " ".join(body[key].split())
    text = " ".join(str(getattr(response, "text", "")).split())
    return text[:200]



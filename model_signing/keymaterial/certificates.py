"""Certificates and chains for the ``certificate`` method (via ``cryptography``): loading, usage and
validity checks, chain building and verification, and the signer identity of a leaf.

Unusable input becomes :class:`~model_signing.errors.KeyMaterialError` with a message naming the file and
what to do; certificate problems found while verifying become :class:`~model_signing.errors.VerificationError`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from model_signing._internal.files import MAX_CERTIFICATE_FILE
from model_signing._internal.types import PathLike
from model_signing.errors import KeyMaterialError, VerificationError

if TYPE_CHECKING:
    from cryptography import x509

    from model_signing.keymaterial.algorithms import PublicKey
    from model_signing.results import SignerIdentity

from model_signing.keymaterial.keys import check_key, read_material


def load_certificates(paths: Sequence[PathLike], what: str) -> list[x509.Certificate]:
    """All certificates in the given PEM files (each may hold several), in order."""
    from cryptography import x509

    certs: list[x509.Certificate] = []
    for path in paths:
        data = read_material(path, what, MAX_CERTIFICATE_FILE)
        try:
            found = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise KeyMaterialError(f"{what} {os.fspath(path)} holds no PEM certificate") from None
        certs.extend(found)
    return certs


def public_key_of(cert: x509.Certificate, where: str) -> PublicKey:
    """The certificate's public key (EC or Ed25519; other key types are refused)."""
    key = cert.public_key()
    check_key(key, where)
    return key  # type: ignore[return-value]  # checked by check_key


def certificate_signer(leaf: x509.Certificate) -> SignerIdentity:
    """The ``certificate`` method's signer: the leaf's subject and issuer, serial and key."""
    from model_signing.oms.bundle import public_key_hint
    from model_signing.results import SignerIdentity

    key = public_key_of(leaf, "the signing certificate")
    subject, issuer = leaf.subject.rfc4514_string(), leaf.issuer.rfc4514_string()
    return SignerIdentity(
        method="certificate", identity=subject, issuer=issuer, key_id=f"sha256:{public_key_hint(key)}",
        key_algorithm=check_key(key, "the signing certificate").label,
        certificate_subject=subject, certificate_issuer=issuer,
        certificate_serial=f"{leaf.serial_number:x}",
    )


def describe_certificate(cert: x509.Certificate) -> str:
    """``subject (issued by issuer, serial N)`` for reports."""
    return f"{cert.subject.rfc4514_string()} (issued by {cert.issuer.rfc4514_string()}, serial {cert.serial_number:x})"


def signing_usage_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert`` may not sign code, or ``None`` if it may.

    When present, KeyUsage must allow digitalSignature and ExtendedKeyUsage must include codeSigning;
    a certificate with neither extension says nothing about its purpose and is refused too.
    """
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        ku: x509.KeyUsage | None = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    try:
        eku: x509.ExtendedKeyUsage | None = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if ku is None and eku is None:
        return "it has neither KeyUsage nor ExtendedKeyUsage, so nothing says it may sign code"
    if ku is not None and not ku.digital_signature:
        return "its KeyUsage does not allow digitalSignature"
    if eku is not None and ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        return "its ExtendedKeyUsage does not include codeSigning"
    return None


def validity_problem(cert: x509.Certificate, at: dt.datetime) -> str | None:
    """Why ``cert`` is not valid at ``at``, or ``None``."""
    if at < cert.not_valid_before_utc:
        return f"it is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
    if at > cert.not_valid_after_utc:
        return f"it expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    return None


def is_self_signed(cert: x509.Certificate) -> bool:
    """``cert`` names itself as issuer and its signature verifies with its own key."""
    return cert.issuer == cert.subject and issued_by(cert, cert)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """``issuer``'s name is ``cert``'s issuer name and ``issuer``'s key made ``cert``'s signature."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


#: A longer chain than this is not worth diagnosing (cryptography's own depth limit is 8).
_MAX_DEPTH = 16


def chain_problem(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: dt.datetime,
) -> str | None:
    """What keeps ``leaf`` from chaining to ``roots`` through ``intermediates``, in words, or ``None``.

    cryptography's path builder only says "candidates exhausted" when no path exists; this walks the
    certificates by issuer name and signature to name what is missing (the issuer that is not given, a
    certificate of the same name that did not sign, a self-signed root that is not trusted, an expired
    link).  ``None`` means a path exists by name, signature and validity, so the cause is elsewhere.
    """
    anchors = {_der(c) for c in roots}
    pool = list({_der(c): c for c in [*intermediates, *roots]}.values())
    current, role = leaf, "the leaf"
    for _ in range(_MAX_DEPTH):
        if _der(current) in anchors:
            return None
        if current is not leaf and is_self_signed(current):
            return (
                f"the chain ends at the self-signed root {_name(current)}, which is not among the trusted "
                "certificates (the signature was made under another root)"
            )
        if current is leaf and is_self_signed(leaf):
            return (
                "it is self-signed and not among the trusted certificates; to trust it, pass the signing "
                "certificate itself with `certificate_chain`"
            )
        issuer_name = current.issuer.rfc4514_string()
        named = [c for c in pool if c.subject == current.issuer and _der(c) != _der(current)]
        if not named:
            what = (
                f"the leaf's issuer {issuer_name}"
                if current is leaf
                else f"the issuer {issuer_name} of {role} {_name(current)}"
            )
            hint = "the intermediate" if current is leaf else "it (or the root above it)"
            return f"{what} is not among the given certificates; pass {hint} with `certificate_chain`"
        issuers = [c for c in named if issued_by(current, c)]
        if not issuers:
            return (
                f"{role} {_name(current)} was not signed by the certificate named {issuer_name} among the given "
                "certificates (a different key under the same name: the chain leads to another CA)"
            )
        # Prefer a trusted issuer: that ends the path.
        issuer = next((c for c in issuers if _der(c) in anchors), issuers[0])
        problem = validity_problem(issuer, at)
        if problem:
            return f"the CA certificate {_name(issuer)} is not valid now: {problem}"
        current, role = issuer, "the intermediate"
    return None


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: dt.datetime,
    *,
    strict: bool = False,
    timestamped: bool = False,
) -> list[x509.Certificate]:
    """Build and check a path from ``leaf`` to one of ``roots`` at time ``at``; return it (leaf first).

    ``timestamped`` says that ``at`` is the time of the signature's verified RFC 3161 timestamp (not now),
    for the messages.

    Uses cryptography's RFC 5280 / CA/B-style path validation (``PolicyBuilder``) with WebPKI CA rules
    (basicConstraints, keyCertSign, path length, signature algorithms, validity of every certificate).
    For the leaf, the WebPKI server/client EKU and SAN rules do not apply to code signing, so those two
    extensions are allowed freely there and the signing usage is checked by :func:`signing_usage_problem`.

    Unless ``strict``, the leaf is held to what the reference implementations (model-signing and the Go
    implementation, both on OpenSSL-style validation) require of it, so PKIs that work there work here:
    its basicConstraints may say ``CA:TRUE`` (openssl's default configuration makes such leaves) and it
    need not carry an AuthorityKeyIdentifier; a self-signed leaf may be its own trust anchor.  What
    matters for a signature is still checked: the path to a given anchor, validity, digitalSignature
    usage and the codeSigning EKU when an EKU is present.  ``strict`` applies RFC 5280's end-entity rules.
    """
    from cryptography import x509
    from cryptography.x509.verification import (
        Criticality,
        ExtensionPolicy,
        PolicyBuilder,
        Store,
    )
    from cryptography.x509.verification import VerificationError as X509VerificationError

    subject = leaf.subject.rfc4514_string()
    problem = validity_problem(leaf, at)
    if problem and timestamped:
        raise VerificationError(
            f"the signing certificate {subject} was not valid when the signature was timestamped "
            f"({at:%Y-%m-%d %H:%M:%S} UTC): {problem}"
        )
    if problem:
        raise VerificationError(
            f"the signing certificate {subject} is not valid now: {problem}; the signature carries no "
            "timestamp, so the certificate must be valid when verifying (signatures with an RFC 3161 "
            "timestamp, made with `timestamp_authorities`, are checked at the time they were made)"
        )
    problem = signing_usage_problem(leaf)
    if problem:
        raise VerificationError(f"the signing certificate {subject} may not sign: {problem}")
    if strict:
        _check_strict_leaf(leaf, roots)
    ee_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    )
    if not strict:
        ee_policy = ee_policy.may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, None).may_be_present(
            x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None
        )
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(roots)))
            .time(at)
            .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
            .build_client_verifier()
        )
        return list(verifier.verify(leaf, list(intermediates)).chain)
    except X509VerificationError as exc:
        # cryptography's "candidates exhausted" says nothing a user can act on: name what is missing.
        reason = chain_problem(leaf, intermediates, roots, at) or _forbidden_algorithm(str(exc)) or (
            str(exc).removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
        )
        raise VerificationError(
            f"the signing certificate {subject} does not chain to the given certificate chain roots: {reason}"
        ) from None
    except ValueError as exc:  # e.g. an empty store
        raise KeyMaterialError(f"cannot verify the certificate chain: {exc}") from None


def _forbidden_algorithm(message: str) -> str | None:
    """cryptography's words for a CA key or certificate signature its path validation does not allow, in ours.

    Its WebPKI rules allow only RSA and ECDSA (P-256/P-384/P-521) keys in CA certificates and for certificate
    signatures; an Ed25519 *leaf* key is fine, an Ed25519 CA is not.
    """
    if "Forbidden public key algorithm" in message or "Forbidden signature algorithm" in message:
        return (
            "a CA certificate in the chain uses an Ed25519 key or signature (or another algorithm X.509 path "
            "validation here does not allow); CA certificates must use ECDSA P-256/P-384/P-521 or RSA keys "
            "(an Ed25519 signing certificate issued by such a CA works)"
        )
    return None


def _check_strict_leaf(leaf: x509.Certificate, roots: Sequence[x509.Certificate]) -> None:
    """RFC 5280's end-entity rules that the default mode relaxes, each with its own clear message."""
    from cryptography import x509

    subject = leaf.subject.rfc4514_string()
    try:
        ca = cert_is_ca(leaf)
    except x509.ExtensionNotFound:
        ca = False
    if ca:
        raise VerificationError(
            f"the signing certificate {subject} has basicConstraints CA:TRUE, which RFC 5280 forbids in a "
            "signing (end-entity) certificate; strict X.509 validation refuses it (it is accepted without "
            "`strict=True`)"
        )
    if _der(leaf) in {_der(c) for c in roots}:
        raise VerificationError(
            f"the signing certificate {subject} is itself one of the trusted certificates; strict X.509 "
            "validation needs a CA above it (it is accepted without `strict=True`)"
        )


def cert_is_ca(cert: x509.Certificate) -> bool:
    """The certificate's basicConstraints say ``CA:TRUE`` (raises ``ExtensionNotFound`` without them)."""
    from cryptography import x509

    return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)


def check_signing_chain(
    leaf: x509.Certificate, chain: Sequence[x509.Certificate], at: dt.datetime, where: str
) -> list[str]:
    """Check at signing time that ``leaf`` + ``chain`` will verify; return warnings, raise on a broken chain.

    Walks up from the leaf by issuer name and signature through ``chain``:

    * it reaches a self-signed certificate (or the leaf is self-signed): the path is checked with the same
      rules as :func:`verify_chain`, with that certificate as the anchor; any failure is refused;
    * it stops at the leaf while ``chain`` is not empty, or at a certificate whose issuer's name is in
      ``chain`` under another key: the chain given is broken and refused, naming the issuer;
    * it stops at the leaf with no chain given, or at an intermediate whose issuer is not given: the anchor
      is legitimately unknown here (the verifier brings it), so this is a warning naming the issuer the
      verifier must trust; the part given is still checked with its top certificate as the anchor.

    Certificates in ``chain`` that are not on the leaf's path are reported as warnings.
    """
    path = [leaf]
    current = leaf
    warnings: list[str] = []
    complete = False
    for _ in range(_MAX_DEPTH):
        if is_self_signed(current):
            complete = True
            break
        issuers = [c for c in chain if _der(c) not in {_der(p) for p in path} and issued_by(current, c)]
        if not issuers:
            break
        current = issuers[0]
        path.append(current)
    issuer_name = current.issuer.rfc4514_string()
    if not complete:
        role = "it" if current is leaf else f"the intermediate {_name(current)}"
        if any(c.subject == current.issuer and _der(c) != _der(current) for c in chain):
            # The issuer's name is there but its key did not sign: a certificate from another CA, never right.
            raise KeyMaterialError(
                f"{where} does not chain up through the given certificates: the certificate named {issuer_name} "
                f"in the chain did not sign {role} (a different key: another CA's certificate); pass the "
                "certificates that issued it with `certificate_chain`"
            )
        if current is leaf and chain:
            raise KeyMaterialError(
                f"{where} does not chain up through the given certificates: the leaf's issuer {issuer_name} is "
                f"not in the certificate chain given ({'; '.join(_name(c) for c in chain)}); pass the leaf's "
                "issuer (and the intermediates above it) with `certificate_chain`"
            )
        if current is leaf:
            warnings.append(
                f"the signature carries only the signing certificate: verifiers must trust its issuer "
                f"{issuer_name} (pass the intermediates with `certificate_chain` if that is not a root they have)"
            )
        else:
            warnings.append(
                f"the certificate chain ends at {_name(current)}, whose issuer {issuer_name} is not given: "
                f"verifiers must trust {issuer_name} (or a certificate below it)"
            )
    on_path = {_der(p) for p in path}
    warnings.extend(
        f"certificate {_name(c)} in the chain is not on the signing certificate's path; it is included anyway"
        for c in chain
        if _der(c) not in on_path
    )
    # The same validation the verifier will run, trusting the top of what was given.
    try:
        verify_chain(leaf, path[1:-1], [current], at)
    except VerificationError as exc:
        raise KeyMaterialError(f"{where}: its chain would not verify: {exc}") from None
    return warnings

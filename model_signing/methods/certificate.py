"""The ``certificate`` method: a private key with its X.509 certificate chain (PEM), verified against trusted roots.

The bundle carries the chain, leaf first (``verificationMaterial.x509CertificateChain``); the verifier brings
the trusted root certificates.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from model_signing._internal.types import PathLike
from model_signing.errors import KeyMaterialError
from model_signing.keymaterial import certificates as _certs
from model_signing.keymaterial.sources import HoldsCertificate, SigningKey
from model_signing.methods import _dsse
from model_signing.methods import timestamps as _timestamps
from model_signing.methods.base import VerifiedSignature, require_method
from model_signing.methods.key import load_private
from model_signing.oms import bundle as _bundle
from model_signing.results import SignerIdentity

if TYPE_CHECKING:
    from cryptography import x509
    from sigstore_models.bundle.v1 import Bundle

    from model_signing.keymaterial.algorithms import Algorithm, PrivateKey
    from model_signing.oms.bundle import SignatureBundle

NAME = "certificate"


def claims(material: Mapping[str, Any], media_type: str) -> bool:
    """A bundle is a ``certificate`` one when it carries a certificate chain (checked after ``sigstore``,
    which claims the chains of pre-v0.3 keyless bundles)."""
    return "x509CertificateChain" in material


class CertificateSigner:
    """The ``certificate`` method: a private key, its leaf certificate and the chain above it (PEM)."""

    method = NAME

    def __init__(
        self,
        private_key: PathLike | PrivateKey | SigningKey,
        signing_certificate: PathLike | x509.Certificate | None = None,
        certificate_chain: Sequence[PathLike] = (),
        *,
        password: str | bytes | None = None,
        timestamp_authorities: Sequence[str] = (),
        trust_config: PathLike | None = None,
        timeout: float = _timestamps.DEFAULT_TIMEOUT,
    ):
        """Load the key, the leaf certificate and the chain; check that they belong together.

        ``timestamp_authorities`` (RFC 3161 TSA URLs), and the TSAs of a ``trust_config`` file's signing
        config, are each asked for a timestamp over the signature (``timeout`` seconds per connect or
        read): with one, the signature stays verifiable after the certificate expires.
        ``private_key`` may be a ``pkcs11:`` URI (a key on a token); ``signing_certificate`` may then be left
        out when the token holds the key's certificate (same id or label).

        The leaf must hold the key's public key, be valid now and allow code signing (KeyUsage
        digitalSignature, ExtendedKeyUsage codeSigning when present), and the leaf plus the chain must
        chain up with the verifier's rules (see :func:`model_signing.keymaterial.certificates.check_signing_chain`) --
        refusing here avoids writing a signature nobody can verify.  Where the trust anchor is
        legitimately unknown here (the chain ends below a root), :attr:`warnings` says which issuer
        verifiers must trust.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._timestamper = _timestamps.Timestamper.configure(
            timestamp_authorities, trust_config=trust_config, timeout=timeout
        )
        self._key = load_private(private_key, password)
        extra: list[x509.Certificate] = []
        if signing_certificate is None:
            stored = self._key.certificate() if isinstance(self._key, HoldsCertificate) else None
            if stored is None:
                raise KeyMaterialError(
                    "no `signing_certificate` given, and the private key's token holds no certificate for it; "
                    "pass `signing_certificate`"
                    if isinstance(self._key, HoldsCertificate)
                    else "pass `signing_certificate` (the private key's leaf certificate)"
                )
            leaf, where = stored, "the signing certificate stored on the token"
        elif isinstance(signing_certificate, x509.Certificate):
            leaf, where = signing_certificate, "the signing certificate"
        else:
            where = f"signing certificate {os.fspath(signing_certificate)}"
            leaf, *extra = _certs.load_certificates([signing_certificate], "signing certificate")
        spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if leaf.public_key().public_bytes(*spki) != self._key.public_key().public_bytes(*spki):
            raise KeyMaterialError(f"{where} does not belong to the private key (their public keys differ)")
        problem = _certs.validity_problem(leaf, dt.datetime.now(dt.UTC))
        if problem:
            raise KeyMaterialError(f"{where} cannot be used: {problem}")
        problem = _certs.signing_usage_problem(leaf)
        if problem:
            raise KeyMaterialError(f"{where} cannot be used for signing: {problem}")
        chain = [*extra, *_certs.load_certificates(certificate_chain, "certificate chain file")]
        #: What the caller should tell the user about the chain (e.g. the issuer verifiers must trust);
        #: a chain that cannot verify was refused above.
        self.warnings: tuple[str, ...] = tuple(
            _certs.check_signing_chain(leaf, chain, dt.datetime.now(dt.UTC), where)
        )
        self._chain: list[x509.Certificate] = [leaf, *chain]

    @property
    def identity(self) -> SignerIdentity:
        """The leaf certificate's subject, issuer, serial and key."""
        return _certs.certificate_signer(self._chain[0])

    @property
    def timestamp_authorities(self) -> tuple[str, ...]:
        """The RFC 3161 TSA URLs asked for a timestamp over each signature, in order."""
        return self._timestamper.urls

    @property
    def description(self) -> str:
        """The leaf certificate's subject and issuer."""
        return self.identity.description

    @property
    def algorithm(self) -> Algorithm:
        """The leaf key's algorithm (whether model-signing 1.1.1 verifies it: ``peer_verifies``)."""
        from model_signing.keymaterial.keys import check_key

        return check_key(self._key.public_key(), "the private key")

    def check_own(self, bundle: SignatureBundle) -> bytes:
        """The payload when ``bundle`` carries this signer's leaf certificate and its signature verifies with
        the leaf's key (see ``ChecksOwnSignatures``)."""
        from model_signing.errors import VerificationError

        require_method(bundle, self.method)
        chain = bundle.certificate_chain()
        if not chain or chain[0] != self._chain[0]:
            raise VerificationError(f"{bundle.source} was not signed with this signing certificate")
        return _dsse.check_dsse(self._key.public_key(), bundle, "the signing certificate's key")[0]

    def sign(self, payload: bytes) -> Bundle:
        """The leaf key's signature over the DSSE PAE (ECDSA or PureEdDSA); the bundle carries the chain, leaf first,
        and an RFC 3161 timestamp over the signature from each configured TSA."""
        signature = _dsse.sign_pae(self._key, payload)
        return _bundle.assemble(
            payload, signature, _bundle.certificate_material(self._chain), timestamps=self._timestamper.stamp(signature)
        )


class CertificateVerifier:
    """The ``certificate`` method: trusted root certificates (PEM) that the bundle's chain must lead to.

    Without a timestamp, the chain is validated *now*: every certificate must be within its validity
    period at verification time, so a signature made with a certificate that has since expired stops
    verifying.  A bundle with RFC 3161 timestamps has them verified first (with the timestamp authorities
    of ``timestamp_certificate_chain``, ``trusted_root`` or ``trust_config``; a timestamp that does not
    verify, or one with no trusted TSA to check it, is refused) and the chain validated at each
    timestamp's time instead: the signature stays valid after the certificate expires.  ``at``
    overrides the time (for audits).

    By default the signing certificate is held to what the reference implementations accept (see
    :func:`model_signing.keymaterial.certificates.verify_chain`): basicConstraints ``CA:TRUE`` in the leaf and a
    self-signed leaf given as its own trusted certificate are accepted.  ``strict=True`` applies RFC 5280's
    end-entity rules and refuses both.
    """

    method = NAME

    def __init__(
        self,
        certificate_chain: Sequence[PathLike] | Sequence[x509.Certificate],
        *,
        at: dt.datetime | None = None,
        strict: bool = False,
        timestamp_certificate_chain: Sequence[PathLike] = (),
        trusted_root: PathLike | None = None,
        trust_config: PathLike | None = None,
    ):
        """Load the trusted certificates (each PEM file may hold several) and the trusted timestamp authorities."""
        from cryptography import x509

        certs = list(certificate_chain)
        if certs and all(isinstance(c, x509.Certificate) for c in certs):
            self._roots: list[x509.Certificate] = certs  # type: ignore[assignment]
        else:
            paths = [c for c in certs if isinstance(c, str | os.PathLike)]
            if len(paths) != len(certs):
                raise TypeError("certificate_chain takes file paths or x509.Certificate objects, not a mix")
            self._roots = _certs.load_certificates(paths, "certificate chain file")
        if not self._roots:
            raise KeyMaterialError("no trusted certificates given; pass the root CA with `certificate_chain`")
        self._at = at
        self._strict = strict
        self._tsa = _timestamps.TimestampTrust.load(
            timestamp_certificate_chain, trusted_root=trusted_root, trust_config=trust_config
        )

    def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
        """Validate the bundle's chain to the trusted roots, then the signature with the leaf's key."""
        require_method(bundle, self.method)
        leaf, *intermediates = bundle.certificate_chain()
        stamps = _timestamps.verify_timestamps(bundle, self._tsa.authorities)
        # A verified timestamp says when the signature existed: the chain must have been valid then.
        times = [self._at] if self._at is not None else sorted({s.time for s in stamps}) or [dt.datetime.now(dt.UTC)]
        for at in times:
            _certs.verify_chain(leaf, intermediates, self._roots, at, strict=self._strict, timestamped=bool(stamps))
        key = _certs.public_key_of(leaf, "the signing certificate")
        payload, legacy_encoding = _dsse.check_dsse(key, bundle, "the signing certificate's key")
        identity = _certs.certificate_signer(leaf)
        return VerifiedSignature(payload, identity.description, legacy_encoding, identity, timestamps=stamps)

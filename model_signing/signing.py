"""Signing a model (public API): hash -> canonical statement -> DSSE -> Sigstore bundle -> file.

```python
import model_signing as ms

signer = ms.KeySigner("signing-key.pem", password=os.environ["KEY_PASSWORD"])
result = ms.sign("path/to/model", signer)            # writes path/to/model.sig's sibling "model.sig"
print(result.signature_path, result.root_digest)
```

A :class:`Signer` turns the canonical statement payload into a Sigstore bundle; the methods differ only
there (``key``, ``certificate`` here; keyless ``sigstore`` wraps sigstore's ``Signer.sign_dsse`` the same
way, passing ``sigstore.dsse.Statement(payload)`` so the exact canonical bytes are what gets signed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from model_signing import _bundle, _keymaterial, _statement
from model_signing.errors import (
    InputError,
    KeyMaterialError,
    ModelSigningError,
    SignatureExistsError,
    SigningError,
)
from model_signing.hashing import HashingConfig, hash_model
from model_signing.manifest import Manifest

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from sigstore_models.bundle.v1 import Bundle

PathLike = str | os.PathLike[str]

#: The default signature file name, written beside the model (never inside the hashed tree).
DEFAULT_SIGNATURE_NAME = "model.sig"


@runtime_checkable
class Signer(Protocol):
    """Signs canonical statement payload bytes into a Sigstore bundle (sigstore's bundle model)."""

    #: ``"key"``, ``"certificate"`` or ``"sigstore"``: what ``verify <method>`` checks it with.
    method: str

    @property
    def description(self) -> str:
        """Who signs, for reports (a key fingerprint, a certificate subject, an identity)."""
        ...

    def sign(self, payload: bytes) -> Bundle:
        """Sign the DSSE envelope of ``payload`` (in-toto JSON) and return the complete bundle."""
        ...


class KeySigner:
    """The ``key`` method: an EC private key (P-256, P-384 or P-521), PEM, optionally encrypted."""

    method = "key"

    def __init__(self, private_key: PathLike | ec.EllipticCurvePrivateKey, *, password: str | bytes | None = None):
        """Load ``private_key`` (a PEM file path, or a key object) and decrypt it with ``password``."""
        self._key = _load_key(private_key, password)

    @property
    def description(self) -> str:
        """``P-256 key sha256:<hint>``."""
        pub = self._key.public_key()
        return f"{_keymaterial.curve_name(pub)} key sha256:{_bundle.public_key_hint(pub)}"

    def sign(self, payload: bytes) -> Bundle:
        """ECDSA over the DSSE PAE of ``payload``, with the hash that matches the curve."""
        return _bundle.assemble(payload, _sign_pae(self._key, payload), _bundle.key_material(self._key.public_key()))


class CertificateSigner:
    """The ``certificate`` method: a private key, its leaf certificate and the chain above it (PEM)."""

    method = "certificate"

    def __init__(
        self,
        private_key: PathLike | ec.EllipticCurvePrivateKey,
        signing_certificate: PathLike,
        certificate_chain: Sequence[PathLike] = (),
        *,
        password: str | bytes | None = None,
    ):
        """Load the key, the leaf certificate and the chain; check that they belong together.

        The leaf must hold the key's public key, be valid now and allow code signing (KeyUsage
        digitalSignature, ExtendedKeyUsage codeSigning when present) -- the verifier checks the same, so
        refusing here avoids writing a signature nobody can verify.
        """
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._key = _load_key(private_key, password)
        where = f"signing certificate {os.fspath(signing_certificate)}"
        leaf, *extra = _keymaterial.load_certificates([signing_certificate], "signing certificate")
        spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        if leaf.public_key().public_bytes(*spki) != self._key.public_key().public_bytes(*spki):
            raise KeyMaterialError(f"{where} does not belong to the private key (their public keys differ)")
        problem = _keymaterial.validity_problem(leaf, dt.datetime.now(dt.UTC))
        if problem:
            raise KeyMaterialError(f"{where} cannot be used: {problem}")
        problem = _keymaterial.signing_usage_problem(leaf)
        if problem:
            raise KeyMaterialError(f"{where} cannot be used for signing: {problem}")
        self._chain: list[x509.Certificate] = [
            leaf,
            *extra,
            *_keymaterial.load_certificates(certificate_chain, "certificate chain file"),
        ]

    @property
    def description(self) -> str:
        """The leaf certificate's subject and issuer."""
        return "certificate " + _keymaterial.describe_certificate(self._chain[0])

    def sign(self, payload: bytes) -> Bundle:
        """ECDSA over the DSSE PAE with the leaf's key; the bundle carries the chain, leaf first."""
        return _bundle.assemble(payload, _sign_pae(self._key, payload), _bundle.certificate_material(self._chain))


def _load_key(
    private_key: PathLike | ec.EllipticCurvePrivateKey, password: str | bytes | None
) -> ec.EllipticCurvePrivateKey:
    if isinstance(private_key, str | os.PathLike):
        return _keymaterial.load_private_key(private_key, password)
    _keymaterial.check_ec(private_key, "the private key")
    return private_key


def _sign_pae(key: ec.EllipticCurvePrivateKey, payload: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec

    return key.sign(_bundle.pae(payload), ec.ECDSA(_keymaterial.signature_hash(key)))


@dataclass(frozen=True)
class SignResult:
    """What :func:`sign` did."""

    model_path: str
    signature_path: str
    method: str
    signer: str
    #: The signed manifest (its resources, serialization and model name).
    manifest: Manifest
    #: The statement subject digest (hex): SHA-256 over the resource digests.
    root_digest: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (``sign --json``)."""
        return {
            "model_path": self.model_path,
            "signature_path": self.signature_path,
            "method": self.method,
            "signer": self.signer,
            "model_name": self.manifest.model_name,
            "root_digest": self.root_digest,
            "resources": len(self.manifest.resources),
            "serialization": self.manifest.serialization.to_dict(),
        }


def default_signature_path(model_path: PathLike) -> str:
    """``model.sig`` in the directory that contains the model (beside it, outside the hashed tree)."""
    parent = os.path.dirname(os.path.abspath(os.fspath(model_path)))
    return os.path.join(parent, DEFAULT_SIGNATURE_NAME)


def _check_bundle_size(payload: bytes, resources: int) -> None:
    # The bundle carries the statement in base64, plus certificates and log entries (well under 64 KiB);
    # a bundle over the limit readers apply (MAX_SIGNATURE_FILE) could never be verified.
    from model_signing._files import MAX_SIGNATURE_FILE

    estimate = (len(payload) + 2) // 3 * 4 + (64 << 10)
    if estimate > MAX_SIGNATURE_FILE:
        raise InputError(
            f"the signature would be about {estimate >> 20} MiB ({resources} resources), more than the "
            f"{MAX_SIGNATURE_FILE >> 20} MiB a signature may be; sign fewer resources (larger shards, or the "
            "model in parts)"
        )


def sign(
    model_path: PathLike,
    signer: Signer,
    *,
    hashing: HashingConfig | None = None,
    signature_path: PathLike | None = None,
    overwrite: bool = False,
) -> SignResult:
    """Sign the model at ``model_path`` with ``signer`` and write the bundle to ``signature_path``.

    ``hashing`` defaults to ``HashingConfig()`` (files, sha256); ``signature_path`` defaults to
    :func:`default_signature_path`.  An existing signature is only replaced with ``overwrite=True``; the
    file is written to a temporary name and renamed into place, so a crash never leaves a half-written
    signature, and the model itself is only read.  Raises :class:`SignatureExistsError`,
    :class:`~model_signing.errors.InputError` subclasses for bad inputs and :class:`SigningError` if the
    signer fails.
    """
    model = os.fspath(model_path)
    if not os.path.lexists(model):
        raise InputError(f"model {model} does not exist; give the path of a model directory or file")
    sig_path = os.fspath(signature_path) if signature_path is not None else default_signature_path(model)
    if os.path.isdir(sig_path):
        raise InputError(f"signature path {sig_path} is a directory; give a file name such as {DEFAULT_SIGNATURE_NAME}")
    if not overwrite and os.path.lexists(sig_path):
        raise SignatureExistsError(f"signature {sig_path} already exists; pass --overwrite to replace it")
    if overwrite and os.path.lexists(sig_path) and _inside_model(model, sig_path):
        # --overwrite replaces an old signature, never a model file that happens to be named like one.
        try:
            _bundle.read_bundle(sig_path)
        except InputError:
            raise InputError(
                f"refusing to overwrite {sig_path}: it is part of the model and not a signature; choose another "
                "--signature path"
            ) from None
    sig_dir = os.path.dirname(os.path.abspath(sig_path))
    if not os.path.isdir(sig_dir):
        raise InputError(f"cannot write signature {sig_path}: directory {sig_dir} does not exist")

    config = hashing if hashing is not None else HashingConfig()
    # A signer that prepares in the background (sigstore: its certificate) can stop the hashing at once.
    poll = getattr(signer, "raise_if_failed", None)
    manifest = _statement.canonical_manifest(hash_model(model, config, signature_path=sig_path, poll=poll))
    payload = _statement.statement_payload(manifest)
    _check_bundle_size(payload, len(manifest.resources))  # before the signer's irreversible work (Rekor)
    try:
        bundle = signer.sign(payload)
    except ModelSigningError:  # already a message for the user (a Sigstore helper failure among them)
        raise
    except Exception as exc:
        raise SigningError(f"the {signer.method} signer failed: {exc}") from exc
    text = _bundle.bundle_json(bundle)
    # Never write what we could not read back: a cheap structural round trip.
    _bundle.parse_bundle(text.encode("utf-8"), source="the new signature")
    write_atomic(sig_path, text, overwrite=overwrite)
    return SignResult(
        model_path=model,
        signature_path=sig_path,
        method=signer.method,
        signer=signer.description,
        manifest=manifest,
        root_digest=manifest.root_digest().hex(),
    )


def _inside_model(model: str, path: str) -> bool:
    model_real, path_real = os.path.realpath(model), os.path.realpath(path)
    if not os.path.isdir(model_real):
        return path_real == model_real
    return path_real.startswith(model_real.rstrip(os.sep) + os.sep)


def write_atomic(path: str, text: str, *, overwrite: bool) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and an atomic rename.

    Without ``overwrite`` the final step is a hard link, which fails if ``path`` appeared meanwhile,
    so a concurrent writer is never clobbered.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write signature {path} ({exc.strerror}); choose another --signature path") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a signature is public: the usual file mode, not mkstemp's 0600
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise SignatureExistsError(f"signature {path} already exists; pass --overwrite to replace it") from None
            except OSError:
                # Filesystems without hard links: fall back to a rename after a last existence check.
                if os.path.lexists(path):
                    raise SignatureExistsError(
                        f"signature {path} already exists; pass --overwrite to replace it"
                    ) from None
                os.replace(tmp, path)
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

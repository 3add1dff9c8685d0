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
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from model_signing import _bundle, _keymaterial, _statement, _walk
from model_signing.errors import (
    InputError,
    KeyMaterialError,
    ModelSigningError,
    SignatureExistsError,
    SigningError,
)
from model_signing.hashing import HashingConfig, digest_model
from model_signing.results import SignerIdentity, SignResult

__all__ = [
    "DEFAULT_SIGNATURE_NAME",
    "CertificateSigner",
    "IdentifiedSigner",
    "KeySigner",
    "SignResult",
    "Signer",
    "SignerIdentity",
    "default_signature_path",
    "sign",
    "write_atomic",
]

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from sigstore_models.bundle.v1 import Bundle

PathLike = str | os.PathLike[str]

#: The default signature file name, written beside the model (never inside the hashed tree).
DEFAULT_SIGNATURE_NAME = "model.sig"

#: ``signature_path`` for "write no file, give me the bundle": :func:`sign` returns it in
#: ``SignResult.bundle_json`` (the CLI's ``--signature -`` prints it on stdout).
TO_CALLER = "-"


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


@runtime_checkable
class Preparing(Protocol):
    """A signer with slow preparation of its own (keyless: the Fulcio certificate), started on request.

    :func:`sign` calls :meth:`start` once the destination of the signature is known to be writable and
    right before hashing, so the preparation overlaps the hash but never happens for a signature that
    could not be written.
    """

    def start(self) -> None:
        """Begin preparing in the background (idempotent); errors surface later, in ``sign``."""


@runtime_checkable
class IdentifiedSigner(Signer, Protocol):
    """A :class:`Signer` that also says who signs as fields (every built-in one does)."""

    @property
    def identity(self) -> SignerIdentity:
        """Who signs, structured (valid once :meth:`sign` has returned)."""
        ...


class KeySigner:
    """The ``key`` method: an EC private key (P-256, P-384 or P-521), PEM, optionally encrypted."""

    method = "key"

    def __init__(self, private_key: PathLike | ec.EllipticCurvePrivateKey, *, password: str | bytes | None = None):
        """Load ``private_key`` (a PEM file path, or a key object) and decrypt it with ``password``."""
        self._key = _load_key(private_key, password)

    @property
    def identity(self) -> SignerIdentity:
        """The key id (``sha256:<hint>``) and curve."""
        return _keymaterial.key_signer(self._key.public_key())

    @property
    def description(self) -> str:
        """``P-256 key sha256:<hint>``."""
        return self.identity.description

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
        digitalSignature, ExtendedKeyUsage codeSigning when present), and the leaf plus the chain must
        chain up with the verifier's rules (see :func:`model_signing._keymaterial.check_signing_chain`) --
        refusing here avoids writing a signature nobody can verify.  Where the trust anchor is
        legitimately unknown here (the chain ends below a root), :attr:`warnings` says which issuer
        verifiers must trust.
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
        chain = [*extra, *_keymaterial.load_certificates(certificate_chain, "certificate chain file")]
        #: What the caller should tell the user about the chain (e.g. the issuer verifiers must trust);
        #: a chain that cannot verify was refused above.
        self.warnings: tuple[str, ...] = tuple(
            _keymaterial.check_signing_chain(leaf, chain, dt.datetime.now(dt.UTC), where)
        )
        self._chain: list[x509.Certificate] = [leaf, *chain]

    @property
    def identity(self) -> SignerIdentity:
        """The leaf certificate's subject, issuer, serial and key."""
        return _keymaterial.certificate_signer(self._chain[0])

    @property
    def description(self) -> str:
        """The leaf certificate's subject and issuer."""
        return self.identity.description

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


def default_signature_path(model_path: PathLike) -> str:
    """``model.sig`` in the directory that contains the model (beside it, outside the hashed tree)."""
    parent = os.path.dirname(os.path.abspath(os.fspath(model_path)))
    return os.path.join(parent, DEFAULT_SIGNATURE_NAME)


def check_destination(model_path: PathLike, signature_path: PathLike | None = None, *, overwrite: bool = False) -> str:
    """Check, without hashing or signing, that :func:`sign` could write its signature; the path it would use.

    The same checks :func:`sign` makes first (the model exists, the signature path is usable, an existing
    signature is only replaced with ``overwrite``, the directory accepts a new file), for callers that
    have work of their own to do before signing (an interactive sign-in) and want a certain failure first.
    """
    model = os.fspath(model_path)
    sig_path = _destination_path(model, signature_path, overwrite)
    if sig_path != TO_CALLER:
        _Reservation.claim(sig_path).release()
    return sig_path


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
    :func:`default_signature_path`; ``"-"`` (:data:`TO_CALLER`) writes no file: the caller writes
    ``result.bundle_json`` where it wants (the CLI: to stdout; a file named ``-`` is ``./-``).

    The destination is claimed before any work: a temporary file is created in the signature's directory
    before the model is hashed and before a :class:`Preparing` signer (keyless) is started, so an
    unwritable location fails at once, not after a certificate request.  An existing signature is only
    replaced with ``overwrite=True``; the temporary file is renamed into place, so a crash never leaves a
    half-written signature, and the model itself is only read.  Raises :class:`SignatureExistsError`,
    :class:`~model_signing.errors.InputError` subclasses for bad inputs and :class:`SigningError` if the
    signer fails.
    """
    model = os.fspath(model_path)
    sig_path = _destination_path(model, signature_path, overwrite)
    reservation = _Reservation.claim(sig_path) if sig_path != TO_CALLER else None
    try:
        config = hashing if hashing is not None else HashingConfig()
        if isinstance(signer, Preparing):
            # Started here, after the destination is known to be writable, and right before hashing so that
            # its network round trips (the Fulcio certificate) still overlap the hash.
            signer.start()
        # A signer that prepares in the background (sigstore: its certificate) can stop the hashing at once.
        poll = getattr(signer, "raise_if_failed", None)
        excluded, scratch = (sig_path, reservation.tmp) if reservation is not None else (None, None)
        hashed = digest_model(model, config, signature_path=excluded, scratch_path=scratch, poll=poll)
        manifest = _statement.canonical_manifest(hashed.manifest)
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
        if reservation is not None:
            reservation.commit(text, overwrite=overwrite, model_name=manifest.model_name)
    finally:
        if reservation is not None:
            reservation.release()
    identity = (
        signer.identity if isinstance(signer, IdentifiedSigner)
        else SignerIdentity(method=signer.method, identity=signer.description)
    )
    return SignResult(
        model_path=model,
        signature_path=sig_path,
        method=signer.method,
        signer=signer.description,
        manifest=manifest,
        root_digest=manifest.root_digest().hex(),
        signer_identity=identity,
        unmatched_ignore_paths=hashed.unmatched_ignore_paths,
        bundle_json=text,
    )


def _destination_path(model: str, signature_path: PathLike | None, overwrite: bool) -> str:
    """The signature path :func:`sign` uses, after every check that needs no hashing."""
    if not os.path.lexists(model):
        raise InputError(f"model {model} does not exist; give the path of a model directory or file")
    sig_path = os.fspath(signature_path) if signature_path is not None else default_signature_path(model)
    if sig_path == TO_CALLER:
        return sig_path
    if not sig_path:
        raise InputError(f"the signature path is empty; give a file name such as {DEFAULT_SIGNATURE_NAME}")
    if os.path.isdir(sig_path):
        raise InputError(f"signature path {sig_path} is a directory; give a file name such as {DEFAULT_SIGNATURE_NAME}")
    if not overwrite and os.path.lexists(sig_path):
        raise signature_exists(sig_path, _walk.model_name_of(model))
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
        what = f"{sig_dir} is not a directory" if os.path.lexists(sig_dir) else f"directory {sig_dir} does not exist"
        raise InputError(f"cannot write signature {sig_path}: {what}")
    return sig_path


def signature_exists(sig_path: str, model_name: str) -> SignatureExistsError:
    """The error for an existing signature at ``sig_path`` in the way of signing the model ``model_name``.

    It says what the existing file signs (read from its statement, not verified) and proposes a free
    path beside it, so that signing a sibling model never invites destroying another model's signature.
    """
    signs = existing_subject(sig_path)
    return SignatureExistsError(
        sig_path,
        model_name=model_name,
        signed_model=signs[0] if signs is not None else None,
        signed_root_digest=signs[1] if signs is not None else None,
        free_path=_free_path(sig_path, model_name),
    )


def existing_subject(sig_path: str) -> tuple[str, str] | None:
    """``(subject name, root digest hex)`` of the signature at ``sig_path``, read without verifying it.

    ``("", "")`` for a v0.2 signature (it has neither); ``None`` if the file is not a readable OMS bundle.
    """
    try:
        statement = _statement.parse_statement(_bundle.read_bundle(sig_path).payload)
    except Exception:  # noqa: BLE001 - only informs an error message: whatever the file is, say it is unreadable
        return None
    digest = statement.root_digest.hex() if statement.root_digest is not None else ""
    return statement.subject_name, digest


def _free_path(sig_path: str, model_name: str) -> str | None:
    """``<model name>.sig`` beside ``sig_path`` (``-2``, ``-3``, ... if taken); ``None`` if none is free."""
    directory = os.path.dirname(sig_path)
    stem = model_name if model_name and model_name not in (".", "..") else "model"
    for n in range(1, 10):
        name = f"{stem}.sig" if n == 1 else f"{stem}-{n}.sig"
        candidate = os.path.join(directory, name)
        if not os.path.lexists(candidate) and candidate != sig_path:
            return candidate
    return None


def _inside_model(model: str, path: str) -> bool:
    model_real, path_real = os.path.realpath(model), os.path.realpath(path)
    if not os.path.isdir(model_real):
        return path_real == model_real
    return path_real.startswith(model_real.rstrip(os.sep) + os.sep)


class _Reservation:
    """A signature's destination, claimed before any work: a temporary file created in its directory.

    Creating it is the check that the directory accepts a new file (permissions, read-only or full file
    systems, ``/proc``-like directories), for root too; the same file later receives the signature and
    is renamed into place.
    """

    def __init__(self, path: str, fd: int, tmp: str) -> None:
        self.path = path
        self._fd: int | None = fd
        self._tmp: str | None = tmp

    @property
    def tmp(self) -> str | None:
        """The temporary file's path (``None`` once released)."""
        return self._tmp

    @classmethod
    def claim(cls, path: str) -> _Reservation:
        """Create the temporary file beside ``path``; :class:`InputError` naming ``path`` if impossible."""
        directory = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise InputError(
                f"cannot write signature {path} ({exc.strerror or exc}); choose another --signature path"
            ) from None
        return cls(path, fd, tmp)

    def commit(self, text: str, *, overwrite: bool, model_name: str = "") -> None:
        """Write ``text`` to the temporary file, then move it to the signature path atomically.

        Without ``overwrite`` the final step is a hard link, which fails if the path appeared meanwhile,
        so a concurrent writer is never clobbered.
        """
        assert self._fd is not None and self._tmp is not None, "the reservation was released"
        path, tmp = self.path, self._tmp
        fd, self._fd = self._fd, None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a full disk, a file size limit, EIO: name the file and the operation
            raise InputError(f"cannot write signature {path}: {exc.strerror or exc}") from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a signature is public: the usual file mode, not mkstemp's 0600
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise signature_exists(path, model_name) from None
            except OSError:
                # Filesystems without hard links: fall back to a rename after a last existence check.
                if os.path.lexists(path):
                    raise signature_exists(path, model_name) from None
                os.replace(tmp, path)
        directory = os.path.dirname(os.path.abspath(path))
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def release(self) -> None:
        """Close and remove the temporary file (after :meth:`commit` it is only a name to unlink)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None


def write_atomic(path: str, text: str, *, overwrite: bool) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and an atomic rename.

    Without ``overwrite`` the final step is a hard link, which fails if ``path`` appeared meanwhile,
    so a concurrent writer is never clobbered.
    """
    reservation = _Reservation.claim(path)
    try:
        reservation.commit(text, overwrite=overwrite)
    finally:
        reservation.release()

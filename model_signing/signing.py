"""Signing a model (public API): hash -> canonical statement -> DSSE -> Sigstore bundle -> file.

```python
import model_signing as ms

signer = ms.KeySigner("signing-key.pem", password=os.environ["KEY_PASSWORD"])
result = ms.sign("path/to/model", signer)            # writes path/to/model.sig's sibling "model.sig"
print(result.signature_path, result.root_digest)
```

A :class:`Signer` turns the canonical statement payload into a Sigstore bundle; the methods differ only
there (see :mod:`model_signing.methods`: ``key``, ``certificate``, and keyless ``sigstore``, which wraps
sigstore's ``Signer.sign_dsse`` the same way).  This module is the pipeline they share: the destination
checks, hashing, the statement, the size check, the signer call (its unexpected exceptions wrapped into
:class:`SigningError`), the read-back check and the atomic write.  The built-in signers are re-exported
here for the callers of earlier releases.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from model_signing import methods
from model_signing._internal.atomic import AtomicFile
from model_signing._internal.types import PathLike
from model_signing.errors import (
    InputError,
    ModelSigningError,
    SignatureExistsError,
    SigningError,
)
from model_signing.hashing import HashingConfig, digest_model
from model_signing.hashing import walk as _walk
from model_signing.methods.base import FailsFast, IdentifiedSigner, Preparing, Signer
from model_signing.methods.certificate import CertificateSigner
from model_signing.methods.key import KeySigner
from model_signing.oms import bundle as _bundle
from model_signing.oms import statement as _statement
from model_signing.results import SignerIdentity, SignResult, unsafe_error

__all__ = [
    "DEFAULT_SIGNATURE_NAME",
    "CertificateSigner",
    "IdentifiedSigner",
    "KeySigner",
    "SignResult",
    "Signer",
    "SignerIdentity",
    "default_signature_path",
    "prior_signature",
    "sign",
    "write_atomic",
]

if TYPE_CHECKING:
    from model_signing.hashing.cache import PriorSignature
    from model_signing.scan import ScanConfig

#: The default signature file name, written beside the model (never inside the hashed tree).
DEFAULT_SIGNATURE_NAME = "model.sig"

#: ``signature_path`` for "write no file, give me the bundle": :func:`sign` returns it in
#: ``SignResult.bundle_json`` (the CLI's ``--signature -`` prints it on stdout).
TO_CALLER = "-"


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
        _claim(sig_path).release()
    return sig_path


def _check_bundle_size(payload: bytes, resources: int) -> None:
    # The bundle carries the statement in base64, plus certificates and log entries (well under 64 KiB);
    # a bundle over the limit readers apply (MAX_SIGNATURE_FILE) could never be verified.
    from model_signing._internal.files import MAX_SIGNATURE_FILE

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
    reuse_from: PathLike | None = None,
    scan: ScanConfig | None = None,
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

    With ``hashing.digest_cache`` the digests of files unchanged since the cache saw them are reused, and
    the new signature is recorded in the cache.  ``reuse_from`` (which needs a ``digest_cache``) names an
    earlier signature whose digests are reused for the files the cache recorded it signing, if their
    identity is unchanged since; the earlier signature is not verified, but its statement must be the one
    the cache recorded (byte for byte), so an edited copy offers nothing.  What was reused, and why an
    earlier signature offered nothing, is in ``hashing.digest_cache.stats``.

    ``scan`` (:func:`model_signing.scan.make_config`): scan every file in the hashing pass (no byte is
    read twice); content at or above its threshold raises :class:`~model_signing.errors.UnsafeModelError`
    before the signer is called (no signature, no transparency-log entry, nothing written).  With a scan,
    no cached digest is reused: a file that is not read would not be scanned.
    """
    model = os.fspath(model_path)
    config = hashing if hashing is not None else HashingConfig()
    reuse_from = reuse_from if reuse_from is not None else config.reuse_from
    prior = prior_signature(reuse_from, config) if reuse_from is not None else None
    sig_path = _destination_path(model, signature_path, overwrite)
    reservation = _claim(sig_path) if sig_path != TO_CALLER else None
    try:
        if isinstance(signer, Preparing):
            # Started here, after the destination is known to be writable, and right before hashing so that
            # its network round trips (the Fulcio certificate) still overlap the hash.
            signer.start()
        # A signer that prepares in the background (sigstore: its certificate) can stop the hashing at once.
        poll = signer.raise_if_failed if isinstance(signer, FailsFast) else None
        excluded, scratch = (sig_path, reservation.tmp) if reservation is not None else (None, None)
        hashed = digest_model(
            model, config, signature_path=excluded, scratch_path=scratch, poll=poll, prior=prior, scan=scan
        )
        if hashed.scan is not None and hashed.scan.unsafe():
            raise unsafe_error(hashed.scan)  # before anything irreversible: no signature is made
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
        parsed = methods.parse_bundle(text.encode("utf-8"), source="the new signature")
        if parsed.method != signer.method:  # a plug-in signer that wrote another method's material
            raise SigningError(
                f"the {signer.method} signer produced a {parsed.method} bundle; a verifier could not check it"
            )
        if parsed.payload != payload:  # what was signed must be the statement of this model, byte for byte
            raise SigningError(f"the {signer.method} signer signed another payload than the model's statement")
        if reservation is not None:
            _commit(reservation, text, overwrite=overwrite, model_name=manifest.model_name)
        if config.digest_cache is not None:
            import hashlib

            config.digest_cache.record_signature(hashlib.sha256(payload).hexdigest())
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
        scan=hashed.scan,
    )


def prior_signature(reuse_from: PathLike, config: HashingConfig) -> PriorSignature:
    """The digests the earlier signature ``reuse_from`` offers, for ``hash_model``'s ``prior``.

    Read, not verified: the digest cache's record of the statement (by its SHA-256) vouches for them.
    """
    import hashlib

    from model_signing.hashing.cache import PriorSignature, Settings

    source = os.fspath(reuse_from)
    if config.digest_cache is None:
        raise InputError(
            f"`reuse_from` {source} needs a digest cache: it reuses digests for files the cache recorded "
            "that signature covering; give `digest_cache` too"
        )
    payload = methods.read_bundle(source).payload
    statement = _statement.parse_statement(payload, source=source)
    s = statement.manifest.serialization
    return PriorSignature(
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        settings=Settings.of(s.method, s.hash_type, s.shard_size),
        digests={r.name: r.digest for r in statement.manifest.resources},
        source=source,
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
        # `overwrite` replaces an old signature, never a model file that happens to be named like one.
        try:
            methods.read_bundle(sig_path)
        except InputError:
            raise InputError(
                f"refusing to overwrite {sig_path}: it is part of the model and not a signature; choose another "
                "path for `signature_path`"
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
        statement = _statement.parse_statement(methods.read_bundle(sig_path).payload)
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


def _claim(sig_path: str) -> AtomicFile:
    """Claim the signature's destination before any work; :class:`InputError` naming it if impossible."""
    try:
        return AtomicFile.claim(sig_path)
    except OSError as exc:
        raise InputError(
            f"cannot write signature {sig_path} ({exc.strerror or exc}); choose another signature path"
        ) from None


def _commit(target: AtomicFile, text: str, *, overwrite: bool, model_name: str = "") -> None:
    try:
        target.commit(text, overwrite=overwrite)
    except FileExistsError:
        raise signature_exists(target.path, model_name) from None
    except OSError as exc:  # a full disk, a file size limit, EIO: name the file and the operation
        raise InputError(f"cannot write signature {target.path}: {exc.strerror or exc}") from None


def write_atomic(path: str, text: str, *, overwrite: bool) -> None:
    """Write ``text`` to ``path`` atomically (:func:`model_signing._internal.atomic.write_atomic`).

    Without ``overwrite`` an existing file is never replaced (:class:`SignatureExistsError`).
    """
    target = _claim(path)
    try:
        _commit(target, text, overwrite=overwrite)
    finally:
        target.release()

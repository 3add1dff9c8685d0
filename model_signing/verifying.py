"""Verifying a model against its signature (public API), strictly and in a fixed order.

```python
import model_signing as ms

result = ms.verify("path/to/model", ms.KeyVerifier("signing-key.pub"), signature_path="model.sig")
```

Order (every method shares it; a :class:`Verifier` only does step 2):

1. parse and structurally validate the bundle (media type, OMS bundle/envelope shape);
2. check the DSSE signature with the method's trust material -> the verified payload bytes
   (a bundle made with another method is refused);
3. validate the statement (``_type``, predicate type, one subject consistent with the resources,
   resources and serialization well formed, every name safe) -- before any model file is opened;
4. re-enumerate the model with the SIGNED serialization settings (method, hash, shard size,
   allow_symlinks, ignore paths) plus the caller's extra ignore paths, and re-hash;
5. compare, reporting every difference.

A :class:`~model_signing.methods.base.BackgroundVerifier` (the ``sigstore`` one, whose check takes a
few tenths of a second) runs step 2 while steps 3-4 proceed on the bundle's statement.  Nothing is
reported before step 2's verdict (a bad signature wins over any other problem, and stops hashing at
once), the statement must be the verified payload byte for byte, and a statement that allows
symlinks waits for the verdict before any file is opened.

The pipeline is split in two around the hashing, so that several models can be hashed together
(``verify-all``: one worker pool for a whole pack): :func:`prepare_verification` does steps 1-3 and the
walk, and :meth:`PreparedVerification.finish` step 5; the caller hashes in between.  :func:`verify` uses
the same two halves with its own hashing pass (where scanning and verified loading tap the bytes).

Errors: :class:`~model_signing.errors.SignatureFormatError` (exit 1) for unreadable/malformed
signatures or statements, :class:`~model_signing.errors.VerificationError` (exit 2) when the signature
does not verify, :class:`~model_signing.errors.ModelMismatchError` (exit 3, with every
:class:`~model_signing.errors.Difference`) when it does but the model differs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, TypeVar

from model_signing import methods
from model_signing._internal.types import PathLike
from model_signing.errors import (
    EmptyModelError,
    InputError,
    ModelMismatchError,
    ModelSigningError,
    UnsafeModelError,
    VerificationError,
    WrongMethodError,
)
from model_signing.hashing import HashingConfig, combine_taps, hash_files, scan_tap
from model_signing.hashing import walk as _walk
from model_signing.manifest import Manifest, Resource
from model_signing.manifest import compare as _compare
from model_signing.methods.base import BackgroundVerifier, Pending, VerifiedSignature, Verifier, require_method
from model_signing.methods.certificate import CertificateVerifier
from model_signing.methods.key import KeyVerifier
from model_signing.oms import names as _paths
from model_signing.oms import statement as _statement
from model_signing.oms.bundle import SignatureBundle
from model_signing.results import SignerIdentity, VerifyResult, unsafe_error

if TYPE_CHECKING:
    from model_signing.hashing import Tap
    from model_signing.hashing.walk import FileEntry
    from model_signing.scan import ScanConfig, ScanReport

T = TypeVar("T")
#: Builds a tap on the hashing pass from the files about to be hashed (verified loading keeps their bytes).
TapFactory = Callable[[Sequence["FileEntry"]], "Tap"]

__all__ = [
    "CertificateVerifier",
    "KeyVerifier",
    "PreparedVerification",
    "SignatureBundle",
    "SignerIdentity",
    "VerifiedSignature",
    "Verifier",
    "VerifyResult",
    "prepare_verification",
    "verify",
]


def verify(
    model_path: PathLike,
    verifier: Verifier,
    *,
    signature_path: PathLike,
    ignore_unsigned_files: bool = False,
    ignore_paths: Sequence[PathLike] = (),
    max_workers: int | None = None,
    progress: bool | None = None,
    scan: ScanConfig | None = None,
    quarantine: PathLike | None = None,
    _tap: TapFactory | None = None,
) -> VerifyResult:
    """Verify the model at ``model_path`` against the bundle at ``signature_path`` (see module docs).

    ``ignore_paths`` are excluded in addition to the paths the signer ignored (a signed file they name
    is reported as an ``excluded`` difference: signed, but not checked);
    ``ignore_unsigned_files`` skips files the signature does not mention (every signed file is still
    checked, and a signed file with unsigned shards still fails).

    ``scan`` (:func:`model_signing.scan.make_config`): scan every hashed file in the same read pass.
    Content at or above its threshold raises :class:`~model_signing.errors.UnsafeModelError` (exit 4,
    carrying the :class:`VerifyResult`) once the model has verified: a bad signature (2) and a mismatch
    (3) outrank it.  The result's ``scan`` holds the report either way.

    ``quarantine`` (a directory): after a failed verification (2, 3) or unsafe content (4), move the model
    into ``quarantine/<name>-<UTC time>/`` with an ``incident.json`` (see :mod:`model_signing.quarantine`);
    the error then carries the record as ``incident``.  A verifier of the wrong method
    (:class:`~model_signing.errors.WrongMethodError`) and bad input never quarantine.
    """
    model = os.fspath(model_path)
    sig_path = os.fspath(signature_path)
    if not os.path.lexists(model):
        raise InputError(f"model {model} does not exist; give the path of the signed model directory or file")
    if quarantine is None:
        return _verify(model, verifier, sig_path, ignore_unsigned_files=ignore_unsigned_files,
                       ignore_paths=ignore_paths, max_workers=max_workers, progress=progress, scan=scan,
                       tap_factory=_tap)
    from model_signing import quarantine as _quarantine

    destination = _quarantine.check_destination(model, os.fspath(quarantine))  # bad input fails before any work
    try:
        return _verify(model, verifier, sig_path, ignore_unsigned_files=ignore_unsigned_files,
                       ignore_paths=ignore_paths, max_workers=max_workers, progress=progress, scan=scan,
                       tap_factory=_tap)
    except WrongMethodError:
        raise  # the wrong verifier was used: says nothing about the model
    except (VerificationError, ModelMismatchError, UnsafeModelError) as exc:
        _quarantine.quarantine_after_failure(model, sig_path, destination, exc)
        raise


def _verify(
    model: str,
    verifier: Verifier,
    sig_path: str,
    *,
    ignore_unsigned_files: bool,
    ignore_paths: Sequence[PathLike],
    max_workers: int | None,
    progress: bool | None,
    scan: ScanConfig | None,
    tap_factory: TapFactory | None,
) -> VerifyResult:
    """:func:`verify` without the quarantine: prepare, hash (own pool, with the taps), finish."""

    bundle = methods.read_bundle(sig_path)
    require_method(bundle, verifier.method)  # also for third-party verifiers that forget to check
    verdict = _Verdict(verifier, bundle)
    try:
        # A verifier that checks in the background (sigstore) works while the model is hashed with the
        # settings of the statement in the bundle; nothing is reported before its verdict, and the
        # statement used must be the one it verified (checked by the verdict), so the settings used were signed.
        prepared = _prepare(model, sig_path, bundle, verdict, ignore_unsigned_files=ignore_unsigned_files,
                            ignore_paths=ignore_paths, max_workers=max_workers, progress=progress)
        files = prepared.files
        scanning = scan_tap(files, scan) if scan is not None else None
        taps = [t for t in (scanning, tap_factory(files) if tap_factory is not None else None) if t is not None]
        tap = None if not taps else taps[0] if len(taps) == 1 else combine_taps(*taps)
        resources = hash_files(files, prepared.config, poll=verdict.raise_if_failed, tap=tap)
        report: ScanReport | None = scanning.report() if scanning is not None else None
    except Exception:
        verdict.wait()  # a signature that does not verify outranks whatever was met before the verdict
        raise
    result = prepared.finish(resources, scan=report)
    if report is not None and report.unsafe():
        raise unsafe_error(report, result)  # authentic, but loading it would run code
    return result


def prepare_verification(
    model_path: PathLike,
    verifier: Verifier,
    *,
    signature_path: PathLike,
    ignore_unsigned_files: bool = False,
    ignore_paths: Sequence[PathLike] = (),
    max_workers: int | None = None,
    progress: bool | None = None,
) -> PreparedVerification:
    """Steps 1-3 of :func:`verify` and the walk of step 4: everything but reading the model's bytes.

    For callers that hash several models together (``verify-all`` hashes a pack through one worker
    pool: :func:`model_signing.hashing.hash_file_sets`): hash the returned ``files`` with its ``config``
    by any means, then call :meth:`PreparedVerification.finish` with the resources.  ``verify`` is
    ``prepare_verification`` + :meth:`PreparedVerification.hash` + ``finish``, except that it also
    scans, quarantines and overlaps a background signature check with the hashing.

    Unlike :func:`verify`, this waits for the signature's verdict before returning: once prepared, the
    signature has verified (the same errors as :func:`verify` are raised here otherwise), so a caller can
    try another verifier before anything is hashed.  The signature checks of several models still overlap
    when they are prepared from several threads.
    """
    model = os.fspath(model_path)
    sig_path = os.fspath(signature_path)
    if not os.path.lexists(model):
        raise InputError(f"model {model} does not exist; give the path of the signed model directory or file")
    bundle = methods.read_bundle(sig_path)
    require_method(bundle, verifier.method)
    verdict = _Verdict(verifier, bundle)
    try:
        prepared = _prepare(model, sig_path, bundle, verdict, ignore_unsigned_files=ignore_unsigned_files,
                            ignore_paths=ignore_paths, max_workers=max_workers, progress=progress)
    except Exception:
        verdict.wait()  # as in verify: a bad signature outranks a bad statement or an unreadable tree
        raise
    verdict.wait()
    return prepared


def _prepare(
    model: str,
    sig_path: str,
    bundle: SignatureBundle,
    verdict: _Verdict,
    *,
    ignore_unsigned_files: bool,
    ignore_paths: Sequence[PathLike],
    max_workers: int | None,
    progress: bool | None,
) -> PreparedVerification:
    """Parse the bundle's statement and walk the model with its signed settings (the verdict may be pending)."""
    statement = _statement.parse_statement(bundle.payload, source=sig_path)
    if statement.manifest.serialization.allow_symlinks:
        verdict.wait()  # links are only ever followed under a verified statement
    signed = _for_model_path(statement.manifest, model)
    config = HashingConfig.from_serialization(signed.serialization, max_workers=max_workers, progress=progress)
    config.validate()
    extra = _walk.normalize_ignore_paths(model, [os.fspath(p) for p in ignore_paths])
    covered = _compare.signed_files(signed)
    files: tuple[FileEntry, ...]
    links: Sequence[str]
    unmatched: Sequence[str]
    try:
        # Symlinks are collected, not refused: a signed file replaced by a link is tampering (exit 3).
        walked = _walk.walk(
            model,
            allow_symlinks=config.allow_symlinks,
            ignore_paths=(*config.ignore_paths, *extra),
            signature_path=sig_path,
            collect_symlinks=True,
        )
        files, links, unmatched = tuple(walked.files), walked.symlinks, walked.unmatched_ignore_paths
    except EmptyModelError:
        # Nothing left to hash is not bad input here: every signed file is missing (exit 3, listed).
        files, links, unmatched = (), (), ()
    unsigned: tuple[str, ...] = ()
    if ignore_unsigned_files:
        # Unsigned files (and links) are never opened; the report names them.
        unsigned = tuple(sorted({f.name for f in files if f.name not in covered} | set(links) - covered))
        files = tuple(f for f in files if f.name in covered)
    return PreparedVerification(
        model=model, sig_path=sig_path, bundle=bundle, verdict=verdict, statement=statement, signed=signed,
        config=config, files=files, links=links, unmatched=unmatched, unsigned=unsigned, extra=extra,
        covered=covered, ignore_unsigned_files=ignore_unsigned_files,
    )


class PreparedVerification:
    """One model's verification up to its hashing (see :func:`prepare_verification`).

    ``files`` are what must be hashed, with ``config`` (the signed serialization settings); the resources
    hashed from them go to :meth:`finish`, which compares them with the signed manifest.
    """

    def __init__(  # built by _prepare only
        self,
        *,
        model: str,
        sig_path: str,
        bundle: SignatureBundle,
        verdict: _Verdict,
        statement: _statement.SignedStatement,
        signed: Manifest,
        config: HashingConfig,
        files: tuple[FileEntry, ...],
        links: Sequence[str],
        unmatched: Sequence[str],
        unsigned: tuple[str, ...],
        extra: Sequence[str],
        covered: AbstractSet[str],
        ignore_unsigned_files: bool,
    ) -> None:
        self.model_path = model
        self.signature_path = sig_path
        #: The files to hash (their identities as the walk saw them) and how.
        self.files = files
        self.config = config
        self._bundle = bundle
        self._verdict = verdict
        self._statement = statement
        self._signed = signed
        self._links = links
        self._unmatched = unmatched
        self._unsigned = unsigned
        self._extra = extra
        self._covered = covered
        self._ignore_unsigned_files = ignore_unsigned_files

    @property
    def bundle(self) -> SignatureBundle:
        """The bundle read once and verified (its fields are only trusted as far as the verdict covers them)."""
        return self._bundle

    @property
    def signer_identity(self) -> SignerIdentity:
        """The verified signer (waits for the signature's verdict if it is still pending)."""
        verified = self._verdict.wait()
        return verified.identity or SignerIdentity(method=self._bundle.method, identity=verified.signer)

    def hash(self) -> tuple[Resource, ...]:
        """Hash ``files`` alone, in this model's own worker pool (what :func:`verify` does, without taps)."""
        return hash_files(self.files, self.config)

    def finish(self, resources: Sequence[Resource], *, scan: ScanReport | None = None) -> VerifyResult:
        """Step 5: the result, or :class:`~model_signing.errors.ModelMismatchError` listing every difference.

        ``resources`` are the digests of ``files`` in manifest order (as :func:`model_signing.hashing.hash_files`
        returns them); ``scan`` is the report of a scan run in the hashing pass, carried by the result.
        """
        verified = self._verdict.wait()
        signed, statement, bundle, model = self._signed, self._statement, self._bundle, self.model_path
        actual = dataclasses.replace(signed, resources=tuple(resources))
        covered, extra = self._covered, self._extra
        excluded = {f for f in covered if _walk.ignored_by(f, extra)}
        # A caller's ignore path that names a signed file was not a typo, even when the file is gone.
        unmatched = tuple(
            p for p in self._unmatched if p in extra and not any(_walk.ignored_by(f, [p]) for f in covered)
        )
        differences = _compare.compare(
            signed, actual, ignore_unsigned_files=self._ignore_unsigned_files, excluded=excluded,
            symlinks=self._links,
        )
        result = VerifyResult(
            model_path=model,
            signature_path=self.signature_path,
            method=bundle.method,
            signer=verified.signer,
            manifest=statement.manifest,
            root_digest=statement.root_digest.hex() if statement.root_digest is not None else None,
            predicate_type=statement.predicate_type,
            unsigned_files=self._unsigned,
            legacy_encoding=verified.legacy_encoding,
            signer_identity=verified.identity or SignerIdentity(method=bundle.method, identity=verified.signer),
            differences=tuple(differences),
            unmatched_ignore_paths=unmatched,
            model_name=_walk.model_name_of(model),
            signed_model=statement.subject_name or "",
            timestamps=verified.timestamps,
            actual_root_digest=actual.root_digest().hex(),
            scan=scan,
        )
        if differences:
            # The subject name is informational (a renamed model still verifies), but on a mismatch a name
            # that differs is the likeliest explanation: the error says it first.
            raise ModelMismatchError(
                differences, signed_model=statement.subject_name, model_name=result.model_name, result=result
            )
        return result


class _Verdict:
    """The signature check of one bundle: done at once, or in the background by verifiers that can.

    Every wait also requires the verified payload to be the bundle's byte for byte, since the caller
    works on the bundle's statement: a mismatch is a signature that does not cover what is used.
    """

    def __init__(self, verifier: Verifier, bundle: SignatureBundle) -> None:
        self._bundle = bundle
        self._verifier_method = verifier.method
        self._pending: Pending[VerifiedSignature] | None = None
        self._verified: VerifiedSignature | None = None
        if isinstance(verifier, BackgroundVerifier):
            self._pending = _wrapped(verifier.method, lambda: verifier.verify_in_background(bundle))
        else:
            self._verified = _wrapped(verifier.method, lambda: verifier.verify(bundle))

    def raise_if_failed(self) -> None:
        """Raise the verification error at once if the check has already failed."""
        if self._pending is not None:
            _wrapped(self._verifier_method, self._pending.raise_if_failed)

    def wait(self) -> VerifiedSignature:
        """The verified signature, or the verification error."""
        if self._verified is None:
            pending = self._pending
            assert pending is not None
            self._verified = _wrapped(self._verifier_method, pending.result)
        if self._verified.payload != self._bundle.payload:
            raise VerificationError(
                f"{self._bundle.source}: the verifier returned a payload other than the bundle's; refusing to compare"
            )
        return self._verified


def _wrapped(method: str, call: Callable[[], T]) -> T:
    """``call()``, with a plug-in verifier's unexpected exception turned into a :class:`VerificationError`.

    A verifier that crashes has not verified anything: that is a failed verification (exit 2), with the
    cause named, never a traceback or a pass.
    """
    try:
        return call()
    except ModelSigningError:
        raise
    except Exception as exc:
        raise VerificationError(f"the {method} verifier failed: {exc!r}") from exc


def _for_model_path(signed: Manifest, model: str) -> Manifest:
    """Map the peer's single-file resource name ``"."`` to the file's basename (the spec's name)."""
    if not os.path.isfile(model):
        return signed
    method = signed.serialization.method
    if _compare.signed_files(signed) != {_paths.SINGLE_FILE_NAME}:
        return signed
    base = os.path.basename(os.path.normpath(model))

    def rename(r: Resource) -> Resource:
        rest = r.name[len(_paths.SINGLE_FILE_NAME) :] if method == "shards" else ""
        return Resource(name=base + rest, algorithm=r.algorithm, digest=r.digest)

    return dataclasses.replace(signed, resources=tuple(rename(r) for r in signed.resources))

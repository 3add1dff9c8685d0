"""L8: the Hugging Face hub -- sign and upload a model, download and verify it, or check it where it lies.

```python
from model_signing import hub
import model_signing as ms

hub.sign_and_upload("me/my-model", "path/to/model", ms.KeySigner("key.pem"))
result = hub.download_and_verify("me/my-model", ms.KeyVerifier("key.pub"), local_dir="my-model")
remote = hub.verify_remote("me/my-model", ms.KeyVerifier("key.pub"))   # no weights downloaded
```

The signature is the OMS bundle ``model.sig`` at the repository root (model-signing's convention; the hub
has none), which hashing always excludes.  Every operation pins one commit: the revision asked for is
resolved to its commit SHA first, and everything after (listing, downloads) names that SHA, so a branch
that moves meanwhile cannot mix two versions.

* :func:`sign_and_upload` hashes and signs the folder with the sign pipeline, then uploads exactly the
  signed files and ``model.sig`` in ONE commit (``create_commit``): no commit of the repository ever
  holds the new files with the old signature, or the reverse.
* :func:`download_and_verify` downloads the snapshot into a staging directory beside ``local_dir``,
  verifies it with the verify pipeline, and only then renames it to ``local_dir``.  On any failure the
  staging directory is removed and ``local_dir`` is left as it was: nothing there looks verified.
* :func:`verify_remote` downloads ``model.sig`` and the small (non-LFS) files only, verifies the signature
  and those files, and checks every large (LFS) file against the SHA-256 and size the hub records for it
  (``lfs.sha256`` of the tree listing, the LFS object id).  That trusts the hub's word about the bytes it
  stores: a hub that reports one digest and serves other bytes is only caught by downloading.  It works
  for ``files`` signatures with sha256 only (the one case where the signed digest IS the LFS object id);
  others raise :class:`~model_signing.errors.RemoteVerificationUnsupportedError`.

``huggingface_hub`` (extra ``modelseal[hub]``) is imported inside the functions only.  Its errors are
turned into :class:`~model_signing.errors.HubError` (exit 1; :class:`~model_signing.errors.HubNetworkError`
when the hub cannot be reached); a signature that does not verify stays a
:class:`~model_signing.errors.VerificationError` (2) and a content mismatch a
:class:`~model_signing.errors.HubMismatchError` (a :class:`~model_signing.errors.ModelMismatchError`, 3).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from model_signing._internal.text import plural
from model_signing._internal.types import PathLike
from model_signing.errors import (
    Difference,
    HubError,
    HubMismatchError,
    HubNetworkError,
    InputError,
    MissingExtraError,
    ModelMismatchError,
    ModelSigningError,
    RemoteVerificationUnsupportedError,
    WrongMethodError,
)
from model_signing.hashing import HashingConfig
from model_signing.hashing import walk as _walk
from model_signing.manifest import DEFAULT_IGNORED
from model_signing.manifest import compare as _compare
from model_signing.results import SignResult, VerifyResult
from model_signing.signing import DEFAULT_SIGNATURE_NAME, sign
from model_signing.verifying import verify

if TYPE_CHECKING:
    from model_signing.methods.base import Signer, Verifier

__all__ = [
    "DEFAULT_COMMIT_MESSAGE",
    "SIGNATURE_NAME",
    "HubUploadResult",
    "HubVerifyResult",
    "RemoteFileCheck",
    "download_and_verify",
    "sign_and_upload",
    "verify_remote",
]

#: Where the signature lives in a hub repository: the root, as model-signing writes it beside a model.
SIGNATURE_NAME = DEFAULT_SIGNATURE_NAME
DEFAULT_COMMIT_MESSAGE = "Upload model and its signature (model.sig, OMS v1.0)"
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: What ``snapshot_download(local_dir=...)`` writes beside the files (download metadata, tree cache).
_CLIENT_METADATA = (".cache", "huggingface")


@dataclass(frozen=True)
class RemoteFileCheck:
    """One large (LFS) file checked by :func:`verify_remote` against what the hub reports, not downloaded."""

    name: str
    #: The SHA-256 the hub reports for the file at the commit (its LFS object id), equal to the signed digest.
    sha256: str
    #: The size the hub reports.
    size: int

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class HubUploadResult:
    """What :func:`sign_and_upload` did: the signature made, and the one commit that holds it with the files."""

    repo_id: str
    #: The branch committed to.
    revision: str
    #: The new commit's SHA (or the head's, when nothing changed and the hub made no commit).
    commit: str
    commit_url: str
    endpoint: str
    signing: SignResult
    #: The files uploaded (the signed files, then ``model.sig``), as paths in the repository.
    uploaded: tuple[str, ...]
    signature_in_repo: str = SIGNATURE_NAME
    #: Files the commit deleted (``delete_other_files``).
    deleted: tuple[str, ...] = ()

    def hub_fields(self) -> dict[str, Any]:
        """The ``hub`` object of the JSON document."""
        return {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "commit_url": self.commit_url,
            "endpoint": self.endpoint,
            "signature_in_repo": self.signature_in_repo,
            "uploaded": list(self.uploaded),
            "deleted": list(self.deleted),
        }

    def as_dict(self) -> dict[str, Any]:
        """The ``sign`` result document (:mod:`model_signing.results`) with a ``hub`` object added."""
        return {**self.signing.as_dict(), "hub": self.hub_fields()}


@dataclass(frozen=True)
class HubVerifyResult:
    """What :func:`download_and_verify` or :func:`verify_remote` found, at one pinned commit.

    ``verification`` is the verify pipeline's result (signer, signed manifest, differences).  With
    ``remote_only``, ``remote_checked`` lists the large files that were NOT downloaded: they were checked
    against the SHA-256 the hub reports for them at ``commit`` (see :attr:`note`).
    """

    repo_id: str
    #: The revision asked for (``None``: the default branch) and the commit it resolved to, which was used.
    revision: str | None
    commit: str
    endpoint: str
    verification: VerifyResult
    remote_only: bool
    #: Where the verified files are (:func:`download_and_verify`); ``None`` for :func:`verify_remote`.
    local_dir: str | None = None
    #: Files downloaded and hashed here (``verify_remote``: the small ones and ``model.sig``).
    downloaded: tuple[str, ...] = ()
    remote_checked: tuple[RemoteFileCheck, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the repository matched its signature."""
        return self.verification.ok

    @property
    def exit_code(self) -> int:
        """The CLI exit code: 0, or 3 for a mismatch."""
        return self.verification.exit_code

    @property
    def note(self) -> str:
        """How the files were checked, in one sentence (the report says it; so does the JSON)."""
        if not self.remote_only:
            return f"every file was downloaded at commit {self.commit} and hashed locally"
        return (
            f"{plural(len(self.remote_checked), 'large file')} not downloaded: checked against the SHA-256 "
            f"digests the hub reports at commit {self.commit} (a hub that serves other bytes than it reports is "
            f"only caught by downloading); {plural(len(self.downloaded), 'file')} downloaded and hashed"
        )

    def hub_fields(self) -> dict[str, Any]:
        """The ``hub`` object of the JSON document."""
        return {
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "endpoint": self.endpoint,
            "remote_only": self.remote_only,
            "local_dir": self.local_dir,
            "downloaded": list(self.downloaded),
            "remote_checked": [c.as_dict() for c in self.remote_checked],
            "checked_against_server_digests": self.remote_only,
            "note": self.note,
        }

    def as_dict(self) -> dict[str, Any]:
        """The ``verify`` result document (:mod:`model_signing.results`) with a ``hub`` object added."""
        return {**self.verification.as_dict(), "hub": self.hub_fields()}


# -- the client ----------------------------------------------------------------------------------------


def _client() -> ModuleType:
    """``huggingface_hub``, or the error that says which extra to install."""
    try:
        import huggingface_hub
    except ImportError:
        raise MissingExtraError("the Hugging Face hub integration", "hub", "huggingface_hub") from None
    return huggingface_hub


@contextlib.contextmanager
def _hub_errors(repo_id: str, endpoint: str, what: str, revision: str | None = None) -> Iterator[None]:
    """The client's exceptions, as :class:`HubError` messages naming the repository and what was being done."""
    import httpx2
    from huggingface_hub import errors as hf

    try:
        yield
    except hf.RevisionNotFoundError:
        raise HubError(
            f"{what}: revision {revision or 'main'!r} does not exist in {repo_id} at {endpoint}; check `revision`"
        ) from None
    except hf.GatedRepoError:
        raise HubError(f"{what}: {repo_id} is gated at {endpoint}; accept its terms and give a `token`") from None
    except hf.RepositoryNotFoundError:
        raise HubError(
            f"{what}: repository {repo_id} was not found at {endpoint} (if it is private, give a `token` that can "
            "read it; check `endpoint`)"
        ) from None
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        detail = f": {' '.join(str(exc.server_message).split())}" if getattr(exc, "server_message", None) else ""
        advice = "; check the `token`" if status in (401, 403) else ""
        raise HubError(f"{what}: the hub at {endpoint} answered HTTP {status}{detail}{advice}") from None
    except hf.LocalEntryNotFoundError as exc:
        # The client falls back to its cache when the hub fails to list or serve a file, then gives up with this.
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        raise HubNetworkError(
            f"{what}: the hub at {endpoint} did not serve every file ({' '.join(str(cause).split())[:300]})"
        ) from None
    except hf.OfflineModeIsEnabled:
        raise HubNetworkError(f"{what}: the hub client is in offline mode (HF_HUB_OFFLINE); unset it") from None
    except (httpx2.TransportError, hf.FileMetadataError) as exc:
        raise HubNetworkError(
            f"{what}: cannot reach the hub at {endpoint} ({exc.__class__.__name__}: {exc}); check `endpoint` and "
            "the network"
        ) from None
    except (ValueError, RuntimeError) as exc:
        # The client's checks of the hub's answers (malformed JSON, an upload that failed) raise these.
        cause = exc.__cause__ if isinstance(exc, RuntimeError) and exc.__cause__ is not None else exc
        raise HubError(f"{what}: {' '.join(str(cause).split()) or cause.__class__.__name__}") from None


@contextlib.contextmanager
def _progress(progress: bool | None) -> Iterator[None]:
    """The client's progress bars on stderr only when asked for (``None``: when stderr is a terminal)."""
    from huggingface_hub.utils.tqdm import disable_progress_bars

    if progress if progress is not None else sys.stderr.isatty():
        yield
        return
    with disable_progress_bars():  # re-enabled on exit only if it was enabled before
        yield


def _api(token: str | None, endpoint: str | None) -> Any:
    hf = _client()
    return hf.HfApi(endpoint=endpoint, token=token)


def _resolve(api: Any, repo_id: str, revision: str | None) -> str:
    """The commit SHA ``revision`` (branch, tag, SHA; ``None``: the default branch) names right now."""
    with _hub_errors(repo_id, api.endpoint, f"resolving revision {revision or 'main'!r} of {repo_id}", revision):
        info = api.model_info(repo_id, revision=revision)
    sha = getattr(info, "sha", None)
    if not isinstance(sha, str) or not _COMMIT_SHA.fullmatch(sha):
        raise HubError(f"the hub at {api.endpoint} gave no commit SHA for {repo_id} at {revision or 'main'!r}")
    if revision is not None and _COMMIT_SHA.fullmatch(revision) and sha != revision:
        raise HubError(f"the hub at {api.endpoint} resolved commit {revision} of {repo_id} to another commit, {sha}")
    return sha


def _repo_name(repo_id: str) -> str:
    name = repo_id.rstrip("/").rpartition("/")[2]
    return name if name not in ("", ".", "..") else "model"


def _drop_client_metadata(model_dir: str) -> None:
    """Remove what ``snapshot_download(local_dir=...)`` writes beside the files: it is not part of the model."""
    meta = os.path.join(model_dir, *_CLIENT_METADATA)
    if os.path.isdir(meta) and not os.path.islink(meta):
        shutil.rmtree(meta)
    with contextlib.suppress(OSError):  # only if nothing else is in it (a model's own .cache/ stays)
        os.rmdir(os.path.join(model_dir, _CLIENT_METADATA[0]))


@contextlib.contextmanager
def _relabelled(staging: str, where: str) -> Iterator[None]:
    """Errors that name files in the staging directory name them in the repository instead (``hf://...``).

    The staging directory is gone when the error is read; what the user can act on is the repository's file.
    A mismatch keeps its own error (its names are relative already).
    """
    try:
        yield
    except ModelMismatchError:
        raise
    except WrongMethodError as exc:
        raise WrongMethodError(exc.source.replace(staging, where), signed_with=exc.signed_with,
                               expected=exc.expected) from None
    except ModelSigningError as exc:
        message = str(exc)
        if staging not in message:
            raise
        try:
            relabelled = type(exc)(message.replace(staging, where))
        except TypeError:  # an error class with other constructor arguments: keep it as it is
            raise exc from None
        raise relabelled from None


def _require_signature(model_dir: str, repo_id: str, commit: str) -> str:
    sig = os.path.join(model_dir, SIGNATURE_NAME)
    if not os.path.isfile(sig):
        raise HubError(
            f"{repo_id} has no {SIGNATURE_NAME} at its root at commit {commit}: it was not signed (sign and upload "
            "it with sign_and_upload)"
        )
    return sig


# -- sign and upload -----------------------------------------------------------------------------------


def sign_and_upload(
    repo_id: str,
    folder: PathLike,
    signer: Signer,
    *,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    hashing: HashingConfig | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    create_repo: bool = True,
    private: bool | None = None,
    delete_other_files: bool = False,
    progress: bool | None = None,
) -> HubUploadResult:
    """Hash and sign ``folder``, then upload the signed files and ``model.sig`` to ``repo_id`` in one commit.

    ``revision`` is the branch to commit to (default: the default branch); ``hashing`` the hashing
    settings (default ``HashingConfig()``: files, sha256, which :func:`verify_remote` can check without a
    download).  Exactly the files the signature covers are uploaded, under the same relative paths, with
    the signature as ``model.sig`` at the root; a ``model.sig`` already in ``folder`` (an earlier
    signature) is excluded from hashing and replaced, and so is the client's ``.cache/huggingface`` of a
    folder it downloaded into (both recorded as ignore paths).  Files already in the repository and not part of
    this upload are left as they are (verification then reports them as extra files), unless
    ``delete_other_files``: then the same commit deletes them (all but the top-level git files such as
    ``.gitattributes``), based on the branch's head, which the commit names as its parent.  ``create_repo``
    creates the repository first if it does not exist (``private`` as given).  ``token`` and ``endpoint``
    default to the client's (``HF_TOKEN`` or the saved login; ``HF_ENDPOINT``).
    """
    model = os.fspath(folder)
    if not os.path.isdir(model):
        what = "does not exist" if not os.path.lexists(model) else "is not a directory"
        raise InputError(f"model folder {model} {what}; sign_and_upload uploads a model directory")
    hf = _client()
    config = hashing if hashing is not None else HashingConfig()
    # Not model files: an earlier signature (the new one replaces it in the repository) and the client's
    # bookkeeping of a folder it downloaded into (which upload_folder leaves out too).
    for rel in (SIGNATURE_NAME, "/".join(_CLIENT_METADATA)):
        present = os.path.lexists(os.path.join(model, *rel.split("/")))
        if present and not _walk.ignored_by(rel, list(config.ignore_paths)):
            config = dataclasses.replace(config, ignore_paths=(*config.ignore_paths, rel))
    api = hf.HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    with tempfile.TemporaryDirectory(prefix="modelseal-hub-sign-") as scratch:
        signed = sign(model, signer, hashing=config, signature_path=os.path.join(scratch, SIGNATURE_NAME))
        method = signed.manifest.serialization.method
        files = sorted({_compare.file_of(r.name, method) for r in signed.manifest.resources})
        additions = [
            hf.CommitOperationAdd(path_in_repo=name, path_or_fileobj=os.path.join(model, *name.split("/")))
            for name in files
        ]
        additions.append(
            hf.CommitOperationAdd(path_in_repo=SIGNATURE_NAME, path_or_fileobj=signed.bundle_json.encode("utf-8"))
        )
        with _progress(progress):
            if create_repo:
                with _hub_errors(repo_id, api.endpoint, f"creating repository {repo_id}"):
                    api.create_repo(repo_id, exist_ok=True, private=private)
            deletions: list[Any] = []
            parent: str | None = None
            if delete_other_files:
                parent = _resolve(api, repo_id, branch)
                with _hub_errors(repo_id, api.endpoint, f"listing the files of {repo_id} at {parent}", revision):
                    listing = [e.path for e in api.list_repo_tree(repo_id, revision=parent, recursive=True)
                               if isinstance(e, hf.RepoFile)]
                keep = {*files, SIGNATURE_NAME}
                deletions = [hf.CommitOperationDelete(path_in_repo=p) for p in sorted(listing)
                             if p not in keep and not _walk.ignored_by(p, list(DEFAULT_IGNORED))]
            with _hub_errors(repo_id, api.endpoint, f"uploading to {repo_id}", revision):
                info = api.create_commit(
                    repo_id, operations=[*additions, *deletions], commit_message=commit_message, revision=revision,
                    parent_commit=parent,
                )
    commit = str(info.oid)
    return HubUploadResult(
        repo_id=repo_id,
        revision=branch,
        commit=commit,
        commit_url=str(info.commit_url),
        endpoint=api.endpoint,
        signing=signed,
        uploaded=(*files, SIGNATURE_NAME),
        deleted=tuple(d.path_in_repo for d in deletions),
    )


# -- download and verify -------------------------------------------------------------------------------


def _check_target(target: str) -> None:
    """``local_dir`` must be free (absent, or an empty directory) before anything is downloaded."""
    if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
        raise InputError(f"`local_dir` {target} exists and is not a directory; choose another `local_dir`")
    if os.path.isdir(target) and os.listdir(target):
        raise InputError(
            f"`local_dir` {target} exists and is not empty; choose a new or empty `local_dir` (verified files "
            "are only ever moved into a free place, never mixed with others)"
        )
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise InputError(f"`local_dir` {target}: directory {parent} does not exist")


def download_and_verify(
    repo_id: str,
    verifier: Verifier,
    *,
    revision: str | None = None,
    local_dir: PathLike | None = None,
    allow_patterns: Sequence[str] | None = None,
    ignore_unsigned_files: bool = False,
    ignore_paths: Sequence[str] = (),
    token: str | None = None,
    endpoint: str | None = None,
    max_workers: int | None = None,
    progress: bool | None = None,
) -> HubVerifyResult:
    """Download ``repo_id`` at a pinned commit, verify it against its ``model.sig``, and only then place it.

    ``revision`` (branch, tag or commit; default: the default branch) is resolved to a commit SHA first;
    the snapshot of that commit is downloaded into a staging directory beside ``local_dir`` and verified
    there (the verify pipeline: signature first, then every file re-hashed with the signed settings).
    Only a snapshot that verifies is renamed to ``local_dir`` (which must be absent or empty); on any
    failure the staging directory is deleted and ``local_dir`` is untouched.  Without ``local_dir`` the
    verified files are moved to a new temporary directory (``modelseal-hub-verified-*/NAME``), returned as
    ``result.local_dir``; the caller removes it.

    ``allow_patterns`` (the client's glob patterns) downloads a subset; ``model.sig`` is always added.
    Every signed file must still be selected (a signed file left out is ``missing``), so it serves to skip
    files the signature does not cover, with ``ignore_unsigned_files`` or the signer's ignore paths.
    The downloaded ``model.sig`` stays at the root of ``local_dir``: verify the copy later with
    ``verify(local_dir, verifier, signature_path=local_dir/model.sig)``.
    """
    api = _api(token, endpoint)
    commit = _resolve(api, repo_id, revision)
    target = os.path.abspath(os.fspath(local_dir)) if local_dir is not None else None
    if target is not None:
        _check_target(target)
    name = os.path.basename(target) if target is not None else _repo_name(repo_id)
    # Beside local_dir, so the final move is a rename on the same file system; a dot name that says what
    # it is, so a staging directory left by a killed process never passes for a verified download.
    staging = tempfile.mkdtemp(prefix=".modelseal-hub-staging-", dir=os.path.dirname(target) if target else None)
    try:
        model_dir = os.path.join(staging, name)
        patterns = None if allow_patterns is None else [*allow_patterns, glob.escape(SIGNATURE_NAME)]
        hf = _client()
        with _progress(progress), _hub_errors(repo_id, api.endpoint, f"downloading {repo_id} at {commit}"):
            hf.snapshot_download(
                repo_id, revision=commit, local_dir=model_dir, allow_patterns=patterns, token=token, endpoint=endpoint
            )
        if not os.path.isdir(model_dir):
            os.mkdir(model_dir)
        _drop_client_metadata(model_dir)
        sig = _require_signature(model_dir, repo_id, commit)
        try:
            with _relabelled(model_dir, f"hf://{repo_id}@{commit}"):
                verified = verify(
                    model_dir, verifier, signature_path=sig, ignore_unsigned_files=ignore_unsigned_files,
                    ignore_paths=ignore_paths, max_workers=max_workers, progress=progress,
                )
        except ModelMismatchError as exc:
            assert exc.result is not None  # verify() always attaches it
            failed = _hub_result(repo_id, revision, commit, api.endpoint, exc.result, remote_only=False)
            raise HubMismatchError(
                exc.differences, signed_model=exc.signed_model, model_name=exc.model_name, result=failed.verification,
                hub_result=failed,
            ) from None
        if target is None:  # a new directory of the caller's, in the same temporary directory as the staging one
            target = os.path.join(tempfile.mkdtemp(prefix="modelseal-hub-verified-"), name)
        try:
            os.rename(model_dir, target)  # replaces an empty directory; refuses a non-empty one
        except OSError as exc:
            raise InputError(f"cannot move the verified files to `local_dir` {target}: {exc.strerror or exc}") from None
        final = target
        verified = dataclasses.replace(
            verified, model_path=final, signature_path=os.path.join(final, SIGNATURE_NAME)
        )
        return _hub_result(repo_id, revision, commit, api.endpoint, verified, remote_only=False, local_dir=final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _hub_result(
    repo_id: str,
    revision: str | None,
    commit: str,
    endpoint: str,
    verification: VerifyResult,
    *,
    remote_only: bool,
    local_dir: str | None = None,
    downloaded: tuple[str, ...] = (),
    remote_checked: tuple[RemoteFileCheck, ...] = (),
) -> HubVerifyResult:
    if not remote_only and local_dir is None:  # a failed download: the staging paths are gone
        where = f"hf://{repo_id}@{commit}"
        verification = dataclasses.replace(
            verification, model_path=where, signature_path=f"{where}/{SIGNATURE_NAME}"
        )
    return HubVerifyResult(
        repo_id=repo_id, revision=revision, commit=commit, endpoint=endpoint, verification=verification,
        remote_only=remote_only, local_dir=local_dir, downloaded=downloaded, remote_checked=remote_checked,
    )


# -- verify without downloading the weights ------------------------------------------------------------


def verify_remote(
    repo_id: str,
    verifier: Verifier,
    *,
    revision: str | None = None,
    ignore_unsigned_files: bool = False,
    ignore_paths: Sequence[str] = (),
    token: str | None = None,
    endpoint: str | None = None,
    max_workers: int | None = None,
    progress: bool | None = None,
) -> HubVerifyResult:
    """Verify ``repo_id`` at a pinned commit without downloading its large (LFS) files.

    ``revision`` is resolved to a commit SHA; the repository's tree at that commit is listed; ``model.sig``
    and every small (non-LFS) file are downloaded to a temporary directory and verified with the verify
    pipeline (the signature's verdict first).  Each large file the signature covers is then checked
    against the SHA-256 and size the hub reports for it (its LFS object id); a large file the signature
    does not cover is an ``extra`` difference (accepted with ``ignore_unsigned_files``).  Only ``files``
    signatures with sha256 can be checked so (the signed digest is then the LFS object id); for others
    this raises :class:`~model_signing.errors.RemoteVerificationUnsupportedError`: download them.

    The result says what was checked how (``remote_checked``, ``note``): the large files' content was
    not seen here, only the hub's report of it at that commit.
    """
    hf = _client()
    api = hf.HfApi(endpoint=endpoint, token=token)
    commit = _resolve(api, repo_id, revision)
    where = f"hf://{repo_id}@{commit}"
    with _hub_errors(repo_id, api.endpoint, f"listing the files of {repo_id} at {commit}"):
        listing = api.list_repo_tree(repo_id, revision=commit, recursive=True)
        entries = [e for e in listing if isinstance(e, hf.RepoFile)]
    large: dict[str, RemoteFileCheck] = {}
    for entry in entries:
        if entry.lfs is None or entry.path == SIGNATURE_NAME:
            continue
        sha256, size = str(entry.lfs.sha256).lower(), entry.lfs.size
        if not _SHA256.fullmatch(sha256) or not isinstance(size, int) or size < 0 or size != entry.size:
            raise HubError(
                f"the hub at {api.endpoint} reports a malformed or inconsistent LFS object id or size for {entry.path}"
            )
        large[entry.path] = RemoteFileCheck(entry.path, sha256, size)
    small = sorted(e.path for e in entries if e.path not in large)
    if SIGNATURE_NAME not in small:
        raise HubError(
            f"{repo_id} has no {SIGNATURE_NAME} at its root at commit {commit}: it was not signed (sign and upload "
            "it with sign_and_upload)"
        )
    with tempfile.TemporaryDirectory(prefix="modelseal-hub-remote-") as staging:
        model_dir = os.path.join(staging, _repo_name(repo_id))
        os.mkdir(model_dir)
        with _progress(progress), _hub_errors(repo_id, api.endpoint, f"downloading the small files of {repo_id}"):
            # Exact names (escaped: a name may contain glob characters), all at the pinned commit.
            hf.snapshot_download(
                repo_id, revision=commit, local_dir=model_dir, allow_patterns=[glob.escape(n) for n in small],
                token=token, endpoint=endpoint,
            )
        _drop_client_metadata(model_dir)
        sig = _require_signature(model_dir, repo_id, commit)
        try:
            with _relabelled(model_dir, where):
                local = verify(
                    model_dir, verifier, signature_path=sig, ignore_unsigned_files=ignore_unsigned_files,
                    ignore_paths=ignore_paths, max_workers=max_workers, progress=progress,
                )
        except ModelMismatchError as exc:
            assert exc.result is not None  # verify() always attaches it
            local = exc.result
        extra_ignored = _walk.normalize_ignore_paths(model_dir, list(ignore_paths))
    serialization = local.manifest.serialization
    if serialization.method != "files" or serialization.hash_type != "sha256":
        raise RemoteVerificationUnsupportedError(
            f"the signature of {repo_id} uses {serialization.method} serialization with {serialization.hash_type}; "
            "the hub records a SHA-256 per whole file, so only files signatures with sha256 can be checked without "
            "downloading: download it and verify it with download_and_verify()"
        )
    differences, checked = _check_large_files(local, large)
    signed = _compare.signed_files(local.manifest)
    ignored = [*DEFAULT_IGNORED, *serialization.ignore_paths, *extra_ignored]
    unsigned = list(local.unsigned_files)
    for name, remote in large.items():
        if name in signed or _walk.ignored_by(name, ignored):
            continue
        if ignore_unsigned_files:
            unsigned.append(name)
        else:
            differences.append(Difference("extra", name, None, remote.sha256))
    differences.sort(key=lambda d: d.name)
    verification = dataclasses.replace(
        local, model_path=where, signature_path=f"{where}/{SIGNATURE_NAME}", differences=tuple(differences),
        unsigned_files=tuple(sorted(unsigned)),
    )
    result = _hub_result(
        repo_id, revision, commit, api.endpoint, verification, remote_only=True,
        downloaded=tuple(small), remote_checked=tuple(checked),
    )
    if differences:
        raise HubMismatchError(
            differences, signed_model=local.signed_model, model_name=local.model_name, result=verification,
            hub_result=result,
        )
    return result


def _check_large_files(
    local: VerifyResult, large: dict[str, RemoteFileCheck]
) -> tuple[list[Difference], list[RemoteFileCheck]]:
    """The local verification's differences with each large file's ``missing`` settled by the hub's digest.

    Large files were not downloaded, so the local verification found each signed one missing; its signed
    digest is compared with the hub's instead (``modified`` when they differ, the hub's digest as actual).
    """
    differences: list[Difference] = []
    checked: list[RemoteFileCheck] = []
    for d in local.differences:
        remote = large.get(d.name)
        if d.kind != "missing" or remote is None:
            differences.append(d)
        elif d.expected == remote.sha256:
            checked.append(remote)
        else:
            differences.append(Difference("modified", d.name, d.expected, remote.sha256))
    return differences, checked

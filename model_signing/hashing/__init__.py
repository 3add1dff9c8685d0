"""L3: hashing a model tree into a :class:`~model_signing.manifest.Manifest` (public API).

Pipeline: walk (:mod:`.walk`) -> plan work items (``_plan``) -> hash in worker processes (``_pool``, the
local executor) -> manifest.  This module only wires the stages together, and exposes what the walk
learns about each file (:func:`file_identities`) for the callers that must know a file is unchanged
(verified loading, a digest cache, distributed hashing).

:func:`hash_file_sets` hashes several models' files through one worker pool per hash type (``verify-all``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_signing.errors import EmptyModelError, InputError, ModelSigningError
from model_signing.manifest import (
    DEFAULT_SHARD_SIZE,
    HASH_TYPES,
    METHODS,
    HashType,
    Manifest,
    Resource,
    Serialization,
    SerializationMethod,
)

if TYPE_CHECKING:
    from model_signing.hashing._plan import Task as Task
    from model_signing.hashing._pool import Tap as Tap
    from model_signing.hashing._taps import ScanTap, Taps
    from model_signing.hashing.cache import DigestCache, PriorSignature
    from model_signing.hashing.executor import Executor
    from model_signing.hashing.walk import FileEntry, WalkResult
    from model_signing.results import DigestResult
    from model_signing.scan import ScanConfig


@dataclass(frozen=True)
class HashingConfig:
    """How to enumerate and hash a model."""

    method: SerializationMethod = "files"
    hash_type: HashType = "sha256"
    shard_size: int = DEFAULT_SHARD_SIZE
    allow_symlinks: bool = False
    #: Extra paths to exclude: relative to the model root, or absolute paths inside it.
    ignore_paths: Sequence[str] = ()
    #: Worker processes; ``None`` means the CPU count.  Capped at :func:`max_workers_cap` (more would only
    #: add processes); blake3's own threads never outnumber the CPUs.
    max_workers: int | None = None
    #: Progress bar on stderr: ``None`` = only when stderr is a terminal.
    progress: bool | None = None
    #: Reuse (and store) digests of unchanged files (:mod:`model_signing.hashing.cache`); ``None``: no cache.
    #: Verification never uses one (:meth:`from_serialization` cannot set it).
    digest_cache: DigestCache | None = None
    #: What hashes the work items (:mod:`model_signing.hashing.executor`); ``None``: the local pool.
    executor: Executor | None = None
    #: An earlier signature whose digests :func:`model_signing.sign` may reuse (with ``digest_cache``)
    #: for files unchanged since; read by the signing pipeline, which parses it (hashing reads no bundle).
    reuse_from: str | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` for settings that cannot be used."""
        if self.method not in METHODS:
            raise InputError(f"unknown serialization {self.method!r}; use one of {', '.join(METHODS)}")
        if self.hash_type not in HASH_TYPES:
            raise InputError(f"unknown hash {self.hash_type!r}; use one of {', '.join(HASH_TYPES)}")
        if isinstance(self.shard_size, bool) or not isinstance(self.shard_size, int) or self.shard_size <= 0:
            raise InputError(f"shard size must be a positive number of bytes, not {self.shard_size!r}")
        if self.max_workers is not None and (
            isinstance(self.max_workers, bool) or not isinstance(self.max_workers, int) or self.max_workers < 1
        ):
            raise InputError(f"max workers must be a positive integer, not {self.max_workers!r}")
        if isinstance(self.ignore_paths, str):
            raise InputError("`ignore_paths` must be a list of paths, not a single string")
        if self.digest_cache is not None or self.executor is not None:
            from model_signing.hashing.cache import DigestCache
            from model_signing.hashing.executor import Executor

            if self.digest_cache is not None and not isinstance(self.digest_cache, DigestCache):
                raise InputError(f"`digest_cache` must be a DigestCache, not {type(self.digest_cache).__name__}")
            if self.executor is not None and not isinstance(self.executor, Executor):
                raise InputError(f"`executor` must have a run() method (an Executor), not {self.executor!r}")

    @classmethod
    def from_serialization(cls, serialization: Serialization, **overrides: object) -> HashingConfig:
        """The configuration that re-enumerates a model exactly as ``serialization`` records it.

        Verification uses this so the model is hashed with the settings that were signed.
        ``overrides`` may set ``max_workers`` and ``progress``.
        """
        base = cls(
            method=serialization.method,
            hash_type=serialization.hash_type,
            shard_size=serialization.shard_size or DEFAULT_SHARD_SIZE,
            allow_symlinks=serialization.allow_symlinks,
            ignore_paths=tuple(serialization.ignore_paths),
        )
        extra = {k: v for k, v in overrides.items() if k in ("max_workers", "progress")}
        if len(extra) != len(overrides):
            raise TypeError(f"from_serialization only overrides max_workers/progress, got {sorted(overrides)}")
        return cls(**{**base.__dict__, **extra})


@dataclass(frozen=True)
class FileIdentity:
    """A file the walk found, and the evidence that tells whether it is still the same file."""

    #: Canonical name relative to the model root (POSIX), as in the manifest; the basename for a single file.
    name: str
    #: The path it is opened by.
    path: str
    dev: int
    inode: int
    size: int
    mtime_ns: int
    #: The inode change time, which no user can set back (unlike ``mtime_ns``).
    ctime_ns: int


def file_identities(
    path: str | os.PathLike[str],
    config: HashingConfig = HashingConfig(),
    *,
    signature_path: str | os.PathLike[str] | None = None,
) -> tuple[FileIdentity, ...]:
    """The files :func:`hash_model` would hash with ``config``, in manifest order, with their identities.

    The same walk as hashing (same refusals of symlinks, special files and unsafe names; the same
    exclusions), without reading any file.
    """
    from model_signing.hashing import walk as _walk

    config.validate()
    walked = _walk.walk(
        path, allow_symlinks=config.allow_symlinks, ignore_paths=config.ignore_paths, signature_path=signature_path
    )
    return tuple(
        FileIdentity(f.name, f.path, f.dev, f.ino, f.size, f.mtime_ns, f.ctime_ns)
        for f in sorted(walked.files, key=lambda f: f.name)
    )


def default_workers() -> int:
    """The default number of worker processes: the CPUs this process may run on."""
    from model_signing.hashing._pool import usable_cpus

    return usable_cpus()


def max_workers_cap() -> int:
    """The most worker processes hashing uses, whatever ``max_workers`` asks: a few per CPU.

    See :data:`model_signing.hashing._pool.WORKERS_PER_CPU` for why that many.
    """
    from model_signing.hashing._pool import WORKERS_PER_CPU, usable_cpus

    return WORKERS_PER_CPU * usable_cpus()


def hash_model(
    path: str | os.PathLike[str],
    config: HashingConfig = HashingConfig(),
    *,
    signature_path: str | os.PathLike[str] | None = None,
    scratch_path: str | os.PathLike[str] | None = None,
    poll: Callable[[], None] | None = None,
) -> Manifest:
    """Hash the model at ``path`` (a directory or a single file) and return its manifest.

    ``signature_path`` is always excluded from the hashed set (and recorded in
    ``serialization.ignore_paths`` when it lies inside the model, as the peer does).  Raises
    :class:`~model_signing.errors.InputError` if ``path`` does not exist,
    :class:`~model_signing.errors.ModelPathError` for trees that cannot be enumerated and
    :class:`~model_signing.errors.FileChangedError` when a file changes while it is read.

    ``scratch_path`` (the temporary file a signature is being written to) is skipped without being recorded.

    ``poll`` is called now and then while hashing, from this thread; an exception it raises stops the
    hashing (workers included) and propagates.  Signing and verification use it to stop at once when the
    signature work running alongside (a certificate request, a signature check) has failed.
    """
    return _hash(path, config, signature_path=signature_path, scratch_path=scratch_path, poll=poll)[0]


def digest_model(
    path: str | os.PathLike[str],
    config: HashingConfig = HashingConfig(),
    *,
    signature_path: str | os.PathLike[str] | None = None,
    scratch_path: str | os.PathLike[str] | None = None,
    poll: Callable[[], None] | None = None,
    prior: PriorSignature | None = None,
    scan: ScanConfig | None = None,
) -> DigestResult:
    """:func:`hash_model`, as a :class:`~model_signing.results.DigestResult` (manifest + unmatched ignore paths).

    ``unmatched_ignore_paths`` lists the ``config.ignore_paths`` (canonical form) that matched no file:
    ignore paths are literal paths, not glob patterns, so a typo or a ``*`` excludes nothing.

    ``prior`` (with ``config.digest_cache``): an earlier signature whose digests are reused for the files
    the cache recorded it signing and whose identity has not changed since.
    ``scan``: also scan every file for unsafe content, in the same read pass (no byte is read twice);
    the report is the result's ``scan``.  Unsafe content is not an error here: the caller decides.
    """
    from model_signing.results import DigestResult

    manifest, walked, tap = _hash(path, config, signature_path=signature_path, scratch_path=scratch_path,
                                  poll=poll, prior=prior, scan=scan)
    return DigestResult(os.fspath(path), manifest, walked.unmatched_ignore_paths,
                        scan=tap.report() if tap is not None else None)


def _hash(
    path: str | os.PathLike[str],
    config: HashingConfig,
    *,
    signature_path: str | os.PathLike[str] | None = None,
    scratch_path: str | os.PathLike[str] | None = None,
    poll: Callable[[], None] | None = None,
    prior: PriorSignature | None = None,
    scan: ScanConfig | None = None,
) -> tuple[Manifest, WalkResult, ScanTap | None]:
    """Walk and hash; the manifest, the walk (for what it learnt about the ignore paths), the scan's tap."""
    import time

    from model_signing.hashing import walk as _walk

    config.validate()
    # Taken before the first stat: a file changed after this instant is never stored in a digest cache.
    walk_start_ns = time.time_ns()
    walked = _walk.walk(
        path,
        allow_symlinks=config.allow_symlinks,
        ignore_paths=config.ignore_paths,
        signature_path=signature_path,
        scratch_path=scratch_path,
    )
    tap = scan_tap(walked.files, scan) if scan is not None else None
    resources = hash_files(walked.files, config, poll=poll, prior=prior, walk_start_ns=walk_start_ns, tap=tap)
    if not resources:
        raise EmptyModelError(
            f"{os.fspath(path)} has only empty files, which shards serialization omits, so there is "
            "nothing to sign; use `method='files'`"
        )
    serialization = Serialization(
        method=config.method,
        hash_type=config.hash_type,
        allow_symlinks=config.allow_symlinks,
        shard_size=config.shard_size if config.method == "shards" else None,
        ignore_paths=walked.ignore_paths,
    )
    return Manifest(model_name=walked.model_name, serialization=serialization, resources=resources), walked, tap


def hash_files(
    files: Sequence[FileEntry],
    config: HashingConfig,
    *,
    poll: Callable[[], None] | None = None,
    prior: PriorSignature | None = None,
    walk_start_ns: int | None = None,
    tap: Tap | None = None,
) -> tuple[Resource, ...]:
    """Hash already enumerated files into resources, in manifest order (none for an empty plan).

    With ``config.digest_cache``, digests of files whose identity fully matches a cached entry (or, with
    ``prior``, the identity recorded for that earlier signature) are reused and only the rest is hashed;
    ``walk_start_ns`` (when the walk began) decides which newly hashed files are settled enough to store.

    ``tap`` sees every byte as it is hashed (:func:`scan_tap`; see ``hashing._pool.Tap``); each file is
    then read by one worker from its first byte on, shards included, until the tap needs no more of it
    (a safetensors header once scanned: the tensor shards then go to every worker).  A tap must see
    every byte it asks for, so with one no cached digest is reused (the cache is still updated), and only
    the local pool can run it (taps reach the workers through ``fork``).
    """
    from model_signing.hashing import _plan, _progress
    from model_signing.hashing.executor import LocalExecutor

    plan = _plan.make_plan(files, config.method, config.shard_size, whole_files=tap is not None)
    if not plan.names:
        return ()
    executor = config.executor if config.executor is not None else LocalExecutor(config.max_workers)
    if tap is not None and not isinstance(executor, LocalExecutor):
        raise InputError(
            "a scan (or verified loading) reads every byte in this machine's hashing pass; it cannot run "
            "on a cluster `executor`: leave `executor` unset to scan"
        )
    cache = config.digest_cache
    known: dict[int, bytes] = {}
    if cache is not None:
        from model_signing.hashing import _reuse
        from model_signing.hashing.cache import Settings

        settings = Settings.of(config.method, config.hash_type, config.shard_size)
        if tap is None:  # a tap must see every byte: a reused digest would leave its file unread
            known = _reuse.known_digests(cache, plan, files, settings, prior)
    items = plan.items
    if known:
        items = _reuse.remaining_items(items, known)
    # Positions renumbered 0..k-1 for the executor: it hashes exactly what is left.
    todo = [t for item in items for t in item]
    index = {t.pos: i for i, t in enumerate(todo)}
    work = tuple(tuple(t._replace(pos=index[t.pos]) for t in item) for item in items)
    digests: list[bytes | None] = [known.get(i) for i in range(len(plan.names))]
    if work:
        with _progress.Progress(sum(t.end - t.start for t in todo), config.progress) as bar:
            if tap is not None:
                from model_signing.hashing import _pool as _workers

                workers = min(config.max_workers or default_workers(), max_workers_cap())
                hashed = _workers.hash_items(work, len(todo), config.hash_type, workers, bar.start, poll=poll,
                                             tap=tap)
            else:
                hashed = executor.run(work, len(todo), config.hash_type, on_start=bar.start, poll=poll)
        for t, digest in zip(todo, hashed, strict=True):
            digests[t.pos] = digest
    elif poll is not None:
        poll()  # nothing to hash: a failure already known still stops the run
    if cache is not None:
        _reuse.store(cache, files, settings, hashed=todo, digests=digests, walk_start_ns=walk_start_ns)
    complete = [d for d in digests if d is not None]
    if len(complete) != len(digests):  # pragma: no cover - a planning bug, never user input
        raise RuntimeError("internal error: some resources were not hashed")
    return tuple(
        Resource(name=name, algorithm=config.hash_type, digest=digest)
        for name, digest in zip(plan.names, complete, strict=True)
    )


def hash_file_sets(
    jobs: Sequence[tuple[Sequence[FileEntry], HashingConfig]],
    *,
    max_workers: int | None = None,
) -> list[tuple[Resource, ...] | ModelSigningError]:
    """:func:`hash_files` for several models at once, through ONE worker pool per hash type.

    ``jobs`` are ``(files, config)`` pairs, one per model (each config's method and shard size apply to
    its own files; its ``max_workers`` and ``progress`` are not used: the pool has ``max_workers``
    processes, default the CPU count, capped at :func:`max_workers_cap`, and shows no progress bar).
    The models' work items are merged, largest first across models, and each model's resource positions
    are offset past the previous models' so the digests can be split back per model.  A pool forks once
    per hash type, not once per model, so a pack of many small models does not pay a fork per model and
    never runs more hashing processes than ``max_workers``.

    Returns, per job in order, its resources (manifest order) or the error that stopped its hashing
    (:class:`~model_signing.errors.FileChangedError`, :class:`~model_signing.errors.ModelPathError`):
    one model's unreadable file fails that model only, and the rest of its items are skipped.  Other
    exceptions (internal errors) stop everything and propagate.
    """
    import bisect

    from model_signing.hashing import _plan
    from model_signing.hashing import _pool as _workers

    workers = min(max_workers or default_workers(), max_workers_cap())
    plans = []
    for files, config in jobs:
        config.validate()
        plans.append(_plan.make_plan(files, config.method, config.shard_size))
    out: list[tuple[Resource, ...] | ModelSigningError] = [() for _ in jobs]
    groups: dict[HashType, list[int]] = {}
    for i, (_, config) in enumerate(jobs):
        if plans[i].names:  # an empty plan has no resource, as in hash_files
            groups.setdefault(config.hash_type, []).append(i)
    for hash_type, members in groups.items():
        starts: list[int] = []  # first resource position of each member, ascending
        items: list[tuple[Task, ...]] = []
        offset = 0
        for i in members:
            starts.append(offset)
            items += [tuple(t._replace(pos=t.pos + offset) for t in item) for item in plans[i].items]
            offset += len(plans[i].names)
        # Largest first across models (stable: ties keep each model's own order).
        items.sort(key=lambda item: -sum(t.end - t.start for t in item))
        failed: dict[int, ModelSigningError] = {}

        def owner(item: Sequence[Task], starts: list[int] = starts) -> int:
            return bisect.bisect_right(starts, item[0].pos) - 1

        def on_error(item: Sequence[Task], exc: Exception, failed: dict[int, ModelSigningError] = failed) -> None:
            if not isinstance(exc, ModelSigningError):
                raise exc
            failed.setdefault(owner(item), exc)  # the first failure is the model's

        def skip(item: Sequence[Task], failed: dict[int, ModelSigningError] = failed) -> bool:
            return owner(item) in failed

        digests = _workers.hash_items_isolated(items, offset, hash_type, workers, on_error=on_error, skip=skip)
        for k, i in enumerate(members):
            if k in failed:
                out[i] = failed[k]
                continue
            names = plans[i].names
            own = digests[starts[k] : starts[k] + len(names)]
            resources = []
            for name, digest in zip(names, own, strict=True):
                if digest is None:  # pragma: no cover - a planning bug, never user input
                    raise RuntimeError("internal error: some resources were not hashed")
                resources.append(Resource(name=name, algorithm=hash_type, digest=digest))
            out[i] = tuple(resources)
    return out


def scan_tap(files: Sequence[FileEntry], config: ScanConfig) -> ScanTap:
    """A tap for :func:`hash_files` that scans every file in the hashing pass; ``.report()`` afterwards."""
    from model_signing.hashing._taps import ScanTap

    return ScanTap(config, {f.path: f.name for f in files}, [f.name for f in files if f.size == 0])


def combine_taps(*taps: Tap) -> Taps:
    """Several taps for one :func:`hash_files` call."""
    from model_signing.hashing._taps import Taps

    return Taps(*taps)

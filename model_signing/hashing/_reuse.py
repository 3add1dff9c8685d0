"""Between the plan and the executor: which digests a :class:`~.cache.DigestCache` (or an earlier
signature recorded in it) already knows, what is left to hash, and what to store afterwards."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from model_signing.hashing._plan import Plan, Task
from model_signing.hashing.cache import DigestCache, Key, PriorSignature, Settings, ctime_trusted
from model_signing.hashing.walk import FileEntry


def _same_file(a: Key, f: FileEntry) -> bool:
    return (a.dev, a.ino, a.size, a.mtime_ns, a.ctime_ns) == (f.dev, f.ino, f.size, f.mtime_ns, f.ctime_ns)


def known_digests(
    cache: DigestCache,
    plan: Plan,
    files: Sequence[FileEntry],
    settings: Settings,
    prior: PriorSignature | None,
) -> dict[int, bytes]:
    """Resource position -> digest, for every resource the cache or ``prior`` can vouch for."""
    cache.begin_run()
    by_path = {f.path: f for f in files}
    all_tasks = [t for item in plan.items for t in item]
    # Files on a file system whose change time a writer controls are always hashed (see ctime_trusted).
    trusted = {dev: ctime_trusted(dev) for dev in {f.dev for f in files}}
    tasks = [t for t in all_tasks if trusted[by_path[t.path].dev]]
    cache.stats.untrusted_fs = len(all_tasks) - len(tasks)
    keys = {t.pos: Key.of(by_path[t.path], t.start, t.end) for t in tasks}
    found = cache.lookup(settings, list(keys.values()))
    known = {pos: found[k] for pos, k in keys.items() if k in found}
    cache.stats.hits = len(known)
    cache.used = [k for k in keys.values() if k in found]
    if prior is not None:
        recorded = cache.signature_files(prior) if prior.settings == settings else None
        cache.stats.prior_known = recorded is not None
        if prior.settings != settings:
            p = prior.settings
            cache.stats.prior_unused = (
                f"it was made with other serialization settings ({p.method}, {p.hash_type}"
                f"{f', shard size {p.shard_size}' if p.shard_size else ''}) than this run"
            )
        elif recorded is None:
            cache.stats.prior_unused = (
                f"digest cache {cache.path} has no record of it (made elsewhere, edited, or pruned)"
            )
        if recorded:
            for t in tasks:
                f = by_path[t.path]
                was = recorded.get(f.name)
                digest = prior.digests.get(plan.names[t.pos])
                if t.pos not in known and was is not None and digest is not None and _same_file(was, f):
                    known[t.pos] = digest
                    cache.stats.reused_from_signature += 1
    cache.stats.misses = len(all_tasks) - len(known)
    return known


def remaining_items(items: Sequence[Sequence[Task]], known: dict[int, bytes]) -> tuple[tuple[Task, ...], ...]:
    """The work items without the tasks already known (items left empty are dropped)."""
    left = (tuple(t for t in item if t.pos not in known) for item in items)
    return tuple(item for item in left if item)


def store(
    cache: DigestCache,
    files: Sequence[FileEntry],
    settings: Settings,
    *,
    hashed: Sequence[Task],
    digests: Sequence[bytes | None],
    walk_start_ns: int | None,
) -> None:
    """Store the new digests of settled files that kept the walk's identity, and remember the run's files.

    ``hashed`` are the tasks just hashed, with their positions in ``digests`` (manifest order).
    """
    start = walk_start_ns if walk_start_ns is not None else time.time_ns()
    files = [f for f in files if ctime_trusted(f.dev)]  # never stored (see known_digests)
    by_path = {f.path: f for f in files}
    read = {t.path for t in hashed if t.path in by_path}
    kept: set[str] = set()
    for path in read:
        f = by_path[path]
        try:
            st = os.stat(path, follow_symlinks=f.follow)
        except OSError:
            continue
        # ctime included (the readers do not check it): a chmod, or a write with mtime set back, during
        # hashing means the digest may not be of the bytes this identity names.
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (
            f.dev, f.ino, f.size, f.mtime_ns, f.ctime_ns
        ):
            kept.add(path)
    entries = []
    for t in hashed:
        if t.path not in by_path:
            continue
        f = by_path[t.path]
        key = Key.of(f, t.start, t.end)
        digest = digests[t.pos]
        if t.path in kept and digest is not None and cache.settled(key, start):
            entries.append((key, digest))
    cache.store(settings, entries, used=cache.used)
    cache.remember_run(
        settings,
        [
            (f.name, Key.of(f, 0, 0))
            for f in files
            if (f.path not in read or f.path in kept) and cache.settled(Key.of(f, 0, 0), start)
        ],
    )

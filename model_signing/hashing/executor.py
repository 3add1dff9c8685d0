"""Executors: what hashes the planned work items (public API).

The plan (``_plan``) cuts a model into work items: one shard or whole big file, or a batch of small
files.  An :class:`Executor` turns them into digests.  :class:`LocalExecutor` is the default: the fork
pool of ``_pool`` on this machine.  :func:`dask_executor` hashes on the workers of a Dask distributed
cluster that see the model at the same path (``_dask``, the optional ``modelseal[dask]`` extra).

Every executor must read with the same checks: the file's identity (device, inode, size, mtime) is
compared with the walk's before and after reading, and a mismatch is an error, never a digest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from model_signing.manifest import HashType

if TYPE_CHECKING:
    from model_signing.hashing._plan import Task


@runtime_checkable
class Executor(Protocol):
    """Hashes work items; returns the digest of every resource position ``0 .. n_resources - 1``.

    ``items`` are in the order to start them (largest first); each task's ``pos`` is its index in the
    result.  ``on_start`` (if given) is called once hashing starts and returns the progress callback
    (bytes hashed); ``poll`` (if given) is called now and then from the calling thread, and what it
    raises stops the hashing and propagates.
    """

    def run(
        self,
        items: Sequence[Sequence[Task]],
        n_resources: int,
        hash_type: HashType,
        *,
        on_start: Callable[[], Callable[[int], None]] | None = None,
        poll: Callable[[], None] | None = None,
    ) -> list[bytes]:
        """Digests of all resources, indexed by position."""
        ...


@dataclass(frozen=True)
class LocalExecutor:
    """The default executor: forked worker processes on this machine (``max_workers``: see HashingConfig)."""

    max_workers: int | None = None

    def run(
        self,
        items: Sequence[Sequence[Task]],
        n_resources: int,
        hash_type: HashType,
        *,
        on_start: Callable[[], Callable[[int], None]] | None = None,
        poll: Callable[[], None] | None = None,
    ) -> list[bytes]:
        """Hash in the local fork pool."""
        from model_signing.hashing import _pool

        cpus = _pool.usable_cpus()
        workers = min(self.max_workers or cpus, _pool.WORKERS_PER_CPU * cpus)
        return _pool.hash_items(items, n_resources, hash_type, workers, on_start, poll=poll)


def dask_executor(scheduler: str | None = None, **options: object) -> Executor:
    """An executor hashing on a Dask distributed cluster (``scheduler``: ``tcp://HOST:PORT``).

    Without ``scheduler``, ``DASK_SCHEDULER_ADDRESS`` is used.  Needs the ``distributed`` package
    (``pip install modelseal[dask]``) here and on the workers, which must see the model at the same
    absolute path.  Nothing is imported or connected until hashing starts.  ``options``: see
    ``model_signing.hashing._dask.DaskExecutor``.
    """
    from model_signing.hashing._dask import DaskExecutor

    return DaskExecutor(scheduler, **options)  # type: ignore[arg-type, unused-ignore]

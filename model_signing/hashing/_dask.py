"""Hashing on a Dask distributed cluster (the ``modelseal[dask]`` extra); filled in by the Dask work."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from model_signing.errors import InputError
from model_signing.hashing._plan import Task
from model_signing.manifest import HashType


class DaskExecutor:
    """Hashes work items on a Dask cluster's workers (not available in this build)."""

    def __init__(self, scheduler: str | None = None) -> None:
        self.scheduler = scheduler

    def run(
        self,
        items: Sequence[Sequence[Task]],
        n_resources: int,
        hash_type: HashType,
        *,
        on_start: Callable[[], Callable[[int], None]] | None = None,
        poll: Callable[[], None] | None = None,
    ) -> list[bytes]:
        """Not available yet."""
        raise InputError("the Dask executor is not available in this build; use the local executor")

"""Hashing a model tree into a :class:`~model_signing.manifest.Manifest` (public API).

Pipeline: walk (``_walk``) -> plan work items (``_plan``) -> hash in worker processes (``_workers``)
-> manifest.  This module only wires the stages together.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from model_signing.manifest import DEFAULT_SHARD_SIZE, HashType, Manifest, Method


@dataclass(frozen=True)
class HashingConfig:
    """How to enumerate and hash a model."""

    method: Method = "files"
    hash_type: HashType = "sha256"
    shard_size: int = DEFAULT_SHARD_SIZE
    allow_symlinks: bool = False
    #: Extra paths to exclude: relative to the model root, or absolute paths inside it.
    ignore_paths: Sequence[str] = ()
    #: Worker processes; ``None`` means the CPU count.
    max_workers: int | None = None
    #: Progress bar on stderr: ``None`` = only when stderr is a terminal.
    progress: bool | None = None


def hash_model(
    path: str | os.PathLike[str],
    config: HashingConfig = HashingConfig(),
    *,
    signature_path: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Hash the model at ``path`` (a directory or a single file) and return its manifest.

    ``signature_path`` is always excluded from the hashed set.  Raises
    :class:`~model_signing.errors.ModelPathError` for trees that cannot be enumerated and
    :class:`~model_signing.errors.FileChangedError` when a file changes while it is read.
    """
    raise NotImplementedError("implemented by the hasher")

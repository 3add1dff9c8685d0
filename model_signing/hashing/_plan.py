"""Planning: from enumerated files to named resources and to the work items the workers hash.

A *resource* is what the manifest lists: a whole file (``files``) or a byte range ``path:start:end``
(``shards``).  A *work item* is what one worker hashes in one go: one big range, or a batch of small
files so that per-task overhead does not dominate models made of many small files.  Items are sorted
largest first so the longest jobs start early and the workers finish together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from model_signing.hashing.walk import FileEntry
from model_signing.manifest import SerializationMethod

#: Ranges smaller than this are batched with others into one work item.
SMALL_RANGE = 4 * 1024 * 1024
#: A batch of small ranges stops growing at this many bytes or this many ranges.
BATCH_BYTES = 8 * 1024 * 1024
BATCH_COUNT = 64


class Task(NamedTuple):
    """One resource to hash: a byte range of one file, plus the file identity seen by the walk.

    A named tuple rather than a dataclass: thousands are built and pickled to workers per model.
    """

    pos: int  # position of the resource in manifest order
    path: str
    follow: bool
    size: int
    mtime_ns: int
    dev: int
    ino: int
    start: int
    end: int


@dataclass(frozen=True)
class Plan:
    """Resource names in manifest order and the work items that produce their digests."""

    names: tuple[str, ...]
    items: tuple[tuple[Task, ...], ...]
    total_bytes: int


def resource_order_key(name: str) -> str:
    """Sort key of the OMS v1.0 resource order: the resource *name* by Unicode code point.

    For shards the name is ``path:start:end``, so offsets sort as text (``w:1000:..`` before ``w:900:..``).
    model-signing 1.1.1 orders by path components and numeric shard start instead; the two orders differ
    only for names with a character below ``/`` where another has ``/`` (``a-b`` vs ``a/b``) or for shard
    offsets of different lengths.  The order only feeds the root digest: both tools' verifiers recompute
    it over the order the signature lists and compare resources by name, so they verify each other's
    signatures either way; only the printed root digest can differ from the peer's in those cases.
    """
    return name


def shard_ranges(size: int, shard_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of ``shard_size`` bytes covering ``size`` bytes (none for an empty file)."""
    return [(s, min(s + shard_size, size)) for s in range(0, size, shard_size)]


def make_plan(
    files: Sequence[FileEntry], method: SerializationMethod, shard_size: int, *, whole_files: bool = False
) -> Plan:
    """Resources in manifest order and work items, largest first.

    ``whole_files``: every file's shards go into one work item, in offset order, so that one worker reads
    the file from its first byte to its last (what a scanner in the hashing pass needs: a pickle or a zip
    is only understood in order).  Each shard still gets its own digest.  The pool may still spread a
    file's later shards over every worker once the tap needs no more of its bytes (``_pool.hash_item``).
    """
    pending: list[tuple[str, FileEntry, int, int]] = []
    for f in files:
        if method == "files":
            pending.append((f.name, f, 0, f.size))
        else:
            # Empty files have no shard and so no resource (OMS 6.3.2).
            for start, end in shard_ranges(f.size, shard_size):
                pending.append((f"{f.name}:{start}:{end}", f, start, end))
    pending.sort(key=lambda p: resource_order_key(p[0]))
    names = tuple(p[0] for p in pending)

    tasks = [
        Task(i, f.path, f.follow, f.size, f.mtime_ns, f.dev, f.ino, start, end)
        for i, (_, f, start, end) in enumerate(pending)
    ]
    total = sum(t.end - t.start for t in tasks)
    if whole_files and method == "shards":
        return Plan(names, _whole_file_items(tasks), total)
    return Plan(names, independent_items(tasks), total)


def independent_items(tasks: Sequence[Task]) -> tuple[tuple[Task, ...], ...]:
    """Work items for tasks that any worker may hash in any order: big ranges alone, small ones batched.

    Largest first.  Also how the pool re-queues the shards a tap released (``_pool.hash_item``).
    """
    big: list[tuple[Task, ...]] = []
    small: list[Task] = []
    for task in tasks:
        if task.end - task.start >= SMALL_RANGE:
            big.append((task,))
        else:
            small.append(task)

    batches: list[tuple[Task, ...]] = []
    batch: list[Task] = []
    batch_bytes = 0
    for task in small:
        batch.append(task)
        batch_bytes += task.end - task.start
        if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_COUNT:
            batches.append(tuple(batch))
            batch, batch_bytes = [], 0
    if batch:
        batches.append(tuple(batch))

    items = big + batches
    items.sort(key=lambda item: (-sum(t.end - t.start for t in item), item[0].pos))
    return tuple(items)


def _whole_file_items(tasks: Sequence[Task]) -> tuple[tuple[Task, ...], ...]:
    """Work items that keep each file's shards together, in offset order (see ``make_plan``)."""
    by_file: dict[str, list[Task]] = {}
    for t in tasks:
        by_file.setdefault(t.path, []).append(t)
    units = [tuple(sorted(ts, key=lambda t: t.start)) for ts in by_file.values()]
    items: list[tuple[Task, ...]] = []
    batch: list[Task] = []
    batch_bytes = 0
    for unit in units:
        size = unit[0].size
        if size >= SMALL_RANGE:
            items.append(unit)
            continue
        batch.extend(unit)
        batch_bytes += size
        if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_COUNT:
            items.append(tuple(batch))
            batch, batch_bytes = [], 0
    if batch:
        items.append(tuple(batch))
    items.sort(key=lambda item: (-sum(t.end - t.start for t in item), min(t.pos for t in item)))
    return tuple(items)

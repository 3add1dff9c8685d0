"""Hashing work items, in this process or in a pool of worker processes.

Each process owns one reused read buffer (:data:`BUFFER_SIZE`) and reads with ``os.preadv`` into it, so
memory stays at workers x buffer whatever the model size; no file is read whole or mapped.

A file is opened, checked against the identity the walk recorded (device, inode, size, mtime), read,
and checked again: a file that changes while it is hashed raises
:class:`~model_signing.errors.FileChangedError` instead of yielding a digest of nothing in particular.

Ctrl-C: workers ignore SIGINT (it is delivered to the whole foreground process group) and the parent,
on ``KeyboardInterrupt`` or any error, terminates them and reaps them before re-raising.  Workers also
ask the kernel to kill them if the parent dies (``PR_SET_PDEATHSIG``), so none outlive it.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import multiprocessing.pool
import os
import signal
import stat
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from model_signing._plan import Task
from model_signing.errors import FileChangedError, ModelPathError
from model_signing.manifest import HashType

#: Size of each process's reused read buffer.
BUFFER_SIZE = 1024 * 1024
#: How often (in bytes read) a worker publishes its progress.
_PROGRESS_STEP = 64 * 1024 * 1024


class _State:
    """Per-process state: the reused read buffer and this worker's progress slot."""

    buffer: bytearray | None = None
    progress_slots: Any = None  # shared RawArray, one counter per worker
    progress_slot = -1


#: Private test seam: if set, called with the file's path after the file is opened and checked and
#: before its bytes are read, in whichever process hashes it (workers inherit it through ``fork``).
#: Tests use it to change a file at a deterministic moment; production code never sets it.
_after_open_hook: Callable[[str], None] | None = None


class _Hasher(Protocol):
    def update(self, data: memoryview, /) -> object: ...
    def digest(self) -> bytes: ...


def new_hasher(hash_type: HashType, threads: int = 1) -> _Hasher:
    """A streaming hasher for ``hash_type`` (blake2b: 64-byte digest, as hashlib and the peer use)."""
    if hash_type == "sha256":
        return hashlib.sha256()
    if hash_type == "blake2b":
        return hashlib.blake2b()
    if hash_type == "blake3":
        import blake3

        h: _Hasher = blake3.blake3(max_threads=threads) if threads > 1 else blake3.blake3()
        return h
    raise ValueError(f"unknown hash type {hash_type!r}")


def _get_buffer() -> memoryview:
    if _State.buffer is None:
        _State.buffer = bytearray(BUFFER_SIZE)
    return memoryview(_State.buffer)


def _changed(task: Task, what: str) -> FileChangedError:
    return FileChangedError(
        f"{task.path} changed while it was being hashed ({what}); "
        "hash the model again once nothing is writing to it"
    )


def _check_identity(task: Task, st: os.stat_result, when: str) -> None:
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (task.dev, task.ino):
        raise _changed(task, f"replaced by another file {when}")
    if st.st_size != task.size:
        raise _changed(task, f"size {task.size} -> {st.st_size} {when}")
    if st.st_mtime_ns != task.mtime_ns:
        raise _changed(task, f"modification time changed {when}")


def hash_task(
    task: Task, hash_type: HashType, threads: int = 1, progress: Callable[[int], None] | None = None
) -> bytes:
    """Digest of bytes ``[task.start, task.end)`` of ``task.path``, checking the file did not change."""
    flags = os.O_RDONLY | os.O_CLOEXEC | (0 if task.follow else os.O_NOFOLLOW)
    try:
        fd = os.open(task.path, flags)
    except FileNotFoundError:
        raise _changed(task, "it was deleted") from None
    except OSError as exc:
        if not task.follow and exc.errno == 40:  # ELOOP: it became a symlink since the walk
            raise _changed(task, "it became a symlink") from None
        raise ModelPathError(f"{task.path}: cannot read it ({exc.strerror})") from None
    try:
        _check_identity(task, os.fstat(fd), "before reading")
        if _after_open_hook is not None:
            _after_open_hook(task.path)
        h = new_hasher(hash_type, threads)
        buf = _get_buffer()
        size = len(buf)
        pos, end = task.start, task.end
        unreported = 0
        while pos < end:
            want = end - pos
            view = buf if want >= size else buf[:want]
            n = os.preadv(fd, [view], pos)
            if n <= 0:
                raise _changed(task, f"it ended at byte {pos}, before the expected {end}")
            h.update(view[:n] if n < len(view) else view)
            pos += n
            if progress is not None:
                unreported += n
                if unreported >= _PROGRESS_STEP:
                    progress(unreported)
                    unreported = 0
        if progress is not None and unreported:
            progress(unreported)
        _check_identity(task, os.fstat(fd), "while reading")
        return h.digest()
    finally:
        os.close(fd)


def _publish(n: int) -> None:
    if _State.progress_slots is not None and _State.progress_slot >= 0:
        _State.progress_slots[_State.progress_slot] += n


def hash_item(item: Sequence[Task], hash_type: HashType, threads: int = 1) -> list[tuple[int, bytes]]:
    """Digests of every task of one work item, as ``(resource index, digest)``."""
    return [(t.index, hash_task(t, hash_type, threads, _publish)) for t in item]


def _hash_item_args(args: tuple[Sequence[Task], HashType, int]) -> list[tuple[int, bytes]]:
    return hash_item(*args)


def _init_worker(slots: Any, counter: Any) -> None:
    # Ctrl-C goes to the whole process group; only the parent reacts (by terminating us).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:  # die with the parent, even if it is SIGKILLed (Linux only; best effort elsewhere)
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)
    except (OSError, AttributeError):
        pass
    with counter.get_lock():
        _State.progress_slot = counter.value
        counter.value += 1
    _State.progress_slots = slots


def item_bytes(item: Sequence[Task]) -> int:
    """Bytes hashed by one work item."""
    return sum(t.end - t.start for t in item)


def hash_items(
    items: Sequence[Sequence[Task]],
    n_resources: int,
    hash_type: HashType,
    max_workers: int,
    on_start: Callable[[], Callable[[int], None]] | None = None,
) -> list[bytes]:
    """Digests of all resources, indexed by resource position.

    ``on_start`` is called once the worker processes exist (so a progress bar, and its monitor thread,
    never get forked) and returns the callback that receives byte counts as they are hashed.
    """
    digests: list[bytes | None] = [None] * n_resources
    workers = max(1, min(max_workers, len(items)))
    if workers == 1:
        progress = on_start() if on_start is not None else None
        # blake3 can use its own threads when there is a single stream to hash.
        threads = max_workers if hash_type == "blake3" else 1
        for item in items:
            for t in item:
                digests[t.index] = hash_task(t, hash_type, threads, progress)
        return _complete(digests)

    ctx = multiprocessing.get_context("fork")
    slots = ctx.RawArray("q", workers)
    counter = ctx.Value("i", 0)
    # Block SIGINT while forking so no worker can be interrupted before it has set SIG_IGN; a Ctrl-C
    # that arrives meanwhile is delivered to the parent as soon as the mask is restored, inside the
    # try block below, which then cleans up.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    pool: multiprocessing.pool.Pool | None = None
    try:
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(slots, counter))
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        progress = on_start() if on_start is not None else None
        threads = 1
        results: Iterator[list[tuple[int, bytes]]] = pool.imap_unordered(
            _hash_item_args, ((item, hash_type, threads) for item in items), chunksize=1
        )
        reported = 0
        done_bytes = 0
        remaining = len(items)
        while remaining:
            try:
                res = results.next(timeout=0.2)  # type: ignore[attr-defined]
            except multiprocessing.TimeoutError:
                res = None
            if res is not None:
                remaining -= 1
                for index, digest in res:
                    digests[index] = digest
            if progress is not None:
                done_bytes = sum(slots)
                if done_bytes > reported:
                    progress(done_bytes - reported)
                    reported = done_bytes
        pool.close()
        pool.join()
        pool = None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if pool is not None:
            _terminate(pool)
    return _complete(digests)


def _terminate(pool: multiprocessing.pool.Pool) -> None:
    """Stop the workers at once and reap them, whatever they are doing."""
    # Pool.terminate() SIGTERMs the workers and joins them and the pool's threads.  Run it with
    # SIGINT blocked so a second Ctrl-C cannot abandon half-reaped children.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool.terminate()
        pool.join()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _complete(digests: list[bytes | None]) -> list[bytes]:
    out = [d for d in digests if d is not None]
    if len(out) != len(digests):  # pragma: no cover - a planning bug, never user input
        raise RuntimeError("internal error: some resources were not hashed")
    return out


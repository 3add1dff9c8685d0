"""Hashing work items, in this process or in a pool of worker processes.

Each worker process (or, without a pool, each call) owns one reused read buffer (:data:`BUFFER_SIZE`)
and reads with ``os.preadv`` into it, so memory stays at workers x buffer whatever the model size; no
file is read whole or mapped.  The buffer is passed down, never global: calls from several threads of
one process must not read into each other's buffer.

A file is opened, checked against the identity the walk recorded (device, inode, size, mtime), read,
and checked again: a file that changes while it is hashed raises
:class:`~model_signing.errors.FileChangedError` instead of yielding a digest of nothing in particular.

The pool is a few forked processes fed over pipes (not ``multiprocessing``, whose import alone costs
~70 ms here, a few percent of hashing a 6 GB model): the parent hands the next item, largest first, to
whichever worker reports a result, so the load balances itself.

Ctrl-C: workers ignore SIGINT (it is delivered to the whole foreground process group) and the parent,
on ``KeyboardInterrupt`` or any error, kills and reaps them before re-raising.  On success they get an
explicit stop message and are reaped.  Workers also exit when their task pipe reaches EOF and ask the
kernel to kill them if the parent dies (``PR_SET_PDEATHSIG``), so none outlive it.  Workers are forked
(not spawned) so that starting them costs ~2 ms, not an interpreter start-up and imports each.

Several models can share one pool (``verify-all``): :func:`hash_items_isolated` hashes the items of many
models in one run and hands an item's failure to the caller instead of stopping every model's hashing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import pickle
import select
import signal
import stat
import threading
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from model_signing._internal.framing import recv as _recv
from model_signing._internal.framing import send as _send
from model_signing.errors import FileChangedError, ModelPathError
from model_signing.hashing import _plan
from model_signing.hashing._plan import Task
from model_signing.manifest import HashType

#: Size of each process's reused read buffer.
BUFFER_SIZE = 1024 * 1024
#: Size of each of the two read-ahead buffers used when blake3 hashes one stream with several threads.
READ_AHEAD_BUFFER = 2 * 1024 * 1024
#: How often (in bytes read) a worker publishes its progress.
_PROGRESS_STEP = 64 * 1024 * 1024
#: At most this many worker processes per CPU.  Hashing waits on the disk as much as on the CPU, and on
#: network or spinning storage a few reads in flight per core hide that latency; beyond a few, more
#: processes only cost a fork and a read buffer each and make the reads contend (``--max-workers 1000000``
#: would otherwise try to fork once per work item).
WORKERS_PER_CPU = 4


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


#: Private test seam: if set, called with the file's path after the file is opened and checked and
#: before its bytes are read, in whichever process hashes it (workers inherit it through ``fork``).
#: Tests use it to change a file at a deterministic moment; production code never sets it.
_after_open_hook: Callable[[str], None] | None = None

#: Private test seam: how many hashing runs (one per pool, or one in-process loop) each hash type has had
#: in this process.  A counter, not a log, so a long-running service does not grow it.  Tests read it to
#: check that ``verify-all`` hashes a pack in one run per hash type.
runs: dict[str, int] = {}
_runs_lock = threading.Lock()


class _Hasher(Protocol):
    def update(self, data: memoryview, /) -> object: ...
    def digest(self) -> bytes: ...


class Tap(Protocol):
    """Something that sees the bytes of every task as they are hashed, from the same buffer (issue 14).

    The scanner uses it to run in the hashing pass (``_taps.ScanTap``), verified loading to keep the
    hashed bytes.  ``feed_for`` is called before a task is read and returns the callable that receives each
    chunk (or ``None`` to see nothing); ``task_done`` after its last chunk.  In a worker process,
    ``collect`` takes what was gathered since the last call (picklable: it rides back with the digests),
    and the parent hands it to ``merge``; without a pool both run in the calling process.

    ``wants_rest`` is asked after ``task_done`` when later shards of the task's file follow in the same
    work item (pool only): ``False`` means no later byte of the file can change what the tap gathers.
    The worker then calls ``release`` (the tap finishes with the file as if it had seen the rest) and hands
    the remaining shards back, to be hashed by any worker without the tap.
    """

    def feed_for(self, task: Task) -> Callable[[memoryview], object] | None: ...
    def task_done(self, task: Task) -> None: ...
    def wants_rest(self, task: Task) -> bool: ...
    def release(self, task: Task) -> None: ...
    def collect(self) -> Any: ...
    def merge(self, collected: Any) -> None: ...


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


def new_buffer() -> memoryview:
    """A read buffer of :data:`BUFFER_SIZE` bytes, for one caller to reuse across tasks."""
    return memoryview(bytearray(BUFFER_SIZE))


def _changed(task: Task, what: str) -> FileChangedError:
    return FileChangedError(
        f"{task.path} changed while it was being hashed ({what}); "
        "hash the model again once nothing is writing to it"
    )


def _cannot_read(task: Task, exc: OSError) -> ModelPathError:
    return ModelPathError(f"{task.path}: cannot read it ({exc.strerror or exc})")


def _check_identity(task: Task, st: os.stat_result, when: str) -> None:
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (task.dev, task.ino):
        raise _changed(task, f"replaced by another file {when}")
    if st.st_size != task.size:
        raise _changed(task, f"size {task.size} -> {st.st_size} {when}")
    if st.st_mtime_ns != task.mtime_ns:
        raise _changed(task, f"modification time changed {when}")


def _read(task: Task, fd: int, buf: memoryview) -> Generator[memoryview, None, None]:
    """Bytes ``[task.start, task.end)`` of ``fd``, one buffer at a time, read into ``buf``."""
    size = len(buf)
    pos, end = task.start, task.end
    while pos < end:
        want = end - pos
        view = buf if want >= size else buf[:want]
        n = os.preadv(fd, [view], pos)
        if n <= 0:
            raise _changed(task, f"it ended at byte {pos}, before the expected {end}")
        yield view[:n] if n < len(view) else view
        pos += n


def _read_ahead(task: Task, fd: int) -> Generator[memoryview, None, None]:
    """Like :func:`_read`, but a thread reads the next buffer while the caller hashes this one.

    Two buffers of :data:`READ_AHEAD_BUFFER` bytes; used only when blake3 hashes one stream with several
    threads (fewer work items than allowed workers), in the calling process or in a worker.
    """
    import queue
    import threading

    free: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[memoryview, int] | BaseException | None] = queue.SimpleQueue()
    for _ in range(2):
        free.put(memoryview(bytearray(READ_AHEAD_BUFFER)))

    def reader() -> None:
        pos, end = task.start, task.end
        try:
            while pos < end:
                buf = free.get()
                if buf is None:  # the consumer stopped early
                    return
                n = os.preadv(fd, [buf[: min(len(buf), end - pos)]], pos)
                if n <= 0:
                    full.put(_changed(task, f"it ended at byte {pos}, before the expected {end}"))
                    return
                full.put((buf, n))
                pos += n
            full.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            full.put(exc)

    thread = threading.Thread(target=reader, name="model_signing-read-ahead", daemon=True)
    thread.start()
    try:
        while (got := full.get()) is not None:
            if isinstance(got, BaseException):
                raise got
            buf, n = got
            yield buf[:n]
            free.put(buf)
    finally:
        free.put(None)  # wakes the reader if it waits for a buffer; it then stops
        thread.join()  # the fd is closed by the caller only after this


def hash_task(
    task: Task,
    hash_type: HashType,
    buf: memoryview,
    threads: int = 1,
    progress: Callable[[int], None] | None = None,
    *,
    feed: Callable[[memoryview], object] | None = None,
) -> bytes:
    """Digest of bytes ``[task.start, task.end)`` of ``task.path``, checking the file did not change.

    ``feed`` (a :class:`Tap`'s) receives every chunk right after it is hashed, from the same buffer.
    """
    # O_NONBLOCK: if the file was swapped for a FIFO since the walk, a blocking open would wait forever
    # for a writer; this way it opens at once and the identity check reports it.  (It does not affect
    # reads of regular files.)
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if task.follow else os.O_NOFOLLOW)
    try:
        fd = os.open(task.path, flags)
    except FileNotFoundError:
        raise _changed(task, "it was deleted") from None
    except OSError as exc:
        if not task.follow and exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink: it became one since the walk
            raise _changed(task, "it became a symlink") from None
        raise _cannot_read(task, exc) from None
    try:
        _check_identity(task, os.fstat(fd), "before reading")
        if _after_open_hook is not None:
            _after_open_hook(task.path)
        h = new_hasher(hash_type, threads)
        # One stream hashed by several blake3 threads: overlap reading with hashing, or the reads
        # (single-threaded memcpy from the page cache) would idle the hashing threads.
        chunks = _read_ahead(task, fd) if threads > 1 else _read(task, fd, buf)
        try:
            for view in chunks:
                h.update(view)
                if feed is not None:
                    feed(view)
                if progress is not None:
                    progress(len(view))
        finally:
            chunks.close()
        _check_identity(task, os.fstat(fd), "while reading")
        return h.digest()
    except OSError as exc:  # e.g. EIO from a failing disk: name the file, as every other error does
        raise _cannot_read(task, exc) from None
    finally:
        os.close(fd)


def hash_item(
    item: Sequence[Task],
    hash_type: HashType,
    buf: memoryview,
    threads: int = 1,
    progress: Callable[[int], None] | None = None,
    *,
    tap: Tap | None = None,
    released: list[Task] | None = None,
) -> list[tuple[int, bytes]]:
    """Digests of every task of one work item, as ``(resource index, digest)``, read through ``buf``.

    With ``released`` (a list, in a pool worker), a file's later shards in the item are not hashed here
    once the tap needs no more of the file: they are appended to ``released`` for the pool to spread
    over every worker.  Why stop early rather than plan a head item per file: where a scanner stops
    needing bytes depends on the content (a safetensors header may span many shards; a pickle never
    stops), so only the worker reading the file can tell, and no extra read or message is spent on
    files that are never released.
    """
    if tap is None:
        return [(t.pos, hash_task(t, hash_type, buf, threads, progress)) for t in item]
    out = []
    # Where each file's last shard in the item is (nothing to release without the list to release into).
    last = {t.path: i for i, t in enumerate(item)} if released is not None else {}
    gone: set[str] = set()
    for i, t in enumerate(item):
        if t.path in gone and released is not None:
            released.append(t)
            continue
        out.append((t.pos, hash_task(t, hash_type, buf, threads, progress, feed=tap.feed_for(t))))
        tap.task_done(t)
        if last.get(t.path, i) > i and not tap.wants_rest(t):
            tap.release(t)
            gone.add(t.path)
    return out


# ----------------------------------------------------------------------------------- the pool

def _worker_main(task_r: int, result_w: int, hash_type: HashType, threads: int, tap: Tap | None = None) -> None:
    """Body of a worker process: hash items from ``task_r`` until it closes, answer on ``result_w``."""
    # Ctrl-C goes to the whole process group; only the parent reacts (by killing us).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:  # die with the parent even if it is SIGKILLed (Linux; elsewhere the closed pipe does it)
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    # Progress goes to the parent in steps of _PROGRESS_STEP bytes; the rest rides with the result,
    # so a model of many small files costs one message per work item, not one per file.
    unsent = 0
    buf = new_buffer()

    def progress(n: int) -> None:
        nonlocal unsent
        unsent += n
        if unsent >= _PROGRESS_STEP:
            _send(result_w, ("p", unsent, 0))
            unsent = 0

    while (got := _recv(task_r)) is not None:
        item, tapped = got
        try:
            if tap is None:
                msg: tuple[str, object, int] = ("r", hash_item(item, hash_type, buf, threads, progress), unsent)
            else:
                # What the tap gathered (scan findings) and the shards it released ride back with the digests.
                released: list[Task] = []
                digests = hash_item(item, hash_type, buf, threads, progress, tap=tap if tapped else None,
                                    released=released)
                msg = ("r", (digests, tap.collect(), released), unsent)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the parent
            msg = ("e", exc, 0)
        unsent = 0
        try:
            _send(result_w, msg)
        except (pickle.PicklingError, TypeError, AttributeError):
            _send(result_w, ("e", RuntimeError(repr(msg[1])), 0))


@dataclass
class _Worker:
    pid: int
    task_w: int
    result_r: int
    #: Items sent and not answered yet, oldest first (a worker answers in order).
    inflight: deque[Sequence[Task]] = dataclasses.field(default_factory=deque)


def _spawn(hash_type: HashType, threads: int, inherited: list[int], tap: Tap | None = None) -> _Worker:
    task_r, task_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never return into the caller's stack
        code = 0
        try:
            os.close(task_w)
            os.close(result_r)
            for fd in inherited:  # other workers' pipe ends: close so EOF reaches them
                os.close(fd)
            _worker_main(task_r, result_w, hash_type, threads, tap)
        except BaseException:  # noqa: BLE001 - a dying worker reports through its closed pipe
            code = 1
        finally:
            os._exit(code)
    os.close(task_r)
    os.close(result_w)
    return _Worker(pid, task_w, result_r)


def _check_alive(workers: list[_Worker]) -> None:
    for w in workers:
        pid, status = os.waitpid(w.pid, os.WNOHANG)
        if pid:
            w.pid = -1  # reaped here; _stop must not wait for it
            raise RuntimeError(
                f"internal error: hashing worker {pid} died unexpectedly (status {status:#x})"
            )


def _stop(workers: list[_Worker], kill: bool) -> None:
    """Tell the workers to exit (or kill them), close the pipes and reap every one."""
    # SIGINT blocked: a second Ctrl-C must not abandon half-reaped children.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for w in workers:
            if w.pid <= 0:
                pass
            elif kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGKILL)
            else:
                # An explicit "stop" rather than EOF: if another thread is hashing concurrently, its
                # forked workers hold copies of this pipe, and EOF would never come.
                with contextlib.suppress(OSError):
                    _send(w.task_w, None)
            for fd in (w.task_w, w.result_r):
                with contextlib.suppress(OSError):
                    os.close(fd)
        for w in workers:
            if w.pid > 0:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(w.pid, 0)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def hash_items(
    items: Sequence[Sequence[Task]],
    n_resources: int,
    hash_type: HashType,
    max_workers: int,
    on_start: Callable[[], Callable[[int], None]] | None = None,
    *,
    poll: Callable[[], None] | None = None,
    tap: Tap | None = None,
) -> list[bytes]:
    """Digests of all resources, indexed by resource position.

    ``items`` are handed out in the given order (largest first) to whichever worker is free.
    ``on_start`` is called once the worker processes exist (so a progress bar, and its monitor thread,
    never get forked) and returns the callback that receives byte counts as they are hashed.
    ``poll`` is called with every progress step (and at least once a second); what it raises stops hashing.
    ``tap`` sees every byte hashed (see :class:`Tap`); workers inherit it through ``fork``.
    The first item that fails stops the hashing and its error is raised.
    """
    return _complete(_run(items, n_resources, hash_type, max_workers, on_start, poll=poll, tap=tap))


def hash_items_isolated(
    items: Sequence[Sequence[Task]],
    n_resources: int,
    hash_type: HashType,
    max_workers: int,
    *,
    on_error: Callable[[Sequence[Task], Exception], None],
    skip: Callable[[Sequence[Task]], bool] | None = None,
) -> list[bytes | None]:
    """:func:`hash_items` for items of several models in one pool, where one model's failure is its own.

    An item that fails is handed to ``on_error`` with its exception and hashing goes on with the others
    (``on_error`` may re-raise to stop everything, e.g. for an internal error); its resources stay
    ``None``.  An item for which ``skip`` is true when its turn comes (its model already failed) is not
    hashed either.  No tap: a tap belongs to one model's hashing pass.
    """
    return _run(items, n_resources, hash_type, max_workers, None, on_error=on_error, skip=skip)


def _run(
    items: Sequence[Sequence[Task]],
    n_resources: int,
    hash_type: HashType,
    max_workers: int,
    on_start: Callable[[], Callable[[int], None]] | None,
    *,
    poll: Callable[[], None] | None = None,
    tap: Tap | None = None,
    on_error: Callable[[Sequence[Task], Exception], None] | None = None,
    skip: Callable[[Sequence[Task]], bool] | None = None,
) -> list[bytes | None]:
    """The body of :func:`hash_items` and :func:`hash_items_isolated` (unhashed resources stay ``None``)."""
    with _runs_lock:
        runs[hash_type] = runs.get(hash_type, 0) + 1
    on_start = _with_poll(on_start, poll)
    digests: list[bytes | None] = [None] * n_resources
    cpus = usable_cpus()
    # With a tap a file's shards start as one item, but may be released to every worker (hash_item).
    units = len(items) if tap is None else sum(len(item) - len({t.path for t in item}) + 1 for item in items)
    n_workers = max(1, min(max_workers, units, WORKERS_PER_CPU * cpus))
    # blake3's threads compute, they do not wait on the disk: never more of them in all than CPUs.
    blake3_threads = min(max_workers, cpus)
    if n_workers == 1:
        progress = on_start() if on_start is not None else None
        # blake3 can use its own threads when there is a single stream to hash.
        threads = blake3_threads if hash_type == "blake3" else 1
        buf = new_buffer()
        for item in items:
            if skip is not None and skip(item):
                continue
            try:
                hashed = hash_item(item, hash_type, buf, threads, progress, tap=tap)
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(item, exc)
                continue
            for index, digest in hashed:
                digests[index] = digest
            if tap is not None:
                tap.merge(tap.collect())
        return digests

    # Fewer items than allowed workers: blake3 spreads the spare cores over its own threads.
    threads = max(1, blake3_threads // n_workers) if hash_type == "blake3" else 1
    workers: list[_Worker] = []
    ok = False
    # (item, whether the tap sees it): shards a tap released are hashed without it.
    pending = deque((item, tap is not None) for item in items)
    remaining = len(items)

    def send_next(w: _Worker) -> None:
        nonlocal remaining
        while pending and skip is not None and skip(pending[0][0]):
            pending.popleft()  # its model already failed: not worth reading
            remaining -= 1
        if pending:
            item, tapped = pending.popleft()
            _send(w.task_w, (item, tapped))
            w.inflight.append(item)

    # Block SIGINT while forking so no worker can be interrupted before it ignores SIGINT; a Ctrl-C
    # arriving meanwhile reaches the parent when the mask is restored, inside this try block.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for _ in range(n_workers):
            inherited = [fd for w in workers for fd in (w.task_w, w.result_r)]
            workers.append(_spawn(hash_type, threads, inherited, tap))
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        progress = on_start() if on_start is not None else None
        by_fd = {w.result_r: w for w in workers}
        # Two items in flight per worker hide the round trip between small batches.
        for _ in range(2):
            for w in workers:
                send_next(w)
        poller = select.poll()
        for w in workers:
            poller.register(w.result_r, select.POLLIN)
        while remaining:
            events = poller.poll(1000)
            if not events:
                if poll is not None:
                    poll()
                _check_alive(workers)  # EOF may never come if another thread's workers hold our pipes
            for fd, _event in events:
                w = by_fd[fd]
                msg = _recv(fd)
                if msg is None:
                    raise RuntimeError(f"internal error: hashing worker {w.pid} died unexpectedly")
                kind, payload, done = msg
                if kind == "p":
                    if progress is not None:
                        progress(payload)
                    continue
                item = w.inflight.popleft()
                remaining -= 1
                if kind == "e":
                    if on_error is None:
                        raise payload
                    on_error(item, payload)
                else:
                    if progress is not None and done:
                        progress(done)
                    released: list[Task] = []
                    if tap is not None:
                        payload, collected, released = payload
                        tap.merge(collected)
                    for index, digest in payload:
                        digests[index] = digest
                    if released:
                        # Next, ahead of the other files: they are what is left of a big one.
                        again = _plan.independent_items(released)
                        pending.extendleft((it, False) for it in reversed(again))
                        remaining += len(again)
                        for _ in range(2):  # idle workers too: they may have had nothing to do until now
                            for other in workers:
                                if len(other.inflight) < 2:
                                    send_next(other)
                        continue
                send_next(w)
        ok = True
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        _stop(workers, kill=not ok)
    return digests


def _with_poll(
    on_start: Callable[[], Callable[[int], None]] | None, poll: Callable[[], None] | None
) -> Callable[[], Callable[[int], None]] | None:
    """``on_start`` whose progress callback also calls ``poll``."""
    if poll is None:
        return on_start
    checked = poll

    def start() -> Callable[[int], None]:
        advance = on_start() if on_start is not None else None
        checked()  # once before the first byte, so a failure already known stops even a tiny model

        def progress(n: int) -> None:
            if advance is not None:
                advance(n)
            checked()

        return progress

    return start


def _complete(digests: list[bytes | None]) -> list[bytes]:
    out = [d for d in digests if d is not None]
    if len(out) != len(digests):  # pragma: no cover - a planning bug, never user input
        raise RuntimeError("internal error: some resources were not hashed")
    return out

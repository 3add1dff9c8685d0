"""Hashing on the workers of a Dask distributed cluster (the ``modelseal[dask]`` extra).

The only module that imports ``distributed``, and only inside :meth:`DaskExecutor.run` (the workers import
this module to run :func:`hash_on_worker`, which needs nothing from Dask).  The client plans as usual; each
work item (a shard, a whole file or a batch of small files) becomes one Dask task.  A worker:

1. stats every file of its item and compares inode, size and mtime with what the client's walk saw; a
   missing file or a different one is reported, not hashed (device numbers are not compared: on NFS or
   Lustre each machine numbers the mount itself);
2. hashes with the local pool's code (``_pool.hash_task``: one reused bounded buffer, identity checked
   again before and after reading, so a file changed during hashing is an error);
3. returns the digests with the identities it saw, which the client checks once more.

Digests come back by resource position, so the manifest (and the signature) is byte-identical to a local
run.  Failures:

* an expected failure on a worker (missing, different or changed file, unreadable) comes back as a value
  and becomes the same error class as locally, naming the worker;
* any other exception on a worker is retried once (``retries=1``), then an error;
* a worker lost mid-run: the scheduler reschedules its tasks on the other workers; a task lost on more
  than ``retries`` (1) workers is an error (the scheduler's loss count per task is read while waiting; its
  own ``distributed.scheduler.allowed-failures`` then ``KilledWorker`` remains the backstop); a cluster left
  with no worker for ``no_worker_timeout`` seconds is an error;
* Ctrl-C (or any error, or ``poll`` raising) cancels every task of the run before the exception leaves.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from model_signing.errors import FileChangedError, InputError, ModelPathError, ModelSigningError
from model_signing.hashing._plan import Task
from model_signing.manifest import HashType

if TYPE_CHECKING:
    from distributed import Client, Future

#: Bumped when what :func:`hash_on_worker` takes or returns changes: a worker running another modelseal
#: version is refused rather than half understood.
PROTOCOL = 1


def hash_on_worker(item: Sequence[Task], hash_type: HashType, protocol: int = PROTOCOL) -> tuple[Any, ...]:
    """Runs on a Dask worker: ``("ok", protocol, host, [(pos, digest, (ino, size, mtime_ns))])``, or a failure.

    Failures are values, not exceptions (so Dask does not retry them): ``("missing"|"different"|"changed"|
    "unreadable", protocol, host, path, detail)``.
    """
    from model_signing.hashing import _pool

    host = socket.gethostname()
    if protocol != PROTOCOL:
        return ("protocol", PROTOCOL, host, "", f"worker speaks protocol {PROTOCOL}, client {protocol}")
    buf = _pool.new_buffer()
    out: list[tuple[int, bytes, tuple[int, int, int]]] = []
    for t in item:
        try:
            st = os.stat(t.path, follow_symlinks=t.follow)
        except FileNotFoundError:
            return ("missing", PROTOCOL, host, t.path, "")
        except OSError as exc:
            return ("unreadable", PROTOCOL, host, t.path, exc.strerror or str(exc))
        seen = (st.st_ino, st.st_size, st.st_mtime_ns)
        if seen != (t.ino, t.size, t.mtime_ns):
            return ("different", PROTOCOL, host, t.path, _identity_text(seen))
        try:
            # This machine's device number: the rest of the identity is what the client saw.
            digest = _pool.hash_task(t._replace(dev=st.st_dev), hash_type, buf)
        except FileChangedError as exc:
            return ("changed", PROTOCOL, host, t.path, str(exc))
        except ModelPathError as exc:
            return ("unreadable", PROTOCOL, host, t.path, str(exc))
        out.append((t.pos, digest, seen))
    return ("ok", PROTOCOL, host, out)


def _identity_text(seen: tuple[int, int, int]) -> str:
    return f"inode {seen[0]}, {seen[1]} bytes, mtime_ns {seen[2]}"


class DaskExecutor:
    """Hash work items on the workers of the Dask scheduler at ``scheduler`` (default ``DASK_SCHEDULER_ADDRESS``).

    ``connect_timeout``: seconds to reach the scheduler; ``no_worker_timeout``: how long the cluster may
    have no worker (at the start or after losing them all) before the run fails; ``retries``: how often a
    task that raised on a worker, or whose worker was lost, is tried again.  The workers need ``modelseal``
    (this version) and must see the model at the same absolute path as this machine.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        connect_timeout: float = 30.0,
        no_worker_timeout: float = 60.0,
        retries: int = 1,
    ) -> None:
        import importlib.util

        if importlib.util.find_spec("distributed") is None:
            raise InputError(
                "the Dask executor needs the distributed package: pip install 'modelseal[dask]' "
                "(and the same on the workers)"
            )
        address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS", "")
        if not address:
            raise InputError("the Dask executor needs a scheduler address (tcp://HOST:PORT) or DASK_SCHEDULER_ADDRESS")
        self.scheduler = address
        self.connect_timeout = connect_timeout
        self.no_worker_timeout = no_worker_timeout
        self.retries = retries
        #: Filled by :meth:`run`: per-run figures (items, seconds connecting, seconds hashing).
        self.last_run: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"DaskExecutor({self.scheduler!r})"

    def _connect(self) -> Client:
        from distributed import Client

        try:
            return Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise InputError(
                f"cannot reach the Dask scheduler at {self.scheduler} ({exc}); check the address, or hash "
                "with the local executor"
            ) from None

    def run(
        self,
        items: Sequence[Sequence[Task]],
        n_resources: int,
        hash_type: HashType,
        *,
        on_start: Callable[[], Callable[[int], None]] | None = None,
        poll: Callable[[], None] | None = None,
    ) -> list[bytes]:
        """Hash on the cluster; digests by resource position (see the module docstring for failures)."""
        import uuid

        t0 = time.perf_counter()
        client = self._connect()
        futures: list[Future[tuple[Any, ...]]] = []
        try:
            self._wait_for_workers(client, len(items))
            t1 = time.perf_counter()
            # Absolute paths: a worker's current directory is not ours.
            work = [tuple(t._replace(path=os.path.abspath(t.path)) for t in item) for item in items]
            run_id = uuid.uuid4().hex[:12]
            futures = [
                client.submit(
                    hash_on_worker, item, hash_type, PROTOCOL, key=f"modelseal-hash-{run_id}-{i}", pure=False,
                    retries=self.retries, priority=len(work) - i,  # largest first, as planned
                )
                for i, item in enumerate(work)
            ]
            progress = on_start() if on_start is not None else None
            with client.as_current():  # distributed.wait uses the current client (this one is not the default)
                digests = self._collect(client, futures, work, n_resources, progress, poll)
            self.last_run = {"items": float(len(items)), "connect_s": t1 - t0, "hash_s": time.perf_counter() - t1}
            return digests
        finally:
            # Whatever ended the run (an error, poll, Ctrl-C), nothing of it keeps running on the cluster.
            pending = [f for f in futures if not f.done()]
            if pending:
                # Already leaving with the real error (or a result): a failed cancel must not replace it.
                with contextlib.suppress(Exception):
                    client.cancel(pending, force=True)
            client.close(timeout=10)

    def _workers(self, client: Client) -> int:
        return len(client.scheduler_info(n_workers=-1).get("workers", {}))

    def _wait_for_workers(self, client: Client, n_items: int) -> None:
        try:
            client.wait_for_workers(1, timeout=self.no_worker_timeout)
        except TimeoutError:
            raise InputError(
                f"the Dask cluster at {self.scheduler} has no worker (waited {self.no_worker_timeout:g} s for "
                f"one to hash {n_items} items); start workers, or hash with the local executor"
            ) from None

    def _collect(  # noqa: PLR0917 - private; the run's state, passed once
        self,
        client: Client,
        futures: list[Future[tuple[Any, ...]]],
        work: Sequence[Sequence[Task]],
        n_resources: int,
        progress: Callable[[int], None] | None,
        poll: Callable[[], None] | None,
    ) -> list[bytes]:
        from distributed import wait

        digests: list[bytes | None] = [None] * n_resources
        index = {f.key: i for i, f in enumerate(futures)}
        pending = set(futures)
        workerless_since: float | None = None
        last_check = time.monotonic()
        while pending:
            if poll is not None:
                poll()
            try:
                done, not_done = wait(list(pending), timeout=1.0, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done, not_done = set(), pending
            pending = set(not_done)
            if time.monotonic() - last_check >= 1.0:  # once a second, busy or not
                last_check = time.monotonic()
                workerless_since = None if done else self._check_workers(client, workerless_since, len(pending))
                self._check_losses(client, pending, work, index)
            for fut in done:
                item = work[index[fut.key]]
                result = self._result(fut, item)
                for pos, digest, seen in result[3]:
                    task = next(t for t in item if t.pos == pos)
                    if seen != (task.ino, task.size, task.mtime_ns):  # a worker that skipped its own check
                        raise _different(result[2], task.path, seen)
                    digests[pos] = digest
                if progress is not None:
                    progress(sum(t.end - t.start for t in item))
        out = [d for d in digests if d is not None]
        if len(out) != n_resources:  # pragma: no cover - a planning bug, never user input
            raise RuntimeError("internal error: some resources were not hashed on the cluster")
        return out

    def _check_losses(
        self, client: Client, pending: set[Future[tuple[Any, ...]]], work: Sequence[Sequence[Task]],
        index: dict[Any, int],
    ) -> None:
        """Fail once a task has been on more lost workers than ``retries`` allows.

        The scheduler reschedules a lost worker's tasks by itself (up to its ``allowed-failures``); it
        counts the losses per task (``suspicious``), which is read here so that this run allows ``retries``.
        """
        keys = [f.key for f in pending]

        def losses(dask_scheduler: Any, keys: list[Any]) -> dict[Any, int]:
            tasks = dask_scheduler.tasks
            return {k: tasks[k].suspicious for k in keys if k in tasks and tasks[k].suspicious}

        try:
            lost: dict[Any, int] = client.run_on_scheduler(losses, keys=keys)
        except Exception:  # noqa: BLE001 - a scheduler that refuses run_on_scheduler: its own limit applies
            return
        for key, n in lost.items():
            if n > self.retries:
                paths = sorted({t.path for t in work[index[key]]})
                raise ModelSigningError(
                    f"Dask workers were lost {n} times while hashing {', '.join(paths[:3])}"
                    f"{' ...' if len(paths) > 3 else ''} (retried {self.retries} time"
                    f"{'' if self.retries == 1 else 's'}); check the workers' memory and logs, then hash again"
                )

    def _check_workers(self, client: Client, since: float | None, left: int) -> float | None:
        if self._workers(client):
            return None
        now = time.monotonic()
        if since is None:
            return now
        if now - since > self.no_worker_timeout:
            raise ModelSigningError(
                f"the Dask cluster at {self.scheduler} lost all its workers while hashing ({left} items not "
                "hashed); restart the workers and hash again"
            )
        return since

    def _result(self, fut: Future[tuple[Any, ...]], item: Sequence[Task]) -> tuple[Any, ...]:
        from distributed import KilledWorker

        paths = ", ".join(sorted({t.path for t in item})[:3]) + (" ..." if len({t.path for t in item}) > 3 else "")
        if fut.status == "error":
            exc = fut.exception()
            if isinstance(exc, KilledWorker):
                raise ModelSigningError(
                    f"Dask workers died while hashing {paths}, on every retry the scheduler allowed; check the "
                    "workers' memory and logs, then hash again"
                ) from None
            raise ModelSigningError(
                f"hashing {paths} failed on a Dask worker, also when retried: {type(exc).__name__}: {exc}"
            ) from None
        if fut.status == "cancelled":
            raise ModelSigningError(f"the Dask scheduler cancelled the hashing of {paths}; hash again")
        result: tuple[Any, ...] = fut.result()
        kind, protocol, host = result[0], result[1], result[2]
        if kind == "ok" and protocol == PROTOCOL:
            return result
        path, detail = (result[3], result[4]) if len(result) >= 5 else ("", "")
        if kind == "missing":
            raise FileChangedError(
                f"{path} is missing on the Dask worker {host}: it was deleted since the model was walked, or "
                "the worker does not see the model at the same path as this machine"
            )
        if kind == "different":
            raise _different(host, path, detail)
        if kind == "changed":
            raise FileChangedError(f"{detail} (on the Dask worker {host})")
        if kind == "unreadable":
            raise ModelPathError(f"{path}: the Dask worker {host} cannot read it ({detail})")
        raise InputError(
            f"the Dask worker {host} runs another modelseal version ({detail or f'protocol {protocol}'}); "
            "install the same version on the workers"
        )


def _different(host: str, path: str, seen: object) -> FileChangedError:
    detail = _identity_text(seen) if isinstance(seen, tuple) else str(seen)
    return FileChangedError(
        f"the Dask worker {host} sees another file at {path} ({detail}) than this machine's walk did: it was "
        "replaced since, or the worker does not see the model at the same path"
    )

"""The Dask executor against a real local cluster: a ``dask scheduler`` and ``dask worker`` processes on
127.0.0.1 (random ports, one thread each, no dashboard, no nanny so that a killed worker stays dead).

Expected digests come from the local executor and from hashlib; the workers run this checkout's code
(PYTHONPATH) with ``tests/_dask_preload.py`` loaded, which sets the hash pool's test seam in the worker
process to slow it down, kill it mid-run or change a file while it is hashed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import model_signing as ms
from model_signing.errors import FileChangedError, InputError, ModelSigningError
from model_signing.hashing import _plan, walk
from model_signing.hashing._dask import DaskExecutor
from model_signing.oms import statement
from tests._cli import Run

ROOT = Path(__file__).resolve().parent.parent
DASK = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
PRELOAD = ROOT / "tests" / "_dask_preload.py"


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                p.kill()
            p.wait()


def _start(tmp: Path, worker_modes: list[str]) -> Cluster:
    assert DASK, "the dask command (distributed) is not installed"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__ADMIN__TICK__LIMIT": "30s"}
    sched_file = tmp / "scheduler.json"
    log = (tmp / "scheduler.log").open("wb")
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
         str(sched_file)], env=env, stdout=log, stderr=log, cwd=tmp)
    deadline = time.monotonic() + 60
    while not sched_file.exists() or not sched_file.read_text().strip().endswith("}"):
        assert scheduler.poll() is None and time.monotonic() < deadline, (tmp / "scheduler.log").read_text()
        time.sleep(0.1)
    cluster = Cluster(json.loads(sched_file.read_text())["address"], scheduler)
    for i, mode in enumerate(worker_modes):
        wlog = (tmp / f"worker{i}.log").open("wb")
        cluster.workers.append(subprocess.Popen(
            [DASK, "worker", "--scheduler-file", str(sched_file), "--nthreads", "1", "--no-dashboard", "--host",
             "127.0.0.1", "--no-nanny", "--name", f"w{i}", "--preload", str(PRELOAD)],
            env={**env, "MODELSEAL_TEST_WORKER": mode}, stdout=wlog, stderr=wlog, cwd="/"))
    if worker_modes:
        from distributed import Client

        with Client(cluster.address, timeout=30, set_as_default=False) as c:
            c.wait_for_workers(len(worker_modes), timeout=60)
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = _start(tmp_path_factory.mktemp("cluster"), ["grow:grow.bin", "grow:grow.bin"])
    yield c
    c.stop()


def _model(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(4):  # big enough to be work items of their own (the plan batches ranges under 4 MiB)
        (root / f"w{i}.bin").write_bytes(os.urandom(9_000_000 + 7919 * i))
    (root / "sub").mkdir(exist_ok=True)
    for i in range(30):  # small files: batched items
        (root / "sub" / f"s{i:02d}.json").write_bytes(b'{"i": %d}\n' % i)
    (root / "empty.txt").write_bytes(b"")
    return root


def _cfg(executor: object = None, **kw: object) -> ms.HashingConfig:
    return ms.HashingConfig(max_workers=2, executor=executor, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "shard"), [("files", None), ("shards", 4_200_000)])
def test_same_manifest_as_the_local_executor(cluster: Cluster, tmp_path: Path, method: str, shard: int | None) -> None:
    model = _model(tmp_path / "m")
    kw: dict[str, object] = {"method": method} | ({"shard_size": shard} if shard else {})
    local = ms.hash_model(model, _cfg(**kw))
    executor = DaskExecutor(cluster.address)
    remote = ms.hash_model(model, _cfg(executor, **kw))
    assert remote == local
    payload = statement.statement_payload(statement.canonical_manifest(remote))
    assert payload == statement.statement_payload(statement.canonical_manifest(local))  # byte-identical
    if shard is not None:
        assert executor.last_run["items"] >= 9 and len(remote.resources) == 4 * 3 + 30  # shards + a batch
        data = (model / "w3.bin").read_bytes()
        got = {r.name: r.digest for r in remote.resources if r.name.startswith("w3.bin:")}
        assert got == {f"w3.bin:{s}:{min(s + shard, len(data))}": hashlib.sha256(data[s:s + shard]).digest()
                       for s in range(0, len(data), shard)}


def test_cli_sign_on_the_cluster_signs_the_local_statement(
    cluster: Cluster, tmp_path: Path, run: Run, ec_keypair: Callable[..., tuple[Path, Path]]
) -> None:
    priv, pub = ec_keypair()
    model = _model(tmp_path / "m")
    common = ("sign", "key", model, "--private-key", priv, "--serialization", "shards", "--shard-size", "4200000",
              "--no-digest-cache", "-q")
    assert run(*common, "--signature", tmp_path / "local.sig")[0] == 0
    code, _, err = run(*common, "--signature", tmp_path / "dask.sig", "--executor", "dask", "--scheduler",
                       cluster.address)
    assert code == 0, err

    def payload(sig: Path) -> bytes:
        return base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"])

    assert payload(tmp_path / "dask.sig") == payload(tmp_path / "local.sig")
    code, _, err = run("verify", "key", model, "--public-key", pub, "--signature", tmp_path / "dask.sig")
    assert code == 0, err
    # The address may come from the environment instead.
    os.environ["DASK_SCHEDULER_ADDRESS"] = cluster.address
    try:
        code, out, _ = run("digest", model, "--executor", "dask", "--no-digest-cache", "-q")
    finally:
        del os.environ["DASK_SCHEDULER_ADDRESS"]
    assert code == 0 and out.strip() == ms.hash_model(model, _cfg()).root_digest().hex()


def _planned(model: Path) -> tuple[_plan.Plan, list[walk.FileEntry]]:
    files = sorted(walk.walk(model).files, key=lambda f: f.name)
    return _plan.make_plan(files, "files", 10**9), files


def test_file_deleted_between_planning_and_hashing(cluster: Cluster, tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    plan, _ = _planned(model)
    (model / "w2.bin").unlink()
    with pytest.raises(FileChangedError, match=r"w2\.bin is missing on the Dask worker .*same path"):
        DaskExecutor(cluster.address).run(plan.items, len(plan.names), "sha256")


def test_file_replaced_between_planning_and_hashing(cluster: Cluster, tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    plan, _ = _planned(model)
    data = (model / "w1.bin").read_bytes()
    (model / "w1.bin").unlink()
    (model / "w1.bin").write_bytes(data)  # same bytes, but another file (new inode)
    with pytest.raises(FileChangedError, match=r"sees another file at .*w1\.bin"):
        DaskExecutor(cluster.address).run(plan.items, len(plan.names), "sha256")


def test_file_changed_while_a_worker_hashes_it(cluster: Cluster, tmp_path: Path) -> None:
    model = _model(tmp_path / "m")
    (model / "grow.bin").write_bytes(os.urandom(100_000))  # the workers append to it after opening it
    with pytest.raises(FileChangedError, match=r"grow\.bin changed while it was being hashed .*on the Dask worker"):
        ms.hash_model(model, _cfg(DaskExecutor(cluster.address)))


def test_killed_worker_is_replaced_by_the_other(tmp_path: Path) -> None:
    c = _start(tmp_path, ["die", "slow"])
    try:
        model = _model(tmp_path / "m")
        local = ms.hash_model(model, _cfg(method="shards", shard_size=4_200_000))
        remote = ms.hash_model(model, _cfg(DaskExecutor(c.address), method="shards", shard_size=4_200_000))
        assert c.workers[0].poll() == -signal.SIGKILL  # it did die mid-run ...
        assert remote == local  # ... and its items were hashed on the other worker
    finally:
        c.stop()


def test_all_workers_lost_is_an_error(tmp_path: Path) -> None:
    c = _start(tmp_path, ["die", "die"])
    try:
        model = _model(tmp_path / "m")
        t0 = time.monotonic()
        with pytest.raises(ModelSigningError, match=r"lost all its workers|workers died|workers were lost 2 times"):
            ms.hash_model(model, _cfg(DaskExecutor(c.address, no_worker_timeout=2)))
        assert time.monotonic() - t0 < 30
        assert all(w.poll() == -signal.SIGKILL for w in c.workers)
    finally:
        c.stop()


def test_cluster_without_workers_and_unreachable_scheduler(tmp_path: Path, run: Run) -> None:
    c = _start(tmp_path, [])
    try:
        with pytest.raises(InputError, match=r"has no worker .*start workers"):
            ms.hash_model(_model(tmp_path / "m"), _cfg(DaskExecutor(c.address, no_worker_timeout=1)))
        port = c.address.rsplit(":", 1)[1]
    finally:
        c.stop()
    with pytest.raises(InputError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:"):
        DaskExecutor(f"tcp://127.0.0.1:{port}", connect_timeout=2).run((), 0, "sha256")
    code, _, err = run("digest", tmp_path / "m", "--executor", "dask")
    assert code == 1 and "--scheduler" in err and "DASK_SCHEDULER_ADDRESS" in err


def test_ctrl_c_cancels_the_cluster_tasks(tmp_path: Path) -> None:
    c = _start(tmp_path, ["slow", "slow"])
    try:
        model = _model(tmp_path / "m")  # 4 big files + a batch of 30 small ones, 0.2 s per file: seconds
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "digest", str(model), "--executor", "dask", "--scheduler",
             c.address, "--no-digest-cache", "-q"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        from distributed import Client

        with Client(c.address, timeout=30, set_as_default=False) as client:
            def tasks() -> int:
                n: int = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
                return n

            deadline = time.monotonic() + 60
            while tasks() == 0:  # the run has submitted its items
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 130, err
            assert "Traceback" not in err
            deadline = time.monotonic() + 20
            while tasks():  # cancelled: the scheduler forgets every task of the run
                assert time.monotonic() < deadline, "the run's tasks are still on the scheduler"
                time.sleep(0.2)
    finally:
        c.stop()


def test_relative_model_path_is_sent_absolute(
    cluster: Cluster, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model(tmp_path / "m")
    monkeypatch.chdir(tmp_path)  # the workers run in / : they must get absolute paths
    code, out, err = run("digest", "m", "--executor", "dask", "--scheduler", cluster.address, "--no-digest-cache",
                         "-q")
    assert code == 0, err
    assert out.strip() == ms.hash_model(model, _cfg()).root_digest().hex()


def test_digest_cache_in_front_of_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    from model_signing.hashing.cache import DigestCache

    model = _model(tmp_path / "m")
    time.sleep(0.4)
    cache = DigestCache(tmp_path / "c.db", settle_seconds=0.3)
    executor = DaskExecutor(cluster.address)
    cfg = ms.HashingConfig(executor=executor, digest_cache=cache, method="shards", shard_size=4_200_000)
    first = ms.hash_model(model, cfg)
    assert cache.stats.stored == len(first.resources) == 4 * 3 + 30  # digests from the workers, stored here
    assert first == ms.hash_model(model, _cfg(method="shards", shard_size=4_200_000))
    (model / "w0.bin").write_bytes(os.urandom(9_000_000))  # same size, new bytes
    executor.last_run = {}
    second = ms.hash_model(model, cfg)
    # Only w0.bin's 3 shards went to the cluster (2 big items + its tail in a batch of its own).
    assert (cache.stats.hits, cache.stats.misses) == (len(first.resources) - 3, 3)
    assert executor.last_run["items"] == 3
    data = (model / "w0.bin").read_bytes()
    assert {r.name: r.digest for r in second.resources if r.name.startswith("w0.bin:")} == {
        f"w0.bin:{s}:{min(s + 4_200_000, len(data))}": hashlib.sha256(data[s:s + 4_200_000]).digest()
        for s in range(0, len(data), 4_200_000)}


def test_item_lost_on_two_workers_is_an_error(tmp_path: Path) -> None:
    # Every worker dies on poison.bin: its item is lost, retried once on another worker, lost again: an error,
    # although a worker is still there to try a third time.
    c = _start(tmp_path, ["die-on:poison.bin"] * 3)
    try:
        model = _model(tmp_path / "m")
        (model / "poison.bin").write_bytes(os.urandom(5_000_000))
        with pytest.raises(ModelSigningError, match=r"workers were lost [23] times while hashing .*poison\.bin "
                                                     r"\(retried 1 time\)"):
            ms.hash_model(model, _cfg(DaskExecutor(c.address, no_worker_timeout=30)))
    finally:
        c.stop()

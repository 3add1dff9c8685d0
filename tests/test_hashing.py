"""hash_model: digests, resource names and order, root digest, serialization record, workers.

Expected digests are computed here with hashlib/blake3 directly, never taken from the engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from model_signing import HashingConfig, hash_model
from model_signing.errors import FileChangedError, InputError, ModelPathError
from model_signing.hashing import _plan
from model_signing.hashing import _pool as _workers

SHARD = 64


def _h(hash_type: str, data: bytes) -> bytes:
    if hash_type == "sha256":
        return hashlib.sha256(data).digest()
    if hash_type == "blake2b":
        return hashlib.blake2b(data).digest()
    return blake3.blake3(data).digest()


def _root(digests: list[bytes]) -> str:
    return hashlib.sha256(b"".join(digests)).hexdigest()


def _data(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


def _expected_files(root: Path, names: list[str], hash_type: str = "sha256") -> list[tuple[str, bytes]]:
    return [(n, _h(hash_type, (root / n).read_bytes())) for n in names]


def _expected_shards(root: Path, names: list[str], shard: int, hash_type: str = "sha256") -> list[tuple[str, bytes]]:
    out = []
    for n in names:
        data = (root / n).read_bytes()
        for start in range(0, len(data), shard):
            end = min(start + shard, len(data))
            out.append((f"{n}:{start}:{end}", _h(hash_type, data[start:end])))
    return sorted(out)  # OMS order: by resource name, Unicode code point


def _pairs(manifest) -> list[tuple[str, bytes]]:  # type: ignore[no-untyped-def]
    return [(r.name, r.digest) for r in manifest.resources]


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny batching limits, so that small test models still make several work items (and use the pool)."""
    monkeypatch.setattr(_plan, "SMALL_RANGE", 32)
    monkeypatch.setattr(_plan, "BATCH_BYTES", 64)
    monkeypatch.setattr(_plan, "BATCH_COUNT", 2)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "weights.bin").write_bytes(_data(SHARD * 3 + 5, 1))
    (root / "config.json").write_bytes(b'{"a": 1}\n')
    (root / "sub" / "deeper" / "x.bin").write_bytes(_data(SHARD, 2))
    (root / "sub" / "empty").write_bytes(b"")
    return root


# Files in OMS order: by name, Unicode code point (see _plan.resource_order_key).
MODEL_FILES = ["config.json", "sub/deeper/x.bin", "sub/empty", "weights.bin"]


@pytest.mark.parametrize("hash_type", ["sha256", "blake2b", "blake3"])
@pytest.mark.parametrize("workers", [1, 2])
def test_files_mode_digests(model: Path, hash_type: str, workers: int) -> None:
    m = hash_model(model, HashingConfig(hash_type=hash_type, max_workers=workers))  # type: ignore[arg-type]
    expected = _expected_files(model, MODEL_FILES, hash_type)
    assert _pairs(m) == expected
    assert all(r.algorithm == hash_type for r in m.resources)
    assert m.root_digest().hex() == _root([d for _, d in expected])
    assert m.model_name == "model"
    assert m.serialization.method == "files"
    assert m.serialization.shard_size is None


@pytest.mark.parametrize("hash_type", ["sha256", "blake2b", "blake3"])
@pytest.mark.parametrize("workers", [1, 2])
def test_shards_mode_digests(model: Path, hash_type: str, workers: int) -> None:
    cfg = HashingConfig(method="shards", shard_size=SHARD, hash_type=hash_type, max_workers=workers)  # type: ignore[arg-type]
    m = hash_model(model, cfg)
    # The empty file has no shard, so no resource.
    expected = _expected_shards(model, MODEL_FILES, SHARD, hash_type)
    assert _pairs(m) == expected
    assert "sub/empty" not in {r.name.rsplit(":", 2)[0] for r in m.resources}
    assert m.root_digest().hex() == _root([d for _, d in expected])
    assert m.serialization.shard_size == SHARD
    assert m.serialization.to_dict()["shard_size"] == SHARD


def test_blake2b_is_64_bytes_like_the_peer(model: Path) -> None:
    m = hash_model(model, HashingConfig(hash_type="blake2b", max_workers=1))
    assert {len(r.digest) for r in m.resources} == {64}


@pytest.mark.parametrize("size", [0, 1, SHARD - 1, SHARD, SHARD + 1, 3 * SHARD + 7])
@pytest.mark.parametrize("method", ["files", "shards"])
def test_one_and_many_workers_agree_for_boundary_sizes(tmp_path: Path, size: int, method: str) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "f").write_bytes(_data(size, size))
    (root / "anchor").write_bytes(b"x")  # so the model is never empty in shards mode
    for i in range(5):  # several items so the pool really is used
        (root / f"g{i}").write_bytes(_data(size + i, i))
    names = ["anchor", "f", *[f"g{i}" for i in range(5)]]
    results = []
    for workers in (1, 2, 3):
        cfg = HashingConfig(method=method, shard_size=SHARD, max_workers=workers)  # type: ignore[arg-type]
        results.append(_pairs(hash_model(root, cfg)))
    expected = (
        _expected_files(root, names) if method == "files" else _expected_shards(root, names, SHARD)
    )
    assert results[0] == expected
    assert results[1] == expected
    assert results[2] == expected


def test_shard_order_is_by_name_code_point(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "w").write_bytes(_data(12 * 10 + 3))
    m = hash_model(root, HashingConfig(method="shards", shard_size=10, max_workers=2))
    names = [r.name for r in m.resources]
    assert names == sorted(f"w:{s}:{min(s + 10, 123)}" for s in range(0, 123, 10))
    assert names.index("w:100:110") < names.index("w:20:30")  # text order of the name, as OMS specifies


def test_order_is_by_name_code_point(tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "a").mkdir(parents=True)
    for name in ["a/b", "a-b", "a.txt", "a b", "B", "é", "_"]:
        (root / name).write_bytes(name.encode())
    m = hash_model(root, HashingConfig(max_workers=1))
    # "a b" < "a-b" < "a.txt" < "a/b": ' ' (0x20), '-' (0x2d), '.' (0x2e) sort before '/' (0x2f).
    assert [r.name for r in m.resources] == ["B", "_", "a b", "a-b", "a.txt", "a/b", "é"]


def test_single_file_model_is_named_by_its_basename(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(_data(200))
    m = hash_model(f, HashingConfig(max_workers=2))
    assert [(r.name, r.digest) for r in m.resources] == [("model.safetensors", hashlib.sha256(_data(200)).digest())]
    assert m.model_name == "model.safetensors"
    s = hash_model(f, HashingConfig(method="shards", shard_size=64))
    assert [r.name for r in s.resources] == [
        "model.safetensors:0:64", "model.safetensors:128:192", "model.safetensors:192:200", "model.safetensors:64:128"
    ]


def test_serialization_records_defaults_user_paths_and_signature(model: Path) -> None:
    (model / "README.md").write_text("readme")
    (model / "model.sig").write_text("{}")
    m = hash_model(
        model,
        HashingConfig(ignore_paths=["README.md", str(model / "sub" / "deeper")], max_workers=1),
        signature_path=model / "model.sig",
    )
    assert m.serialization.ignore_paths == (
        ".git", ".gitattributes", ".github", ".gitignore", "README.md", "model.sig", "sub/deeper"
    )
    assert [r.name for r in m.resources] == ["config.json", "sub/empty", "weights.bin"]


def test_signature_outside_model_is_not_recorded(model: Path, tmp_path: Path) -> None:
    m = hash_model(model, HashingConfig(max_workers=1), signature_path=tmp_path / "model.sig")
    assert m.serialization.ignore_paths == (".git", ".gitattributes", ".github", ".gitignore")


def test_missing_path_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope does not exist"):
        hash_model(tmp_path / "nope")


def test_only_empty_files_in_shards_mode_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "e").write_bytes(b"")
    assert len(hash_model(root, HashingConfig(max_workers=1)).resources) == 1
    with pytest.raises(ModelPathError, match="only empty files"):
        hash_model(root, HashingConfig(method="shards", shard_size=SHARD))


def _run_with_hook(hook: Callable[[str], None], fn: Callable[[], object]) -> object:
    old = _workers._after_open_hook
    _workers._after_open_hook = hook
    try:
        return fn()
    finally:
        _workers._after_open_hook = old


@pytest.mark.parametrize("workers", [1, 2])
def test_file_growing_while_hashed_is_an_error(model: Path, workers: int) -> None:
    target = str(model / "weights.bin")

    def grow(path: str) -> None:
        if path == target:
            with open(path, "ab") as f:
                f.write(b"more")

    with pytest.raises(FileChangedError, match=r"weights\.bin changed while it was being hashed"):
        _run_with_hook(grow, lambda: hash_model(model, HashingConfig(max_workers=workers)))


def test_file_shrinking_while_hashed_is_an_error(model: Path) -> None:
    target = str(model / "weights.bin")

    def shrink(path: str) -> None:
        if path == target:
            os.truncate(path, 3)

    with pytest.raises(FileChangedError, match=r"weights\.bin changed"):
        _run_with_hook(shrink, lambda: hash_model(model, HashingConfig(max_workers=1)))


def test_file_rewritten_same_size_while_hashed_is_an_error(model: Path) -> None:
    target = str(model / "config.json")

    def rewrite(path: str) -> None:
        if path == target:
            st = os.stat(path)
            with open(path, "r+b") as f:
                f.write(b"[")
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))

    with pytest.raises(FileChangedError, match="modification time"):
        _run_with_hook(rewrite, lambda: hash_model(model, HashingConfig(max_workers=1)))


@pytest.mark.parametrize("workers", [1, 2])
def test_read_error_names_the_file(model: Path, workers: int) -> None:
    import errno

    target = str(model / "weights.bin")

    def fail(path: str) -> None:  # stands for the disk failing once the file is open
        if path == target:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    with pytest.raises(ModelPathError, match=r"weights\.bin: cannot read it \(Input/output error\)"):
        _run_with_hook(fail, lambda: hash_model(model, HashingConfig(max_workers=workers)))


def test_file_changed_between_walk_and_hash_is_an_error(model: Path) -> None:
    from model_signing.hashing import _plan
    from model_signing.hashing import walk as _walk

    walked = _walk.walk(model)
    (model / "config.json").write_bytes(b"changed, and longer than before")
    plan = _plan.make_plan(walked.files, "files", SHARD)
    with pytest.raises(FileChangedError, match=r"config\.json changed"):
        _workers.hash_items(plan.items, len(plan.names), "sha256", 1)


def test_file_replaced_by_a_fifo_after_the_walk_is_an_error_not_a_hang(model: Path) -> None:
    from model_signing.hashing import walk as _walk

    walked = _walk.walk(model)
    fifo = model / "config.json"
    fifo.unlink()
    os.mkfifo(fifo)
    plan = _plan.make_plan(walked.files, "files", SHARD)
    # Watchdog, not a timing assertion: a blocking open() of the FIFO would wait forever for a writer;
    # if that happens, become the writer so the test fails instead of hanging.
    done = threading.Event()
    rescued: list[bool] = []

    def rescue() -> None:
        if not done.wait(60):
            rescued.append(True)
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    watchdog = threading.Thread(target=rescue)
    watchdog.start()
    try:
        with pytest.raises(FileChangedError, match=r"config\.json changed while it was being hashed \(replaced"):
            _workers.hash_items(plan.items, len(plan.names), "sha256", 1)
    finally:
        done.set()
        watchdog.join()
    assert rescued == []


def test_concurrent_calls_from_threads_give_the_same_result(model: Path) -> None:
    # In-process hashing (one worker) from several threads at once: each call must read into a buffer of
    # its own.  Files of several buffers each, so that reads of one call could land in another's hash.
    for i in range(2):
        (model / f"big{i}.bin").write_bytes(os.urandom(4 * _workers.BUFFER_SIZE + 17))
    expected = _expected_files(model, ["big0.bin", "big1.bin", *MODEL_FILES])
    out: list[object] = []

    def run() -> None:
        for _ in range(3):
            out.append(_pairs(hash_model(model, HashingConfig(max_workers=1))))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [expected] * 12


def test_workers_are_other_processes(model: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"

    def record(path: str) -> None:
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")

    cfg = HashingConfig(method="shards", shard_size=SHARD, max_workers=2)
    m = _run_with_hook(record, lambda: hash_model(model, cfg))
    seen = {int(x) for x in pids.read_text().split()}
    assert os.getpid() not in seen
    assert 1 <= len(seen) <= 2
    assert len(m.resources) == 6  # type: ignore[attr-defined]  # 4 + 1 + 1 shards


def test_plan_batches_small_files_and_sorts_largest_first(model: Path) -> None:
    from model_signing.hashing import walk as _walk

    plan = _plan.make_plan(_walk.walk(model).files, "shards", SHARD)
    sizes = [sum(t.end - t.start for t in item) for item in plan.items]
    assert sizes == sorted(sizes, reverse=True)
    assert sum(sizes) == plan.total_bytes == (SHARD * 3 + 5) + 9 + SHARD
    assert sorted(t.pos for item in plan.items for t in item) == list(range(len(plan.names)))


_PEER_SCRIPT = """
import json, sys
from model_signing import hashing
from model_signing._signing import signing
out = []
for root, method, alg, shard, ignore in json.loads(sys.argv[1]):
    cfg = hashing.Config()
    if method == "shards":
        cfg.use_shard_serialization(hashing_algorithm=alg, shard_size=shard)
    else:
        cfg.use_file_serialization(hashing_algorithm=alg)
    cfg.set_ignored_paths(paths=ignore)
    stmt = signing.Payload(cfg.hash(root)).statement.pb
    subject = stmt.subject[0]
    pred = json.loads(__import__("google.protobuf.json_format", fromlist=["x"]).MessageToJson(stmt.predicate))
    out.append({"root": subject.digest["sha256"], "resources": pred["resources"],
                "ignore_paths": pred["serialization"].get("ignore_paths", [])})
print(json.dumps(out))
"""


def test_same_resources_and_root_digest_as_the_peer(tmp_path: Path) -> None:
    """Interop: the peer (model-signing 1.1.1, run in its own venv) agrees on resource names and digests.

    Its order (path components, numeric shard start) differs from OMS's code-point order for names like
    these, so the root digests are compared where the orders agree, and ours is checked over OMS order.
    """
    import json
    import subprocess

    from benchmarks.peer import ensure_peer_venv

    root = tmp_path / "model"
    for name, data in {
        "a/b": b"ab", "a-b": b"a-b" * 50, "a.txt": _data(5), "sp ace": b"", ".hidden/h": b"h",
        "w.bin": _data(1234, 3), ".git/HEAD": b"ref", ".gitignore": b"*", "sub/.gitignore": b"x",
        "docs/readme.md": b"doc",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    configs = [
        ("files", "sha256", 0, []),
        ("shards", "sha256", 100, ["docs"]),  # 13 shards of w.bin: offsets 1000+ sort numerically
        ("shards", "blake2b", 7, []),
        ("files", "blake3", 0, ["docs/readme.md"]),
    ]
    peer_alg = {"sha256": "sha256", "blake2b": "blake2", "blake3": "blake3"}
    spec = [[str(root), m, peer_alg[h], s or 1, ig] for m, h, s, ig in configs]
    python = ensure_peer_venv()
    proc = subprocess.run(
        [str(python), "-I", "-c", _PEER_SCRIPT, json.dumps(spec)],
        cwd="/", capture_output=True, text=True, check=True,
    )
    peer = json.loads(proc.stdout)
    for (method, hash_type, shard, ignore), theirs in zip(configs, peer, strict=True):
        cfg = HashingConfig(method=method, hash_type=hash_type, ignore_paths=ignore, max_workers=2)  # type: ignore[arg-type]
        if shard:
            cfg = dataclasses.replace(cfg, shard_size=shard)
        ours = hash_model(root, cfg)
        # Not compared: the peer labels shard digests "sha256-sharded-100"; OMS (and this engine) say "sha256".
        theirs_pairs = [(r["name"], r["digest"]) for r in theirs["resources"]]
        assert sorted((r.name, r.hex) for r in ours.resources) == sorted(theirs_pairs)
        assert [r.name for r in ours.resources] == sorted(n for n, _ in theirs_pairs)
        assert ours.root_digest().hex() == _root([bytes.fromhex(d) for _, d in sorted(theirs_pairs)])
        if [n for n, _ in theirs_pairs] == sorted(n for n, _ in theirs_pairs):
            assert ours.root_digest().hex() == theirs["root"]
        assert list(ours.serialization.ignore_paths) == sorted(theirs["ignore_paths"])


def _my_children() -> set[int]:
    out: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                out.update(int(x) for x in f.read().split())
        except FileNotFoundError:  # a thread (e.g. of an earlier test's helper) ended meanwhile
            continue
    return out


def test_error_in_a_worker_leaves_no_processes(model: Path) -> None:
    target = str(model / "weights.bin")
    before = _my_children()

    def grow(path: str) -> None:
        if path == target:
            with open(path, "ab") as f:
                f.write(b"x")

    with pytest.raises(FileChangedError):
        _run_with_hook(grow, lambda: hash_model(model, HashingConfig(method="shards", shard_size=SHARD, max_workers=3)))
    assert _my_children() == before


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_counts_every_byte_once(model: Path, workers: int) -> None:
    from model_signing.hashing import walk as _walk

    plan = _plan.make_plan(_walk.walk(model).files, "shards", SHARD)
    seen: list[int] = []
    _workers.hash_items(plan.items, len(plan.names), "sha256", workers, lambda: seen.append)
    assert sum(seen) == plan.total_bytes == (SHARD * 3 + 5) + 9 + SHARD


def test_progress_bar_on_stderr_when_asked(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hash_model(model, HashingConfig(max_workers=1, progress=True))
    assert "hashing" in capsys.readouterr().err
    hash_model(model, HashingConfig(max_workers=1, progress=False))
    assert capsys.readouterr().err == ""


def test_blake3_with_spare_cores_uses_threads_and_agrees(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    for i in range(2):
        (root / f"w{i}").write_bytes(_data(5 * 1024 * 1024 + i, i))  # above SMALL_RANGE: one item each
    m = hash_model(root, HashingConfig(hash_type="blake3", max_workers=4))
    assert _pairs(m) == _expected_files(root, ["w0", "w1"], "blake3")


def test_concurrent_pools_from_threads_do_not_deadlock(model: Path) -> None:
    # Each call forks workers that inherit the other calls' pipes; stopping must not rely on EOF.
    cfg = HashingConfig(method="shards", shard_size=SHARD, max_workers=2)
    expected = _expected_shards(model, MODEL_FILES, SHARD)
    out: list[object] = []
    threads = [threading.Thread(target=lambda: out.append(_pairs(hash_model(model, cfg)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert out == [expected] * 4


def test_a_worker_killed_from_outside_is_an_error_not_a_hang(model: Path) -> None:
    import signal as _signal

    before = _my_children()

    def die(path: str) -> None:
        os.kill(os.getpid(), _signal.SIGKILL)  # runs in a worker: it dies mid-item

    cfg = HashingConfig(method="shards", shard_size=SHARD, max_workers=2)
    with pytest.raises(RuntimeError, match="died unexpectedly"):
        _run_with_hook(die, lambda: hash_model(model, cfg))
    assert _my_children() == before

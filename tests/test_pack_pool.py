"""verify-all hashes a whole pack through ONE worker pool per hash type, not one pool per model (issue 13).

The pool is observed for real: the hashing run counter of ``hashing._pool`` (one increment per pool or
in-process loop) and the process ids that actually open the model files (``_pool._after_open_hook``,
which forked workers inherit).  Expected digests are computed with hashlib; nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import model_signing as ms
from model_signing.errors import FileChangedError
from model_signing.hashing import HashingConfig, _pool, hash_file_sets, hash_files
from model_signing.hashing import walk as _walk
from model_signing.manifest import Resource
from model_signing.policy import Lock, Policy, create_lock
from tests import _pki
from tests._cli import Run

FAST = ms.HashingConfig(max_workers=1)
#: Four models; the big file is over the planner's small-range threshold, so it is an item of its own.
MODELS: dict[str, dict[str, bytes]] = {
    "asr": {"config.json": b'{"arch": "conformer"}\n', "weights.bin": bytes(range(256)) * 40},
    "llm": {"model.bin": b"\x5a" * (5 * 1024 * 1024), "tokenizer.json": b"{}"},
    "tts": {"voice.onnx": b"onnx" * 500},
    "vad": {"a/w.bin": b"\x01" * 3000, "b.txt": b"b\n"},
}


def _root(files: dict[str, bytes], hash_name: str = "sha256") -> str:
    """OMS files root digest, computed independently: SHA-256 over the file digests in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(hashlib.new(hash_name, files[name]).digest())
    return h.hexdigest()


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    k = _pki.ec_key()
    _pki.write_private_key(k, d / "k.pem")
    _pki.write_public_key(k, d / "k.pub")
    return d


def _pack(base: Path, keys: Path, hashing: dict[str, ms.HashingConfig] | None = None) -> Path:
    """The four models signed with one key, a registry naming it, and a lock of them."""
    root = base / "pack"
    for name, files in MODELS.items():
        _write(root / name, files)
        config = (hashing or {}).get(name, FAST)
        ms.sign(root / name, ms.KeySigner(keys / "k.pem"), signature_path=root / f"{name}.sig", hashing=config)
    from model_signing.cli import main

    try:
        main(["registry", "add", "--registry", str(root / "publishers.json"), "--id", "team", "--name", "Team",
              "--public-key", str(keys / "k.pub")])
    except SystemExit as exc:
        assert exc.code in (0, None)
    create_lock([root / n for n in MODELS], root / "model-lock.json", registry=root / "publishers.json")
    (base / "opened.log").unlink(missing_ok=True)  # only verify-all's reads count
    return root


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Path]:
    """A file that every process opening a model file appends its pid and the file's path to."""
    log = tmp_path / "opened.log"

    def hook(path: str) -> None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{os.getpid()} {path}\n".encode())  # one write: lines never interleave
        finally:
            os.close(fd)

    _pool._after_open_hook = hook
    try:
        yield log
    finally:
        _pool._after_open_hook = None


def _opens(log: Path) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [(int(pid), path) for pid, path in (line.split(" ", 1) for line in log.read_text().splitlines())]


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The hashing runs started in between, per hash type (types other tests ran before are left out)."""
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def test_verify_all_hashes_four_models_in_one_pool_of_two_workers(
    keys: Path, tmp_path: Path, opened: Path
) -> None:
    root = _pack(tmp_path, keys)
    lock = Lock.load(root / "model-lock.json")
    before = dict(_pool.runs)
    result = lock.verify(max_parallel=4, max_workers=2)
    after = dict(_pool.runs)
    assert result.ok and result.exit_code == 0, result.reasons
    # One hashing run for the whole pack (all four are sha256), not four.
    assert _delta(before, after) == {"sha256": 1}
    opens = _opens(opened)
    # Every file of every model was read exactly once, by at most two processes, none of them this one.
    expected = {os.path.join(root, n, rel) for n, files in MODELS.items() for rel in files}
    assert sorted(p for _, p in opens) == sorted(expected)
    pids = {pid for pid, _ in opens}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids
    # Each model's outcome is what verifying it alone gives, and its digest is the one computed here.
    for o in result.models:
        assert o.action == "verified" and o.publisher == "team"
        assert o.check is not None and o.check.result is not None
        alone = ms.verify(root / o.model.name, ms.KeyVerifier(keys / "k.pub"),
                          signature_path=root / f"{o.model.name}.sig", max_workers=1)
        assert o.check.result.actual_root_digest == alone.actual_root_digest == _root(MODELS[o.model.name])
        assert o.check.result.manifest == alone.manifest
        assert o.check.result.differences == alone.differences == ()


def test_one_run_per_hash_type_and_shards_split_back_per_model(keys: Path, tmp_path: Path, opened: Path) -> None:
    hashing = {"tts": ms.HashingConfig(max_workers=1, hash_type="blake2b"),
               "vad": ms.HashingConfig(max_workers=1, hash_type="blake2b"),
               "llm": ms.HashingConfig(max_workers=1, method="shards", shard_size=1024 * 1024)}
    root = _pack(tmp_path, keys, hashing)
    before = dict(_pool.runs)
    result = Lock.load(root / "model-lock.json").verify(max_parallel=4, max_workers=2)
    after = dict(_pool.runs)
    assert result.ok, result.reasons
    assert _delta(before, after) == {"sha256": 1, "blake2b": 1}
    # The two runs come one after the other, each with its own two workers at most.
    blake = {pid for pid, p in _opens(opened) if "/tts/" in p or "/vad/" in p}
    sha = {pid for pid, p in _opens(opened) if "/asr/" in p or "/llm/" in p}
    assert 1 <= len(blake) <= 2 and 1 <= len(sha) <= 2 and not blake & sha and os.getpid() not in blake | sha
    by_name = {o.model.name: o for o in result.models}
    for name in ("tts", "vad"):
        check = by_name[name].check
        assert check is not None and check.result is not None
        assert check.result.actual_root_digest == _root(MODELS[name], "blake2b")
    llm = by_name["llm"].check
    assert llm is not None and llm.result is not None
    data = MODELS["llm"]["model.bin"]
    shards = {f"model.bin:{s}:{min(s + 1024 * 1024, len(data))}": hashlib.sha256(data[s:s + 1024 * 1024]).digest()
              for s in range(0, len(data), 1024 * 1024)}
    got = {r.name: r.digest for r in llm.result.manifest.resources if r.name.startswith("model.bin")}
    assert got == shards
    assert llm.result.actual_root_digest == llm.result.root_digest


def test_failures_stay_with_their_model_in_the_shared_pool(keys: Path, tmp_path: Path, opened: Path) -> None:
    root = _pack(tmp_path, keys)
    (root / "tts" / "voice.onnx").write_bytes(b"tampered")  # content mismatch: tts only (exit 3)
    doc = json.loads((root / "vad.sig").read_text())
    entry = doc["dsseEnvelope"]["signatures"][0]
    raw = bytearray(base64.b64decode(entry["sig"]))
    raw[-1] ^= 1
    entry["sig"] = base64.b64encode(bytes(raw)).decode()
    (root / "vad.sig").write_text(json.dumps(doc))  # bad signature: vad only (exit 2)
    victim = str(root / "llm" / "model.bin")

    def change_while_read(path: str) -> None:  # in whichever worker reads it: llm's file changes (exit 1)
        if path == victim:
            with open(path, "ab") as f:
                f.write(b"x")

    hook = _pool._after_open_hook
    assert hook is not None

    def both(path: str) -> None:
        hook(path)
        change_while_read(path)

    _pool._after_open_hook = both
    policy = Policy(require=("asr",))  # the others fail on their own; the policy decides what that means
    result = Lock.load(root / "model-lock.json").verify(policy=policy, max_parallel=4, max_workers=2)
    by_name = {o.model.name: o for o in result.models}
    assert by_name["asr"].action == "verified" and by_name["asr"].kind is None
    assert by_name["tts"].kind == "content_mismatch"
    assert by_name["vad"].kind == "invalid_signature" and by_name["vad"].action == "halt"
    assert by_name["llm"].kind == "error" and "changed while it was being hashed" in (by_name["llm"].message or "")
    assert not result.ok and result.exit_code == 2  # the halt outranks everything
    # A model whose signature failed is never read.
    assert not any("/vad/" in p for _, p in _opens(opened))


def test_hash_file_sets_equals_hash_files_per_model(tmp_path: Path) -> None:
    configs = [HashingConfig(), HashingConfig(method="shards", shard_size=1000), HashingConfig(hash_type="blake2b"),
               HashingConfig(method="shards", shard_size=1000)]
    jobs = []
    for (name, files), config in zip(MODELS.items(), configs, strict=True):
        _write(tmp_path / name, files)
        jobs.append((_walk.walk(tmp_path / name).files, config))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e").write_bytes(b"")
    jobs.append((_walk.walk(tmp_path / "empty").files, HashingConfig(method="shards")))  # no resource at all
    before = dict(_pool.runs)
    shared = hash_file_sets(jobs, max_workers=2)
    assert _delta(before, dict(_pool.runs)) == {"sha256": 1, "blake2b": 1}
    assert shared == [hash_files(files, config) for files, config in jobs]
    assert shared[4] == ()
    asr = {r.name: r.digest for r in shared[0]}  # type: ignore[union-attr]
    assert asr == {n: hashlib.sha256(d).digest() for n, d in MODELS["asr"].items()}


def test_hash_file_sets_reports_a_missing_file_for_its_model_only(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _write(tmp_path / name, {"w.bin": name.encode() * 100})
    jobs = [(_walk.walk(tmp_path / n).files, HashingConfig()) for n in ("a", "b")]
    shutil.rmtree(tmp_path / "a")  # gone after the walk
    got = hash_file_sets(jobs, max_workers=2)
    assert isinstance(got[0], FileChangedError) and "deleted" in str(got[0])
    assert got[1] == (Resource("w.bin", "sha256", hashlib.sha256(b"b" * 100).digest()),)


def test_cli_verify_all_takes_max_workers(keys: Path, tmp_path: Path, run: Run, opened: Path) -> None:
    root = _pack(tmp_path, keys)
    code, out, err = run("verify-all", root / "model-lock.json", "--max-parallel", 4, "--max-workers", 1)
    assert code == 0, err
    for name in MODELS:
        assert name in out
    # One worker allowed: hashed in this process, in one run.
    assert {pid for pid, _ in _opens(opened)} == {os.getpid()}

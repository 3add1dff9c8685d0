"""``main.py digest``: output, errors (one line, exit 1, no traceback) and Ctrl-C behaviour."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_signing.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["digest", *args])
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"a" * 300)
    (root / "sub" / "b.bin").write_bytes(b"bb")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_bytes(b"ref")
    return root


def test_prints_root_digest(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, str(model), "--max-workers", "2")
    expected = hashlib.sha256(hashlib.sha256(b"a" * 300).digest() + hashlib.sha256(b"bb").digest()).hexdigest()
    assert (code, out, err) == (0, expected + "\n", "")


def test_json_prints_manifest(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, str(model), "--json", "--serialization", "shards", "--shard-size", "256", "--hash", "blake2b",
        "--ignore-paths", "sub", "--quiet",
    )
    assert code == 0
    doc = json.loads(out)
    d1, d2 = hashlib.blake2b(b"a" * 256).digest(), hashlib.blake2b(b"a" * 44).digest()
    assert doc["resources"] == [
        {"name": "a.bin:0:256", "algorithm": "blake2b", "digest": d1.hex()},
        {"name": "a.bin:256:300", "algorithm": "blake2b", "digest": d2.hex()},
    ]
    assert doc["root_digest"] == hashlib.sha256(d1 + d2).hexdigest()
    assert doc["serialization"] == {
        "method": "shards", "hash_type": "blake2b", "allow_symlinks": False, "shard_size": 256,
        "ignore_paths": [".git", ".gitattributes", ".github", ".gitignore", "sub"],
    }
    assert doc["model_name"] == "model"


def test_blake3_files(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import blake3

    code, out, _ = _run(capsys, str(model), "--hash", "blake3", "--json")
    assert code == 0
    assert [r["digest"] for r in json.loads(out)["resources"]] == [
        blake3.blake3(b"a" * 300).hexdigest(), blake3.blake3(b"bb").hexdigest()
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{model}/missing"], "missing does not exist"),
        (["{model}", "--shard-size", "10"], "--shard-size only applies with --serialization shards"),
        (["{model}", "--hash", "md5"], "--hash"),
        (["{model}", "--max-workers", "0"], "--max-workers"),
        (["{model}", "--ignore-paths", "../x"], "escapes the model root"),
        (["{model}/sub/link"], "is a symlink; pass --allow-symlinks"),
    ],
)
def test_bad_input_is_one_line_exit_1(
    model: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (model / "sub" / "link").symlink_to("b.bin")
    code, out, err = _run(capsys, *[a.format(model=model) for a in args])
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err


def test_no_progress_bar_when_stderr_is_not_a_terminal(model: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "main.py", "digest", str(model)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    expected = hashlib.sha256(hashlib.sha256(b"a" * 300).digest() + hashlib.sha256(b"bb").digest()).hexdigest()
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, expected + "\n", "")


def _children(pid: int) -> set[int]:
    """Direct children of ``pid`` (from /proc), i.e. the worker processes."""
    out: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.update(int(x) for x in f.read().split())
    except FileNotFoundError:
        pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize("target", ["group", "parent"])
def test_ctrl_c_stops_all_workers(tmp_path: Path, target: str) -> None:
    big = tmp_path / "model" / "big.bin"
    big.parent.mkdir()
    with open(big, "wb") as f:  # sparse: costs no disk, takes many seconds to hash
        f.truncate(64 * 1024**3)
    proc = subprocess.Popen(
        [sys.executable, "main.py", "digest", str(big.parent), "--serialization", "shards",
         "--shard-size", str(256 * 1024**2), "--max-workers", "2", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        # Wait (bounded) until both workers exist, so the interrupt really lands mid-hash.
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            workers = _children(proc.pid)
            time.sleep(0.02)
        assert len(workers) == 2, "the workers never started"
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        else:
            os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err  # typer turns KeyboardInterrupt into a silent exit 130
    for pid in workers:
        assert not _alive(pid), f"worker {pid} survived Ctrl-C"

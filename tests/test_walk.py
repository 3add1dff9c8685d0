"""Enumeration rules (OMS v1.0 6.1-6.2): what is hashed, under which name, and what is refused."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from pathlib import Path

import pytest

from model_signing import HashingConfig, hash_model
from model_signing.errors import InputError, ModelPathError
from model_signing.hashing.walk import walk


def _names(root: Path | str, **kw: object) -> list[str]:
    return sorted(f.name for f in walk(root, **kw).files)  # type: ignore[arg-type]


def _mk(root: Path, *names: str) -> Path:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(n.encode())
    return root


def test_nested_dirs_dotfiles_and_hidden_dirs_are_included(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "a.bin", "d1/d2/d3/deep.bin", ".hidden", ".cache/w.bin", "d1/.env")
    assert _names(root) == [".cache/w.bin", ".hidden", "a.bin", "d1/.env", "d1/d2/d3/deep.bin"]


def test_default_exclusions_are_top_level_only(tmp_path: Path) -> None:
    root = _mk(
        tmp_path / "m",
        "w.bin", ".git/HEAD", ".git/objects/ab/cd", ".gitignore", ".gitattributes", ".github/workflows/ci.yml",
        "sub/.git/HEAD", "sub/.gitignore", "sub/.github/x", ".gitmodules",
    )
    assert _names(root) == [".gitmodules", "sub/.git/HEAD", "sub/.github/x", "sub/.gitignore", "w.bin"]


def test_user_ignore_paths_files_dirs_and_absolute(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin", "README.md", "cache/a", "cache/b/c", "sub/cache/x", "cachefile")
    assert _names(root, ignore_paths=["README.md", "cache"]) == ["cachefile", "sub/cache/x", "w.bin"]
    assert _names(root, ignore_paths=[str(root / "cache" / "b"), "./sub//cache/"]) == [
        "README.md", "cache/a", "cachefile", "w.bin"
    ]
    # An ignore path that does not exist is fine (the verifier replays signed settings).
    assert _names(root, ignore_paths=["not-there"]) == [
        "README.md", "cache/a", "cache/b/c", "cachefile", "sub/cache/x", "w.bin"
    ]


@pytest.mark.parametrize("bad", ["../x", "a/../../x"])
def test_ignore_path_escaping_root_is_rejected(tmp_path: Path, bad: str) -> None:
    root = _mk(tmp_path / "m", "w.bin")
    with pytest.raises(InputError, match="escapes the model root"):
        walk(root, ignore_paths=[bad])


def test_absolute_ignore_path_outside_root_is_rejected(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin")
    with pytest.raises(InputError, match="outside the model root"):
        walk(root, ignore_paths=[str(tmp_path / "elsewhere")])


def test_unicode_space_and_colon_names(tmp_path: Path) -> None:
    names = ["модель.bin", "日本語/重み.bin", "with space.bin", "a:b:c.bin", "emoji-🤖.txt", "e\u0301.bin"]
    root = _mk(tmp_path / "m", *names)
    assert _names(root) == sorted(names)
    m = hash_model(root, HashingConfig(max_workers=1))
    by_name = {r.name: r.digest for r in m.resources}
    for n in names:
        assert by_name[n] == hashlib.sha256(n.encode()).digest()
    shards = hash_model(root, HashingConfig(method="shards", shard_size=4, max_workers=2))
    assert "a:b:c.bin:0:4" in {r.name for r in shards.resources}


def test_non_utf8_name_is_rejected(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "ok.bin")
    bad = os.path.join(os.fsencode(root), b"bad-\xff.bin")
    with open(bad, "wb") as f:
        f.write(b"x")
    with pytest.raises(ModelPathError, match=r"not valid UTF-8.*`ignore_paths`"):
        walk(root)


def test_backslash_in_name_is_rejected(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "ok.bin", "dir/a\\b.bin")
    with pytest.raises(ModelPathError, match=r"m/dir/a\\b\.bin has a backslash.*`ignore_paths`"):
        walk(root)
    assert _names(root, ignore_paths=["dir"]) == ["ok.bin"]


def test_empty_files_are_enumerated(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin")
    (root / "empty").write_bytes(b"")
    files = {f.name: f.size for f in walk(root).files}
    assert files == {"w.bin": 5, "empty": 0}


def test_single_file(tmp_path: Path) -> None:
    f = tmp_path / "dir" / "model.onnx"
    f.parent.mkdir()
    f.write_bytes(b"onnx")
    res = walk(f)
    assert [x.name for x in res.files] == ["model.onnx"]
    assert res.model_name == "model.onnx"


def test_empty_model_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "m" / "emptydir").mkdir(parents=True)
    with pytest.raises(ModelPathError, match="no files to hash"):
        walk(tmp_path / "m")
    _mk(tmp_path / "m", ".git/HEAD", ".gitignore", "README.md")
    with pytest.raises(ModelPathError, match="no files to hash"):
        walk(tmp_path / "m", ignore_paths=["README.md"])


def test_missing_model_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        walk(tmp_path / "absent")


def test_symlink_rejected_by_default_naming_file_and_fix(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin")
    (root / "x.bin").symlink_to("w.bin")
    with pytest.raises(ModelPathError) as exc:
        walk(root)
    msg = str(exc.value)
    assert "m/x.bin is a symlink" in msg
    assert "`allow_symlinks=True`" in msg


def test_symlinked_directory_rejected_by_default(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "real/w.bin")
    (root / "linked").symlink_to("real", target_is_directory=True)
    with pytest.raises(ModelPathError, match="linked is a symlink"):
        walk(root)


def test_symlinks_followed_when_allowed(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "real/w.bin", "a.bin")
    (root / "x.bin").symlink_to("a.bin")
    (root / "linked").symlink_to("real", target_is_directory=True)
    assert _names(root, allow_symlinks=True) == ["a.bin", "linked/w.bin", "real/w.bin", "x.bin"]
    m = hash_model(root, HashingConfig(allow_symlinks=True, max_workers=2))
    by_name = {r.name: r.digest for r in m.resources}
    assert by_name["x.bin"] == hashlib.sha256(b"a.bin").digest()
    assert by_name["linked/w.bin"] == hashlib.sha256(b"real/w.bin").digest()
    assert m.serialization.allow_symlinks is True


def test_symlink_outside_root_warns_and_is_hashed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _mk(tmp_path / "m", "a.bin")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"outside")
    (root / "ext.bin").symlink_to(outside)
    with caplog.at_level(logging.WARNING, logger="model_signing"):
        names = _names(root, allow_symlinks=True)
    assert names == ["a.bin", "ext.bin"]
    assert any("ext.bin" in r.getMessage() and "outside the model root" in r.getMessage() for r in caplog.records)


def test_symlink_cycle_is_an_error_not_a_hang(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "d/w.bin")
    (root / "d" / "loop").symlink_to("..", target_is_directory=True)
    with pytest.raises(ModelPathError, match=r"d/loop is a symlink cycle.*`ignore_paths=\['d/loop'\]`"):
        walk(root, allow_symlinks=True)
    assert _names(root, allow_symlinks=True, ignore_paths=["d/loop"]) == ["d/w.bin"]


def test_self_referencing_symlink_is_an_error(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin")
    (root / "self").symlink_to("self")
    with pytest.raises(ModelPathError, match="broken symlink"):
        walk(root, allow_symlinks=True)


def test_broken_symlink_is_an_error(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin")
    (root / "dangling").symlink_to("nowhere")
    with pytest.raises(ModelPathError, match="dangling is a broken symlink"):
        walk(root, allow_symlinks=True)


def test_model_root_symlink(tmp_path: Path) -> None:
    real = _mk(tmp_path / "real", "w.bin")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with pytest.raises(ModelPathError, match="link is a symlink"):
        walk(link)
    assert _names(link, allow_symlinks=True) == ["w.bin"]


def test_fifo_is_rejected(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin")
    os.mkfifo(root / "pipe")
    with pytest.raises(ModelPathError, match=r"m/pipe is a FIFO.*`ignore_paths=\['pipe'\]`"):
        walk(root)
    assert _names(root, ignore_paths=["pipe"]) == ["w.bin"]


def test_unix_socket_is_rejected(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin")
    sock = socket.socket(socket.AF_UNIX)
    # AF_UNIX paths are short; bind through a relative name from inside the directory.
    cwd = os.getcwd()
    os.chdir(root)
    try:
        sock.bind("sock")
    finally:
        os.chdir(cwd)
    try:
        with pytest.raises(ModelPathError, match="sock is a unix socket"):
            walk(root)
    finally:
        sock.close()


def test_device_through_allowed_symlink_is_rejected(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin")
    (root / "null").symlink_to("/dev/null")
    with pytest.raises(ModelPathError, match="null is a character device"):
        walk(root, allow_symlinks=True)


def test_signature_file_is_always_excluded(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin", "model.sig", "sub/other.sig")
    res = walk(root, signature_path=root / "model.sig")
    assert sorted(f.name for f in res.files) == ["sub/other.sig", "w.bin"]
    assert "model.sig" in res.ignore_paths
    # Relative signature paths are resolved from the current directory, like any path argument.
    cwd = os.getcwd()
    os.chdir(root / "sub")
    try:
        res2 = walk(root, signature_path="other.sig")
    finally:
        os.chdir(cwd)
    assert sorted(f.name for f in res2.files) == ["model.sig", "w.bin"]
    assert "sub/other.sig" in res2.ignore_paths


def test_reenumerating_with_the_recorded_serialization_gives_the_same_manifest(tmp_path: Path) -> None:
    root = _mk(tmp_path / "m", "w.bin", "README.md", "docs/a.md", "model.sig")
    cfg = HashingConfig(method="shards", shard_size=3, ignore_paths=["README.md", "docs"], max_workers=2)
    signed = hash_model(root, cfg, signature_path=root / "model.sig")
    replay = HashingConfig.from_serialization(signed.serialization, max_workers=1)
    again = hash_model(root, replay, signature_path=root / "model.sig")
    assert again == signed
    assert [(r.name, r.digest) for r in again.resources] == [
        ("w.bin:0:3", hashlib.sha256(b"w.b").digest()), ("w.bin:3:5", hashlib.sha256(b"in").digest())
    ]

"""The digest cache: reuse only on a full identity match, never in verify, --reuse-from, concurrent use.

Expected digests are computed here with hashlib.  Files are made, then the test waits past the cache's
settle time (files changed within it are never stored: a write in the same timestamp tick could
otherwise leave every key field equal over different bytes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import model_signing as ms
from model_signing.errors import InputError
from model_signing.hashing.cache import CACHE_FILE, DigestCache
from tests._cli import Run

ROOT = Path(__file__).resolve().parent.parent
SETTLE = 0.3  # the API tests use a short settle time; the CLI tests the real default


def _files(n: int = 4, size: int = 300_000) -> dict[str, bytes]:
    return {f"w/part-{i}.bin": os.urandom(size + i) for i in range(n)} | {"README.md": b"# model\n"}


def _digests(model: Path) -> dict[str, str]:
    return {
        p.relative_to(model).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(model.rglob("*")) if p.is_file()
    }


def _manifest_digests(manifest: ms.Manifest) -> dict[str, str]:
    return {r.name: r.digest.hex() for r in manifest.resources}


def _rewrite(path: Path, data: bytes) -> None:
    """New bytes, same size, mtime set back to the old one: only ctime tells it changed."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _cfg(cache: DigestCache | None, **kw: object) -> ms.HashingConfig:
    return ms.HashingConfig(max_workers=1, digest_cache=cache, **kw)  # type: ignore[arg-type]


def test_second_run_reuses_every_digest_and_a_change_rehashes_only_that_file(
    make_model: Callable[..., Path], tmp_path: Path
) -> None:
    model = make_model(_files())
    time.sleep(SETTLE + 0.1)
    cache = DigestCache(tmp_path / "c.db", settle_seconds=SETTLE)
    first = ms.hash_model(model, _cfg(cache))
    assert (cache.stats.hits, cache.stats.misses, cache.stats.stored) == (0, 5, 5)
    assert _manifest_digests(first) == _digests(model)

    second = ms.hash_model(model, _cfg(cache))
    assert (cache.stats.hits, cache.stats.misses) == (5, 0)
    assert second == first

    # Same size, mtime put back: only ctime changed.  Must be rehashed, and the new digest is right.
    _rewrite(model / "w/part-2.bin", os.urandom(300_002))
    third = ms.hash_model(model, _cfg(cache))
    assert (cache.stats.hits, cache.stats.misses) == (4, 1)
    assert _manifest_digests(third) == _digests(model)
    # Just changed: hashed, but not stored (racy) -- so the next run hashes it again.
    assert cache.stats.stored == 0
    ms.hash_model(model, _cfg(cache))
    assert cache.stats.misses == 1


def test_key_includes_serialization_settings_and_shard_range(make_model: Callable[..., Path], tmp_path: Path) -> None:
    model = make_model({"big.bin": os.urandom(100_000)})
    time.sleep(SETTLE + 0.1)
    cache = DigestCache(tmp_path / "c.db", settle_seconds=SETTLE)
    data = (model / "big.bin").read_bytes()
    for hash_type, method, shard in (("sha256", "files", 0), ("blake2b", "files", 0), ("sha256", "shards", 30_000),
                                     ("sha256", "shards", 40_000)):
        cfg = _cfg(cache, hash_type=hash_type, method=method, **({"shard_size": shard} if shard else {}))
        m = ms.hash_model(model, cfg)
        assert cache.stats.hits == 0, (hash_type, method, shard)  # nothing of another setting is reused
        again = ms.hash_model(model, cfg)
        assert again == m and cache.stats.misses == 0
        if method == "shards":
            want = {f"big.bin:{s}:{min(s + shard, len(data))}": hashlib.sha256(data[s:s + shard]).hexdigest()
                    for s in range(0, len(data), shard)}
            assert _manifest_digests(again) == want


def test_recent_file_is_not_stored(make_model: Callable[..., Path], tmp_path: Path) -> None:
    model = make_model({"a.bin": b"a" * 1000})  # written just now: within the settle time
    cache = DigestCache(tmp_path / "c.db", settle_seconds=5)
    ms.hash_model(model, _cfg(cache))
    assert cache.stats.stored == 0
    ms.hash_model(model, _cfg(cache))
    assert cache.stats.hits == 0


def _poison(db: Path, digest: bytes) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("UPDATE digests SET digest = ?", (digest,)).rowcount


def test_verify_never_reads_the_cache(
    make_model: Callable[..., Path], tmp_path: Path, run: Run, ec_keypair: Callable[..., tuple[Path, Path]]
) -> None:
    priv, pub = ec_keypair()
    model = make_model({"weights.bin": os.urandom(50_000)})
    time.sleep(2.1)  # the CLI's real settle time
    db, sig = tmp_path / "c.db", tmp_path / "m.sig"
    code, _, err = run("sign", "key", model, "--private-key", priv, "--signature", sig, "--digest-cache", db, "-q")
    assert code == 0, err
    signed = (model / "weights.bin").read_bytes()

    # The file changes (same size, mtime set back); then the cache is poisoned with the *old* digest under
    # the file's *new* identity, as a stale or tampered cache would have it.
    _rewrite(model / "weights.bin", os.urandom(50_000))
    time.sleep(2.1)
    code, _, _ = run("digest", model, "--digest-cache", db, "-q")  # stores the new identity
    assert code == 0
    assert _poison(db, hashlib.sha256(signed).digest()) == 1
    # The poison works where the cache is read (digest/sign): the stale digest comes back ...
    code, out, _ = run("digest", model, "--digest-cache", db, "--json", "-q")
    assert json.loads(out)["resources"][0]["digest"] == hashlib.sha256(signed).hexdigest()
    # ... but verify rehashes the file and reports the change (exit 3), whatever the cache says.
    code, out, err = run("verify", "key", model, "--public-key", pub, "--signature", sig)
    assert code == 3, (out, err)
    assert "weights.bin" in err


def test_reuse_from_an_earlier_signature(
    make_model: Callable[..., Path], tmp_path: Path, ec_keypair: Callable[..., tuple[Path, Path]]
) -> None:
    priv, pub = ec_keypair()
    model = make_model(_files())
    time.sleep(SETTLE + 0.1)
    db = tmp_path / "c.db"
    cache = DigestCache(db, settle_seconds=SETTLE)
    old = tmp_path / "old.sig"
    ms.sign(model, ms.KeySigner(priv), hashing=_cfg(cache), signature_path=old)
    with sqlite3.connect(db) as conn:  # the per-file digests are gone (pruned); the signature record stays
        conn.execute("DELETE FROM digests")
    _rewrite(model / "README.md", b"# edited\n")

    new = tmp_path / "new.sig"
    result = ms.sign(model, ms.KeySigner(priv), hashing=_cfg(cache), signature_path=new, reuse_from=old)
    assert (cache.stats.hits, cache.stats.reused_from_signature, cache.stats.misses) == (0, 4, 1)
    assert _manifest_digests(result.manifest) == _digests(model)
    ms.verify(model, ms.KeyVerifier(pub), signature_path=new)

    # An old signature whose statement was edited matches no record: nothing reused, digests still right.
    doc = json.loads(old.read_text())
    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    resources = payload["predicate"]["resources"]
    resources[0]["digest"] = "00" * 32
    payload["subject"][0]["digest"]["sha256"] = hashlib.sha256(
        b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    forged = tmp_path / "forged.sig"
    forged.write_text(json.dumps(doc))
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM digests")
    again = ms.sign(model, ms.KeySigner(priv), hashing=_cfg(cache), signature_path=tmp_path / "n2.sig",
                    reuse_from=forged)
    assert cache.stats.prior_known is False and cache.stats.reused_from_signature == 0
    assert _manifest_digests(again.manifest) == _digests(model)


def test_reuse_from_cli_warns_when_the_cache_does_not_know_it(
    make_model: Callable[..., Path], tmp_path: Path, run: Run, ec_keypair: Callable[..., tuple[Path, Path]]
) -> None:
    priv, _ = ec_keypair()
    model = make_model({"a.bin": b"a" * 100})
    sig = tmp_path / "a.sig"
    assert run("sign", "key", model, "--private-key", priv, "--signature", sig, "--no-digest-cache", "-q")[0] == 0
    code, _, err = run("sign", "key", model, "--private-key", priv, "--signature", tmp_path / "b.sig",
                       "--digest-cache", tmp_path / "c.db", "--reuse-from", sig, "-q")
    assert code == 0
    assert f"warning: nothing reused from {sig}: digest cache {tmp_path / 'c.db'} has no record of it" in err
    code, _, err = run("sign", "key", model, "--private-key", priv, "--signature", tmp_path / "c.sig",
                       "--no-digest-cache", "--reuse-from", sig)
    assert code == 1 and "--reuse-from" in err and "--no-digest-cache" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--digest-cache", "X", "--no-digest-cache"], ["--digest-cache", "--no-digest-cache"]),
        (["--digest-cache", "DIR"], ["digest cache", "DIR", "--digest-cache"]),
        (["--digest-cache", "JUNK"], ["digest cache", "JUNK", "--digest-cache"]),
    ],
)
def test_bad_cache_options(
    make_model: Callable[..., Path], tmp_path: Path, run: Run, args: list[str], words: list[str]
) -> None:
    model = make_model({"a.bin": b"a"})
    (tmp_path / "dir").mkdir()
    (tmp_path / "junk").write_bytes(b"this is not a database" * 100)
    os.chmod(tmp_path / "junk", 0o600)
    subst = {"DIR": str(tmp_path / "dir"), "JUNK": str(tmp_path / "junk")}
    code, _, err = run("digest", model, *[subst.get(a, a) for a in args])
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert subst.get(w, w) in err


def test_default_cache_is_in_the_user_cache_dir(make_model: Callable[..., Path], tmp_path: Path) -> None:
    model = make_model({"a.bin": b"a" * 10})
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "model_signing", "digest", str(model), "-q"],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "xdg" / "modelseal" / CACHE_FILE
    assert db.is_file() and (db.stat().st_mode & 0o777) == 0o600
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    proc = subprocess.run([sys.executable, "-m", "model_signing", "digest", str(model), "-q", "--no-digest-cache"],
                          env={**env, "XDG_CACHE_HOME": str(tmp_path / "xdg2")}, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and not (tmp_path / "xdg2").exists()


_CONCURRENT = """
import sys, time
import model_signing as ms
from model_signing.hashing.cache import DigestCache
model, key, db, sig, rounds = sys.argv[1:6]
for i in range(int(rounds)):
    cache = DigestCache(db, settle_seconds=0.2)
    ms.sign(model, ms.KeySigner(key), hashing=ms.HashingConfig(max_workers=1, digest_cache=cache),
            signature_path=f"{sig}.{i}")
"""


def test_two_processes_share_a_cache(
    make_model: Callable[..., Path], tmp_path: Path, ec_keypair: Callable[..., tuple[Path, Path]]
) -> None:
    priv, pub = ec_keypair()
    # Two models of many small files: many writes, so the two processes' transactions interleave.
    models = [make_model({f"f{i:03d}.bin": os.urandom(2000 + i) for i in range(150)}, name=f"m{j}")
              for j in range(2)]
    time.sleep(0.3)
    db = tmp_path / "shared.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(m), str(priv), str(db), str(tmp_path / f"s{j}"),
                          "6"], env=env, stderr=subprocess.PIPE, text=True)
        for j, m in enumerate([models[0], models[1]])
    ]
    # And a third on the same model as the first, at the same time.
    procs.append(subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(models[0]), str(priv), str(db),
                                   str(tmp_path / "t"), "6"], env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT ino, digest FROM digests").fetchall()
    by_ino = {p.stat().st_ino: hashlib.sha256(p.read_bytes()).digest() for m in models for p in m.iterdir()}
    assert len(rows) == 300 and all(by_ino[ino] == d for ino, d in rows)  # every cached digest is right
    for j, m in enumerate(models):
        for i in range(6):
            ms.verify(m, ms.KeyVerifier(pub), signature_path=tmp_path / f"s{j}.{i}", max_workers=1)


def test_reused_entries_are_refreshed_and_stale_ones_pruned(make_model: Callable[..., Path], tmp_path: Path) -> None:
    model = make_model({"a.bin": b"a" * 1000, "b.bin": b"b" * 1000})
    time.sleep(SETTLE + 0.1)
    db = tmp_path / "c.db"
    cache = DigestCache(db, settle_seconds=SETTLE)
    ms.hash_model(model, _cfg(cache))
    long_ago = time.time_ns() - 400 * 86_400 * 10**9
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE digests SET stored_ns = ?", (long_ago,))
    (model / "b.bin").unlink()  # its entry can never be used again
    (model / "c.bin").write_bytes(b"c" * 10)
    ms.hash_model(model, _cfg(cache))
    assert cache.stats.hits == 1
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT ino, stored_ns FROM digests").fetchall()
    # a.bin's entry was reused, so refreshed; b.bin's went stale and was pruned; c.bin is too recent to store.
    assert [ino for ino, _ in rows] == [(model / "a.bin").stat().st_ino]
    assert rows[0][1] > long_ago


def test_a_scan_reads_every_file_even_when_the_cache_knows_it(
    make_model: Callable[..., Path], tmp_path: Path
) -> None:
    """A cached digest means the file is not read; under a scan that would leave it unscanned, so no reuse."""
    from model_signing.errors import UnsafeModelError
    from model_signing.scan import make_config

    # os.system('true') as a protocol-2 pickle, written by hand: PROTO 2, GLOBAL, BINUNICODE, TUPLE1, REDUCE, STOP
    payload = b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00true\x85R."
    model = make_model(_files(2) | {"w/extra.bin": payload})
    time.sleep(SETTLE + 0.1)
    cache = DigestCache(tmp_path / "c.db", settle_seconds=SETTLE)
    ms.hash_model(model, _cfg(cache))  # every file now cached
    assert cache.stats.stored == 4
    sig = tmp_path / "model.sig"
    with pytest.raises(UnsafeModelError, match=r"extra\.bin"):
        ms.sign(model, ms.SecretSigner(b"k" * 32), hashing=_cfg(cache), signature_path=sig, scan=make_config())
    assert cache.stats.hits == 0  # nothing was taken from the cache
    assert not sig.exists()


@pytest.mark.parametrize("shared", ["world-writable", "another user's"])
def test_cache_in_a_directory_others_can_write_is_refused(
    make_model: Callable[..., Path], tmp_path: Path, shared: str
) -> None:
    """Whoever can write the cache's directory can swap the database, or plant its -wal journal (which
    SQLite replays), between the owner check and the open: and so choose the digests a signature claims."""
    model = make_model({"a.bin": b"a" * 100})
    directory = tmp_path / "shared"
    directory.mkdir()
    if shared == "world-writable":
        os.chmod(directory, 0o1777)  # like /tmp: sticky, but anyone may create the -wal file
    else:
        if os.getuid() != 0:
            pytest.skip("needs root to give the directory to another user")
        os.chmod(directory, 0o755)
        os.chown(directory, 65534, 65534)
    db = directory / "c.db"
    with pytest.raises(InputError, match="directory") as err:
        ms.hash_model(model, _cfg(DigestCache(db, settle_seconds=0)))
    assert str(db) in str(err.value)
    # The default cache is best effort: skipped (with the reason), never used, the digest still right.
    cache = DigestCache(db, required=False, settle_seconds=0)
    manifest = ms.hash_model(model, _cfg(cache))
    assert _manifest_digests(manifest) == {"a.bin": hashlib.sha256(b"a" * 100).hexdigest()}
    assert "directory" in cache.stats.disabled and cache.stats.stored == 0


def test_mountinfo_places_this_machines_file_systems() -> None:
    # Parsed from the real /proc/self/mountinfo: the test's own directories are on file systems whose
    # kernel keeps ctime (ext4 or tmpfs here), and they are found by their st_dev.
    from model_signing.hashing import cache as cache_mod

    types = cache_mod._mount_types()
    for where in (ROOT, Path("/dev/shm")):
        fstype = types.get(os.stat(where).st_dev)
        assert fstype is not None, where
        assert cache_mod.ctime_trusted(os.stat(where).st_dev) is (fstype in cache_mod.CTIME_FILE_SYSTEMS)
    assert not cache_mod.ctime_trusted(-12345)  # a device no mount names: fail closed


@pytest.mark.parametrize("fstype", ["vfat", "exfat", "fuse.gcsfuse", "fuseblk"])
def test_no_caching_where_a_writer_controls_ctime(make_model: Callable[..., Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, fstype: str) -> None:
    # On FAT, exFAT or a FUSE mount the change time comes from times a writer sets: a same-size rewrite
    # with its times put back would match every key field.  Files there are always hashed, never stored.
    from model_signing.hashing import cache as cache_mod

    model = make_model(_files())
    time.sleep(SETTLE + 0.1)
    monkeypatch.setitem(cache_mod._fs_types, os.stat(model).st_dev, fstype)  # this mount, seen as `fstype`
    cache = DigestCache(tmp_path / "c.db", settle_seconds=SETTLE)
    ms.hash_model(model, _cfg(cache))
    assert (cache.stats.hits, cache.stats.stored, cache.stats.untrusted_fs) == (0, 0, 5)
    p = model / "w/part-1.bin"
    st = p.stat()
    p.write_bytes(os.urandom(st.st_size))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = ms.hash_model(model, _cfg(cache))
    assert cache.stats.hits == 0 and cache.stats.misses == 5
    assert _manifest_digests(again) == _digests(model)
    with sqlite3.connect(tmp_path / "c.db") as db:
        assert db.execute("SELECT COUNT(*) FROM digests").fetchone() == (0,)

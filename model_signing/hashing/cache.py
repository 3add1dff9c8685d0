"""The digest cache: digests of unchanged files are reused when a model is signed again (public API).

Editing a README in a 500 GB model should not mean rehashing 500 GB.  The cache is an SQLite database
(WAL journal, so several ``sign`` processes can share it; a busy timeout, so they wait for each other's
short write transactions instead of failing).  A digest is keyed by everything that must be equal for
it to still describe the bytes:

* the file's identity and change evidence, as the walk saw it: device, inode, size, ``mtime_ns`` and
  ``ctime_ns`` (the inode change time, which no user can set back; a write, a rename over the file or a
  ``touch -d`` all move it forward);
* the serialization settings: method, hash algorithm and shard size (0 for ``files``);
* the byte range ``[start, end)`` of the resource.

A digest is reused only when every field matches.  Two more rules keep a stale digest out:

* *racy* files are never stored: a file whose ``ctime_ns`` is within :data:`SETTLE_SECONDS` of the
  moment the walk began could still be written again within the same timestamp tick (file timestamps
  are coarser than a nanosecond, and a network file system's clock is not quite this machine's), which
  would leave every key field equal over different bytes;
* a digest is stored only if the file still has the walk's identity, ``ctime_ns`` included, after it
  was read;
* only file systems whose kernel keeps ``ctime`` are cached (:func:`ctime_trusted`): on FAT, exFAT,
  NTFS and FUSE mounts (a mounted bucket, sshfs) the change time is derived from times a writer sets, so
  a same-size rewrite with its times set back would keep every key field; files there are always hashed.

Verification never reads the cache: :func:`model_signing.verify` hashes with
``HashingConfig.from_serialization``, which never carries one.  Signing (and ``digest``) reuse digests
that this user's earlier runs computed; the cache is a file of this user (0600 in a 0700 directory),
trusted like the rest of their home directory.

The cache also records, for each signature made with it, which files (by name and identity) the signed
statement covered.  :class:`PriorSignature` then lets a new signature reuse the old signature's digests
for the files whose identity has not changed since (``sign --reuse-from OLD.sig``); the record is found
by the SHA-256 of the old statement, so an edited old signature matches no record and gives nothing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model_signing.errors import InputError

if TYPE_CHECKING:
    from model_signing.hashing.walk import FileEntry

#: A file changed less than this long before the walk began is hashed but not stored (see above).
SETTLE_SECONDS = 2.0
#: How long a process waits for another one's write transaction before giving up on the cache.
BUSY_TIMEOUT_MS = 30_000
#: Signature records kept (the newest); digests are pruned per file (one identity per inode).
MAX_SIGNATURES = 256
#: Digests neither stored nor reused for this many days are pruned.
MAX_AGE_DAYS = 60
#: The file name of the default cache, in :func:`default_cache_dir`.
CACHE_FILE = "digests.sqlite3"
_SCHEMA = 1

_U64 = 1 << 64


def _s64(v: int) -> int:
    """A 64-bit unsigned value (``st_dev``, ``st_ino``) as the signed integer SQLite stores."""
    return v - _U64 if v >= 1 << 63 else v


def default_cache_dir() -> str:
    """The user's cache directory for modelseal (platformdirs: ``$XDG_CACHE_HOME/modelseal`` on Linux)."""
    try:
        import platformdirs
    except ImportError:  # pragma: no cover - platformdirs is pinned; the XDG rule is its Linux answer
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return os.path.join(base, "modelseal")
    return platformdirs.user_cache_dir("modelseal", appauthor=False)


def default_cache_path() -> str:
    """Where :class:`DigestCache` keeps its database when no path is given."""
    return os.path.join(default_cache_dir(), CACHE_FILE)


@dataclass(frozen=True)
class Settings:
    """The serialization settings a digest depends on."""

    method: str
    hash_type: str
    #: The shard size for ``shards``; 0 for ``files`` (the shard size means nothing there).
    shard_size: int

    @classmethod
    def of(cls, method: str, hash_type: str, shard_size: int | None) -> Settings:
        """The settings of a serialization (``shard_size`` ignored for ``files``)."""
        return cls(method, hash_type, int(shard_size or 0) if method == "shards" else 0)


@dataclass(frozen=True)
class Key:
    """Everything a cached digest is keyed by."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    start: int
    end: int

    @classmethod
    def of(cls, f: FileEntry, start: int, end: int) -> Key:
        """The key of bytes ``[start, end)`` of the walked file ``f``."""
        return cls(f.dev, f.ino, f.size, f.mtime_ns, f.ctime_ns, start, end)


@dataclass(frozen=True)
class PriorSignature:
    """What an earlier signature offers for reuse: its statement's SHA-256, settings and digests."""

    #: SHA-256 (hex) of the earlier signature's statement payload: the key of its record in the cache.
    payload_sha256: str
    settings: Settings
    #: Resource name -> digest, as the earlier statement lists them.
    digests: Mapping[str, bytes]
    #: Where it was read from (for messages).
    source: str = ""


@dataclass
class CacheStats:
    """What the last hashing run did with the cache."""

    hits: int = 0
    #: Digests taken from a :class:`PriorSignature`.
    reused_from_signature: int = 0
    misses: int = 0
    stored: int = 0
    #: Why the cache was not used, if it could not be (the default cache is best effort); callers warn.
    disabled: str = ""
    #: Whether the prior signature matched a record of this cache (``None``: none was given).
    prior_known: bool | None = None
    #: Why the prior signature offered nothing (empty when it did, or none was given).
    prior_unused: str = ""
    #: Resources on file systems whose change time cannot be trusted (see :func:`ctime_trusted`):
    #: always hashed, never stored.
    untrusted_fs: int = 0


#: File systems whose inode change time the kernel keeps (no user can set it back).  Anything else,
#: and any device this process cannot place, gets no caching (fail closed).
CTIME_FILE_SYSTEMS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "bcachefs", "zfs", "f2fs", "jfs", "reiserfs", "nilfs2",
    "tmpfs", "ramfs", "overlay", "nfs", "nfs4", "lustre", "ceph", "gpfs", "beegfs", "ocfs2", "gfs2",
    "apfs", "hfs", "hfsplus",
})
_fs_types: dict[int, str] = {}


def _mount_types() -> dict[int, str]:
    """st_dev -> file system type, from /proc/self/mountinfo (Linux); empty when it cannot be read."""
    out: dict[int, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                # "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
                fields = line.split()
                if " - " not in line or len(fields) < 3:
                    continue
                major, _, minor = fields[2].partition(":")
                fstype = line.split(" - ", 1)[1].split()[0]
                with contextlib.suppress(ValueError):
                    out[os.makedev(int(major), int(minor))] = fstype
    except OSError:
        return {}
    return out


def ctime_trusted(dev: int) -> bool:
    """Whether files on device ``dev`` have a change time the kernel keeps (see :data:`CTIME_FILE_SYSTEMS`).

    Linux: the device's file system type from /proc/self/mountinfo (read again for a device not seen
    yet: a new mount).  Elsewhere (no mountinfo): ``True`` -- macOS keeps ctime on its native systems.
    """
    if dev not in _fs_types:
        if not os.path.exists("/proc/self/mountinfo"):
            return True
        _fs_types.update(_mount_types())
    fstype = _fs_types.get(dev, "")
    return fstype.split(".")[0] in CTIME_FILE_SYSTEMS  # "fuse.sshfs" -> "fuse": not trusted


@dataclass
class _Pending:
    """The files of the last hashing run, kept until the signature that signs them is known."""

    settings: Settings
    files: tuple[tuple[str, Key], ...]


class DigestCache:
    """An SQLite digest cache at ``path`` (default: :func:`default_cache_path`).

    With ``required=False`` (the default when no ``path`` is given) a cache that cannot be opened or
    written is skipped, with a warning, rather than failing the run: it only ever saves time.  With a
    ``path`` given, such a failure is an :class:`~model_signing.errors.InputError` naming it.
    The database is opened on first use, one connection per process (never shared with forked workers).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        required: bool | None = None,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.path = os.fspath(path) if path is not None else default_cache_path()
        self.required = (path is not None) if required is None else required
        self.settle_ns = int(settle_seconds * 1e9)
        self.stats = CacheStats()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._pending: _Pending | None = None
        self._failed = False
        #: The keys the current run reused (refreshed when it stores).
        self.used: list[Key] = []

    def __repr__(self) -> str:
        return f"DigestCache({self.path!r})"

    # ------------------------------------------------------------------------------------ plumbing

    def _fail(self, exc: BaseException | str) -> None:
        why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        if self.required:
            raise InputError(
                f"digest cache {self.path}: {why}; give another `digest_cache` path, or none"
            ) from None
        self._failed = True
        self.stats.disabled = str(why)
        self.close()

    def _connect(self) -> sqlite3.Connection | None:
        if self._failed:
            return None
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, mode=0o700, exist_ok=True)
            # Whoever can write the directory can swap the database between the checks below and the
            # open, or plant its -wal journal (which SQLite replays): the file's own checks need a
            # directory only this user (or root) can write.
            dst = os.stat(directory)
            if hasattr(os, "getuid") and dst.st_uid not in (os.getuid(), 0):
                self._fail(f"its directory {directory} belongs to another user; use a directory of your own")
                return None
            if dst.st_mode & 0o022:
                self._fail(
                    f"its directory {directory} is writable by other users, who could replace the cache or its "
                    "journal; use a private directory (chmod 700)"
                )
                return None
            # The file is created 0600: digests say which files this user has, and a writable cache
            # would let another user choose what this user's next signature claims.
            # The file is only ever opened here to create it: closing any descriptor of an SQLite
            # database drops every POSIX lock this process holds on it (another connection's included).
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            st = os.stat(self.path)
            if not stat.S_ISREG(st.st_mode):
                self._fail("it is not a regular file")
                return None
            if hasattr(os, "getuid") and st.st_uid != os.getuid():
                self._fail("it belongs to another user")
                return None
            if st.st_mode & 0o022:
                self._fail("it is writable by other users; make it private (chmod 600)")
                return None
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            with self._write(conn):
                conn.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                for statement in _TABLES:
                    conn.execute(statement)
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(_SCHEMA),))
                elif row[0] != str(_SCHEMA):
                    raise sqlite3.DatabaseError(f"schema {row[0]}, not {_SCHEMA} (from another modelseal version)")
        except (OSError, sqlite3.Error) as exc:
            self._fail(exc)
            return None
        self._conn, self._pid = conn, os.getpid()
        return conn

    @staticmethod
    def _retry(op: Callable[[], object]) -> None:
        # Switching to WAL needs a moment of exclusive access; a second process opening the database at
        # the same instant gets SQLITE_BUSY at once (the busy handler does not cover it): try again.
        for attempt in range(100):
            try:
                op()
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 99:
                    raise
                time.sleep(0.05)

    @staticmethod
    @contextlib.contextmanager
    def _write(conn: sqlite3.Connection) -> Iterator[None]:
        # BEGIN IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so a
        # transaction never has to be abandoned half-way because another process started writing.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection (it is reopened on next use)."""
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None

    # ------------------------------------------------------------------------------------ digests

    def begin_run(self) -> None:
        """Reset :attr:`stats` for a new hashing run."""
        failed = self.stats.disabled
        self.stats = CacheStats(disabled=failed)

    def lookup(self, settings: Settings, keys: Sequence[Key]) -> dict[Key, bytes]:
        """The cached digests of ``keys`` (full matches only)."""
        conn = self._connect()
        if conn is None or not keys:
            return {}
        found: dict[Key, bytes] = {}
        try:
            for k in keys:
                row = conn.execute(
                    "SELECT digest FROM digests WHERE dev=? AND ino=? AND size=? AND mtime_ns=? AND ctime_ns=? "
                    "AND method=? AND hash=? AND shard_size=? AND start_byte=? AND end_byte=?",
                    (_s64(k.dev), _s64(k.ino), k.size, k.mtime_ns, k.ctime_ns, settings.method,
                     settings.hash_type, settings.shard_size, k.start, k.end),
                ).fetchone()
                if row is not None and isinstance(row[0], bytes):
                    found[k] = row[0]
        except sqlite3.Error as exc:
            self._fail(exc)
            return {}
        return found

    def settled(self, key: Key, walk_start_ns: int) -> bool:
        """Whether a file with ``key`` was last changed long enough before the walk to be stored."""
        return key.ctime_ns < walk_start_ns - self.settle_ns

    def store(self, settings: Settings, entries: Iterable[tuple[Key, bytes]], used: Iterable[Key] = ()) -> None:
        """Store digests (callers pass only settled files whose identity held while they were read).

        ``used``: the keys this run reused, kept fresh; entries unused for :data:`MAX_AGE_DAYS` are pruned
        (files deleted long ago would otherwise stay for ever).
        """
        rows = list(entries)
        hits = list(used)
        if not rows and not hits:
            return
        conn = self._connect()
        if conn is None:
            return
        now = time.time_ns()
        try:
            with self._write(conn):
                for k, _ in rows:
                    # One identity per inode and settings: older versions of a file can never match again.
                    conn.execute(
                        "DELETE FROM digests WHERE dev=? AND ino=? AND method=? AND hash=? AND shard_size=? "
                        "AND (size<>? OR mtime_ns<>? OR ctime_ns<>?)",
                        (_s64(k.dev), _s64(k.ino), settings.method, settings.hash_type, settings.shard_size,
                         k.size, k.mtime_ns, k.ctime_ns),
                    )
                conn.executemany(
                    "INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(_s64(k.dev), _s64(k.ino), k.size, k.mtime_ns, k.ctime_ns, settings.method,
                      settings.hash_type, settings.shard_size, k.start, k.end, d, now) for k, d in rows],
                )
                conn.executemany(
                    "UPDATE digests SET stored_ns=? WHERE dev=? AND ino=? AND size=? AND mtime_ns=? AND ctime_ns=? "
                    "AND method=? AND hash=? AND shard_size=? AND start_byte=? AND end_byte=?",
                    [(now, _s64(k.dev), _s64(k.ino), k.size, k.mtime_ns, k.ctime_ns, settings.method,
                      settings.hash_type, settings.shard_size, k.start, k.end) for k in hits],
                )
                conn.execute("DELETE FROM digests WHERE stored_ns < ?", (now - MAX_AGE_DAYS * 86_400 * 10**9,))
            self.stats.stored += len(rows)
        except sqlite3.Error as exc:
            self._fail(exc)

    # --------------------------------------------------------------------------------- signatures

    def remember_run(self, settings: Settings, files: Sequence[tuple[str, Key]]) -> None:
        """Keep the settled files of the run just hashed, for :meth:`record_signature`."""
        self._pending = _Pending(settings, tuple(files))

    def record_signature(self, payload_sha256: str) -> None:
        """Record that the statement with this SHA-256 signs the files of the last run, as they were."""
        pending, self._pending = self._pending, None
        conn = self._connect()
        if conn is None or pending is None:
            return
        s = pending.settings
        try:
            with self._write(conn):
                conn.execute("DELETE FROM signature_files WHERE payload_sha256=?", (payload_sha256,))
                conn.execute(
                    "INSERT OR REPLACE INTO signatures VALUES (?,?,?,?,?)",
                    (payload_sha256, s.method, s.hash_type, s.shard_size, time.time_ns()),
                )
                conn.executemany(
                    "INSERT INTO signature_files VALUES (?,?,?,?,?,?,?)",
                    [(payload_sha256, name, _s64(k.dev), _s64(k.ino), k.size, k.mtime_ns, k.ctime_ns)
                     for name, k in pending.files],
                )
                old = [r[0] for r in conn.execute(
                    "SELECT payload_sha256 FROM signatures ORDER BY recorded_ns DESC LIMIT -1 OFFSET ?",
                    (MAX_SIGNATURES,),
                )]
                for digest in old:
                    conn.execute("DELETE FROM signature_files WHERE payload_sha256=?", (digest,))
                    conn.execute("DELETE FROM signatures WHERE payload_sha256=?", (digest,))
        except sqlite3.Error as exc:
            self._fail(exc)

    def signature_files(self, prior: PriorSignature) -> dict[str, Key] | None:
        """Name -> identity of the files ``prior`` signed, as recorded; ``None`` if it was never recorded."""
        conn = self._connect()
        if conn is None:
            return None
        try:
            head = conn.execute(
                "SELECT method, hash, shard_size FROM signatures WHERE payload_sha256=?", (prior.payload_sha256,)
            ).fetchone()
            if head is None or Settings(*head) != prior.settings:
                return None
            rows = conn.execute(
                "SELECT name, dev, ino, size, mtime_ns, ctime_ns FROM signature_files WHERE payload_sha256=?",
                (prior.payload_sha256,),
            ).fetchall()
        except sqlite3.Error as exc:
            self._fail(exc)
            return None
        return {
            name: Key(dev % _U64, ino % _U64, size, mtime, ctime, 0, 0)
            for name, dev, ino, size, mtime, ctime in rows
        }


_TABLES = (
    """CREATE TABLE IF NOT EXISTS digests(
        dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
        method TEXT NOT NULL, hash TEXT NOT NULL, shard_size INTEGER NOT NULL,
        start_byte INTEGER NOT NULL, end_byte INTEGER NOT NULL,
        digest BLOB NOT NULL, stored_ns INTEGER NOT NULL,
        PRIMARY KEY(dev, ino, size, mtime_ns, ctime_ns, method, hash, shard_size, start_byte, end_byte)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS signatures(
        payload_sha256 TEXT PRIMARY KEY, method TEXT NOT NULL, hash TEXT NOT NULL,
        shard_size INTEGER NOT NULL, recorded_ns INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS signature_files(
        payload_sha256 TEXT NOT NULL, name TEXT NOT NULL,
        dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
        PRIMARY KEY(payload_sha256, name)
    ) WITHOUT ROWID""",
)

__all__ = ["CacheStats", "DigestCache", "Key", "PriorSignature", "Settings", "default_cache_dir",
           "default_cache_path"]

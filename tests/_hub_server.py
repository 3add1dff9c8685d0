"""A local Hugging Face hub for the tests: the endpoints the real ``huggingface_hub`` 2.4 client calls.

Written from the client's source (``hf_api.py``, ``_commit_api.py``, ``lfs.py``, ``file_download.py``,
``_snapshot_download.py``): the client is pointed at it with ``HF_ENDPOINT`` / ``endpoint=`` and runs
unmodified.  Xet is not implemented (the client then needs ``HF_HUB_DISABLE_XET=1`` to upload: with
``hf_xet`` installed it would use Xet storage for every LFS file).

Endpoints (``REPO`` is ``namespace/name``, ``REV`` a URL-quoted branch name or commit SHA):

* ``POST /api/repos/create`` (409 if it exists); ``POST /api/validate-yaml`` (README metadata);
* ``GET /api/models/REPO[/revision/REV]``: model info, ``sha`` = the commit the revision names;
* ``GET /api/models/REPO/tree/REV[/PATH]?recursive=``: files with ``oid`` (git blob SHA-1), ``size`` and,
  for LFS files, ``lfs: {oid: sha256, size, pointerSize}``; ``POST /api/models/REPO/paths-info/REV``;
* ``HEAD|GET /REPO/resolve/REV/PATH``: the bytes, with ``X-Repo-Commit``, ``ETag`` (the git blob id) and,
  for LFS files, ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size``; ``Content-Length`` always;
* ``POST /api/models/REPO/preupload/REV``: ``uploadMode`` lfs or regular, the remote ``oid`` if present;
* ``POST /REPO.git/info/lfs/objects/batch``: basic transfer, ``upload`` href to this server
  (``PUT /lfs-upload/OID``, checked against the OID) and ``verify`` (``POST /lfs-verify``);
* ``POST /api/models/REPO/commit/REV``: the ndjson commit (header, file, lfsFile, deletedFile/Folder).

Everything is kept in a temporary directory (LFS objects by sha256, regular blobs by git id) plus the
commit graph in memory.  Test hooks: :meth:`HubServer.push` (an honest commit that changes a file: the hub
then reports the new digest), :meth:`HubServer.corrupt_lfs_object` (the stored bytes change, the reported
sha256 does not: a lying hub), :attr:`HubServer.requests` (what the client asked for).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

#: Suffixes the hub's default .gitattributes sends to LFS (a subset), whatever their size.
LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".ckpt", ".gguf", ".npy",
                ".npz", ".pkl", ".model", ".tar", ".zip")
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob (what the hub reports as ``oid`` for a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores for an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Entry:
    """One file of a commit: its git blob id, size and, for an LFS file, its sha256 (the LFS object id)."""

    blob_id: str
    size: int
    lfs_sha256: str | None = None


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, Entry]


@dataclass
class Repo:
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


class HubServer:
    """The local hub (start it as a context manager); ``url`` is its ``HF_ENDPOINT``."""

    def __init__(self, root: Path, *, token: str | None = None, lfs_threshold: int = 10 << 20) -> None:
        self.root = root
        (root / "lfs").mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        #: With a token, every write (create, preupload, LFS, commit) needs ``Authorization: Bearer <token>``.
        self.token = token
        self.lfs_threshold = lfs_threshold
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        #: Paths containing one of these substrings get a 403 (a hub that refuses; 5xx would be retried for minutes).
        self.fail_paths: set[str] = set()
        self.authorizations: list[str] = []
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    # -- storage ----------------------------------------------------------------------------------------

    def _blob_path(self, blob_id: str) -> Path:
        return self.root / "blobs" / blob_id

    def lfs_path(self, sha256: str) -> Path:
        """Where the LFS object ``sha256`` is stored."""
        return self.root / "lfs" / sha256

    def _store_regular(self, data: bytes) -> Entry:
        blob_id = git_blob_id(data)
        self._blob_path(blob_id).write_bytes(data)
        return Entry(blob_id, len(data))

    def _lfs_entry(self, sha256: str, size: int) -> Entry:
        return Entry(git_blob_id(lfs_pointer(sha256, size)), size, sha256)

    def read(self, entry: Entry) -> bytes:
        """The bytes the hub serves for ``entry``."""
        if entry.lfs_sha256 is not None:
            return self.lfs_path(entry.lfs_sha256).read_bytes()
        return self._blob_path(entry.blob_id).read_bytes()

    def is_lfs(self, path: str, size: int) -> bool:
        """Whether the hub stores a file of this name and size in LFS."""
        return size >= self.lfs_threshold or path.lower().endswith(LFS_SUFFIXES)

    # -- the commit graph -------------------------------------------------------------------------------

    def create_repo(self, repo_id: str) -> None:
        """A repository with an initial commit holding ``.gitattributes``, as the hub creates them."""
        with self._lock:
            self.repos[repo_id] = Repo()
            self._commit(repo_id, "main", "initial commit", {".gitattributes": self._store_regular(GITATTRIBUTES)})

    def _commit(self, repo_id: str, branch: str, message: str, files: dict[str, Entry]) -> Commit:
        repo = self.repos[repo_id]
        parent = repo.refs.get(branch)
        seed = json.dumps([repo_id, parent, message, sorted((k, v.blob_id) for k, v in files.items()),
                           next(self._counter)])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, message, dict(files))
        repo.commits[commit.sha] = commit
        repo.refs[branch] = commit.sha
        return commit

    def head(self, repo_id: str, branch: str = "main") -> str:
        """The commit ``branch`` points to."""
        return self.repos[repo_id].refs[branch]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, Entry]:
        """The files of the commit ``revision`` names."""
        return self.resolve(repo_id, revision).files

    def resolve(self, repo_id: str, revision: str) -> Commit:
        """The commit a branch name or SHA names (``KeyError`` if none)."""
        repo = self.repos[repo_id]
        sha = repo.refs.get(revision, revision)
        return repo.commits[sha]

    def push(self, repo_id: str, path: str, data: bytes, *, message: str = "change a file") -> str:
        """An honest commit on main that sets ``path`` to ``data`` (the hub reports its new digest)."""
        with self._lock:
            files = dict(self.files(repo_id))
            if self.is_lfs(path, len(data)):
                sha256 = hashlib.sha256(data).hexdigest()
                self.lfs_path(sha256).write_bytes(data)
                files[path] = self._lfs_entry(sha256, len(data))
            else:
                files[path] = self._store_regular(data)
            return self._commit(repo_id, "main", message, files).sha

    def corrupt_lfs_object(self, sha256: str, data: bytes) -> None:
        """Replace the stored bytes of an LFS object, keeping its id: the hub reports one digest, serves another."""
        self.lfs_path(sha256).write_bytes(data)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"), "model_info"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$"), "tree"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/paths-info/(?P<rev>[^/]+)$"), "paths_info"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("POST", re.compile(rf"^/{_REPO}\.git/info/lfs/objects/batch$"), "lfs_batch"),
    ("PUT", re.compile(r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$"), "lfs_upload"),
    ("POST", re.compile(r"^/lfs-verify$"), "lfs_verify"),
    ("GET", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ("HEAD", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
]
#: The LFS upload itself carries no token (the hub hands out a presigned storage URL): it is checked by content.
_WRITES = {"create_repo", "preupload", "commit", "lfs_batch", "lfs_verify"}


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the tests read hub.requests instead

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_HEAD(self) -> None:
            self._dispatch("HEAD")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        # -- plumbing ---------------------------------------------------------------------------------

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, data: Any, status: int = 200, content_type: str = "application/json") -> None:
            self._send(status, json.dumps(data).encode(), content_type=content_type)

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            with hub._lock:
                hub.requests.append((method, url.path))
                if "Authorization" in self.headers:
                    hub.authorizations.append(self.headers["Authorization"])
            try:
                body = self._body() if method in ("POST", "PUT") else b""
                if any(part in url.path for part in hub.fail_paths):
                    raise _HTTPError(403, "forbidden (a test asked for it)")
                for verb, pattern, name in _ROUTES:
                    match = pattern.match(url.path)
                    if verb == method and match:
                        if name in _WRITES and hub.token is not None and \
                                self.headers.get("Authorization") != f"Bearer {hub.token}":
                            raise _HTTPError(401, "Invalid credentials in Authorization header",
                                             headers={"X-Error-Message": "Invalid credentials in Authorization header"})
                        params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                        getattr(self, "_" + name)(body=body, query=parse_qs(url.query), **params)
                        return
                raise _HTTPError(404, f"no route for {method} {url.path}")
            except _HTTPError as exc:
                headers = dict(exc.headers)
                if exc.code:
                    headers["X-Error-Code"] = exc.code
                self._send(exc.status, json.dumps({"error": exc.message}).encode(), headers)

        def _repo(self, repo_id: str) -> Repo:
            repo = hub.repos.get(repo_id)
            if repo is None:
                raise _HTTPError(404, f"Repository not found: {repo_id}", "RepoNotFound")
            return repo

        def _commit_of(self, repo_id: str, rev: str | None) -> Commit:
            self._repo(repo_id)
            try:
                return hub.resolve(repo_id, rev or "main")
            except KeyError:
                raise _HTTPError(404, f"Invalid rev id: {rev}", "RevisionNotFound") from None

        # -- endpoints --------------------------------------------------------------------------------

        def _create_repo(self, *, body: bytes, query: dict[str, list[str]]) -> None:
            data = json.loads(body)
            repo_id = f"{data.get('organization') or 'user'}/{data['name']}"
            with hub._lock:
                if repo_id in hub.repos:  # the hub's 409 names the repository's URL (the client reads it)
                    self._json({"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"}, 409)
                    return
                hub.create_repo(repo_id)
            self._json({"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

        def _validate_yaml(self, *, body: bytes, query: dict[str, list[str]]) -> None:
            self._json({"errors": [], "warnings": []})

        def _model_info(self, *, body: bytes, query: dict[str, list[str]], repo: str, rev: str | None = None) -> None:
            commit = self._commit_of(repo, rev)
            self._json({
                "_id": repo, "id": repo, "modelId": repo, "sha": commit.sha, "private": False,
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            })

        def _entries(self, commit: Commit, paths: list[str] | None, prefix: str = "",
                     recursive: bool = True) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            dirs: set[str] = set()
            for path, entry in sorted(commit.files.items()):
                if paths is not None and path not in paths:
                    continue
                if prefix and not path.startswith(prefix + "/"):
                    continue
                rest = path[len(prefix) + 1:] if prefix else path
                if not recursive and "/" in rest:
                    dirs.add((prefix + "/" if prefix else "") + rest.split("/")[0])
                    continue
                parts = path.split("/")
                dirs.update("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]).startswith(prefix))
                item: dict[str, Any] = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": path}
                if entry.lfs_sha256 is not None:
                    item["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size,
                                   "pointerSize": len(lfs_pointer(entry.lfs_sha256, entry.size))}
                out.append(item)
            if paths is None:
                out.extend({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                           for d in sorted(dirs) if d and d != prefix)
            return out

        def _tree(self, *, body: bytes, query: dict[str, list[str]], repo: str, rev: str, path: str = "") -> None:
            commit = self._commit_of(repo, rev)
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            if path and not any(p.startswith(path + "/") for p in commit.files):
                raise _HTTPError(404, f"{path} does not exist", "EntryNotFound")
            self._json(self._entries(commit, None, path.strip("/"), recursive))

        def _paths_info(self, *, body: bytes, query: dict[str, list[str]], repo: str, rev: str) -> None:
            commit = self._commit_of(repo, rev)
            form = parse_qs(body.decode())
            self._json(self._entries(commit, form.get("paths", [])))

        def _preupload(self, *, body: bytes, query: dict[str, list[str]], repo: str, rev: str) -> None:
            commit = self._commit_of(repo, rev)
            files = []
            for item in json.loads(body)["files"]:
                path, size = item["path"], int(item["size"])
                existing = commit.files.get(path)
                lfs = hub.is_lfs(path, size)
                oid = None
                if existing is not None:
                    oid = existing.lfs_sha256 if existing.lfs_sha256 is not None else existing.blob_id
                files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                              "oid": oid})
            self._json({"files": files, "commitOid": commit.sha})

        def _lfs_batch(self, *, body: bytes, query: dict[str, list[str]], repo: str) -> None:
            self._repo(repo)
            request = json.loads(body)
            if request.get("operation") != "upload" or "basic" not in request.get("transfers", ["basic"]):
                raise _HTTPError(400, "only basic uploads are supported here")
            objects = []
            for obj in request["objects"]:
                oid, size = obj["oid"], int(obj["size"])
                stored = hub.lfs_path(oid)
                if stored.is_file() and stored.stat().st_size == size:
                    objects.append({"oid": oid, "size": size})
                else:
                    objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                        "upload": {"href": f"{hub.url}/lfs-upload/{oid}", "expires_in": 3600},
                        "verify": {"href": f"{hub.url}/lfs-verify", "expires_in": 3600},
                    }})
            self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                       content_type="application/vnd.git-lfs+json")

        def _lfs_upload(self, *, body: bytes, query: dict[str, list[str]], oid: str) -> None:
            if hashlib.sha256(body).hexdigest() != oid:
                raise _HTTPError(400, "the uploaded content does not match the LFS object id")
            hub.lfs_path(oid).write_bytes(body)
            self._send(200, b"")

        def _lfs_verify(self, *, body: bytes, query: dict[str, list[str]]) -> None:
            data = json.loads(body)
            stored = hub.lfs_path(data["oid"])
            if not stored.is_file() or stored.stat().st_size != int(data["size"]):
                raise _HTTPError(404, "object not found")
            self._json({"ok": True})

        def _commit(self, *, body: bytes, query: dict[str, list[str]], repo: str, rev: str) -> None:
            if query.get("create_pr"):
                raise _HTTPError(400, "pull requests are not supported here")
            with hub._lock:
                parent = self._commit_of(repo, rev)
                if rev not in hub.repos[repo].refs:
                    raise _HTTPError(400, f"{rev} is not a branch", "RevisionNotFound")
                files = dict(parent.files)
                message = ""
                for line in body.splitlines():
                    if not line.strip():
                        continue
                    op = json.loads(line)
                    key, value = op["key"], op["value"]
                    if key == "header":
                        message = value["summary"]
                        if value.get("parentCommit") not in (None, parent.sha):
                            raise _HTTPError(412, "parent commit is not the head")
                    elif key == "file":
                        files[value["path"]] = hub._store_regular(base64.b64decode(value["content"]))
                    elif key == "lfsFile":
                        oid = value["oid"]
                        stored = hub.lfs_path(oid)
                        if not stored.is_file():
                            raise _HTTPError(400, f"LFS object {oid} was not uploaded")
                        files[value["path"]] = hub._lfs_entry(oid, stored.stat().st_size)
                    elif key == "deletedFile":
                        files.pop(value["path"], None)
                    elif key == "deletedFolder":
                        folder = value["path"].rstrip("/") + "/"
                        files = {p: e for p, e in files.items() if not p.startswith(folder)}
                    else:
                        raise _HTTPError(400, f"unknown commit operation {key}")
                commit = hub._commit(repo, rev, message, files)
            self._json({"success": True, "commitOid": commit.sha, "commitUrl": f"{hub.url}/{repo}/commit/{commit.sha}",
                        "pullRequestUrl": None})

        def _resolve(self, *, body: bytes, query: dict[str, list[str]], repo: str, rev: str, path: str) -> None:
            commit = self._commit_of(repo, rev)
            entry = commit.files.get(path)
            if entry is None:
                raise _HTTPError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
            data = hub.read(entry)
            headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{entry.blob_id}"', "Accept-Ranges": "none"}
            if entry.lfs_sha256 is not None:
                headers |= {"X-Linked-Etag": f'"{entry.lfs_sha256}"', "X-Linked-Size": str(entry.size)}
            self._send(200, data, headers, content_type="application/octet-stream")

    return Handler


@contextlib.contextmanager
def running(root: Path, **kwargs: Any) -> Iterator[HubServer]:
    """A started :class:`HubServer` on 127.0.0.1 (a random port), stopped on exit."""
    with HubServer(root, **kwargs) as server:
        yield server


def hub_env(server: HubServer, home: Path) -> dict[str, str]:
    """The environment that points the real client at ``server`` (and its cache at ``home``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "HUGGING_FACE_HUB_TOKEN"}
    return {**env, "HF_ENDPOINT": server.url, "HF_HOME": str(home), "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}

"""Enumerating a model tree: which regular files are hashed, under which names (OMS v1.0 section 6.1-6.2).

The walk is the security boundary of hashing: it decides what is signed.  It therefore fails closed:
symlinks are errors unless allowed, special files (FIFOs, sockets, devices) are always errors, names
that are not UTF-8 are errors, and an empty model is an error.  Every error names the offending path
and what to do about it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from model_signing.errors import EmptyModelError, InputError, ModelPathError
from model_signing.manifest import DEFAULT_IGNORED

_log = logging.getLogger("model_signing")


@dataclass(frozen=True)
class FileEntry:
    """One regular file to hash, with the identity it had when it was enumerated."""

    #: Canonical name relative to the model root (POSIX, UTF-8); the basename for a single-file model.
    name: str
    #: Filesystem path used to open the file (the symlink path itself when symlinks are followed).
    path: str
    size: int
    mtime_ns: int
    dev: int
    ino: int
    #: Whether opening must follow a symlink (only when allowed and this entry is one or lies under one).
    follow: bool
    #: The inode's change time when enumerated: unlike ``mtime_ns`` no user can set it back (digest caches
    #: key on it); the hash workers do not check it, as a ``chmod`` during hashing changes no byte.
    ctime_ns: int = 0


@dataclass(frozen=True)
class WalkResult:
    """The outcome of enumerating a model."""

    model_name: str
    files: tuple[FileEntry, ...]
    #: What goes into ``Serialization.ignore_paths``: defaults, user paths and the signature, sorted.
    ignore_paths: tuple[str, ...]
    #: User ignore paths (canonical form, as given order) that matched nothing in the model.
    unmatched_ignore_paths: tuple[str, ...] = ()
    #: With ``collect_symlinks``: the symlinks met (canonical names), neither followed nor hashed.
    symlinks: tuple[str, ...] = ()


def _display(root_display: str, rel: str) -> str:
    return posixpath.join(root_display, rel) if rel else root_display


def _check_name(name: str, rel: str, root_display: str) -> None:
    if "\\" in name:
        # Legal on POSIX, but a separator on Windows: the signed name would not mean the same file
        # everywhere, so the statement layer refuses it; say so here, with the fix.
        raise ModelPathError(
            f"{_display(root_display, rel)} has a backslash in its name, which OMS forbids (it is a path "
            "separator on Windows); rename it or exclude it with `ignore_paths`"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        where = _display(root_display, rel)
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise ModelPathError(
            f"{where} has a name that is not valid UTF-8 ({shown!r}); OMS names must be UTF-8, "
            "so rename it or exclude it with `ignore_paths`"
        ) from None


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a unix socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file or directory"


def normalize_ignore_paths(root: str, paths: Iterable[str | os.PathLike[str]]) -> tuple[str, ...]:
    """User ignore paths as canonical POSIX paths relative to ``root``.

    A relative path is taken relative to the model root; an absolute one must lie inside it.  Paths
    that escape the root are an :class:`InputError` (the peer drops them silently; naming them is
    safer than signing something the user meant to exclude).
    """
    root_abs = os.path.abspath(root)
    root_real = os.path.realpath(root)
    out: list[str] = []
    for raw in paths:
        p = os.fspath(raw)
        if not p:
            raise InputError("an ignore path is empty; give a path relative to the model root")
        if os.path.isabs(p):
            rel = None
            for base, cand in ((root_abs, os.path.abspath(p)), (root_real, os.path.realpath(p))):
                r = os.path.relpath(cand, base)
                if r != ".." and not r.startswith(".." + os.sep):
                    rel = r
                    break
            if rel is None:
                raise InputError(
                    f"ignore path {p} is outside the model root {root}; give a path inside the model"
                )
        else:
            rel = p
        norm = posixpath.normpath(rel.replace(os.sep, "/"))
        if norm == ".." or norm.startswith("../") or norm.startswith("/"):
            raise InputError(f"ignore path {p} escapes the model root {root}; give a path inside the model")
        if norm == ".":
            raise InputError(f"ignore path {p} is the model root itself; nothing would be hashed")
        out.append(norm)
    return tuple(out)


def _signature_rel(root: str, signature_path: str | os.PathLike[str] | None) -> str | None:
    """The signature's name relative to the root, if it lies inside the model directory."""
    if signature_path is None:
        return None
    sig = os.fspath(signature_path)
    # The signature may not exist yet (signing): resolve its directory, keep its own name.
    sig_real = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(sig))), os.path.basename(sig))
    rel = os.path.relpath(sig_real, os.path.realpath(root))
    if rel in {".", ".."} or rel.startswith(".." + os.sep):
        return None
    return rel.replace(os.sep, "/")


def _is_ignored(rel: str, ignored: Sequence[str]) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in ignored)


def ignored_by(rel: str, ignored: Sequence[str]) -> list[str]:
    """The ignore paths that exclude ``rel`` (the path itself or one of its parent directories)."""
    return [p for p in ignored if rel == p or rel.startswith(p + "/")]


def model_name_of(path: str) -> str:
    """The informational model name: the basename of the model path."""
    name = os.path.basename(os.path.normpath(path))
    if not name or name in (".", ".."):
        name = os.path.basename(os.path.realpath(path))
    return name


def walk(
    path: str | os.PathLike[str],
    *,
    allow_symlinks: bool = False,
    ignore_paths: Iterable[str | os.PathLike[str]] = (),
    signature_path: str | os.PathLike[str] | None = None,
    scratch_path: str | os.PathLike[str] | None = None,
    collect_symlinks: bool = False,
) -> WalkResult:
    """Enumerate the regular files of the model at ``path`` (a directory or a single file).

    ``scratch_path`` is a file the caller created for its own output (the signature's temporary file,
    which exists while a signature inside the model is being made): skipped, and not recorded in the
    ignore paths, since it is gone once the signature is in place.

    Files come back in no particular order; names are canonical relative POSIX paths.  Raises
    :class:`InputError` if ``path`` does not exist and :class:`ModelPathError` for anything that cannot
    be enumerated safely.

    ``collect_symlinks`` (verification, when symlinks are not allowed): a symlink inside the model is
    not an error but listed in ``WalkResult.symlinks`` and skipped, so the verifier can report a signed
    file replaced by a link as tampering (and an unsigned link as an extra file).
    """
    root = os.fspath(path)
    root_display = root.replace(os.sep, "/")
    try:
        lst = os.lstat(root)
    except FileNotFoundError:
        raise InputError(f"{root} does not exist; give the path of a model directory or file") from None
    except OSError as exc:
        raise InputError(f"{root}: cannot read it ({exc.strerror})") from None

    user_ignored = normalize_ignore_paths(root, ignore_paths)
    sig_rel = _signature_rel(root, signature_path) if os.path.isdir(root) else None
    scratch_rel = _signature_rel(root, scratch_path) if os.path.isdir(root) else None
    recorded = set(DEFAULT_IGNORED) | set(user_ignored)
    if sig_rel is not None:
        recorded.add(sig_rel)
    ignore_record = tuple(sorted(recorded))
    model_name = model_name_of(root)

    follow_root = False
    if stat.S_ISLNK(lst.st_mode):
        if not allow_symlinks and collect_symlinks:
            if os.path.isfile(root):
                # A single-file model replaced by a link: report it (tampering), do not follow it.
                name = os.path.basename(os.path.normpath(root))
                return WalkResult(model_name, (), ignore_record, symlinks=(name,))
            raise ModelPathError(
                f"{root_display} is a symlink, and the signature was made without following symlinks; verify "
                f"the model at its real path ({os.path.realpath(root)})"
            )
        if not allow_symlinks:
            raise ModelPathError(f"{root_display} is a symlink; pass `allow_symlinks=True` to follow symlinks")
        try:
            lst = os.stat(root)
        except OSError:
            raise ModelPathError(f"{root_display} is a broken symlink; fix or remove it") from None
        follow_root = True

    if stat.S_ISREG(lst.st_mode):
        # Single-file model: its resource name is its basename (OMS 6.1.2 rule 5).
        name = os.path.basename(os.path.normpath(root))
        _check_name(name, "", root_display)
        is_sig = signature_path is not None and os.path.realpath(signature_path) == os.path.realpath(root)
        if is_sig or _is_ignored(name, user_ignored):
            raise EmptyModelError(f"{root_display}: the model is excluded by the ignore paths; nothing to hash")
        entry = FileEntry(
            name, root, lst.st_size, lst.st_mtime_ns, lst.st_dev, lst.st_ino, follow_root, lst.st_ctime_ns
        )
        unmatched = tuple(p for p in user_ignored if p != name)
        return WalkResult(model_name, (entry,), ignore_record, unmatched)
    if not stat.S_ISDIR(lst.st_mode):
        raise ModelPathError(
            f"{root_display} is {_special_kind(lst.st_mode)}; give a model directory or regular file"
        )

    excluded = tuple(DEFAULT_IGNORED)  # matched as top-level names only (OMS 6.2.1)
    files: list[FileEntry] = []
    links: list[str] = []
    matched: set[str] = set()
    root_real = os.path.realpath(root)
    # Each stack frame: (directory path, its relative name, whether we got here through a symlink,
    # the (dev, ino) of this directory and its ancestors -- a link back to one of them is a cycle).
    stack: list[tuple[str, str, bool, tuple[tuple[int, int], ...]]] = [
        (root, "", follow_root, ((lst.st_dev, lst.st_ino),))
    ]
    while stack:
        dir_path, dir_rel, via_link, ancestors = stack.pop()
        try:
            with os.scandir(dir_path) as it:
                entries = list(it)
        except OSError as exc:
            raise ModelPathError(
                f"{_display(root_display, dir_rel)}: cannot list the directory ({exc.strerror}); "
                "fix its permissions or exclude it with `ignore_paths`"
            ) from None
        for de in entries:
            rel = f"{dir_rel}/{de.name}" if dir_rel else de.name
            hits = ignored_by(rel, user_ignored) if user_ignored else []
            if hits:
                # Also marks a user path that names the signature or a default-ignored name: it exists.
                matched.update(hits)
                continue
            if not dir_rel and de.name in excluded:
                continue
            if rel in (sig_rel, scratch_rel):
                continue
            _check_name(de.name, rel, root_display)
            try:
                st = de.stat(follow_symlinks=False)
            except OSError as exc:
                raise ModelPathError(f"{_display(root_display, rel)}: cannot stat it ({exc.strerror})") from None
            follow = via_link
            if stat.S_ISLNK(st.st_mode):
                if not allow_symlinks and collect_symlinks:
                    links.append(rel)
                    continue
                if not allow_symlinks:
                    raise ModelPathError(
                        f"{_display(root_display, rel)} is a symlink; pass `allow_symlinks=True` to follow "
                        f"symlinks or `ignore_paths=[{rel!r}]` to skip it"
                    )
                try:
                    st = os.stat(de.path)
                except OSError:
                    raise ModelPathError(
                        f"{_display(root_display, rel)} is a broken symlink (or a symlink loop); "
                        f"fix it or pass `ignore_paths=[{rel!r}]`"
                    ) from None
                target = os.path.realpath(de.path)
                if target != root_real and not target.startswith(root_real.rstrip(os.sep) + os.sep):
                    _log.warning(
                        "warning: %s is a symlink to %s, outside the model root", _display(root_display, rel), target
                    )
                follow = True
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    raise ModelPathError(
                        f"{_display(root_display, rel)} is a symlink cycle (it leads back to one of its own "
                        f"parent directories); remove it or pass `ignore_paths=[{rel!r}]`"
                    )
                stack.append((de.path, rel, follow, (*ancestors, key)))
            elif stat.S_ISREG(st.st_mode):
                files.append(
                    FileEntry(rel, de.path, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, follow, st.st_ctime_ns)
                )
            else:
                raise ModelPathError(
                    f"{_display(root_display, rel)} is {_special_kind(st.st_mode)}; only regular files can be hashed, "
                    f"so remove it or pass `ignore_paths=[{rel!r}]`"
                )
    if not files and not collect_symlinks:  # verification reports an empty model as every file missing
        raise EmptyModelError(
            f"{root_display} has no files to hash after exclusions; an empty model cannot be signed"
        )
    unmatched = tuple(p for p in user_ignored if p not in matched and not _under_match(p, matched, root))
    return WalkResult(model_name, tuple(files), ignore_record, unmatched, tuple(links))


def _under_match(path: str, matched: set[str], root: str) -> bool:
    """``path`` lies under another ignore path that matched, so the walk never reached it: does it exist?"""
    return any(path.startswith(m + "/") for m in matched) and os.path.lexists(os.path.join(root, path))

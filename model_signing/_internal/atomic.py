"""The one atomic write: a file appears whole at its path, or not at all, and an existing one is never clobbered
by accident.

:class:`AtomicFile` first *claims* the destination: it creates a temporary file in the destination's
directory.  That is the check that the directory accepts a new file (permissions, read-only or full file
systems, ``/proc``-like directories), for root too, made before any expensive work; the same file later
receives the content (:meth:`AtomicFile.commit`) and is moved into place.  :func:`write_atomic` does both
at once.

Errors are ``OSError``: the callers name the file and say what to do in their own terms.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile

from model_signing._internal.types import PathLike


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class AtomicFile:
    """A destination claimed by a temporary file beside it, to be committed or released."""

    def __init__(self, path: str, fd: int, tmp: str) -> None:
        self.path = path
        self._fd: int | None = fd
        self._tmp: str | None = tmp

    @classmethod
    def claim(cls, path: PathLike) -> AtomicFile:
        """Create the temporary file in ``path``'s directory (``OSError`` if that is impossible)."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        return cls(path, fd, tmp)

    @property
    def tmp(self) -> str | None:
        """The temporary file's path (``None`` once released)."""
        return self._tmp

    def commit(self, data: str | bytes, *, overwrite: bool, mode: int | None = None) -> None:
        """Write ``data``, flush it to disk, then move the file to its path atomically.

        ``mode`` (default: the usual ``0o666`` less the umask) is set before any byte is written, so a
        private file (``0o600``) is never readable by others, even briefly.  Without ``overwrite`` the final
        step is a hard link, which fails with :class:`FileExistsError` if the path appeared meanwhile, so a
        concurrent writer is never clobbered.
        """
        assert self._fd is not None and self._tmp is not None, "the file was released"
        path, tmp = self.path, self._tmp
        fd, self._fd = self._fd, None
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:
                # Filesystems without hard links: fall back to a rename after a last existence check.
                if os.path.lexists(path):
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path) from None
                os.replace(tmp, path)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))

    def release(self) -> None:
        """Close and remove the temporary file (after :meth:`commit` it is only a name to unlink)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None


def write_atomic(path: PathLike, data: str | bytes, *, overwrite: bool = True, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically (see :meth:`AtomicFile.commit`); ``OSError`` on failure."""
    target = AtomicFile.claim(path)
    try:
        target.commit(data, overwrite=overwrite, mode=mode)
    finally:
        target.release()

"""Cold-cache runs without privileges: evict a model's files from the page cache and measure residency.

``echo 3 > /proc/sys/vm/drop_caches`` needs root and empties the cache of the whole machine (every other
process on a shared machine pays for it), so the harness instead drops only the model's own pages:
``posix_fadvise(POSIX_FADV_DONTNEED)`` on each file, which any user who can open the file may do.  The
kernel drops clean, unmapped pages only, so dirty pages (a freshly generated model) are written back first
with ``fdatasync``.  :func:`resident_bytes` asks the kernel which pages are in the cache (``mmap`` +
``mincore``, through ``ctypes``: Python's ``mmap`` module has no ``mincore``), which is how a run shows that
eviction really worked (it does not on tmpfs, whose pages have no backing store to be re-read from).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from pathlib import Path

_PROT_READ = 0x1
_MAP_SHARED = 0x01
_MAP_FAILED = ctypes.c_void_p(-1).value
#: mincore's per-page byte: only the lowest bit means "resident", the others are reserved
_LOW_BIT = bytes(i & 1 for i in range(256))


def evict(files: Iterable[Path]) -> None:
    """Drop ``files``' pages from the page cache (written back first if dirty)."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            # DONTNEED skips dirty pages: flush them (a no-op for clean files, so cheap on every later call)
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.mincore.restype = ctypes.c_int
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def resident_bytes(files: Iterable[Path]) -> int:
    """How many bytes of ``files`` are in the page cache now (whole pages, the last one cut at the file end).

    Mapping a file does not read it: ``mincore`` only reports on pages, it never faults them in.
    """
    libc = _libc()
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for path in files:
        size = os.path.getsize(path)
        if size == 0:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, _PROT_READ, _MAP_SHARED, fd, 0)
            if addr is None or addr == _MAP_FAILED:
                err = ctypes.get_errno()
                raise OSError(err, f"mmap failed: {os.strerror(err)}", str(path))
            try:
                pages = -(-size // page)
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(addr, size, vec) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"mincore failed: {os.strerror(err)}", str(path))
                flags = bytes(vec).translate(_LOW_BIT)
                resident = pages - flags.count(0)
                total += resident * page
                if flags[-1]:
                    total -= pages * page - size  # the last page is partly beyond the end of the file
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
    return total

"""Reading the small files a user names on the command line (signatures, keys, certificates, trust configs).

Every such read goes through :func:`read_small_file`, so none of them can block on a FIFO (``--public-key
/some/fifo``), slurp a device (``--signature /dev/zero``) or read a runaway file into memory: the file is
opened with ``O_NONBLOCK``, must be a regular file, and is read only up to a bound.
"""

from __future__ import annotations

import os
import stat

from model_signing.errors import InputError

#: Far above any real bundle, key, certificate chain or trust config, far below a model file.
MAX_SMALL_FILE = 1 << 30


def read_small_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    error: type[InputError] = InputError,
    missing_hint: str = "",
    limit: int = MAX_SMALL_FILE,
) -> bytes:
    """The bytes of the regular file ``path``; ``error`` (naming ``what`` and the path) for anything else."""
    where = os.fspath(path)
    try:
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise error(f"{what} {where} is not a regular file")
            raw = f.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{what} {where} does not exist{missing_hint}") from None
    except IsADirectoryError:
        raise error(f"{what} {where} is a directory; pass the file") from None
    except OSError as exc:
        raise error(f"{what} {where} cannot be read ({exc.strerror})") from None
    if len(raw) > limit:
        raise error(f"{what} {where} is larger than {limit >> 20} MiB; it cannot be a {what}")
    return raw

"""Reading the small files a user names on the command line (signatures, keys, certificates, trust configs).

Every such read goes through :func:`read_small_file`, so none of them can block on a FIFO (``--public-key
/some/fifo``), slurp a device (``--signature /dev/zero``) or read a runaway file into memory: the file is
opened with ``O_NONBLOCK``, must be a regular file, and is refused on the size ``fstat`` reports, before a
byte is read, when it is larger than its kind can be (the read itself stays bounded too, for a file that
grows meanwhile).
"""

from __future__ import annotations

import os
import stat

from model_signing.errors import InputError

#: An EC private or public key in PEM: well under a kilobyte; the rest is room for comments.
MAX_KEY_FILE = 256 << 10
#: Certificates in PEM: a leaf, a chain, or a whole CA bundle (a system one is ~220 KB).
MAX_CERTIFICATE_FILE = 512 << 10
#: A signature bundle: its statement lists every resource (~150 bytes each, base64 inside the bundle), so
#: 64 MiB holds about 300,000 resources, far more than the files or shards of any model.
MAX_SIGNATURE_FILE = 64 << 20
#: A ClientTrustConfig or trusted root: a few keys and certificates per service, kilobytes in practice.
MAX_TRUST_FILE = 4 << 20


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            return f"{value:.1f} {unit}" if value < 10 and value != int(value) else f"{n >> shift} {unit}"
    return f"{n} bytes"


def read_small_file(
    path: str | os.PathLike[str],
    what: str,
    *,
    limit: int,
    error: type[InputError] = InputError,
    missing_hint: str = "",
) -> bytes:
    """The bytes of the regular file ``path`` of at most ``limit`` bytes; ``error`` (naming ``what``) otherwise."""
    where = os.fspath(path)
    try:
        fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise error(f"{what} {where} is not a regular file")
            if st.st_size > limit:
                raise _too_large(error, what, where, limit, st.st_size)
            raw = f.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{what} {where} does not exist{missing_hint}") from None
    except IsADirectoryError:
        raise error(f"{what} {where} is a directory; pass the file") from None
    except OSError as exc:
        raise error(f"{what} {where} cannot be read ({exc.strerror})") from None
    if len(raw) > limit:
        raise _too_large(error, what, where, limit, None)
    return raw


def _too_large(error: type[InputError], what: str, where: str, limit: int, size: int | None) -> InputError:
    actual = f"is {_size(size)}" if size is not None else "grew while it was read"
    return error(f"{what} {where} {actual}, more than the {_size(limit)} limit for a {what}; is it the right file?")

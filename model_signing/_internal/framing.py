"""Length-prefixed pickled messages over a pipe: the one framing of the hash pool and the Sigstore helper.

Both ends are processes of this package (forked workers, the helper started by this process), so the
messages are pickles: trusted, since nobody else writes to these pipes.  Each message is a 4-byte
little-endian length and the pickle; a closed pipe reads as ``None``.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

_HEADER = struct.Struct("<I")


def send(fd: int, obj: object) -> None:
    """Write one message holding ``obj`` to ``fd`` (blocking until all of it is written)."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        data = os.read(fd, n)
        if not data:
            return None
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def recv(fd: int) -> Any:
    """The next message on ``fd``, or ``None`` at end of file."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    data = _read_exact(fd, _HEADER.unpack(header)[0])
    return None if data is None else pickle.loads(data)

"""Safety checks for the path names a signature carries.

A signed statement names resources (``dir/file`` or, for shards, ``dir/file:start:end``) and ignore
paths relative to the model root.  A signature is attacker-controlled input until proven otherwise, and
even a validly signed one must never make the verifier look outside the model, so every name is checked
lexically here -- before any file is opened -- and rejected with :class:`UnsafePathError` when it is
absolute, contains ``..`` (or ``.``/empty components), a backslash (a Windows separator), a Windows
drive (on Windows), or NUL.
"""

from __future__ import annotations

import os
import re
from pathlib import PureWindowsPath

from model_signing.errors import UnsafePathError

#: Decimal offsets exactly as a writer produces them: no sign, no spaces, no leading zeros.
_OFFSET = re.compile(r"0|[1-9][0-9]*")

#: The resource name the peer (and a single-file model) uses for "the model file itself".
SINGLE_FILE_NAME = "."


def check_relative_path(name: object, *, what: str) -> str:
    """Return ``name`` if it is a safe POSIX path relative to the model root, else raise.

    ``what`` names the offending field in the error message (e.g. ``predicate.resources[3].name``).
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"{what} must be a non-empty path relative to the model root")
    shown = ascii(name)
    if "\x00" in name:
        raise UnsafePathError(f"{what} {shown} contains a NUL byte; the signature cannot be trusted")
    if name.startswith("/"):
        raise UnsafePathError(f"{what} {shown} is an absolute path; OMS names are relative to the model root")
    # OMS names are POSIX.  A backslash is a separator on Windows ("a\\..\\..\\x" would escape there), so
    # it is refused everywhere: a signature must mean the same on every platform.  A colon is a legal
    # POSIX name character (and shard names use it), so "c:x" is only refused where it is a drive.
    if "\\" in name:
        raise UnsafePathError(f"{what} {shown} contains a backslash; OMS names are POSIX paths")
    if os.name == "nt" and PureWindowsPath(name).drive:  # pragma: no cover - Windows only
        raise UnsafePathError(f"{what} {shown} names a Windows drive; OMS names are relative POSIX paths")
    for part in name.split("/"):
        if part == "..":
            raise UnsafePathError(f"{what} {shown} contains '..' and would escape the model root")
        if part in ("", "."):
            raise UnsafePathError(f"{what} {shown} is not a normalised relative path (empty or '.' component)")
    return name


def check_resource_name(name: object, *, what: str, single_file: bool = False) -> str:
    """Like :func:`check_relative_path`, also accepting ``"."`` when the model is a single file."""
    if single_file and name == SINGLE_FILE_NAME:
        return SINGLE_FILE_NAME
    return check_relative_path(name, what=what)


def split_shard_name(name: str, *, what: str, single_file: bool = False) -> tuple[str, int, int]:
    """Split ``path:start:end`` into its parts, taking the offsets from the LAST two ``:`` fields.

    Paths may themselves contain colons (``a:b.bin:0:10`` is the shard ``[0, 10)`` of ``a:b.bin``).
    Offsets must be canonical non-negative decimals with ``start < end``, except ``0:0`` (an empty file).
    """
    parts = name.rsplit(":", 2)
    if len(parts) != 3:
        raise UnsafePathError(f"{what} {name!a} is not a shard name of the form path:start:end")
    path, start_s, end_s = parts
    if not (_OFFSET.fullmatch(start_s) and _OFFSET.fullmatch(end_s)):
        raise UnsafePathError(f"{what} {name!a} has malformed shard offsets (expected decimal integers)")
    start, end = int(start_s), int(end_s)
    if start > end or (start == end and start != 0):
        raise UnsafePathError(f"{what} {name!a} is an empty or reversed byte range")
    check_resource_name(path, what=what, single_file=single_file)
    return path, start, end


def shard_name(path: str, start: int, end: int) -> str:
    """The OMS name of the shard ``[start, end)`` of ``path``."""
    return f"{path}:{start}:{end}"

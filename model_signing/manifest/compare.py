"""Comparing the signed manifest with the model on disk: every difference, not just the first.

Both manifests were produced with the same serialization (the verifier re-hashes with the signed
settings), so resources are compared by name.  For shards this is also the tiling check: the model is
re-sharded canonically ([0, N), [N, 2N), ... up to the file size), so a signed manifest with a missing,
overlapping, misaligned or short shard cannot match.

With shards the differences are reported per *file*, the unit a user acts on: one changed file is one
``modified`` difference (with the sizes the signature and the disk give it, and the per-shard
differences behind it), not a cloud of missing and extra shard names.

With ``ignore_unsigned_files`` the unit of "signed" is the *file*: a file is ignored only when none of
its resources is in the signature.  A file with at least one signed shard is compared in full, so
unsigned shards of a signed file are never silently accepted.

``excluded`` names the signed files the verifier itself excluded (its extra ignore paths): each is
reported as ``excluded`` -- signed but not checked -- rather than ``missing``.  ``symlinks`` are links
met where symlinks are not followed: a signed file that became a link is ``modified`` (tampering), an
unsigned one is an ``extra`` file like any other.
"""

from __future__ import annotations

from collections.abc import Collection

from model_signing.errors import Difference
from model_signing.manifest import Manifest

_NOW_A_SYMLINK = "now a symlink"
_A_SYMLINK = "a symlink"


def file_of(name: str, method: str) -> str:
    """The file a resource belongs to (shard names are ``path:start:end``; paths may contain ``:``)."""
    return name.rsplit(":", 2)[0] if method == "shards" else name


def signed_files(manifest: Manifest) -> frozenset[str]:
    """The files the manifest covers."""
    method = manifest.serialization.method
    return frozenset(file_of(r.name, method) for r in manifest.resources)


def compare(
    signed: Manifest,
    actual: Manifest,
    *,
    ignore_unsigned_files: bool = False,
    excluded: Collection[str] = (),
    symlinks: Collection[str] = (),
) -> list[Difference]:
    """Every difference between ``signed`` and ``actual``, in name order (see the module docs)."""
    if signed.serialization.method == "shards":
        return _compare_shards(signed, actual, ignore_unsigned_files, excluded, symlinks)
    expected = {r.name: r.hex for r in signed.resources}
    found = {r.name: r.hex for r in actual.resources}
    out: list[Difference] = []
    for name in sorted(expected.keys() | found.keys() | set(symlinks)):
        want, got = expected.get(name), found.get(name)
        if want is None:
            if ignore_unsigned_files:
                continue
            detail = _A_SYMLINK if got is None else None
            out.append(Difference("extra", name, None, got, detail=detail))
        elif name in excluded:
            out.append(Difference("excluded", name, want, None))
        elif name in symlinks:
            out.append(Difference("modified", name, want, None, detail=_NOW_A_SYMLINK))
        elif got is None:
            out.append(Difference("missing", name, want, None))
        elif want != got:
            out.append(Difference("modified", name, want, got))
    return out


def _by_file(manifest: Manifest) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for r in manifest.resources:
        out.setdefault(file_of(r.name, "shards"), {})[r.name] = r.hex
    return out


def _size(shards: dict[str, str]) -> int | None:
    """The file size the shards claim: the end of the last range (``None`` if a name is malformed)."""
    try:
        return max(int(name.rsplit(":", 1)[1]) for name in shards)
    except ValueError:
        return None


def _shard_differences(want: dict[str, str], got: dict[str, str]) -> tuple[Difference, ...]:
    out = []
    for name in sorted(want.keys() | got.keys()):
        w, g = want.get(name), got.get(name)
        if w is None:
            out.append(Difference("extra", name, None, g))
        elif g is None:
            out.append(Difference("missing", name, w, None))
        elif w != g:
            out.append(Difference("modified", name, w, g))
    return tuple(out)


def _compare_shards(
    signed: Manifest,
    actual: Manifest,
    ignore_unsigned_files: bool,
    excluded: Collection[str],
    symlinks: Collection[str],
) -> list[Difference]:
    expected, found = _by_file(signed), _by_file(actual)
    out: list[Difference] = []
    for path in sorted(expected.keys() | found.keys() | set(symlinks)):
        want, got = expected.get(path), found.get(path)
        if want is None:
            if ignore_unsigned_files:
                continue
            if got is None:
                out.append(Difference("extra", path, None, None, detail=_A_SYMLINK))
            else:
                out.append(Difference("extra", path, None, None, actual_size=_size(got),
                                      shards=_shard_differences({}, got)))
            continue
        size = _size(want)
        if path in excluded:
            out.append(Difference("excluded", path, None, None, expected_size=size))
        elif path in symlinks:
            out.append(Difference("modified", path, None, None, expected_size=size, detail=_NOW_A_SYMLINK))
        elif got is None:
            out.append(Difference("missing", path, None, None, expected_size=size,
                                  shards=_shard_differences(want, {})))
        elif want != got:
            out.append(Difference("modified", path, None, None, expected_size=size, actual_size=_size(got),
                                  shards=_shard_differences(want, got)))
    return out

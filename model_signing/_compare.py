"""Comparing the signed manifest with the model on disk: every difference, not just the first.

Both manifests were produced with the same serialization (the verifier re-hashes with the signed
settings), so resources are compared by name.  For shards this is also the tiling check: the model is
re-sharded canonically ([0, N), [N, 2N), ... up to the file size), so a signed manifest with a missing,
overlapping, misaligned or short shard cannot match -- the gap shows up as an ``extra`` shard and the odd
range as a ``missing`` one -- and a file whose size changed reports its changed/added/removed shards.

With ``ignore_unsigned_files`` the unit of "signed" is the *file*: a file is ignored only when none of
its resources is in the signature.  A file with at least one signed shard is compared in full, so
unsigned shards of a signed file are never silently accepted.
"""

from __future__ import annotations

from model_signing.errors import Difference
from model_signing.manifest import Manifest


def file_of(name: str, method: str) -> str:
    """The file a resource belongs to (shard names are ``path:start:end``; paths may contain ``:``)."""
    return name.rsplit(":", 2)[0] if method == "shards" else name


def signed_files(manifest: Manifest) -> frozenset[str]:
    """The files the manifest covers."""
    method = manifest.serialization.method
    return frozenset(file_of(r.name, method) for r in manifest.resources)


def compare(signed: Manifest, actual: Manifest, *, ignore_unsigned_files: bool = False) -> list[Difference]:
    """Every difference between ``signed`` and ``actual``, in name order (modified, missing, extra)."""
    method = signed.serialization.method
    expected = {r.name: r.hex for r in signed.resources}
    found = {r.name: r.hex for r in actual.resources}
    covered = signed_files(signed)
    out: list[Difference] = []
    for name in sorted(expected.keys() | found.keys()):
        want, got = expected.get(name), found.get(name)
        if want is None:
            if ignore_unsigned_files and file_of(name, method) not in covered:
                continue
            out.append(Difference("extra", name, None, got))
        elif got is None:
            out.append(Difference("missing", name, want, None))
        elif want != got:
            out.append(Difference("modified", name, want, got))
    return out

"""An append-only RFC 6962 Merkle tree: tree heads and inclusion proofs (section 2.1).

Leaves are never modified, so the hash of any complete power-of-two subtree never changes; those are
cached, which keeps a root or a proof at O(log n) hashing once the cache is warm.
"""

from __future__ import annotations

import hashlib


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """Leaf hashes in log order, with tree heads and audit paths for any prefix of the log."""

    def __init__(self) -> None:
        """An empty tree."""
        self._leaves: list[bytes] = []
        self._complete: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        """The number of leaves."""
        return len(self._leaves)

    def append(self, leaf: bytes) -> int:
        """Add a leaf hash; returns its index."""
        self._leaves.append(leaf)
        return len(self._leaves) - 1

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default); the empty tree hashes the empty string."""
        size = len(self._leaves) if size is None else size
        self._check_size(size)
        if size == 0:
            return hashlib.sha256(b"").digest()
        return self._hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of the first ``size`` leaves, leaf to root."""
        size = len(self._leaves) if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of size {size}")
        return self._path(index, 0, size)

    def subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves ``start`` .. ``end - 1`` (a tile's node hash when the range is an aligned 2^k block)."""
        if not 0 <= start < end <= len(self._leaves):
            raise ValueError(f"leaf range {start}..{end} is outside 0..{len(self._leaves)}")
        return self._hash(start, end)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= len(self._leaves):
            raise ValueError(f"tree size {size} is outside 0..{len(self._leaves)}")

    def _hash(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 1:
            return self._leaves[start]
        cached = self._complete.get((start, end))
        if cached is not None:
            return cached
        k = _split(n)
        value = node_hash(self._hash(start, start + k), self._hash(start + k, end))
        if n & (n - 1) == 0:  # a complete subtree: final forever
            self._complete[(start, end)] = value
        return value

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        # RFC 6962 section 2.1.1, PATH(m, D[n]), with m relative to ``start``.
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if index - start < k:
            return [*self._path(index, start, start + k), self._hash(start + k, end)]
        return [*self._path(index, start + k, end), self._hash(start, start + k)]

"""Streaming writers for the binary formats the generated layouts use.

Model files are multi-GB, so nothing here builds a file in memory: a file is described as a list of
*parts* (literal ``bytes`` or :class:`Fill` placeholders for pseudo-random payload), sizes are computed
from the parts, and :func:`write_parts` streams them to disk.  The protobuf helpers emit the plain wire
format (varints, length-delimited fields), which is all ONNX, SavedModel and fingerprint files need.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO

_BLOCK = 1 << 20


@dataclass(frozen=True)
class Fill:
    """``size`` bytes of deterministic pseudo-random payload (tensor data), seeded by ``seed``."""

    size: int
    seed: int = 0


Part = bytes | Fill


def parts_size(parts: Iterable[Part]) -> int:
    """Total byte size of a part list."""
    return sum(len(p) if isinstance(p, bytes) else p.size for p in parts)


def _fill_bytes(fill: Fill) -> Iterable[bytes]:
    # One random 1 MiB block per seed, each copy stamped with its index so no two blocks are equal
    # (hashing speed does not depend on content, but deduplicating storage should not shrink the data).
    block = random.Random(fill.seed).randbytes(min(_BLOCK, fill.size))
    left, index = fill.size, 0
    while left > 0:
        n = min(left, _BLOCK)
        yield (index.to_bytes(8, "little") + block[8:n]) if n > 8 else block[:n]
        left -= n
        index += 1


def write_parts(fh: IO[bytes], parts: Iterable[Part]) -> int:
    """Stream ``parts`` into ``fh``; return the number of bytes written."""
    total = 0
    for part in parts:
        if isinstance(part, bytes):
            fh.write(part)
            total += len(part)
        else:
            for chunk in _fill_bytes(part):
                fh.write(chunk)
                total += len(chunk)
    return total


# --- protobuf wire format -------------------------------------------------------------------------


def varint(value: int) -> bytes:
    """Base-128 varint (negative values as 64-bit two's complement, as protobuf does)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_int(field: int, value: int) -> bytes:
    """A varint field (wire type 0)."""
    return varint(field << 3) + varint(value)


def pb_bytes(field: int, value: bytes | str) -> bytes:
    """A length-delimited field holding a string or bytes."""
    raw = value.encode() if isinstance(value, str) else value
    return varint(field << 3 | 2) + varint(len(raw)) + raw


def pb_msg(field: int, parts: Sequence[Part]) -> list[Part]:
    """A length-delimited field holding a nested message given as parts (may contain :class:`Fill`)."""
    return [varint(field << 3 | 2) + varint(parts_size(parts)), *parts]


def flat(*groups: Part | Sequence[Part]) -> list[Part]:
    """Concatenate parts and part lists into one part list."""
    out: list[Part] = []
    for group in groups:
        if isinstance(group, bytes | Fill):
            out.append(group)
        else:
            out.extend(group)
    return out

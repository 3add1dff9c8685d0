"""Zip archives walked in one pass: local headers in order, then the central directory cross-checked.

Loaders (torch's miniz, Python's zipfile) find members through the central directory at the end, but a
one-pass scanner meets the local headers first.  So every member is analysed from its local header (by
content, whatever its name), and the central directory is checked against what was walked: an entry
that points where no local header was walked (a hidden or overlapping member), a name, size, method,
flag or CRC that disagrees, an encrypted-flag bit, a bad CRC -- each is a finding.  Members are still
analysed when their flags or CRC are wrong, since torch loads them anyway.

PyTorch writes every member stored with a data descriptor and zero sizes in the local header (the
sizes come after the data), so the end of such a member is found by looking for a descriptor whose CRC
and size match the bytes so far.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from model_signing.scan._context import Scope
from model_signing.scan._model import Severity
from model_signing.scan._stream import Pull, Reader

LOCAL = b"PK\x03\x04"
CENTRAL = b"PK\x01\x02"
EOCD = b"PK\x05\x06"
EOCD64 = b"PK\x06\x06"
EOCD64_LOCATOR = b"PK\x06\x07"
DESCRIPTOR = b"PK\x07\x08"
DIGITAL_SIGNATURE = b"PK\x05\x05"

_OUT_CHUNK = 1 << 20
_MEDIUM = Severity.MEDIUM


class MemberScanner(Protocol):
    """What a member's bytes are pushed into (a nested content scanner)."""

    def feed(self, data: bytes | bytearray | memoryview) -> None: ...

    def finish(self) -> None: ...

    @property
    def idle(self) -> bool: ...


@dataclass
class _Walked:
    name: str
    flags: int
    method: int
    #: ``None`` when the data's CRC was not recomputed (``ScanConfig.crc_data`` off, data members only).
    crc: int | None
    csize: int
    usize: int
    listed: bool = False


class _Inflater:
    """A streaming decompressor (deflate or bzip2) with bounded output per step."""

    def __init__(self, method: int) -> None:
        self.method = method
        self._z = zlib.decompressobj(-15) if method == 8 else None
        if method == 12:
            import bz2  # rare in checkpoints: not imported up front

            self._b: bz2.BZ2Decompressor | None = bz2.BZ2Decompressor()
        else:
            self._b = None

    @property
    def eof(self) -> bool:
        return self._z.eof if self._z is not None else bool(self._b is not None and self._b.eof)

    @property
    def unused(self) -> bytes:
        if self._z is not None:
            return self._z.unused_data
        return self._b.unused_data if self._b is not None else b""

    def push(self, data: bytes | memoryview, deliver: Callable[[bytes], None]) -> None:
        if self._z is not None:
            z = self._z
            buf: bytes | memoryview = data
            while buf and not z.eof:
                out = z.decompress(buf, _OUT_CHUNK)
                if out:
                    deliver(out)
                buf = z.unconsumed_tail
            return
        b = self._b
        assert b is not None
        out = b.decompress(bytes(data), _OUT_CHUNK)
        if out:
            deliver(out)
        while not b.eof and not b.needs_input:
            out = b.decompress(b"", _OUT_CHUNK)
            if not out:
                break
            deliver(out)


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & 0x800:
        return raw.decode("utf-8", "replace")
    return raw.decode("cp437")


def _zip64(extra: bytes, usize: int, csize: int, offset: int | None) -> tuple[int, int, int | None, bool]:
    """Apply a zip64 extra field (0x0001) to the 32-bit sizes and offset that are 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + size]
        pos += 4 + size
        if tag != 0x0001:
            continue
        vals = [struct.unpack_from("<Q", body, i)[0] for i in range(0, len(body) - 7, 8)]
        k = 0
        if usize == 0xFFFFFFFF and k < len(vals):
            usize, k = vals[k], k + 1
        if csize == 0xFFFFFFFF and k < len(vals):
            csize, k = vals[k], k + 1
        if offset is not None and offset == 0xFFFFFFFF and k < len(vals):
            offset, k = vals[k], k + 1
        return usize, csize, offset, True
    return usize, csize, offset, False


def walk_zip(r: Reader, scope: Scope, open_member: Callable[[Scope], MemberScanner]) -> Pull:
    """Walk a zip archive from the reader's position (its first local header) to the end of the input."""
    base = r.offset
    walked: dict[int, _Walked] = {}
    names: dict[str, int] = {}
    cd_entries = 0
    while True:
        off = r.offset - base
        sig = yield from r.peek(4)
        if len(sig) < 4:
            if sig:
                scope.add(_MEDIUM, "zip-structure", "the archive ends inside a record", off)
            else:
                scope.add(_MEDIUM, "zip-structure", "the archive has no end-of-central-directory record", off)
            break
        if sig == LOCAL:
            ok = yield from _local(r, scope, off, walked, names, open_member)
            if not ok:
                yield from r.drain()
                return
        elif sig == CENTRAL:
            cd_entries += 1
            ok = yield from _central(r, scope, off, walked)
            if not ok:
                break
        elif sig == EOCD:
            rec = yield from r.read(22)
            if len(rec) < 22:
                scope.add(_MEDIUM, "zip-structure", "truncated end-of-central-directory record", off)
                break
            total, clen = struct.unpack_from("<H", rec, 10)[0], struct.unpack_from("<H", rec, 20)[0]
            if total != 0xFFFF and total != cd_entries % 0x10000:
                scope.add(_MEDIUM, "zip-mismatch", f"the end record counts {total} entries, the central "
                          f"directory has {cd_entries}", off)
            got = yield from r.skip(clen)
            if got < clen:
                scope.add(Severity.LOW, "zip-structure", "truncated archive comment", off)
            rest = yield from r.drain()
            if rest:
                scope.add(Severity.LOW, "trailing-data", f"{rest} bytes follow the end of the archive",
                          off + 22 + clen)
            break
        elif sig == EOCD64:
            rec = yield from r.read(12)
            if len(rec) < 12:
                scope.add(_MEDIUM, "zip-structure", "truncated zip64 end record", off)
                break
            size = struct.unpack_from("<Q", rec, 4)[0]
            got = yield from r.skip(size)
            if got < size:
                scope.add(_MEDIUM, "zip-structure", "truncated zip64 end record", off)
                break
        elif sig == EOCD64_LOCATOR:
            yield from r.skip(20)
        elif sig == DIGITAL_SIGNATURE:
            rec = yield from r.read(6)
            if len(rec) == 6:
                yield from r.skip(struct.unpack_from("<H", rec, 4)[0])
        else:
            scope.add(_MEDIUM, "zip-structure",
                      f"unexpected bytes {bytes(sig)!r} where a zip record should start; the rest of the archive "
                      "is not analysed", off)
            yield from r.drain()
            break
    for off, w in walked.items():
        if not w.listed:
            scope.add(Severity.LOW, "zip-mismatch",
                      f"member {w.name!r} is not in the central directory (loaders that use the directory skip it)",
                      off)
    fmt = "zip"
    member_names = [w.name for w in walked.values()]
    if any(n.endswith("data.pkl") for n in member_names):
        fmt = "pytorch-zip"
    elif "config.json" in member_names and any(n.endswith(".h5") for n in member_names):
        fmt = "keras"
    elif member_names and all(n.endswith(".npy") for n in member_names):
        fmt = "npz"
    scope.set_format(fmt)


def _local(  # noqa: PLR0917 - the walk's state, passed down once
    r: Reader,
    scope: Scope,
    off: int,
    walked: dict[int, _Walked],
    names: dict[str, int],
    open_member: Callable[[Scope], MemberScanner],
) -> Pull:
    """One local header and its data; returns ``False`` if the walk cannot go on."""
    hdr = yield from r.read(30)
    if len(hdr) < 30:
        scope.add(_MEDIUM, "zip-structure", "truncated local header", off)
        return False
    _, _, flags, method, _, _, crc, csize, usize, nlen, xlen = struct.unpack("<IHHHHHIIIHH", hdr)
    raw_name = yield from r.read(nlen)
    extra = yield from r.read(xlen)
    if len(raw_name) < nlen or len(extra) < xlen:
        scope.add(_MEDIUM, "zip-structure", "truncated local header", off)
        return False
    name = _decode_name(raw_name, flags)
    usize, csize, _, zip64 = _zip64(extra, usize, csize, None)
    if name in names:
        scope.add(_MEDIUM, "zip-mismatch", f"member name {name!r} appears twice (loaders disagree on which "
                  "one they read)", off)
    names[name] = off
    if flags & 0x41:
        scope.add(_MEDIUM, "zip-encrypted", f"member {name!r} has encryption flag bits {flags & 0x41:#x} set; "
                  "it is analysed as stored, as loaders that ignore the flag read it", off)
    member = scope.child(name)
    inner: MemberScanner | None = None
    if member.depth > scope.config.max_depth:
        scope.add(_MEDIUM, "nesting-too-deep", f"member {name!r} is nested more than {scope.config.max_depth} "
                  "archives deep; it is not analysed", off)
    else:
        inner = open_member(member)
    actual = {"crc": 0, "usize": 0}
    checking = [True]  # the CRC is recomputed until the member turns out to be data (see ScanConfig.crc_data)

    def crc_wanted() -> bool:
        if checking[0] and not scope.config.crc_data and inner is not None and inner.idle:
            checking[0] = False
        return checking[0]

    def pass_on(data: bytes | memoryview) -> None:
        actual["usize"] += len(data)
        if inner is not None:
            inner.feed(data)

    def deliver(data: bytes | memoryview) -> None:
        pass_on(data)  # first: a member the content scanner recognises as data needs no CRC, even for this chunk
        if crc_wanted():
            actual["crc"] = zlib.crc32(data, actual["crc"])

    descriptor = bool(flags & 0x08)
    sizes_known = not descriptor or csize != 0
    walked_csize: int | None
    if method == 0:
        if sizes_known:
            got = yield from r.skip(csize, deliver)
            walked_csize = got
            if got < csize:
                scope.add(_MEDIUM, "zip-structure", f"member {name!r} is truncated", off)
        else:
            found = yield from _stored_until_descriptor(r, pass_on, crc_wanted)
            if found is None:
                scope.add(_MEDIUM, "zip-structure", f"member {name!r}: the end of its data (a data descriptor) "
                          "was never found; the rest of the archive is not analysed", off)
                if inner is not None:
                    inner.finish()
                return False
            walked_csize = actual["usize"]
            descriptor = False  # consumed by the search
            crc = actual["crc"] = found
            csize = usize = walked_csize
    elif method in (8, 12):
        inf = _Inflater(method)
        try:
            walked_csize = yield from _inflate(r, inf, csize if sizes_known else None, deliver)
        except (zlib.error, OSError, EOFError, ValueError) as exc:
            scope.add(_MEDIUM, "zip-structure", f"member {name!r}: its compressed data is corrupt ({exc}); the rest "
                      "of the archive is not analysed", off)
            if inner is not None:
                inner.finish()
            return False
        if not inf.eof:
            scope.add(_MEDIUM, "zip-structure", f"member {name!r}: its compressed data ends early", off)
        if sizes_known and walked_csize != csize:
            scope.add(_MEDIUM, "zip-mismatch", f"member {name!r}: the compressed data is {walked_csize} bytes, "
                      f"the local header says {csize}", off)
    else:
        scope.add(_MEDIUM, "zip-unsupported", f"member {name!r} uses compression method {method}, which the "
                  "scanner does not decompress; it is not analysed", off)
        inner = None
        if not sizes_known:
            scope.add(_MEDIUM, "zip-structure", "the rest of the archive is not analysed", off)
            return False
        walked_csize = yield from r.skip(csize)
    if descriptor:
        head = yield from r.peek(4)
        if head == DESCRIPTOR:
            yield from r.skip(4)
        body = yield from r.read(20 if zip64 else 12)
        if len(body) >= 12:
            if zip64 and len(body) == 20:
                crc, csize, usize = struct.unpack("<IQQ", body)
            else:
                crc, csize, usize = struct.unpack_from("<III", body)
    if inner is not None:
        inner.finish()
    walked_crc: int | None = actual["crc"] if checking[0] else None
    if method in (0, 8, 12) and walked_crc is not None and walked_crc != crc:
        scope.add(_MEDIUM, "zip-crc", f"member {name!r}: CRC-32 {actual['crc']:08x} of its data does not match "
                  f"the recorded {crc:08x} (torch loads it anyway; it was analysed)", off)
    if method in (0, 8, 12) and actual["usize"] != usize:
        scope.add(_MEDIUM, "zip-mismatch", f"member {name!r}: {actual['usize']} bytes of data, the archive says "
                  f"{usize}", off)
    walked[off] = _Walked(name, flags, method, walked_crc, walked_csize or 0, actual["usize"])
    return True


def _stored_until_descriptor(
    r: Reader, deliver: Callable[[memoryview], None], crc_wanted: Callable[[], bool] = lambda: True
) -> Pull:
    """Pass a stored member's data on until a data descriptor whose CRC and size match it; return its CRC.

    ``None`` if the input ends first.  The descriptor itself is consumed.  Once ``crc_wanted()`` is false
    (the member is data) the CRC is no longer computed and a descriptor is recognised by its two sizes
    alone: a chance match needs 12 specific bytes, and content crafted to end the member early could
    carry a matching CRC just as well, so the CRC adds no assurance there (the walk is checked against
    the central directory either way).
    """
    crc: int | None = 0
    n = 0

    def emit(end: int) -> None:
        nonlocal crc, n
        if end > r.pos:
            piece = memoryview(r.buf)[r.pos:end]
            deliver(piece)  # first, as in _local's deliver
            if crc is not None:
                crc = zlib.crc32(piece, crc) if crc_wanted() else None
            n += end - r.pos
            r.pos = end

    while True:
        if r.available < 4:
            before = r.available
            yield from r.fill(before + 1 if before else 1)
            if r.available == before:  # end of input
                emit(len(r.buf))
                return None
        i = r.buf.find(DESCRIPTOR, r.pos)
        if i < 0:
            emit(len(r.buf) - 3)  # a signature may straddle the next chunk
            before = r.available
            yield from r.fill(before + 1)
            if r.available == before:
                emit(len(r.buf))
                return None
            continue
        emit(i)
        yield from r.fill(24)
        cand = r.buf[r.pos:r.pos + 24]
        if cand[:4] != DESCRIPTOR:
            emit(r.pos + 1)
            continue
        if len(cand) >= 16 and n < 1 << 32:
            c, cs, us = struct.unpack_from("<III", cand, 4)
            if (crc is None or c == crc) and cs == n and us == n:
                r.pos += 16
                return c
        if len(cand) >= 24:
            c, cs, us = struct.unpack_from("<IQQ", cand, 4)
            if (crc is None or c == crc) and cs == n and us == n:
                r.pos += 24
                return c
        emit(r.pos + 1)  # not a descriptor: its first byte is data


def _inflate(r: Reader, inf: _Inflater, limit: int | None, deliver: Callable[[bytes], None]) -> Pull:
    """Decompress from the reader until the compressed stream ends (or ``limit`` bytes); return bytes used."""
    used = 0
    while not inf.eof and (limit is None or used < limit):
        if r.available == 0:
            yield from r.fill(1)
            if r.available == 0:
                break
        end = len(r.buf) if limit is None else min(len(r.buf), r.pos + limit - used)
        data = memoryview(r.buf)[r.pos:end]
        inf.push(data, deliver)
        taken = len(data) - len(inf.unused) if inf.eof else len(data)
        r.pos += taken
        used += taken
    if limit is not None and used < limit:
        # Bytes after the end of the compressed stream but inside the member: skip them.
        got = yield from r.skip(limit - used)
        used += got
    return used


def _central(r: Reader, scope: Scope, off: int, walked: dict[int, _Walked]) -> Pull:
    """One central directory entry, checked against the local header it points to."""
    hdr = yield from r.read(46)
    if len(hdr) < 46:
        scope.add(_MEDIUM, "zip-structure", "truncated central directory entry", off)
        return False
    (_, _, _, flags, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, _, local) = struct.unpack(
        "<IHHHHHHIIIHHHHHII", hdr
    )
    raw_name = yield from r.read(nlen)
    extra = yield from r.read(xlen)
    got = yield from r.skip(clen)
    if len(raw_name) < nlen or len(extra) < xlen or got < clen:
        scope.add(_MEDIUM, "zip-structure", "truncated central directory entry", off)
        return False
    name = _decode_name(raw_name, flags)
    usize, csize, local_off, _ = _zip64(extra, usize, csize, local)
    assert local_off is not None
    w = walked.get(local_off)
    if w is None:
        scope.add(Severity.HIGH, "zip-hidden-member",
                  f"the central directory lists {name!r} at offset {local_off}, where the walk of the archive found "
                  "no member: loaders that follow the directory read bytes that were not analysed as a member",
                  off)
        return True
    w.listed = True
    if flags & 0x41:
        scope.add(_MEDIUM, "zip-encrypted", f"member {name!r} is flagged encrypted in the central directory", off)
    diffs = []
    if w.name != name:
        diffs.append(f"name {w.name!r} vs {name!r}")
    if w.method != method:
        diffs.append(f"method {w.method} vs {method}")
    if (w.flags ^ flags) & ~0x08 & 0xFFFF:
        diffs.append(f"flags {w.flags:#x} vs {flags:#x}")
    if w.method in (0, 8, 12):
        if w.crc is not None and w.crc != crc:
            diffs.append(f"CRC {w.crc:08x} of the data vs {crc:08x}")
        if w.usize != usize:
            diffs.append(f"size {w.usize} vs {usize}")
        if w.csize != csize:
            diffs.append(f"compressed size {w.csize} vs {csize}")
    if diffs:
        scope.add(_MEDIUM, "zip-mismatch", f"member at offset {local_off}: the local header and data disagree with "
                  f"the central directory ({'; '.join(diffs)})", off)
    return True

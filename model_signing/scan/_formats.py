"""Recognising a file by its content and dispatching it to the right parser; the small format parsers.

Formats are recognised by magic bytes and structure, never by name: a pickle renamed ``weights.bin`` is
a pickle.  Order matters where magics could collide: fixed magics first (zip, npy, HDF5, GGUF, tar),
then structural checks (safetensors' length + JSON header, protobuf), and pickle last (a PROTO opcode
is certain; a text-protocol opcode is a guess that must survive the walk to count).
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator
from typing import Any

from model_signing.scan import _hooks, _pickle, _tables, _zip
from model_signing.scan._context import Scope
from model_signing.scan._model import Severity
from model_signing.scan._stream import Driver, Parser, Pull, Reader

SNIFF = 512
MAX_JSON = 16 << 20
#: safetensors' own limit for the JSON header.
MAX_SAFETENSORS_HEADER = 100_000_000
MAX_NPY_HEADER = 1 << 20
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"

_MEDIUM = Severity.MEDIUM


class ContentScanner:
    """Bytes in, findings out: recognises the content and walks it (used for files and archive members)."""

    __slots__ = ("_driver", "scope")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self._driver = Driver(_guarded(scope))

    @property
    def idle(self) -> bool:
        """Whether the rest of the content is dropped unanalysed (data after the part that matters)."""
        return self._driver.idle

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Push the next chunk."""
        if self._driver.done:
            return
        try:
            self._driver.feed(data)
        except Exception as exc:  # noqa: BLE001 - a scanner bug must fail closed, never crash the caller
            self._internal_error(exc)

    def skip(self, n: int) -> None:
        """The next ``n`` bytes went by unseen (only once :attr:`idle`; see ``Driver.skip``)."""
        if self._driver.done:
            return
        try:
            self._driver.skip(n)
        except Exception as exc:  # noqa: BLE001 - as in feed
            self._internal_error(exc)

    def finish(self) -> None:
        """The input ended."""
        try:
            self._driver.finish()
        except Exception as exc:  # noqa: BLE001 - as in feed
            self._internal_error(exc)
        self.scope.out.formats_add(self.scope)

    def _internal_error(self, exc: BaseException) -> None:
        self._driver.done = True
        self.scope.add(Severity.HIGH, "scanner-error",
                       f"the scanner could not analyse this content ({type(exc).__name__}: {exc}); "
                       "treat it as unsafe and report the problem")


def _guarded(scope: Scope) -> Parser:
    r = Reader()
    try:
        yield from scan_content(r, scope)
    except RecursionError:
        scope.add(Severity.HIGH, "limit-exceeded", "the content nests too deeply to analyse")
    yield from r.drain()


def open_member(scope: Scope) -> ContentScanner:
    """The scanner a zip or tar member's bytes are pushed into."""
    return ContentScanner(scope)


_hooks.open_member = open_member


def scan_content(r: Reader, scope: Scope) -> Pull:
    """Recognise and walk the content from the reader's position to the end of the input."""
    head = yield from r.peek(SNIFF)
    if not head:
        scope.set_format("empty")
        return
    if head.startswith(_zip.LOCAL):
        scope.set_format("zip")
        yield from _zip.walk_zip(r, scope, open_member)
    elif head.startswith(_zip.EOCD):
        scope.set_format("zip")
    elif head.startswith(NPY_MAGIC):
        yield from _npy(r, scope)
    elif head.startswith(HDF5_MAGIC):
        yield from _hdf5(r, scope)
    elif _compression(head) is not None:
        yield from _decompress(r, scope, _compression(head) or "")
    elif head.startswith(b"GGUF"):
        scope.set_format("gguf")
    elif len(head) >= 263 and head[257:262] == b"ustar":
        yield from _tar(r, scope)
    elif _looks_like_safetensors(head):
        yield from _safetensors(r, scope)
    elif head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        scope.set_format("pickle")
        yield from _pickle.walk_sequence(r, scope, certain=True)
    elif head.lstrip()[:1] in (b"{", b"["):
        yield from _json(r, scope)
    elif head[:1] == b"\x08":
        yield from _protobuf(r, scope)
    elif _pickle.looks_like_pickle(head):
        n = yield from _pickle.walk_sequence(r, scope, certain=False)
        if n:
            scope.set_format("pickle")
    yield from r.drain()


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    n = struct.unpack_from("<Q", head)[0]
    # Past the format's header limit it is no safetensors file (the library refuses it): other data
    # (a JSON document's first 8 bytes read as a length) must not be taken for one.
    return 2 <= n <= MAX_SAFETENSORS_HEADER and head[8:9] == b"{"


# --- compressed streams (joblib's compress=, .gz checkpoints) -------------------------------------------------

def _compression(head: bytes) -> str | None:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and head[3:4].isdigit():
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return None


def _decompress(r: Reader, scope: Scope, kind: str) -> Pull:
    """A whole-file compressed stream: its decompressed bytes are scanned as content of their own."""
    import bz2
    import lzma
    import zlib

    scope.set_format(kind)
    dec: Any
    if kind == "gzip":
        dec = zlib.decompressobj(16 + 15)
    elif kind == "zlib":
        dec = zlib.decompressobj()
    elif kind == "bz2":
        dec = bz2.BZ2Decompressor()
    else:
        dec = lzma.LZMADecompressor()
    member = scope.child(f"({kind})")
    if member.depth > scope.config.max_depth:
        scope.add(_MEDIUM, "nesting-too-deep", "compressed content nested too deep; it is not analysed", 0)
        return
    inner = open_member(member)
    limit = 1 << 20
    try:
        while not dec.eof:
            yield from r.fill(1)
            if r.available == 0:
                scope.add(Severity.LOW, "truncated-stream", f"the {kind} stream ends early", r.offset)
                break
            data: bytes = r.buf[r.pos:]
            r.pos = len(r.buf)
            if kind in ("gzip", "zlib"):
                while data and not dec.eof:
                    inner.feed(dec.decompress(data, limit))
                    data = dec.unconsumed_tail
            else:
                inner.feed(dec.decompress(data, limit))
                while not dec.eof and not dec.needs_input:
                    inner.feed(dec.decompress(b"", limit))
    except (zlib.error, OSError, lzma.LZMAError, EOFError) as exc:
        scope.add(Severity.LOW, "malformed-stream", f"the {kind} stream is corrupt ({exc})", r.offset)
    inner.finish()


# --- numpy ---------------------------------------------------------------------------------------------

def _has_object(descr: Any) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, (list, tuple)):
        return any(isinstance(f, (list, tuple)) and len(f) >= 2 and _has_object(f[1]) for f in descr)
    return True  # not a form numpy writes: assume the worst


def _npy(r: Reader, scope: Scope) -> Pull:
    scope.set_format("npy")
    pre = yield from r.read(8)
    if len(pre) < 8:
        scope.add(Severity.LOW, "malformed-npy", "truncated .npy header", 0)
        return
    major = pre[6]
    size_len = 2 if major == 1 else 4
    raw = yield from r.read(size_len)
    if len(raw) < size_len:
        scope.add(Severity.LOW, "malformed-npy", "truncated .npy header", 0)
        return
    hlen = struct.unpack("<H" if size_len == 2 else "<I", raw)[0]
    if hlen > MAX_NPY_HEADER:
        scope.add(_MEDIUM, "malformed-npy", f".npy header of {hlen} bytes is too large to analyse", 0)
        return
    text = yield from r.read(hlen)
    try:
        import ast  # only for .npy headers: the scan in the hashing pass should not pay for it up front

        with warnings.catch_warnings():  # a crafted header's bad escapes must not print warnings
            warnings.simplefilter("ignore")
            header = ast.literal_eval(text.decode("latin-1"))
        descr = header["descr"]
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        scope.add(Severity.LOW, "malformed-npy", "the .npy header is not a valid header dict (numpy refuses it)", 0)
        return
    if _has_object(descr):
        # np.load(allow_pickle=True) unpickles what follows the header: one pickle stream.
        scope.set_format("npy-object")
        yield from _pickle.walk_sequence(r, scope, certain=True, single=True)


# --- safetensors -------------------------------------------------------------------------------------

_ST_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1,
    "F6_E3M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8,
    "U64": 8, "F64": 8, "C64": 8,
}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _safetensors(r: Reader, scope: Scope) -> Pull:
    scope.set_format("safetensors")
    n = struct.unpack("<Q", (yield from r.read(8)))[0]

    def bad(detail: str) -> None:
        scope.add(_MEDIUM, "safetensors-header", f"malformed safetensors header: {detail}", 0)

    if n > MAX_SAFETENSORS_HEADER:
        bad(f"{n} bytes, over the {MAX_SAFETENSORS_HEADER}-byte limit of the format")
        return
    raw = yield from r.read(n)
    if len(raw) < n:
        bad("the file ends inside the header")
        return
    try:
        import json  # lazily, as every import here: the scan in the hashing pass pays only for what it meets

        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        bad(f"not a JSON object ({exc})")
        return
    if not isinstance(header, dict):
        bad("not a JSON object")
        return
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                bad("__metadata__ must map strings to strings")
            continue
        if not isinstance(entry, dict):
            bad(f"tensor {name!r} is not an object")
            continue
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _ST_DTYPE_SIZES:
            bad(f"tensor {name!r} has unknown dtype {dtype!r}")
            continue
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape)):
            bad(f"tensor {name!r} has a bad shape")
            continue
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            bad(f"tensor {name!r} has bad data_offsets")
            continue
        count = 1
        for d in shape:
            count *= d
        size = _ST_DTYPE_SIZES[dtype]
        expected = count * size if dtype not in ("F4", "F6_E2M3", "F6_E3M2") else None
        if expected is not None and offsets[1] - offsets[0] != expected:
            bad(f"tensor {name!r}: data_offsets span {offsets[1] - offsets[0]} bytes, its dtype and shape need "
                f"{expected}")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    end = 0
    for start, stop, name in spans:
        if start < end:
            bad(f"tensor {name!r} overlaps the tensor before it")
        elif start > end:
            bad(f"a gap of {start - end} bytes before tensor {name!r}")
        end = max(end, stop)
    data = yield from r.drain()
    if data != end:
        bad(f"the data section is {data} bytes, the tensors cover {end}")


# --- JSON and Keras configs ------------------------------------------------------------------------------

_KERAS_MODULES = ("keras", "tf_keras", "tensorflow.keras", "tensorflow.python.keras")


def _dicts(obj: Any) -> Iterator[dict[str, Any]]:
    todo = [obj]
    while todo:
        cur = todo.pop()
        if isinstance(cur, dict):
            yield cur
            todo.extend(cur.values())
        elif isinstance(cur, list):
            todo.extend(cur)


def analyse_keras_config(obj: Any, scope: Scope, offset: int | None = None) -> bool:
    """Report Lambda layers and custom objects in a Keras model config; ``True`` if it looked like one."""
    found = False
    for d in _dicts(obj):
        cls = d.get("class_name")
        if not isinstance(cls, str) or "config" not in d:
            continue
        found = True
        conf = d.get("config")
        layer = conf.get("name") if isinstance(conf, dict) else None
        if cls in ("Lambda", "__lambda__"):
            scope.add(Severity.HIGH, "keras-lambda",
                      f"Keras {cls} layer {layer!r}: its function is code that runs when the model is loaded or "
                      "called", offset)
            continue
        module = d.get("module")
        if isinstance(module, str) and not (module in _KERAS_MODULES or module.startswith(
                tuple(m + "." for m in _KERAS_MODULES))):
            target = conf if cls == "function" and isinstance(conf, str) else cls
            judged = _tables.classify(module, target)
            severity, reason = judged if judged is not None else (_MEDIUM, "custom object")
            if severity <= _MEDIUM and scope.config.allows(module, target):
                continue
            scope.add(max(severity, _MEDIUM), "keras-custom-object",
                      f"Keras config imports {module}.{target} ({reason})", offset)
    return found


def _json(r: Reader, scope: Scope) -> Pull:
    raw = yield from r.read(MAX_JSON + 1)
    if len(raw) > MAX_JSON:
        scope.set_format("json")
        return
    if b"class_name" not in raw and b"\\" not in raw:
        # Without an escape, every key is spelt literally: no object has a "class_name" key, so this is no
        # Keras config and nothing in it loads code.  Skips parsing large JSON (tokenizers: ~0.1 s per 3 MB).
        scope.set_format("json")
        return
    try:
        import json

        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        scope.set_format("text")
        return
    scope.set_format("keras-config" if analyse_keras_config(obj, scope) else "json")


# --- HDF5 (Keras .h5) ------------------------------------------------------------------------------------

_H5_PATTERNS = (b'"class_name": "Lambda"', b'"class_name":"Lambda"', b'"class_name": "__lambda__"')
_CONFIG_START = b'{"class_name": '


def _hdf5(r: Reader, scope: Scope) -> Pull:
    """Keras .h5 files: byte-level, without an HDF5 library.

    The model's ``model_config`` attribute is JSON stored contiguously in the file; it is found by its
    start, decoded with a JSON decoder and analysed like a .keras config.  Lambda layers are also matched
    as raw byte patterns anywhere in the file.
    """
    scope.set_format("hdf5")
    carry = b""
    config_done = False
    while True:
        yield from r.fill(1)
        if r.available == 0:
            return
        base = r.offset - len(carry)
        data = carry + r.buf[r.pos:]
        r.pos = len(r.buf)
        for pat in _H5_PATTERNS:
            i = data.find(pat)
            if i >= 0:
                scope.add(Severity.HIGH, "keras-lambda", "a Keras Lambda layer in the model config (its function is "
                          "code that runs when the model is loaded or called)", base + i)
        i = data.find(_CONFIG_START) if not config_done else -1
        if i >= 0:
            config_done = True
            window = data[i:]
            start = base + i
            import json

            decoder = json.JSONDecoder()
            while True:
                try:
                    obj, _ = decoder.raw_decode(window.decode("utf-8", "replace"))
                except ValueError:
                    obj = None
                except RecursionError:
                    break
                if obj is not None:
                    if analyse_keras_config(obj, scope, start):
                        scope.set_format("keras-h5")
                    break
                if len(window) > MAX_JSON or r.eof:
                    break
                yield from r.fill(1)
                if r.available == 0:
                    break
                window += r.buf[r.pos:]
                r.pos = len(r.buf)
            carry = window[-64:]
            continue
        carry = data[-64:]


# --- protobuf: TensorFlow SavedModel -------------------------------------------------------------------

class _NotProto(Exception):
    pass


def _varint(r: Reader) -> Pull:
    if r.available < 10:
        yield from r.fill(10)
    value = shift = 0
    for _ in range(10):
        if r.pos >= len(r.buf):
            raise _NotProto
        b = r.buf[r.pos]
        r.pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7
    raise _NotProto


# message kind -> {field number: child message kind}; "op" / "name" are NodeDef strings
_PB_CHILDREN: dict[str, dict[int, str]] = {
    "SavedModel": {2: "MetaGraphDef"},
    "MetaGraphDef": {2: "GraphDef"},
    "GraphDef": {1: "NodeDef", 2: "FunctionDefLibrary"},
    "FunctionDefLibrary": {1: "FunctionDef"},
    "FunctionDef": {3: "NodeDef"},
}


def _pb_message(r: Reader, kind: str, end: int | None, ops: list[tuple[str, str, int]]) -> Pull:
    children = _PB_CHILDREN.get(kind, {})
    node_name = ""
    while end is None or r.offset < end:
        if end is None:
            more = yield from r.peek(1)
            if not more:
                return
        at = r.offset
        tag = yield from _varint(r)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise _NotProto
        if wire == 0:
            yield from _varint(r)
        elif wire in {1, 5}:
            size = 8 if wire == 1 else 4
            if (yield from r.skip(size)) < size:
                raise _NotProto
        elif wire == 2:
            n = yield from _varint(r)
            stop = r.offset + n
            if end is not None and stop > end:
                raise _NotProto
            if kind == "NodeDef" and field in (1, 2) and n <= 1024:
                text = yield from r.read(n)
                if len(text) < n:
                    raise _NotProto
                if field == 1:
                    node_name = text.decode("utf-8", "replace")
                else:
                    ops.append((text.decode("utf-8", "replace"), node_name, at))
            elif field in children:
                yield from _pb_message(r, children[field], stop, ops)
                if r.offset != stop:
                    raise _NotProto
            elif (yield from r.skip(n)) < n:
                raise _NotProto
        else:
            raise _NotProto
    if end is not None and r.offset != end:
        raise _NotProto


def _protobuf(r: Reader, scope: Scope) -> Pull:
    """A protobuf file: walked as a TF SavedModel (GraphDef nodes and function library), reporting file and
    Python ops; other protobufs (ONNX) simply fail the SavedModel shape and are data."""
    scope.set_format("protobuf")
    ops: list[tuple[str, str, int]] = []
    try:
        yield from _pb_message(r, "SavedModel", None, ops)
    except _NotProto:
        ops = ops if any(op in _tables.TF_OPS for op, _, _ in ops) else []
    if ops:
        scope.set_format("tf-savedmodel")
    for op, node, at in ops:
        row = _tables.TF_OPS.get(op)
        if row is not None:
            scope.add(row[0], "tf-op", f"TensorFlow op {op} (node {node!r}): {row[1]}", at)


# --- tar (legacy PyTorch tar checkpoints) -----------------------------------------------------------------

def _tar_size(field: bytes) -> int | None:
    if field[:1] and field[0] & 0x80:  # base-256
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return None


def _tar(r: Reader, scope: Scope) -> Pull:
    scope.set_format("tar")
    long_name: str | None = None
    while True:
        off = r.offset
        hdr = yield from r.read(512)
        if len(hdr) < 512:
            if hdr:
                scope.add(_MEDIUM, "tar-structure", "truncated tar header", off)
            return
        if hdr == b"\0" * 512:
            return
        size = _tar_size(hdr[124:136])
        if size is None:
            scope.add(_MEDIUM, "tar-structure", "tar header with a bad size; the rest is not analysed", off)
            return
        kind = hdr[156:157]
        name = long_name or hdr[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = hdr[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") if hdr[257:262] == b"ustar" else ""
        if prefix and not long_name:
            name = f"{prefix}/{name}"
        long_name = None
        padded = -(-size // 512) * 512
        if kind == b"L":
            raw = yield from r.read(min(size, 1 << 16))
            long_name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
            yield from r.skip(padded - len(raw))
            continue
        if kind in (b"0", b"\0", b"7"):
            member = scope.child(name)
            if member.depth > scope.config.max_depth:
                scope.add(_MEDIUM, "nesting-too-deep", f"member {name!r} is nested too deep; it is not analysed", off)
                got = yield from r.skip(size)
            else:
                inner = open_member(member)
                got = yield from r.skip(size, inner.feed)
                inner.finish()
            if got < size:
                scope.add(_MEDIUM, "tar-structure", f"member {name!r} is truncated", off)
                return
            yield from r.skip(padded - size)
        else:
            yield from r.skip(padded)


def driver_for(scope: Scope) -> ContentScanner:
    """The content scanner of a top-level file."""
    return ContentScanner(scope)

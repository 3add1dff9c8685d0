"""Static analysis of pickle streams: an opcode walk that tracks the stack, marks and memo, never unpickling.

The walk mirrors the unpickler's *structure* exactly (each opcode's stack effect does not depend on the
values), so a stream the real unpickler would reject is recognised as such, and every callable that the
real unpickler would import or call is named: GLOBAL / STACK_GLOBAL / INST imports, and the callables of
REDUCE, NEWOBJ(_EX), OBJ, INST and BUILD -- including names that come from the memo or were built from
string opcodes.  What it cannot name is a finding itself.

Memory is bounded whatever the stream: long strings are streamed past (kept only as "a long string"),
and the stack, memo and tracked container sizes are capped (past a cap the values are "unknown", which is
only a finding where an unknown value is then used as a name or a callable).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import re
import struct
import warnings
from typing import Any

from model_signing.scan import _hooks
from model_signing.scan._context import Scope
from model_signing.scan._model import Severity
from model_signing.scan._stream import Pull, Reader
from model_signing.scan._tables import classify

#: Strings longer than this are not kept (names and keyword arguments are far shorter).
KEEP_STR = 256
#: A text-protocol line longer than this is streamed past.
MAX_LINE = 1 << 16
MAX_STACK = 1 << 20
MAX_MEMO = 1 << 18
#: Items kept per dict (enough for keyword arguments and the small state dicts of rebuild calls).
MAX_DICT = 64

LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
#: Bytes after a broken stream that are re-walked opcode by opcode before the walk only jumps to
#: plausible pickle starts.
RESYNC_BUDGET = 1 << 16


class G:
    """A global (``module.name``) the unpickler imports."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


class Call:
    """The result of calling ``func`` (REDUCE, NEWOBJ, OBJ, INST)."""

    __slots__ = ("args", "func", "kwargs", "state")

    def __init__(self, func: Any, args: Any, kwargs: Any = None) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        #: What BUILD gave it (tracked for numpy dtypes and joblib array wrappers).
        self.state: Any = None


class Opaque:
    """A value the walk does not track (a list, a persistent id, a long string, a capped memo entry)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


class Dict:
    """A dict whose first items (with constant keys) are tracked."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: dict[Any, Any] | None = {}

    def set(self, key: Any, value: Any) -> None:
        if self.items is None:
            return
        if len(self.items) >= MAX_DICT or not isinstance(key, (str, bytes, int, float, bool, type(None))):
            self.items = None
            return
        self.items[key] = value


_LIST = Opaque("a list")
_SET = Opaque("a set")
_LONG_STR = Opaque("a long string")
_LONG_BYTES = Opaque("long bytes")
_PERSISTENT = Opaque("a persistent-id object")
_BUFFER = Opaque("an out-of-band buffer")
_UNKNOWN_MEMO = Opaque("a memo entry past the memo cap")
_EXT = Opaque("an extension-registry object")
_MISSING_MEMO = Opaque("a memo entry that was never stored")
_MISSING = object()


def describe(v: Any) -> str:
    """A short description of a value, for finding details."""
    if isinstance(v, G):
        return v.full
    if isinstance(v, Call):
        return f"the result of calling {describe(v.func)}"
    if isinstance(v, Opaque):
        return v.what
    if isinstance(v, Dict):
        return "a dict"
    if isinstance(v, tuple):
        return "a tuple"
    if isinstance(v, (str, bytes)):
        return f"the constant {v[:40]!r}"
    return f"the constant {v!r}"


class Malformed(Exception):
    """The stream is one the real unpickler rejects here (nothing after this point runs)."""


# opcode byte -> argument layout
_NO_ARG = frozenset(b"().012NRabdelostu}])\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x94\x97\x98Q")
_FIXED: dict[int, tuple[int, str]] = {
    0x80: (1, "<B"), ord("K"): (1, "<B"), ord("M"): (2, "<H"), ord("J"): (4, "<i"), ord("G"): (8, ">d"),
    ord("h"): (1, "<B"), ord("j"): (4, "<I"), ord("q"): (1, "<B"), ord("r"): (4, "<I"),
    0x82: (1, "<B"), 0x83: (2, "<H"), 0x84: (4, "<i"), 0x95: (8, "<Q"),
}
# opcode -> (size of the length, its struct format, kind of payload)
_COUNTED: dict[int, tuple[int, str, str]] = {
    ord("T"): (4, "<i", "str8"), ord("U"): (1, "<B", "str8"), ord("X"): (4, "<I", "utf8"),
    0x8C: (1, "<B", "utf8"), 0x8D: (8, "<Q", "utf8"), ord("B"): (4, "<I", "bytes"),
    ord("C"): (1, "<B", "bytes"), 0x8E: (8, "<Q", "bytes"), 0x96: (8, "<Q", "bytes"),
    0x8A: (1, "<B", "long"), 0x8B: (4, "<i", "long"),
}
_ONE_LINE = frozenset(b"ILFSVPgp")
_TWO_LINES = frozenset(b"ci")
#: Opcodes that make the unpickler import or call something: a stream that fails before any of these
#: (when it was only a guess that the bytes were a pickle) executed nothing.
_EFFECTS = frozenset(b"ciRob\x81\x92\x93\x82\x83\x84PQ")
_CALLS = frozenset(b"iRob\x81\x92")


def _python3_name(module: str, name: str) -> tuple[str, str]:
    # The unpickler maps Python 2 names (protocol < 3, fix_imports); judge what it really imports.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class PickleVM:
    """The state of one pickle stream's walk and what it reports."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.memo_capped = False
        self.stack_capped = False
        self.proto = 0
        self.effects = 0
        self.offset = 0
        self.globals_seen: list[str] = []
        self.result: Any = None
        self.bad_proto: tuple[int, int] | None = None
        self.pending: dict[tuple[str, str], tuple[Severity, int]] = {}
        #: Set when walking on after a broken stream (see walk_sequence).
        self.lenient = False
        #: Whether the bytes are known to be a pickle (else a guess: see walk_sequence).
        self.sure = True
        #: Calls (REDUCE, OBJ, INST, NEWOBJ, BUILD, ...): what makes a guessed stream count even if it breaks.
        self.calls = 0
        #: Set by BUILD on a joblib NumpyArrayWrapper: the array bytes the joblib unpickler reads from the
        #: stream right there, (byte count or None if unknown, has objects, aligned).
        self.joblib_array: tuple[int | None, bool, bool] | None = None

    # -- reporting --------------------------------------------------------------------------------
    def report(self, severity: Severity, kind: str, detail: str) -> None:
        # Held until the caller knows the stream is a pickle (see walk_sequence), then committed; one per
        # (kind, detail), and a bounded number, so memory stays bounded.
        key = (kind, detail)
        if key in self.pending:
            return
        if len(self.pending) >= 10_000:
            key = ("limit-exceeded", "more than 10000 distinct findings in one pickle stream; the rest are not listed")
            if key in self.pending:
                return
            severity = Severity.HIGH
        self.pending[key] = (severity, self.offset)

    def commit(self) -> None:
        """Report the held findings."""
        for (kind, detail), (severity, offset) in self.pending.items():
            self.scope.add(severity, kind, detail, offset)
        self.pending.clear()

    def judge_global(self, module: str, name: str, how: str) -> G:
        if not self.sure and not _dotted_identifier(module):
            # Nothing can be imported under such a name, so the unpickler stops here; in bytes that are only
            # guessed to be a pickle (a text file starting with "import ..."), it means they are not one.
            raise Malformed("module name is not an identifier")
        g = G(module, name)
        if not self.sure and not _dotted_identifier(name):
            # The module is imported, then the attribute lookup fails: judge the import, then stop.
            judged = classify(*_python3_name(module, "_"))
            if judged is not None and judged[0] >= Severity.HIGH:
                self.report(judged[0], "dangerous-global", f"{how} imports module {module}: {judged[1]}")
            raise Malformed("global name is not an identifier")
        self.globals_seen.append(g.full)
        judged = classify(module, name)
        if judged is not None and (module, name) != _python3_name(module, name):
            # A Python 2 spelling: what matters is what the unpickler imports after mapping (if it maps to
            # a safe global, the raw name either maps too or fails to import).
            judged = classify(*_python3_name(module, name))
        if judged is None:
            return g
        severity, reason = judged
        if severity <= Severity.MEDIUM and self.scope.config.allows(module, name):
            return g
        kind = "unknown-global" if severity <= Severity.MEDIUM else "dangerous-global"
        self.report(severity, kind, f"{how} imports {g.full}: {reason}")
        return g

    def judge_call(self, func: Any, args: Any, kwargs: Any, how: str) -> None:
        if isinstance(func, G):
            self._special_call(func, args, kwargs)
            return
        self.report(
            Severity.HIGH, "unresolved-callable",
            f"{how} calls {describe(func)}, which cannot be resolved to a named global",
        )

    def _special_call(self, func: G, args: Any, kwargs: Any) -> None:
        # functools.partial(torch.load, ..., weights_only=False): name the wrapped call.
        if func.full == "functools.partial" and isinstance(args, tuple) and args and isinstance(args[0], G):
            self.report(
                Severity.CRITICAL, "dangerous-global",
                f"functools.partial wraps {args[0].full} for a later call",
            )

    # -- stack helpers ------------------------------------------------------------------------------
    def push(self, v: Any) -> None:
        if len(self.stack) >= MAX_STACK:
            if not self.stack_capped:
                self.stack_capped = True
                self.report(Severity.MEDIUM, "limit-exceeded",
                            f"the pickle stack grows past {MAX_STACK} items; the stream is not fully analysed")
            raise Malformed("stack cap")
        self.stack.append(v)

    def pop(self) -> Any:
        if not self.stack:
            raise Malformed("stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise Malformed("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise Malformed("no MARK on the stack")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def memo_put(self, index: int, v: Any) -> None:
        if index < 0:
            raise Malformed("negative memo index")
        if index in self.memo or len(self.memo) < MAX_MEMO:
            self.memo[index] = v
            return
        if not self.memo_capped:
            self.memo_capped = True
            self.report(Severity.LOW, "limit-exceeded",
                        f"the pickle memo grows past {MAX_MEMO} entries; later entries are not tracked")

    def memo_get(self, index: int) -> Any:
        v = self.memo.get(index, _MISSING)
        if v is _MISSING:
            if self.memo_capped:
                return _UNKNOWN_MEMO
            # The unpickler stops here; walking on with an unknown value can only add findings (a name or
            # callable taken from it is unresolved).
            self.report(Severity.LOW, "malformed-pickle", f"memo entry {index} was never stored")
            return _MISSING_MEMO
        return v

    # -- the opcodes --------------------------------------------------------------------------------
    def execute(self, op: int, arg: Any) -> bool:
        """Apply one opcode; return ``True`` at STOP."""
        st = self.stack
        if op in _EFFECTS:
            self.effects += 1
            if op in _CALLS:
                self.calls += 1
        if op == 0x2E:  # STOP
            self.result = self.pop()
            return True
        if op in _FIXED or op in _COUNTED or op in (0x49, 0x4C, 0x46, 0x53, 0x56):
            # constants: handled by the caller's decoding, or memo/ext ops below
            if op == 0x80:
                if arg > 5 and self.bad_proto is None:
                    # The unpickler refuses it; walk on regardless (other readers may not refuse), and
                    # report it only if the stream turns out to be a pickle (see walk_sequence).
                    self.bad_proto = (arg, self.offset)
                self.proto = arg
                return False
            if op == 0x95:  # FRAME: a framing hint only
                return False
            if op in (0x68, 0x6A):  # BINGET, LONG_BINGET
                self.push(self.memo_get(arg))
                return False
            if op in (0x71, 0x72):  # BINPUT, LONG_BINPUT
                self.memo_put(arg, self.top())
                return False
            if op in (0x82, 0x83, 0x84):  # EXT1, EXT2, EXT4
                if arg <= 0:
                    raise Malformed("extension code <= 0")
                self.effects += 1
                self.report(Severity.MEDIUM, "unresolved-global",
                            f"EXT code {arg} imports whatever the loading process registered in copyreg under "
                            "that code; it cannot be resolved statically")
                self.push(_EXT)
                return False
            self.push(arg)
            return False
        if op == 0x28:  # MARK
            if len(self.metastack) >= MAX_STACK:
                raise Malformed("mark cap")
            self.metastack.append(self.stack)
            self.stack = []
            return False
        if op == 0x30:  # POP
            if st:
                st.pop()
            else:
                self.pop_mark()
            return False
        if op == 0x31:  # POP_MARK
            self.pop_mark()
            return False
        if op == 0x32:  # DUP
            self.push(self.top())
            return False
        if op == 0x4E:  # NONE
            self.push(None)
        elif op == 0x88:
            self.push(True)
        elif op == 0x89:
            self.push(False)
        elif op == 0x29:  # EMPTY_TUPLE
            self.push(())
        elif op == 0x5D:  # EMPTY_LIST
            self.push(_LIST)
        elif op == 0x7D:  # EMPTY_DICT
            self.push(Dict())
        elif op == 0x8F:  # EMPTY_SET
            self.push(_SET)
        elif op == 0x74:  # TUPLE
            self.push(tuple(self.pop_mark()))
        elif op in (0x85, 0x86, 0x87):  # TUPLE1-3
            n = op - 0x84
            if len(st) < n:
                raise Malformed("stack underflow")
            items = tuple(st[-n:])
            del st[-n:]
            self.push(items)
        elif op == 0x6C:  # LIST
            self.pop_mark()
            self.push(_LIST)
        elif op == 0x64:  # DICT
            marked = self.pop_mark()
            if len(marked) % 2:
                raise Malformed("DICT with an odd number of items")
            d = Dict()
            for i in range(0, len(marked), 2):
                d.set(marked[i], marked[i + 1])
            self.push(d)
        elif op == 0x91:  # FROZENSET
            self.pop_mark()
            self.push(_SET)
        elif op == 0x61:  # APPEND
            self.pop()
            self.top()
        elif op == 0x65:  # APPENDS
            self.pop_mark()
            self.top()
        elif op == 0x73:  # SETITEM
            value = self.pop()
            key = self.pop()
            target = self.top()
            if isinstance(target, Dict):
                target.set(key, value)
        elif op == 0x75:  # SETITEMS
            pairs = self.pop_mark()
            if len(pairs) % 2:
                raise Malformed("SETITEMS with an odd number of items")
            target = self.top()
            if isinstance(target, Dict):
                for i in range(0, len(pairs), 2):
                    target.set(pairs[i], pairs[i + 1])
        elif op == 0x90:  # ADDITEMS
            self.pop_mark()
            self.top()
        elif op == 0x94:  # MEMOIZE
            self.memo_put(len(self.memo), self.top())
        elif op in {0x67, 0x70}:  # GET / PUT (text protocol; arg is the decimal line)
            try:
                index = int(arg)
            except ValueError:
                raise Malformed("memo index is not a number") from None
            if op == 0x67:
                self.push(self.memo_get(index))
            else:
                self.memo_put(index, self.top())
        elif op == 0x63:  # GLOBAL
            module, name = arg
            self.push(self.judge_global(module, name, "GLOBAL"))
        elif op == 0x93:  # STACK_GLOBAL
            if self.lenient and len(st) < 2:
                # Resynchronised after a break: the names may sit before the break point.  Lenient readers
                # import whatever they find there, so an unresolvable import it is.
                st.clear()
                self.report(Severity.HIGH, "unresolved-global",
                            "STACK_GLOBAL after a broken stream, with names that cannot be resolved statically")
                self.push(G("?", "?"))
                return False
            name = self.pop()
            module = self.pop()
            if isinstance(module, str) and isinstance(name, str):
                self.push(self.judge_global(module, name, "STACK_GLOBAL"))
            elif isinstance(module, (Opaque, Call, G, Dict)) or isinstance(name, (Opaque, Call, G, Dict)):
                self.report(
                    Severity.HIGH, "unresolved-global",
                    f"STACK_GLOBAL imports a name built from {describe(module)} and {describe(name)}, "
                    "which cannot be resolved statically",
                )
                self.push(G("?", "?"))
            else:
                raise Malformed("STACK_GLOBAL requires two strings")
        elif op == 0x69:  # INST
            module, name = arg
            g = self.judge_global(module, name, "INST")  # the unpickler imports before it pops the mark
            inst_args = tuple(self.pop_mark())
            self.judge_call(g, inst_args, None, "INST")
            self.push(Call(g, inst_args))
        elif op == 0x6F:  # OBJ
            objs = self.pop_mark()
            if not objs:
                raise Malformed("OBJ without a class")
            cls, args = objs[0], tuple(objs[1:])
            self.judge_call(cls, args, None, "OBJ")
            self.push(Call(cls, args))
        elif op == 0x52:  # REDUCE
            args = self.pop()
            func = self.pop()
            self.judge_call(func, args, None, "REDUCE")
            self.push(Call(func, args))
        elif op == 0x81:  # NEWOBJ
            args = self.pop()
            cls = self.pop()
            self.judge_call(cls, args, None, "NEWOBJ")
            self.push(Call(cls, args))
        elif op == 0x92:  # NEWOBJ_EX
            kwargs = self.pop()
            args = self.pop()
            cls = self.pop()
            self.judge_call(cls, args, kwargs, "NEWOBJ_EX")
            self.push(Call(cls, args, kwargs))
        elif op == 0x62:  # BUILD
            state = self.pop()
            inst = self.top()
            self.build(inst, state)
        elif op == 0x50:  # PERSID (text)
            self.push(_PERSISTENT)
        elif op == 0x51:  # BINPERSID
            self.pop()
            self.push(_PERSISTENT)
        elif op == 0x97:  # NEXT_BUFFER
            self.push(_BUFFER)
        elif op == 0x98:  # READONLY_BUFFER
            self.top()
        else:  # pragma: no cover - the reader only passes known opcodes
            raise Malformed(f"opcode {op:#04x}")
        return False

    def build(self, inst: Any, state: Any) -> None:
        if isinstance(inst, Call):
            inst.state = state
            if isinstance(inst.func, G) and inst.func.full == "joblib.numpy_pickle.NumpyArrayWrapper":
                self.joblib_array = _joblib_array(state)
                return
        if isinstance(inst, G):
            self.report(
                Severity.HIGH, "global-modified",
                f"BUILD sets attributes of the imported object {inst.full} (it changes code the loader runs later)",
            )
        elif (isinstance(inst, Call) and isinstance(inst.func, G) and inst.func.full == "functools.partial"
              and isinstance(state, tuple) and len(state) >= 3 and isinstance(state[0], G)):
            # partial's state is (func, args, kwargs, dict): name a wrapped torch.load(weights_only=False).
            kw = state[2].items if isinstance(state[2], Dict) else None
            if kw is not None and kw.get("weights_only") is False:
                self.report(Severity.CRITICAL, "dangerous-global",
                            f"functools.partial wraps {state[0].full} with weights_only=False")
            else:
                self.report(Severity.CRITICAL, "dangerous-global",
                            f"functools.partial wraps {state[0].full} for a later call")


def _dtype_size(dtype: Any) -> tuple[int, bool] | None:
    """(item size, has objects) of a pickled numpy dtype (``numpy.dtype(descr, align, copy)`` + state)."""
    if not (isinstance(dtype, Call) and isinstance(dtype.func, G) and dtype.func.name == "dtype"
            and isinstance(dtype.args, tuple) and dtype.args and isinstance(dtype.args[0], str)):
        return None
    descr = dtype.args[0]
    kind, digits = descr[:1], descr[1:]
    if kind == "O":
        return 8, True
    st = dtype.state
    if isinstance(st, tuple) and len(st) >= 6 and isinstance(st[5], int) and st[5] > 0:
        if isinstance(st[3], tuple) and st[3]:
            # structured: it holds objects if any field does; a field that cannot be judged fails closed
            fields = st[4].items if isinstance(st[4], Dict) else None
            if not fields or len(fields) != len(st[3]):
                return None
            for field in fields.values():
                sub = _dtype_size(field[0]) if isinstance(field, tuple) and field else None
                if sub is None:
                    return None
                if sub[1]:
                    return 8, True
        return st[5], False
    if not digits.isdigit():
        return None
    n = int(digits)
    if kind == "U":
        return 4 * n, False
    if kind in "biufcSVMm" and kind:
        return n, False
    return None


def _joblib_array(state: Any) -> tuple[int | None, bool, bool]:
    items = state.items if isinstance(state, Dict) else None
    if not items:
        return None, False, False
    shape, dtype = items.get("shape"), items.get("dtype")
    aligned = isinstance(items.get("numpy_array_alignment_bytes"), int)
    size = _dtype_size(dtype)
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape) or size is None:
        return None, False, aligned
    count = 1
    for d in shape:
        count *= d
    return count * size[0], size[1], aligned


def _dotted_identifier(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _decode_str8(raw: bytes) -> str:
    # Python 2 str payloads: the unpickler decodes them with the caller's encoding (ASCII by default);
    # latin-1 keeps every byte, which is what matters for judging names.
    return raw.decode("latin-1")


def _line_value(op: int, line: bytes) -> Any:
    if op == 0x49:  # INT
        if line == b"00":
            return False
        if line == b"01":
            return True
        try:
            return int(line)
        except ValueError:
            raise Malformed("INT argument is not a number") from None
    if op == 0x4C:  # LONG
        text = line[:-1] if line.endswith(b"L") else line
        try:
            return int(text)
        except ValueError:
            raise Malformed("LONG argument is not a number") from None
    if op == 0x46:  # FLOAT
        try:
            return float(line)
        except ValueError:
            raise Malformed("FLOAT argument is not a number") from None
    if op == 0x53:  # STRING
        if len(line) < 2 or line[0] != line[-1] or line[0] not in b"\"'":
            raise Malformed("STRING argument is not quoted")
        try:
            with warnings.catch_warnings():  # a crafted escape must not print warnings
                warnings.simplefilter("ignore")
                raw: bytes = codecs.escape_decode(line[1:-1])[0]
        except ValueError:
            raise Malformed("STRING argument has a bad escape") from None
        return _decode_str8(raw) if len(raw) <= KEEP_STR else _LONG_STR
    if op == 0x56:  # UNICODE
        try:
            decoded = str(line, "raw-unicode-escape")
        except UnicodeDecodeError:
            raise Malformed("UNICODE argument has a bad escape") from None
        return decoded if len(decoded) <= KEEP_STR else _LONG_STR
    return line.decode("ascii", "replace")  # GET / PUT index, PERSID


def _counted_value(kind: str, raw: bytes) -> Any:
    if kind == "utf8":
        # The unpickler refuses bad UTF-8 here; keeping the walk going (lenient) can only add findings.
        return raw.decode("utf-8", "surrogateescape")
    if kind == "str8":
        return _decode_str8(raw)
    if kind == "long":
        return int.from_bytes(raw, "little", signed=True)
    return raw


def _name_line(line: bytes) -> str:
    # The unpickler refuses a name that is not UTF-8; judging it anyway (as latin-1) only adds findings.
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("latin-1")


class StreamResult:
    """How one pickle stream ended."""

    __slots__ = ("bad_proto", "detail", "effects", "globals_seen", "start", "status", "value", "vm")

    def __init__(  # noqa: PLR0917 - a plain record
        self, status: str, value: Any, detail: str, effects: int, start: int, globals_seen: list[str]
    ) -> None:
        #: ``stop`` (ended at STOP), ``malformed``, ``truncated`` (input ended first) or ``empty``.
        self.status = status
        self.value = value
        self.detail = detail
        self.effects = effects
        self.start = start
        self.globals_seen = globals_seen
        self.bad_proto: tuple[int, int] | None = None
        self.vm: PickleVM | None = None


def walk_stream(r: Reader, scope: Scope, *, lenient: bool = False, sure: bool = True) -> Pull:
    vm = PickleVM(scope)
    vm.lenient = lenient
    vm.sure = sure
    res = yield from _walk_stream(r, scope, vm)
    res.bad_proto = vm.bad_proto
    res.vm = vm
    return res


def _walk_stream(r: Reader, scope: Scope, vm: PickleVM) -> Pull:
    """Walk one pickle stream from the reader's position to its STOP (or the point where it breaks).

    Returns a :class:`StreamResult`.  Findings about imports and calls go to ``scope`` as they are met;
    whether a break is a finding is the caller's choice (a guessed pickle that breaks before doing
    anything was no pickle).
    """
    start = r.offset
    first = True
    while True:
        if r.pos >= len(r.buf):
            yield from r.fill(1)
            if r.pos >= len(r.buf):
                return StreamResult("empty" if first else "truncated", None, "the input ends inside the stream",
                                    vm.effects, start, vm.globals_seen)
        first = False
        vm.offset = r.base + r.pos
        op = r.buf[r.pos]
        r.pos += 1
        try:
            if op in _NO_ARG:
                arg: Any = None
            elif op in _FIXED:
                size, fmt = _FIXED[op]
                if len(r.buf) - r.pos < size:
                    yield from r.fill(size)
                    if len(r.buf) - r.pos < size:
                        raise EOFError
                arg = struct.unpack_from(fmt, r.buf, r.pos)[0]
                r.pos += size
            elif op in _COUNTED:
                size, fmt, kind = _COUNTED[op]
                if len(r.buf) - r.pos < size:
                    yield from r.fill(size)
                    if len(r.buf) - r.pos < size:
                        raise EOFError
                n = struct.unpack_from(fmt, r.buf, r.pos)[0]
                r.pos += size
                if n < 0:
                    raise Malformed("negative length")
                if n <= KEEP_STR:
                    if len(r.buf) - r.pos < n:
                        yield from r.fill(n)
                        if len(r.buf) - r.pos < n:
                            raise EOFError
                    arg = _counted_value(kind, r.buf[r.pos:r.pos + n])
                    r.pos += n
                else:
                    got = yield from r.skip(n)
                    if got < n:
                        raise EOFError
                    arg = _LONG_BYTES if kind == "bytes" else (0 if kind == "long" else _LONG_STR)
            elif op in _ONE_LINE or op in _TWO_LINES:
                lines = []
                for _ in range(2 if op in _TWO_LINES else 1):
                    line = yield from _read_line(r)
                    if line is None:
                        raise EOFError
                    lines.append(line)
                if op in _TWO_LINES:
                    if any(len(x) > KEEP_STR * 16 for x in lines):
                        raise Malformed("global name too long")
                    arg = (_name_line(lines[0]), _name_line(lines[1]))
                elif op in (0x67, 0x70, 0x50):
                    arg = lines[0].decode("ascii", "replace") if len(lines[0]) <= KEEP_STR else "x"
                    arg = _line_value(op, lines[0]) if op != 0x50 else arg
                elif len(lines[0]) > MAX_LINE:
                    if op in (0x49, 0x4C, 0x46):
                        raise Malformed("number too long")
                    arg = _LONG_STR
                else:
                    arg = _line_value(op, lines[0])
            else:
                raise Malformed(f"unknown opcode {op:#04x}")
            if vm.execute(op, arg):
                return StreamResult("stop", vm.result, "", vm.effects, start, vm.globals_seen)
            if vm.joblib_array is not None:
                ok = yield from _joblib_payload(r, vm, scope)
                if not ok:
                    return StreamResult("stop", None, "", vm.effects, start, vm.globals_seen)
        except Malformed as exc:
            return StreamResult("malformed", None, str(exc), vm.effects, start, vm.globals_seen)
        except EOFError:
            return StreamResult("truncated", None, "the input ends inside the stream", vm.effects, start,
                                vm.globals_seen)


def _joblib_payload(r: Reader, vm: PickleVM, scope: Scope) -> Pull:
    """The array that joblib's unpickler reads from the stream after BUILD of a NumpyArrayWrapper.

    Object arrays are a nested pickle stream (walked); other arrays are raw bytes after an optional
    alignment padding, skipped -- but also given to a guessing content scan, since a plain
    ``pickle.load`` of the same file would read those bytes as opcodes.  Returns ``False`` if the
    array's size is unknown (then the rest of the file cannot be placed, which is a finding).
    """
    size, has_objects, aligned = vm.joblib_array or (None, False, False)
    vm.joblib_array = None
    vm.stack.pop()
    if has_objects:
        nested = yield from walk_stream(r, scope)
        if nested.vm is not None:
            nested.vm.commit()
        if nested.status != "stop":
            raise Malformed(f"joblib object array: nested pickle {nested.status}")
        vm.push(Opaque("a joblib object array"))
        return True
    if size is None:
        scope.add(Severity.MEDIUM, "unresolved-data", "a joblib array whose size cannot be worked out from its "
                  "pickled shape and dtype: the rest of the file is not analysed", vm.offset)
        yield from r.drain()
        return False
    if aligned:
        pad = yield from r.read(1)
        if not pad:
            raise EOFError
        if (yield from r.skip(pad[0])) < pad[0]:
            raise EOFError
    guess = _hooks.member_scanner(scope.child(f"(joblib array at {r.offset})"))
    got = yield from r.skip(size, guess.feed)
    guess.finish()
    if got < size:
        raise EOFError
    vm.push(Opaque("a joblib array"))
    return True


def _read_line(r: Reader) -> Pull:
    """One newline-terminated line (without the newline); ``None`` at the end of the input.

    A line longer than :data:`MAX_LINE` is streamed past and returned as a marker of that length + 1.
    """
    searched = 0
    while True:
        i = r.buf.find(b"\n", r.pos + searched)
        if i >= 0:
            line = r.buf[r.pos:i]
            r.pos = i + 1
            return line
        searched = len(r.buf) - r.pos
        if searched > MAX_LINE:
            # Too long to keep: drop bytes up to the newline as they come.
            while True:
                i = r.buf.find(b"\n", r.pos)
                if i >= 0:
                    r.pos = i + 1
                    return b"x" * (MAX_LINE + 1)
                r.pos = len(r.buf)
                yield from r.fill(1)
                if r.pos >= len(r.buf):
                    return None
        yield from r.fill(searched + 1)
        if len(r.buf) - r.pos <= searched:
            return None


def looks_like_pickle(head: bytes) -> bool:
    """Whether ``head`` (the first bytes) could start a pickle: a PROTO opcode, or a text-protocol opcode."""
    if not head:
        return False
    return head[0] in _NO_ARG or head[0] in _FIXED or head[0] in _COUNTED or head[0] in _ONE_LINE \
        or head[0] in _TWO_LINES


def walk_sequence(r: Reader, scope: Scope, *, certain: bool, single: bool = False) -> Pull:
    """Walk every pickle stream from here on: the first, then any that follow it (concatenated pickles).

    ``certain``: the bytes are known to be a pickle (a PROTO opcode, an object .npy); otherwise a stream
    that breaks before importing or calling anything is taken for other data, not a finding.
    ``single``: only one stream is loaded from here (numpy object arrays); what follows is data.
    Legacy PyTorch files (magic number, protocol, sys_info, main pickle, storage keys, raw storages) are
    recognised by their first stream: five streams are walked, and the storages are skipped.

    After a stream that breaks, or data that is not a pickle, the walk looks for the next place a pickle
    could start (a PROTO opcode, a text GLOBAL/INST) and goes on from there as a guess: the strict
    unpickler stops at the break, but lenient readers (and other scanners) resynchronise, so a pickle
    hidden behind a broken one is still analysed.  Returns the number of streams walked.
    """
    count = 0
    legacy = False
    noted_trailing = False
    resyncing = False
    budget = RESYNC_BUDGET
    while True:
        head = yield from r.peek(2)
        if not head:
            break
        proto_here = head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5
        sure = (certain and count == 0 and not resyncing) or proto_here
        res = yield from walk_stream(r, scope, lenient=resyncing, sure=sure)
        vm = res.vm
        assert vm is not None
        # A guessed stream counts if it ends properly, calls something or imports a known gadget; one that
        # only broke after importing unknown names is taken for data (text files start like pickles).
        kept = sure or res.status == "stop" or (bool(vm.globals_seen) and (vm.calls > 0 or any(
            sev >= Severity.HIGH for sev, _ in vm.pending.values())))
        if kept:
            vm.commit()
            if res.bad_proto is not None and not proto_here:
                scope.add(Severity.LOW, "malformed-pickle", f"unsupported pickle protocol {res.bad_proto[0]} (the "
                          "unpickler refuses it; the stream was analysed anyway)", res.bad_proto[1])
        if res.status == "stop" and (sure or res.effects or not resyncing):
            count += 1
            resyncing = False
            if count == 1 and res.value == LEGACY_TORCH_MAGIC and not isinstance(res.value, bool):
                legacy = True
                scope.set_format("pytorch-legacy")
            if single or (legacy and count == 5):
                break
            continue
        if res.status == "empty":
            break
        if not kept or (not sure and res.effects == 0):
            if count == 0 and not resyncing:
                return 0  # it was not a pickle after all
            if not noted_trailing:
                noted_trailing = True
                scope.add(Severity.LOW, "trailing-data", "data that is not a pickle follows the last pickle "
                          "stream", res.start)
            if resyncing:
                # A guess at the break point found nothing: guess again right after it, as lenient readers
                # would, for a while; past that budget, jump to plausible starts only.
                budget -= r.offset - res.start
                if budget <= 0:
                    found = yield from _next_start(r)
                    if not found:
                        break
        elif res.status != "stop":
            what = "malformed" if res.status == "malformed" else "truncated"
            scope.add(Severity.LOW, f"{what}-pickle", f"pickle stream {count + 1} is {what}: {res.detail}; "
                      "the loader stops there, after running what came before", res.start)
            count += 1
        if res.status == "truncated":
            break
        resyncing = True
    # Whatever the unpickler never reaches is data to it (legacy storages, the rest of an .npy).
    yield from r.drain()
    return count


#: Where a pickle could start again after a broken one: a PROTO opcode, or a text-protocol GLOBAL / INST.
_RESYNC = re.compile(
    rb"\x80[\x02-\x05]"  # PROTO
    rb"|[ci][A-Za-z_][\w.]{0,256}\n[A-Za-z_][\w.]{0,256}\n"  # GLOBAL / INST
    rb"|\x8c[\x01-\xff][A-Za-z_][\w.]{0,254}(?:\x94|q.)?\x8c[\x01-\xff][A-Za-z_][\w.]{0,254}(?:\x94|q.)?\x93"
    rb"|X[\x01-\xff]\x00\x00\x00[A-Za-z_][\w.]{0,254}(?:\x94|q.)?X[\x01-\xff]\x00\x00\x00[A-Za-z_][\w.]{0,254}"
    rb"(?:\x94|q.)?\x93",  # two strings and STACK_GLOBAL
    re.DOTALL,
)
_RESYNC_WINDOW = 600


def _next_start(r: Reader) -> Pull:
    """Move to the next place a pickle could start (see :data:`_RESYNC`); ``False`` if there is none."""
    while True:
        if r.available < _RESYNC_WINDOW and not r.eof:
            yield from r.fill(_RESYNC_WINDOW)
        m = _RESYNC.search(r.buf, r.pos)
        if m is not None:
            r.pos = m.start()
            return True
        if r.eof:
            r.pos = len(r.buf)
            return False
        r.pos = max(r.pos, len(r.buf) - _RESYNC_WINDOW)  # a candidate may straddle the next chunk
        yield from r.fill(r.available + 1)

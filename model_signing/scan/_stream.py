"""Push-driven pull parsers: the plumbing that lets every format parser see each byte once.

A parser is a generator.  It yields requests and receives answers:

* ``yield None`` -- "give me the next chunk": it receives a non-empty bytes-like object, or ``b""`` at
  the end of the input.  The chunk may be a view of the caller's buffer, valid only until the next
  request: a parser keeps a copy of what it needs (:class:`Reader` does that).
* ``yield (n, sink)`` -- "pass the next ``n`` bytes to ``sink`` (or drop them if it is ``None``)
  without giving them to me": it receives how many bytes went by (less than ``n`` at the end of the
  input).  This is how tensor blobs stream past (into a CRC, a decompressor or a nested parser) without
  ever being buffered.

:class:`Driver` turns such a generator into an object with ``feed(chunk)`` and ``finish()``, which is
what callers (the file scanner, a zip member, the hashing pass) push bytes into.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeAlias

Sink: TypeAlias = Callable[[memoryview], None]
Request: TypeAlias = "tuple[int, Sink | None] | None"
Parser: TypeAlias = Generator[Request, Any, None]
Pull: TypeAlias = Generator[Request, Any, Any]

_EMPTY = memoryview(b"")
#: The least a :class:`Reader` copies out of a chunk at a time.
WINDOW = 64 * 1024


class Driver:
    """Feeds pushed chunks to a parser generator (see the module docstring)."""

    __slots__ = ("_gen", "_left", "_passed", "_req", "done")

    def __init__(self, gen: Parser) -> None:
        self._gen = gen
        self.done = False
        self._req: Request = None
        self._left = 0
        self._passed = 0
        self._advance(None, first=True)

    def _advance(self, value: Any, first: bool = False) -> None:
        try:
            req = next(self._gen) if first else self._gen.send(value)
        except StopIteration:
            self.done = True
            self._req = None
            return
        self._req = req
        if req is not None:
            self._left, self._passed = req[0], 0
            if self._left <= 0:  # nothing to pass: answer at once
                self._advance(0)

    @property
    def idle(self) -> bool:
        """Whether the parser wants no more of the input: it ended, or drops everything up to the end."""
        req = self._req
        return self.done or (req is not None and req[1] is None and self._left >= 1 << 60)

    def skip(self, n: int) -> None:
        """Account for the next ``n`` bytes of the input without their content; only while :attr:`idle`.

        An idle parser drops what it is given and learns only how many bytes went by, so skipping ``n``
        bytes leaves it in exactly the state feeding any ``n`` bytes would: the hashing pass uses this to
        hash the rest of a file elsewhere once its scanner needs no more of it.
        """
        while n > 0 and not self.done:
            req = self._req
            if req is None or req[1] is not None:
                raise RuntimeError("internal error: bytes skipped while the scanner still needs them")
            take = min(self._left, n)
            n -= take
            self._left -= take
            self._passed += take
            if self._left == 0:
                self._advance(self._passed)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Push the next chunk of the input (any size; it is not kept past this call)."""
        mv = data if isinstance(data, memoryview) else memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        while len(mv) and not self.done:
            req = self._req
            if req is None:
                self._advance(mv)
                return
            take = min(self._left, len(mv))
            sink = req[1]
            if sink is not None:
                sink(mv[:take])
            mv = mv[take:]
            self._left -= take
            self._passed += take
            if self._left == 0:
                self._advance(self._passed)

    def finish(self) -> None:
        """Signal the end of the input; the parser runs to its end."""
        guard = 0
        while not self.done:
            guard += 1
            if guard > 1_000_000:  # a parser that keeps asking after EOF is a bug, not a hang
                raise RuntimeError("scanner parser does not terminate at end of input")
            self._advance(b"" if self._req is None else self._passed)


class Reader:
    """A parser's own small buffer over the chunks it asks for, with the absolute stream position.

    Use it inside a parser generator: ``data = yield from r.read(n)``.  ``buf[pos:]`` is what was asked
    for and not yet consumed; behind it, ``_pend`` is the rest of the chunk last received, a view of the
    caller's buffer that is never kept across a request.  Copying only what a parser asks for (a window
    of at least :data:`WINDOW` bytes) and passing the rest of a chunk to ``skip`` as a view is what keeps
    a zip's tensor members from being copied just to read the next member's 30-byte header; memory stays
    bounded by the largest ``n`` plus one window.
    """

    __slots__ = ("_pend", "base", "buf", "eof", "pos")

    def __init__(self) -> None:
        self.buf = b""
        self.pos = 0
        #: Stream offset of ``buf[0]`` (the pending view starts at ``base + len(buf)``).
        self.base = 0
        #: The input has ended and nothing is pending: ``buf[pos:]`` is all that is left.
        self.eof = False
        self._pend: memoryview | None = None

    @property
    def offset(self) -> int:
        """The stream offset of the next unread byte."""
        return self.base + self.pos

    @property
    def available(self) -> int:
        """Bytes in ``buf`` not yet consumed (more may be pending: :meth:`fill` moves them in)."""
        return len(self.buf) - self.pos

    def fill(self, n: int) -> Pull:
        """Make at least ``n`` bytes available in ``buf`` (fewer only at the end of the input)."""
        while len(self.buf) - self.pos < n and not self.eof:
            pend = self._pend
            if pend is None:
                # Nothing of the caller's buffer is held here: asking for the next chunk is safe.
                chunk = yield None
                if not len(chunk):
                    self.eof = True
                    break
                pend = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
            take = max(n - (len(self.buf) - self.pos), WINDOW)
            self.base += self.pos
            rest = self.buf[self.pos:] if self.pos < len(self.buf) else b""
            # One copy of what is taken (join takes the view as it is).
            self.buf = b"".join((rest, pend[:take])) if rest else bytes(pend[:take])
            self.pos = 0
            self._pend = pend[take:] if take < len(pend) else None

    def read(self, n: int) -> Pull:
        """The next ``n`` bytes (fewer at the end of the input)."""
        if len(self.buf) - self.pos < n:
            yield from self.fill(n)
        out = self.buf[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def peek(self, n: int) -> Pull:
        """The next ``n`` bytes without consuming them (fewer at the end of the input)."""
        if len(self.buf) - self.pos < n:
            yield from self.fill(n)
        return self.buf[self.pos:self.pos + n]

    def skip(self, n: int, sink: Sink | None = None) -> Pull:
        """Pass the next ``n`` bytes to ``sink`` (or drop them) unbuffered; return how many went by."""
        avail = min(n, len(self.buf) - self.pos)
        if avail > 0:
            if sink is not None:
                sink(memoryview(self.buf)[self.pos:self.pos + avail])
            self.pos += avail
        rest = n - avail
        if rest <= 0 or self.eof:
            return avail
        # Drop the consumed buffer, so the bytes that stream by are counted in base.
        self.base += len(self.buf)
        self.buf, self.pos = b"", 0
        pend = self._pend
        if pend is not None:
            take = min(rest, len(pend))
            if sink is not None:
                sink(pend[:take])
            self.base += take
            rest -= take
            avail += take
            self._pend = pend[take:] if take < len(pend) else None
            if rest == 0:
                return avail
        got: int = yield (rest, sink)
        self.base += got
        if got < rest:
            self.eof = True
        return avail + got

    def drain(self, sink: Sink | None = None) -> Pull:
        """Pass everything up to the end of the input to ``sink``; return how many bytes went by."""
        total = 0
        while True:
            got = yield from self.skip(1 << 62, sink)
            total += got
            if self.eof or got == 0:
                return total

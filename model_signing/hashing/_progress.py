"""The progress bar: bytes hashed, on stderr, only when someone is watching."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType


class Progress:
    """A tqdm byte counter on stderr; a no-op when disabled.

    ``enabled=None`` means "only if stderr is a terminal", so logs and pipes stay clean.
    """

    def __init__(self, total: int, enabled: bool | None = None, desc: str = "hashing") -> None:
        self._total = total
        self._enabled = sys.stderr.isatty() if enabled is None else enabled
        self._desc = desc
        self._bar: object | None = None

    def start(self) -> Callable[[int], None]:
        """Show the bar and return the callback that advances it by a number of bytes."""
        if not self._enabled:
            return _ignore
        from tqdm import tqdm  # imported only when a bar is shown

        bar = tqdm(
            total=self._total, unit="B", unit_scale=True, unit_divisor=1024,
            desc=self._desc, file=sys.stderr, leave=False, dynamic_ncols=True,
        )
        self._bar = bar

        def advance(n: int) -> None:
            bar.update(n)

        return advance

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()  # type: ignore[attr-defined]


def _ignore(n: int) -> None:
    pass

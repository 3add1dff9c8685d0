"""Late-bound entry points that break the format <-> pickle recursion without an import cycle.

The pickle walker sometimes has to scan embedded content of any format (a joblib array that a plain
``pickle.load`` would read as opcodes), and the format dispatcher walks pickles: :mod:`._formats` sets
:data:`open_member` when it is imported, and :mod:`._pickle` calls it through here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: ``open_member(scope) -> ContentScanner`` (set by ``_formats``).
open_member: Callable[[Any], Any] | None = None


def member_scanner(scope: Any) -> Any:
    """A content scanner for embedded bytes (the format dispatcher's ``open_member``)."""
    if open_member is None:  # imported standalone: load the dispatcher, which registers itself
        import importlib

        importlib.import_module("model_signing.scan._formats")
    assert open_member is not None
    return open_member(scope)

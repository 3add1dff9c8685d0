"""Strict JSON for signed documents: UTF-8, no duplicate keys, no NaN/Infinity.

Two JSON parsers can disagree on which of two duplicate keys wins, and ``NaN``/``Infinity`` are not JSON;
a document whose meaning depends on the parser must never be trusted.  Bundles and statements both parse
through :func:`loads`; each caller turns :class:`StrictJSONError` into its own error class and wording.
"""

from __future__ import annotations

import json
from typing import Any


class StrictJSONError(ValueError):
    """Why the bytes are not strict JSON (``reason``: a phrase to put after the document's name)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def loads(raw: bytes) -> Any:
    """Parse ``raw`` as strict JSON; raise :class:`StrictJSONError` with a reason a user can act on."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise StrictJSONError("is not UTF-8 JSON") from None
    if not text.strip():
        raise StrictJSONError("is empty")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError(f"repeats the JSON key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise StrictJSONError(f"contains the non-JSON constant {name}")

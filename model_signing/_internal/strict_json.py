"""Strict JSON for signed documents: UTF-8, no duplicate keys, no NaN/Infinity.

Two JSON parsers can disagree on which of two duplicate keys wins, and ``NaN``/``Infinity`` are not JSON;
a document whose meaning depends on the parser must never be trusted.  Bundles and statements both parse
through :func:`loads`; each caller turns :class:`StrictJSONError` into its own error class and wording.

Nesting is bounded too (:func:`check_depth`, also used for trust configs that sigstore parses): Python's
parser, and every recursive walk after it, would otherwise end a ``[[[[...`` document in a RecursionError.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

#: Deepest nesting of arrays and objects accepted.  Bundles, statements and trust configs nest fewer than
#: ten levels; 100 leaves room for extensions while staying far below Python's recursion limit.
MAX_DEPTH = 100

# A JSON string (its contents may hold brackets), written so the regex engine runs through it in one go.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


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
    check_depth(text)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:  # pragma: no cover - check_depth keeps documents far from the limit
        raise StrictJSONError(f"nests arrays or objects deeper than {MAX_DEPTH} levels") from None


def check_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`StrictJSONError` if the JSON ``text`` nests arrays/objects deeper than ``limit``.

    A scan of the text, not a parse (so it runs before any parser can recurse): strings are dropped,
    then the depth is the running sum over the remaining brackets.  It is linear and runs in C.
    """
    if text.count("[") + text.count("{") <= limit:
        return
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit:
        raise StrictJSONError(f"nests arrays or objects deeper than {limit} levels")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError(f"repeats the JSON key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise StrictJSONError(f"contains the non-JSON constant {name}")

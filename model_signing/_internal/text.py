"""Small helpers for the wording of messages (shared by the library's errors and the CLI's reports)."""

from __future__ import annotations


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``count`` and ``noun`` in the right number: ``1 resource``, ``2 resources``, ``0 resources``."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"

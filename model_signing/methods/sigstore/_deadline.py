"""The request the Sigstore helper is running: its timeout, and whom to tell about each URL it contacts.

The helper runs one request at a time; :mod:`._ops` sets this around each one, and the messages of
:mod:`._trust` read it (a module of its own so that neither of those imports the other for it).
"""

from __future__ import annotations

from collections.abc import Callable

from model_signing.methods.sigstore._wire import DEFAULT_TIMEOUT


def _ignore(url: str) -> None:
    return None


class _Request:
    """The one request in flight."""

    def __init__(self) -> None:
        self.timeout = DEFAULT_TIMEOUT
        self.contacting: Callable[[str], None] = _ignore

    def reset(self) -> None:
        """Back to no request: the default timeout, nobody to tell."""
        self.timeout, self.contacting = DEFAULT_TIMEOUT, _ignore


current = _Request()


def request_timeout() -> float:
    """The timeout of the request being run, in seconds (for messages)."""
    return current.timeout

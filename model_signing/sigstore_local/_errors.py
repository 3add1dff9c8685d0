"""The one error the services raise: a request they refuse, with the HTTP status to answer."""

from __future__ import annotations


class RequestRejected(Exception):
    """A client request the local services refuse; ``status`` is the HTTP status code to return."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")

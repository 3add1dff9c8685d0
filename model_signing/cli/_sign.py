"""CLI: `sign` commands (placeholder until implemented)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `sign` command(s) to the app."""

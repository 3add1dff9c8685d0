"""CLI: `digest` (placeholder until implemented)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `digest` command to the app."""

    @app.command()
    def digest(path: str) -> None:
        """Print the root digest of a model."""
        from model_signing import hash_model

        print(hash_model(path).root_digest().hex())

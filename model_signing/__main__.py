"""``python -m model_signing``."""

from model_signing.cli import run

run()

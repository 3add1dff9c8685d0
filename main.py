"""Entry point: ``python main.py sign|verify|digest ...`` (same CLI as the installed console script)."""

from model_signing.cli import run

if __name__ == "__main__":
    run()

"""The peer, ``model-signing==1.1.1`` (sigstore/model-transparency), in a virtual environment of its own.

Its import name is also ``model_signing``, so it can never share an interpreter with this project: tests and
benchmarks drive it by subprocess.  The pins (with hashes, ``pyOpenSSL`` included because the peer imports it
without declaring it) are in ``install/peer-requirements.txt``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "install" / "peer-requirements.txt"
DEFAULT_VENV = ROOT / ".venv-peer"


def ensure_peer_venv(path: Path | None = None) -> Path:
    """Create (or reuse) the peer's venv and return its python executable."""
    path = Path(os.environ.get("PEER_VENV", path or DEFAULT_VENV))
    python = path / "bin" / "python"
    stamp = path / ".installed"
    wanted = REQUIREMENTS.read_text()
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return python
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--require-hashes",
         # fully pinned file; --no-deps keeps the stock pip of a new venv from resolving extras it would refuse
         "--no-deps", "-r", str(REQUIREMENTS)],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def peer_cli(python: Path) -> list[str]:
    """The command prefix that runs the peer's CLI (``model_signing`` in its venv)."""
    # -I: never let the current directory (this project, also named model_signing) shadow the peer.
    return [str(python), "-I", "-m", "model_signing"]


if __name__ == "__main__":
    print(ensure_peer_venv(Path(sys.argv[1]) if len(sys.argv) > 1 else None))

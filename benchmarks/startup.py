"""Start-up time of the CLI: ``main.py --help`` and a key sign of a tiny model, min and median of N runs.

Run: ``.venv/bin/python benchmarks/startup.py [--runs 20] [--compare OTHER_CHECKOUT]``.  Each run is a fresh
interpreter (what a user waits for), so this measures imports and start-up, not hashing.  ``--compare``
times another checkout of the project too (e.g. a ``git worktree`` of an earlier commit), interleaving
the runs of both so that the machine's load affects them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent


def _once(cmd: list[str], root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}  # that checkout's package, whatever the venv has installed
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root, env=env)
    return time.perf_counter() - t0


def main() -> None:
    """Print min and median wall time of ``--help`` and of ``sign key`` on a one-file model."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--compare", type=Path, help="another checkout of the project to time alike")
    args = parser.parse_args()
    roots = {"this": ROOT} | ({"other": args.compare.resolve()} if args.compare else {})
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp, "model")
        model.mkdir()
        (model / "weights.bin").write_bytes(b"x" * 4096)
        key = Path(tmp, "key.pem")
        key.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        sig = Path(tmp, "model.sig")
        cases = {
            "--help": ["--help"],
            "sign key (tiny model)": [
                "sign", "key", str(model), "--private-key", str(key), "--signature", str(sig), "--overwrite",
            ],
        }
        print(f"{'command':<24} {'checkout':<10} {'min s':>8} {'median s':>9}  ({args.runs} runs each)")
        for name, argv in cases.items():
            times: dict[str, list[float]] = {label: [] for label in roots}
            for _ in range(args.runs):
                for label, root in roots.items():
                    times[label].append(_once([sys.executable, str(root / "main.py"), *argv], root))
            for label, root in roots.items():
                t = times[label]
                print(f"{name:<24} {label:<10} {min(t):8.3f} {statistics.median(t):9.3f}  {root}")


if __name__ == "__main__":
    main()

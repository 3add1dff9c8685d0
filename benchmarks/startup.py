"""Start-up time of the CLI: ``main.py --help`` and a key sign of a tiny model, min and median of N runs.

Run: ``.venv/bin/python benchmarks/startup.py [--runs 20]``.  Each run is a fresh interpreter (what a user
waits for), so this measures imports and start-up, not hashing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent


def _time(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    """Print min and median wall time of ``--help`` and of ``sign key`` on a one-file model."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
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
        main_py = str(ROOT / "main.py")
        cases = {
            "--help": [sys.executable, main_py, "--help"],
            "sign key (tiny model)": [
                sys.executable, main_py, "sign", "key", str(model), "--private-key", str(key),
                "--signature", str(sig), "--overwrite",
            ],
        }
        print(f"{'command':<24} {'min s':>8} {'median s':>9}  ({args.runs} runs each)")
        for name, cmd in cases.items():
            times = _time(cmd, args.runs)
            print(f"{name:<24} {min(times):8.3f} {statistics.median(times):9.3f}")


if __name__ == "__main__":
    main()

"""`make demo`: build a small sample model and run the main job on it.

For now the main job is hashing (the digest manifest); later issues widen this to sign + verify against the
project's local Sigstore instance.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_sample_model(root: Path) -> Path:
    """A tiny Hugging-Face-like layout (deterministic content)."""
    model = root / "sample-model"
    (model / "tokenizer").mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text('{"model_type": "demo", "hidden_size": 64}\n')
    (model / "tokenizer" / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(1000)))
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(model / "model.safetensors", "wb") as f:
        for _ in range(8):
            f.write(block)
    return model


def main() -> int:
    out = ROOT / "out" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    model = make_sample_model(out)
    print(f"sample model: {model}", flush=True)
    cmd = [sys.executable, str(ROOT / "main.py"), "digest", str(model), "--json"]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, env={**os.environ})


if __name__ == "__main__":
    sys.exit(main())

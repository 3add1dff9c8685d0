"""`make demo`: sign a small sample model keyless and verify it, with no browser and no internet.

It starts the project's local Sigstore instance (OIDC issuer, Fulcio CA, Rekor log, timestamp authority on
127.0.0.1), mints an identity token for a demo identity, and runs the CLI exactly as a user would:
``digest``, ``sign`` (keyless, the default method) and ``verify``; then shows that a tampered model fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout even when the package is not installed
IDENTITY = "demo@example.com"


def make_sample_model(root: Path) -> Path:
    """A tiny Hugging-Face-like layout with deterministic content."""
    model = root / "sample-model"
    if model.exists():
        shutil.rmtree(model)
    (model / "tokenizer").mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "demo", "hidden_size": 64}\n')
    (model / "tokenizer" / "vocab.txt").write_text("".join(f"tok{i}\n" for i in range(1000)))
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(model / "model.safetensors", "wb") as f:
        for _ in range(8):
            f.write(block)
    return model


def run(*args: str, expect: int = 0) -> None:
    """Run the CLI, echoing the command; stop the demo if the exit code is not the expected one."""
    cmd = [sys.executable, str(ROOT / "main.py"), *args]
    shown = " ".join(a if len(a) < 60 else a[:20] + "..." for a in args)
    print(f"\n$ python main.py {shown}", flush=True)
    code = subprocess.call(cmd)
    if code != expect:
        sys.exit(f"demo failed: exit code {code}, expected {expect}")


def main() -> int:
    from model_signing.sigstore_local import LocalSigstore

    out = ROOT / "out" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    model = make_sample_model(out)
    signature = out / "sample-model.sig"
    with LocalSigstore(out / "sigstore-state", port=0) as inst:
        print(f"local Sigstore instance: {inst.base_url} (trust config {inst.trust_config_path})")
        token = inst.mint_token(IDENTITY)
        tc = str(inst.trust_config_path)
        run("digest", str(model), "--json")
        run("sign", str(model), "--trust-config", tc, "--identity-token", token,
            "--signature", str(signature), "--overwrite")
        run("verify", str(model), "--trust-config", tc, "--identity", IDENTITY,
            "--identity-provider", inst.oidc_issuer, "--signature", str(signature))
        with open(model / "config.json", "a") as f:
            f.write(" ")
        print("\n(config.json modified: verification must now fail with exit code 3)")
        run("verify", str(model), "--trust-config", tc, "--identity", IDENTITY,
            "--identity-provider", inst.oidc_issuer, "--signature", str(signature), expect=3)
    print("\ndemo ok: signed keyless, verified, and a tampered model was caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())

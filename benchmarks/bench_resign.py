"""Incremental re-signing benchmark: re-sign after changing 1 of the 20 files of the falcon-like layout.

    python -m benchmarks.bench_resign [--factor 0.25] [--repeats 5] [--change model-00003-of-00008.safetensors]

For every repeat, alternating (so a noisy neighbour hurts both alike), warm page cache:

(a) ``full``: ``sign key MODEL --no-digest-cache`` (every byte hashed), a fresh CLI process;
(b) then 1 MiB in the middle of one file (at most its second half) is rewritten, same size, and
    ``sign key MODEL --digest-cache DB`` re-signs: 19 files come from the cache, the changed one is hashed.

The re-signed manifest is checked: the changed file's digest against ``hashlib.sha256`` of its bytes,
every other digest against the full run's.  Reported: both times and their ratio (target <= 0.3), min and
median over repeats.  The cache is primed once (a signed run, then the cache's settle time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import families

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


def _cli(*args: str | Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed, proc.stdout


def _digests(out: str) -> dict[str, str]:
    doc = json.loads(out)
    return {r["name"]: r["digest"] for r in doc["resources"]}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=float, default=0.25, help="size factor of the layout (1.0 = 28.9 GB)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-dir", default="/tmp/modelseal-bench-resign")
    ap.add_argument("--change", default="model-00003-of-00008.safetensors", help="the file to change")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    model = families.generate(families.LAYOUTS["hf-falcon-7b-like"], data, args.factor)
    files = [p for p in model.rglob("*") if p.is_file() and p.name != ".gitattributes"]
    changed = model / args.change
    total = sum(p.stat().st_size for p in files)
    keys, db = data / "keys", data / "cache.sqlite3"
    if not (keys / "private.pem").exists():
        _cli("keygen", "--output", keys)
    db.unlink(missing_ok=True)
    sign = ("sign", "key", model, "--private-key", keys / "private.pem", "--overwrite", "-q", "--json")
    _cli(*sign, "--signature", data / "prime.sig", "--digest-cache", db)
    time.sleep(2.5)  # past the cache's settle time: files changed just before hashing are never stored

    full_t: list[float] = []
    re_t: list[float] = []
    for i in range(args.repeats):
        t_full, out = _cli(*sign, "--signature", data / "full.sig", "--no-digest-cache")
        before = _digests(out)
        with changed.open("r+b") as f:  # same size, new bytes in the middle (1 MiB, or the second half)
            size = changed.stat().st_size
            f.seek(size // 2)
            f.write(os.urandom(min(MiB, size - size // 2)))
        t_re, out = _cli(*sign, "--signature", data / "re.sig", "--digest-cache", db)
        after = _digests(out)
        want = dict(before, **{args.change: _sha256(changed)})
        if after != want:
            bad = sorted(k for k in want if after.get(k) != want[k])
            raise SystemExit(f"repeat {i}: re-signed digests differ from the expected ones: {bad}")
        full_t.append(t_full)
        re_t.append(t_re)
        print(f"repeat {i}: full {t_full:.3f} s, re-sign {t_re:.3f} s, ratio {t_re / t_full:.3f}", file=sys.stderr)

    ratios = [r / f for r, f in zip(re_t, full_t, strict=True)]
    figures = {
        "layout": f"hf-falcon-7b-like x{args.factor:g}", "files": len(files), "bytes": total,
        "changed": args.change, "changed_bytes": changed.stat().st_size, "repeats": args.repeats,
        "full_s": {"min": min(full_t), "median": statistics.median(full_t)},
        "resign_s": {"min": min(re_t), "median": statistics.median(re_t)},
        "ratio": {"min": min(ratios), "median": statistics.median(ratios)},
        "digest_checked": "changed file vs hashlib.sha256; the other 19 vs the full sign",
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

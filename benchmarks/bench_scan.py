"""Scan benchmark: ``model_signing.scan`` vs picklescan on the same files, warm page cache, one run.

    python -m benchmarks.bench_scan [--repeats 5] [--data-dir DIR] [--size-mb 512] [--cases NAME ...]

Cases (created once under the data directory and reused):

* ``torch-zip`` / ``torch-legacy``: a state_dict of random float32 tensors (``--size-mb`` in total) saved with
  the installed torch, in the zip format (every member stored, data descriptors) and the legacy format;
* ``pickles``: 2,000 small plain-data pickles (files/s matters there);
* ``hf-minilm``, ``hub-tinynet``, ``onnx-resnet50``: the harness's real models (benchmarks/harness/realmodels.py).

Both tools run in this process, alternating per repeat; times are wall-clock of one scan of the case.  The
table gives min and median over repeats, GB/s (1e9 bytes/s, from the min, over the bytes of the case's files)
and files/s.  picklescan picks files by extension and skips the rest (safetensors, ONNX), so on the real
model directories it reads fewer bytes than it is credited with here: the rate is per case, the same
denominator for both, and says how long a user waits for a verdict on that model.

The two tools do different work on a zip checkpoint: picklescan seeks to the members the central directory
names and reads only their pickles; this scanner reads every byte once, in order (so that it can run inside
the hashing pass, which reads them anyway), walks the local headers, finds torch's data descriptors and
computes the CRC of every stored member.  Its standalone figure on ``torch-zip`` is that cost.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GB = 1_000_000_000


def _tree_bytes(path: Path) -> tuple[int, int]:
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def _make_torch(root: Path, size_mb: int) -> None:
    import torch

    torch.manual_seed(0)
    per = 4 * 1024 * 1024  # 16 MB tensors
    count = max(1, size_mb * 1024 * 1024 // (per * 4))
    state = {f"layer{i}.weight": torch.randn(per) for i in range(count)}
    state["bias"] = torch.zeros(10)
    torch.save(state, root / "torch-zip.pt")
    torch.save(state, root / "torch-legacy.pt", _use_new_zipfile_serialization=False)


def _make_pickles(root: Path) -> None:
    d = root / "pickles"
    d.mkdir(exist_ok=True)
    for i in range(2000):
        value = {"id": i, "name": f"item{i}", "values": list(range(i % 50)), "blob": b"x" * (i % 300)}
        (d / f"p{i}.pkl").write_bytes(pickle.dumps(value, protocol=i % 6))


def prepare(data_dir: Path, size_mb: int, cases: list[str]) -> dict[str, Path]:
    """Create (once) and return the path of every case."""
    from benchmarks.harness import realmodels

    data_dir.mkdir(parents=True, exist_ok=True)
    stamp = data_dir / f".torch-{size_mb}mb"
    if ({"torch-zip", "torch-legacy"} & set(cases)) and not stamp.exists():
        _make_torch(data_dir, size_mb)
        stamp.write_text("ok\n")
    if "pickles" in cases and not (data_dir / "pickles" / "p1999.pkl").exists():
        _make_pickles(data_dir)
    paths = {"torch-zip": data_dir / "torch-zip.pt", "torch-legacy": data_dir / "torch-legacy.pt",
             "pickles": data_dir / "pickles"}
    builders: dict[str, Callable[[Path], Path]] = {
        "hf-minilm": realmodels.build_minilm, "hub-tinynet": realmodels.build_tinynet,
        "onnx-resnet50": realmodels.build_onnx_resnet50,
    }
    for name, build in builders.items():
        if name in cases:
            target = data_dir / name
            done = data_dir / f".{name}"
            if done.exists():
                paths[name] = Path(done.read_text().strip())
            else:
                paths[name] = build(target)
                done.write_text(str(paths[name]))
    return {c: paths[c] for c in cases}


def run_ours(path: Path) -> int:
    from model_signing.scan import Severity, scan_path

    report = scan_path(path)
    return sum(1 for f in report.findings if f.severity >= Severity.MEDIUM)


def run_picklescan(path: Path) -> int:
    from picklescan import scanner  # type: ignore[import-untyped]

    logging.getLogger("picklescan").setLevel(logging.CRITICAL)
    sink = io.StringIO()
    old, sys.stdout = sys.stdout, sink  # picklescan prints nothing here, but be sure
    try:
        result = scanner.scan_directory_path(path) if path.is_dir() else scanner.scan_file_path(path)
    finally:
        sys.stdout = old
    return int(result.issues_count)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "modelseal-bench-scan")
    ap.add_argument("--size-mb", type=int, default=512, help="total tensor size of the torch cases")
    all_cases = ["torch-zip", "torch-legacy", "pickles", "hf-minilm", "hub-tinynet", "onnx-resnet50"]
    ap.add_argument("--cases", nargs="+", choices=all_cases, default=all_cases)
    args = ap.parse_args(argv)
    try:
        import picklescan  # noqa: F401 - fail early with the install hint
    except ImportError:
        print("picklescan is not installed: pip install --require-hashes -r install/requirements-dev.txt",
              file=sys.stderr)
        return 1
    paths = prepare(args.data_dir, args.size_mb, args.cases)
    tools: dict[str, Callable[[Path], int]] = {"modelseal": run_ours, "picklescan": run_picklescan}
    rows = []
    for case, path in paths.items():
        size, files = _tree_bytes(path)
        times: dict[str, list[float]] = {t: [] for t in tools}
        verdict: dict[str, int] = {}
        for _ in range(args.repeats):
            for tool, fn in tools.items():
                t0 = time.perf_counter()
                verdict[tool] = fn(path)
                times[tool].append(time.perf_counter() - t0)
        for tool in tools:
            best, med = min(times[tool]), statistics.median(times[tool])
            rows.append((case, tool, size, files, best, med, size / best / GB, files / best, verdict[tool]))
    header = ("case", "tool", "bytes", "files", "min s", "median s", "GB/s", "files/s", "flagged")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for case, tool, size, files, best, med, gbs, fps, flagged in rows:
        print(f"{case} | {tool} | {size:,} | {files} | {best:.3f} | {med:.3f} | {gbs:.2f} | {fps:,.0f} | {flagged}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

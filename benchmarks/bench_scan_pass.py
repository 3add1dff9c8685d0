"""Scan-in-the-hashing-pass benchmark: what ``sign --scan`` / ``verify --scan`` add to hashing alone.

    python -m benchmarks.bench_scan_pass [--repeats 7] [--data-dir DIR] [--hf-factor 0.05] [--hub-factor 1]

Cases: the harness's Hugging Face layout (``hf-falcon-7b-like``: 2 PyTorch zip checkpoints + 8 safetensors
shards + tokenizer and code, scaled by ``--hf-factor``) and its PyTorch Hub layout (``torchhub-yolop-like``:
a ``.pth`` zip checkpoint, ONNX exports, code, images, a ``.git`` directory that is never hashed), each in
``files`` and ``shards`` serialization, sha256, default workers (the CPU count), warm page cache.

Each repeat runs, alternating, ``hashing.digest_model(PATH, config)`` and the same with
``scan=scan.make_config()``, each in a fresh ``python -I`` (imports count, as a user sees them:
the scanner's own import is part of the overhead).  Times are wall-clock from spawn to exit, and CPU
seconds of the run and its workers; the table gives min and median per case and the overhead of the
scan (min over min, median over median).

A second table measures the work alone, in this process with one worker (``max_workers=1``), as CPU
seconds (``time.process_time``), alternating the two: on a shared machine this is the steadiest figure
(neighbours change wall-clock time, much less the CPU a computation needs).  The scanner's import, which
the first table includes, is measured on its own (CPU of ``import model_signing.scan`` in a fresh
interpreter that has imported the hashing modules).

A third table is what a user runs: ``main.py verify key MODEL`` with and without ``--scan`` (a key
signature made once per case, with the same serialization), whole command, alternating, wall-clock and
CPU seconds as in the first table.  Its fixed costs (the CLI, the signature check) are the command's own,
so its overhead is the one a user sees.

``--single-file-gb G`` (default 0: off) adds the case where ``shards`` and a scan meet: one safetensors file
of G GB (written by hand: an 8-byte length, the JSON header, 64 MiB tensors), sharded at 64 MiB.  A scanner
needs a file's bytes in order, so a file is read by one worker while its scanner needs it; a safetensors file
is handed to every worker after its header.  The table gives ``digest_model`` with and without the scan, whole
process, as the first table does.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SNIPPET = """
import sys
from model_signing.hashing import HashingConfig, digest_model
path, method, scan = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
config = HashingConfig(method=method, progress=False)
if scan:
    from model_signing.scan import make_config
    result = digest_model(path, config, scan=make_config())
    assert result.scan is not None and result.scan.files_scanned > 0
    print(result.scan.files_scanned, sum(1 for f in result.scan.findings if f.severity >= 2))
else:
    digest_model(path, config)
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(path: Path, method: str, scan: bool) -> tuple[float, float, str]:
    """Wall-clock and CPU seconds (the run and its hashing workers, which it reaps) of one run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpu0, t0 = _cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + SNIPPET,
                           str(path), method, "1" if scan else "0"],
                          env=env, capture_output=True, text=True, check=False)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark run failed: {proc.stderr.strip()}")
    return elapsed, cpu, proc.stdout.strip()


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and ".git" not in p.relative_to(path).parts)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.harness import families

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("TMPDIR", "/tmp")) / "modelseal-bench-scan-pass")
    ap.add_argument("--hf-factor", type=float, default=0.05, help="size factor of the HF layout (1.0 = 28.9 GB)")
    ap.add_argument("--hub-factor", type=float, default=1.0, help="size factor of the PyTorch Hub layout")
    ap.add_argument("--methods", nargs="+", default=["files", "shards"], choices=["files", "shards"])
    ap.add_argument("--single-file-gb", type=float, default=0.0,
                    help="also time one safetensors file of this size in shards of 64 MiB (0: off)")
    args = ap.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    layouts = [("hf-falcon-7b-like", args.hf_factor), ("torchhub-yolop-like", args.hub_factor)]
    rows = []
    for name, factor in layouts:
        path = families.generate(families.LAYOUTS[name], args.data_dir, factor)
        size = _tree_bytes(path)
        for method in args.methods:
            _run(path, method, False)  # warm the page cache (and the scan's imports) before timing
            _run(path, method, True)
            plain: list[tuple[float, float]] = []
            scanned: list[tuple[float, float]] = []
            verdict = ""
            for _ in range(args.repeats):
                plain.append(_run(path, method, False)[:2])
                elapsed, cpu, verdict = _run(path, method, True)
                scanned.append((elapsed, cpu))
            rows.append((f"{name}-x{factor:g}", method, size, plain, scanned, verdict))
    inprocess = _in_process(layouts, args)
    cli_rows = _cli(layouts, args)
    # CPU time (user + system of the run and its workers) is reported beside wall-clock: on a shared machine
    # it is the steadier measure of the work the scan adds.
    header = ("case", "serialization", "bytes", "hash min/median s", "hash+scan min/median s",
              "wall overhead min/median", "hash CPU min/median s", "hash+scan CPU min/median s",
              "CPU overhead min/median", "files scanned, unsafe")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))

    def pct(a: float, b: float) -> str:
        return f"{(b / a - 1) * 100:+.1f} %"

    for case, method, size, plain, scanned, verdict in rows:
        cells = [case, method, f"{size:,}"]
        stats = {}
        for col in (0, 1):
            for label, runs in (("plain", plain), ("scan", scanned)):
                values = [r[col] for r in runs]
                stats[col, label] = (min(values), statistics.median(values))
        for col in (0, 1):
            (pmin, pmed), (smin, smed) = stats[col, "plain"], stats[col, "scan"]
            cells += [f"{pmin:.3f} / {pmed:.3f}", f"{smin:.3f} / {smed:.3f}", f"{pct(pmin, smin)} / {pct(pmed, smed)}"]
        print(" | ".join([*cells, verdict]))
    print()
    print("in process, one worker, CPU seconds (the work alone):")
    header2 = ("case", "serialization", "hash CPU min/median s", "hash+scan CPU min/median s", "overhead min/median")
    print(" | ".join(header2))
    print(" | ".join("---" for _ in header2))
    for case, method, plain_cpu, scan_cpu in inprocess:
        pmin, pmed = min(plain_cpu), statistics.median(plain_cpu)
        smin, smed = min(scan_cpu), statistics.median(scan_cpu)
        print(f"{case} | {method} | {pmin:.3f} / {pmed:.3f} | {smin:.3f} / {smed:.3f} | "
              f"{pct(pmin, smin)} / {pct(pmed, smed)}")
    print()
    print("the command a user runs, main.py verify key MODEL [--scan] (whole command):")
    header3 = ("case", "serialization", "verify min/median s", "verify --scan min/median s",
               "wall overhead min/median", "CPU min/median s", "--scan CPU min/median s", "CPU overhead min/median")
    print(" | ".join(header3))
    print(" | ".join("---" for _ in header3))
    for case, method, plain, scanned in cli_rows:
        cells = [case, method]
        for col in (0, 1):
            pv, sv = [r[col] for r in plain], [r[col] for r in scanned]
            pmin, pmed, smin, smed = min(pv), statistics.median(pv), min(sv), statistics.median(sv)
            cells += [f"{pmin:.3f} / {pmed:.3f}", f"{smin:.3f} / {smed:.3f}", f"{pct(pmin, smin)} / {pct(pmed, smed)}"]
        print(" | ".join(cells))
    if args.single_file_gb > 0:
        print()
        single = _single_file(args)
        print(f"one {single[0]:,}-byte safetensors file, shards of 64 MiB, digest_model (whole process):")
        header4 = ("runs", "hash min/median s", "hash+scan min/median s", "wall overhead min/median",
                   "hash CPU min/median s", "hash+scan CPU min/median s", "CPU overhead min/median")
        print(" | ".join(header4))
        print(" | ".join("---" for _ in header4))
        cells = [str(len(single[1]))]
        for col in (0, 1):
            pv, sv = [r[col] for r in single[1]], [r[col] for r in single[2]]
            pmin, pmed, smin, smed = min(pv), statistics.median(pv), min(sv), statistics.median(sv)
            cells += [f"{pmin:.3f} / {pmed:.3f}", f"{smin:.3f} / {smed:.3f}", f"{pct(pmin, smin)} / {pct(pmed, smed)}"]
        print(" | ".join(cells))
    print()
    print(f"import model_signing.scan (after the hashing modules), CPU ms min/median: {_import_cost()}")
    return 0


def _in_process(layouts: list[tuple[str, float]], args: argparse.Namespace) -> list[tuple[str, str, list[float],
                                                                                           list[float]]]:
    from benchmarks.harness import families
    from model_signing.hashing import HashingConfig, digest_model
    from model_signing.scan import make_config

    out = []
    for name, factor in layouts:
        path = families.generate(families.LAYOUTS[name], args.data_dir, factor)
        for method in args.methods:
            config = HashingConfig(method=method, max_workers=1, progress=False)
            plain: list[float] = []
            scanned: list[float] = []
            for _ in range(args.repeats):
                t0 = time.process_time()
                digest_model(path, config)
                plain.append(time.process_time() - t0)
                t0 = time.process_time()
                digest_model(path, config, scan=make_config())
                scanned.append(time.process_time() - t0)
            out.append((f"{name}-x{factor:g}", method, plain, scanned))
    return out


def _cli_run(argv: list[str]) -> tuple[float, float]:
    cpu0, t0 = _cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *argv], capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}: {proc.stderr.strip()}")
    return elapsed, cpu


def _cli(layouts: list[tuple[str, float]], args: argparse.Namespace) -> list[tuple[str, str, list[tuple[float,
                                                                                                  float]],
                                                                              list[tuple[float, float]]]]:
    from benchmarks.harness import families

    keys = args.data_dir / "keys"
    if not (keys / "private.pem").exists():
        _cli_run(["keygen", "--output", str(keys), "--overwrite"])
    out = []
    for name, factor in layouts:
        path = families.generate(families.LAYOUTS[name], args.data_dir, factor)
        for method in args.methods:
            sig = args.data_dir / f"{path.name}-{method}.sig"
            _cli_run(["sign", "key", str(path), "--private-key", str(keys / "private.pem"), "--signature", str(sig),
                      "--overwrite", "--serialization", method, "--quiet", "--no-digest-cache"])
            verify = ["verify", "key", str(path), "--public-key", str(keys / "public.pem"), "--signature", str(sig)]
            _cli_run(verify)  # warm
            _cli_run([*verify, "--scan"])
            plain: list[tuple[float, float]] = []
            scanned: list[tuple[float, float]] = []
            for _ in range(args.repeats):
                plain.append(_cli_run(verify))
                scanned.append(_cli_run([*verify, "--scan"]))
            out.append((f"{name}-x{factor:g}", method, plain, scanned))
    return out


SINGLE_SNIPPET = """
import sys
from model_signing.hashing import HashingConfig, digest_model
path, scan = sys.argv[1], sys.argv[2] == "1"
config = HashingConfig(method="shards", shard_size=64 << 20, progress=False)
if scan:
    from model_signing.scan import make_config
    result = digest_model(path, config, scan=make_config())
    assert result.scan is not None and not result.scan.findings, result.scan
else:
    digest_model(path, config)
"""


def _write_safetensors(path: Path, size: int) -> None:
    """A well-formed safetensors file of about ``size`` bytes: float32 tensors of 64 MiB, random bytes."""
    import json

    tensor = 64 << 20
    count = max(1, size // tensor)
    header = {f"layer.{i}.weight": {"dtype": "F32", "shape": [tensor // 4], "data_offsets": [i * tensor,
                                                                                          (i + 1) * tensor]}
              for i in range(count)}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for _ in range(count * tensor // len(block)):
            f.write(block)


def _single_file(args: argparse.Namespace) -> tuple[int, list[tuple[float, float]], list[tuple[float, float]]]:
    model = args.data_dir / f"single-safetensors-{args.single_file_gb:g}gb"
    target = model / "model.safetensors"
    if not target.exists():
        model.mkdir(parents=True, exist_ok=True)
        _write_safetensors(target, int(args.single_file_gb * 1e9))

    def run(scan: bool) -> tuple[float, float]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cpu0, t0 = _cpu(), time.perf_counter()
        proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                               + SINGLE_SNIPPET, str(model), "1" if scan else "0"],
                              env=env, capture_output=True, text=True, check=False)
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
        if proc.returncode != 0:
            raise SystemExit(f"benchmark run failed: {proc.stderr.strip()}")
        return elapsed, cpu

    run(False)
    run(True)
    plain, scanned = [], []
    for _ in range(args.repeats):
        plain.append(run(False))
        scanned.append(run(True))
    return target.stat().st_size, plain, scanned


def _import_cost(repeats: int = 9) -> str:
    code = (f"import time, sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "import model_signing.hashing, model_signing.hashing._pool, model_signing.hashing.walk, "
            "model_signing.hashing._progress, model_signing.results\n"
            "t = time.process_time(); import model_signing.scan; print(time.process_time() - t)")
    costs = [float(subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                                  check=True).stdout) * 1000 for _ in range(repeats)]
    return f"{min(costs):.1f} / {statistics.median(costs):.1f}"


if __name__ == "__main__":
    sys.exit(main())

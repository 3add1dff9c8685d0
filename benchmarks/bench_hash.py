"""Hashing benchmark: the machine's limit vs this engine vs the peer, on the same data, warm page cache.

    python -m benchmarks.bench_hash [--repeats 3] [--data-dir /work/bench-data] [--cases NAME ...]

For every case and every repeat, three runs alternate (so a noisy neighbour hurts all three alike):

(a) ``limit``: N=2 processes that only ``preadv`` into a reused 1 MiB buffer and hash -- the work split
    evenly up front, no other bookkeeping; run as a fresh ``python -I`` so interpreter start counts;
(b) ``engine``: ``model_signing.hash_model`` through the public API in a fresh subprocess (imports
    count, as a user sees them); its peak RSS is the larger of the process's own and its workers';
(c) ``peer``: ``model-signing==1.1.1`` through its Python API, in its own venv (``python -I``).

Times are wall-clock from spawn to exit.  The table gives min and median over repeats, GB/s (1e9 bytes
per second) from the min, the ratios engine/limit and engine-vs-peer (peer time / engine time, >1 means
the engine is faster) and peak RSS.  The data (4 x 1.5 GB, one 6 GB file, 2,000 x 64 KB) is created
once, with non-repeating pseudo-random content, and reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peer import ensure_peer_venv

ROOT = Path(__file__).resolve().parent.parent
GB = 1_000_000_000
MiB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    data: str  # sub-directory of the data dir (a model directory) or file name
    hash_type: str
    method: str  # engine serialization
    peer_method: str  # peer serialization (the peer's blake3 ignores shards anyway)
    limit_split: str  # how the limit splits work: "files", "halves" or "shards"
    target: str


CASES = {
    c.name: c
    for c in [
        Case("4x1.5GB-sha256-files", "four", "sha256", "files", "files", "files",
             ">=0.95 x limit, >= peer"),
        Case("6GB-sha256-shards", "six/big.bin", "sha256", "shards", "files", "shards",
             ">=0.95 x limit, >=1.8 x peer(files)"),
        Case("6GB-blake3-files", "six/big.bin", "blake3", "files", "files", "halves",
             ">=0.8 x limit"),
        Case("6GB-blake3-shards", "six/big.bin", "blake3", "shards", "files", "shards",
             "(info) >=0.8 x limit"),
        Case("2000x64KB-sha256-files", "small", "sha256", "files", "files", "files",
             ">=2.5 x peer"),
    ]
}


# --------------------------------------------------------------------------------------------- data

def _write_pseudo_random(path: Path, size: int, seed: int) -> None:
    """Non-repeating content, fast: a 16 MiB random block, each 1 MiB chunk stamped with its index."""
    rng_block = bytearray(hashlib.sha256(b"%d" % seed).digest() * (16 * MiB // 32))
    # Cheap scrambling so the block is not a 32-byte period: xor in os.urandom once.
    noise = os.urandom(len(rng_block))
    block = bytes(a ^ b for a, b in zip(rng_block[: 1 * MiB], noise[: 1 * MiB], strict=True)) + noise[1 * MiB :]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        written = 0
        chunk_no = 0
        while written < size:
            off = (chunk_no % 16) * MiB
            chunk = bytearray(block[off : off + MiB])
            chunk[:16] = (b"%016x" % (chunk_no ^ (seed << 40)))
            n = min(MiB, size - written)
            f.write(chunk[:n])
            written += n
            chunk_no += 1
    tmp.rename(path)


def ensure_data(data_dir: Path) -> None:
    """Create the benchmark data if absent (files of the right size are reused)."""
    specs: list[tuple[Path, int, int]] = []
    specs += [(data_dir / "four" / f"part-{i}.bin", 1_500_000_000, 10 + i) for i in range(4)]
    specs += [(data_dir / "six" / "big.bin", 6_000_000_000, 20)]
    specs += [(data_dir / "small" / f"d{i // 100:02d}" / f"f{i:04d}.bin", 64_000, 1000 + i) for i in range(2000)]
    for path, size, seed in specs:
        if path.exists() and path.stat().st_size == size:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if size >= MiB:
            print(f"creating {path} ({size / GB:.1f} GB)", file=sys.stderr, flush=True)
            _write_pseudo_random(path, size, seed)
        else:
            path.write_bytes(hashlib.shake_256(b"%d" % seed).digest(size))


def warm(paths: list[Path]) -> None:
    """Read everything once so every run sees a warm page cache."""
    buf = bytearray(8 * MiB)
    for p in paths:
        for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())):
            fd = os.open(f, os.O_RDONLY)
            try:
                off = 0
                while n := os.preadv(fd, [buf], off):
                    off += n
            finally:
                os.close(fd)


# ---------------------------------------------------------------------------------------- runners

# The limit: 2 forked processes, each handed its share of (path, start, end) ranges up front.
_LIMIT_CODE = textwrap.dedent(
    """
    import hashlib, os, sys, json
    spec = json.loads(sys.argv[1])
    kind, root, n, split = spec["hash"], spec["root"], spec["workers"], spec["split"]
    if os.path.isfile(root):
        files = [root]
    else:
        files = []
        stack = [root]
        while stack:
            for e in os.scandir(stack.pop()):
                (stack.append(e.path) if e.is_dir() else files.append(e.path))
    ranges = []
    for f in files:
        size = os.stat(f).st_size
        if split == "shards":
            ranges += [(f, s, min(s + 10**9, size)) for s in range(0, size, 10**9)]
        elif split == "halves":
            h = size // 2
            ranges += [(f, 0, h), (f, h, size)]
        else:
            ranges.append((f, 0, size))
    ranges.sort(key=lambda r: r[1] - r[2])
    shares = [ranges[i::n] for i in range(n)]
    if kind == "blake3":
        import blake3
        new = blake3.blake3
    else:
        new = getattr(hashlib, kind)
    pids = []
    for share in shares:
        pid = os.fork()
        if pid == 0:
            buf = memoryview(bytearray(1 << 20))
            for path, start, end in share:
                fd = os.open(path, os.O_RDONLY)
                h = new()
                pos = start
                while pos < end:
                    want = min(len(buf), end - pos)
                    k = os.preadv(fd, [buf[:want]], pos)
                    h.update(buf[:k])
                    pos += k
                os.close(fd)
                h.digest()
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    """
)

_ENGINE_CODE = textwrap.dedent(
    """
    import json, resource, sys, time
    t0 = time.perf_counter()
    from model_signing import HashingConfig, hash_model
    spec = json.loads(sys.argv[1])
    m = hash_model(spec["root"], HashingConfig(method=spec["method"], hash_type=spec["hash"],
                                               max_workers=spec["workers"], progress=False))
    t1 = time.perf_counter()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"root": m.root_digest().hex(), "inproc": t1 - t0, "children_rss_kb": kids}))
    """
)

_PEER_CODE = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import model_signing
    spec = json.loads(sys.argv[1])
    cfg = model_signing.hashing.Config()
    alg = {"sha256": "sha256", "blake2b": "blake2", "blake3": "blake3"}[spec["hash"]]
    if spec["method"] == "shards":
        cfg.use_shard_serialization(hashing_algorithm=alg)
    else:
        cfg.use_file_serialization(hashing_algorithm=alg)
    m = cfg.hash(spec["root"])
    t1 = time.perf_counter()
    print(json.dumps({"inproc": t1 - t0, "children_rss_kb": 0}))
    """
)


@dataclass
class Run:
    seconds: float
    rss_mb: float
    inproc: float | None = None


def _spawn_rss(argv: list[str], cwd: Path) -> tuple[Run, str]:
    """Run ``argv``, timing spawn-to-exit and taking the child's own peak RSS from ``wait4``."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: stdout -> pipe; stderr stays ours, so a failing run shows why
        try:
            os.close(r)
            os.dup2(w, 1)
            os.chdir(cwd)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(w)
    chunks = []
    while data := os.read(r, 65536):
        chunks.append(data)
    os.close(r)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[:4]} failed with status {os.waitstatus_to_exitcode(status)}")
    out = b"".join(chunks).decode()
    return Run(seconds, usage.ru_maxrss / 1024), out


def run_limit(case: Case, root: Path, workers: int) -> Run:
    spec = json.dumps({"hash": case.hash_type, "root": str(root), "workers": workers, "split": case.limit_split})
    run, _ = _spawn_rss([sys.executable, "-I", "-c", _LIMIT_CODE, spec], ROOT)
    return run


def run_engine(case: Case, root: Path, workers: int) -> tuple[Run, str]:
    spec = json.dumps({"hash": case.hash_type, "root": str(root), "workers": workers, "method": case.method})
    run, out = _spawn_rss([sys.executable, "-c", _ENGINE_CODE, spec], ROOT)
    info = json.loads(out)
    run.inproc = info["inproc"]
    run.rss_mb = max(run.rss_mb, info["children_rss_kb"] / 1024)
    return run, info["root"]


def run_peer(case: Case, root: Path, peer_python: Path) -> Run:
    spec = json.dumps({"hash": case.hash_type, "root": str(root), "method": case.peer_method})
    # cwd=/ and -I: the peer's import name is also model_signing; never let this checkout shadow it.
    run, out = _spawn_rss([str(peer_python), "-I", "-c", _PEER_CODE, spec], Path("/"))
    run.inproc = json.loads(out)["inproc"]
    return run


# ------------------------------------------------------------------------------------------ report

def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=Path("/work/bench-data"))
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    ap.add_argument("--workers", type=int, default=2, help="N processes for the limit and the engine")
    ap.add_argument("--no-peer", action="store_true", help="skip the peer (no venv needed)")
    args = ap.parse_args(argv)

    ensure_data(args.data_dir)
    peer_python = None if args.no_peer else ensure_peer_venv()
    cases = [CASES[c] for c in args.cases]
    warm(sorted({args.data_dir / c.data for c in cases}))

    rows = []
    for case in cases:
        root = args.data_dir / case.data
        nbytes = _size(root)
        runs: dict[str, list[Run]] = {"limit": [], "engine": [], "peer": []}
        roots = set()
        for _ in range(args.repeats):
            runs["limit"].append(run_limit(case, root, args.workers))
            engine_run, digest = run_engine(case, root, args.workers)
            runs["engine"].append(engine_run)
            roots.add(digest)
            if peer_python is not None:
                runs["peer"].append(run_peer(case, root, peer_python))
        assert len(roots) == 1, f"engine root digest changed between repeats: {roots}"
        rows.append((case, nbytes, runs))
        _print_case(case, nbytes, runs)

    print()
    print(f"command: python -m benchmarks.bench_hash --repeats {args.repeats} --data-dir {args.data_dir} "
          f"--cases {' '.join(args.cases)}; N={args.workers}; times are spawn-to-exit wall clock")
    return 0


def _print_case(case: Case, nbytes: int, runs: dict[str, list[Run]]) -> None:
    def mn(who: str) -> float:
        return min(r.seconds for r in runs[who])

    def md(who: str) -> float:
        return statistics.median(r.seconds for r in runs[who])

    print(f"\n== {case.name}: {nbytes / GB:.2f} GB, engine {case.method}/{case.hash_type}, "
          f"peer {case.peer_method}; target {case.target}")
    print(f"{'who':<8}{'min s':>9}{'median s':>10}{'GB/s':>8}{'in-proc s':>11}{'peak RSS MB':>13}")
    for who in ("limit", "engine", "peer"):
        if not runs[who]:
            continue
        inproc = [r.inproc for r in runs[who] if r.inproc is not None]
        print(f"{who:<8}{mn(who):>9.3f}{md(who):>10.3f}{nbytes / GB / mn(who):>8.2f}"
              f"{(min(inproc) if inproc else float('nan')):>11.3f}{max(r.rss_mb for r in runs[who]):>13.0f}")
    lim_min, lim_med = mn("limit") / mn("engine"), md("limit") / md("engine")
    line = f"engine/limit throughput: min {lim_min:.2f}, median {lim_med:.2f}"
    if runs["peer"]:
        line += f"; engine vs peer (peer time / engine time): min {mn('peer') / mn('engine'):.2f}, "
        line += f"median {md('peer') / md('engine'):.2f}"
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())

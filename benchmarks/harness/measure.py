"""Measurements: one child command (wall time, peak RSS) and the machine's raw read+hash limit.

Peak RSS comes from ``os.wait4`` (in a tiny launcher process, see ``_LAUNCHER``): Linux reports the largest
resident set of the child *or any of its descendants it waited for* (``ru_maxrss`` is a maximum, not a sum),
so for a tool that hashes in worker processes it is the biggest single process. The raw limit reads and
hashes the model's own files in ``N`` processes (byte ranges of at most 1 GB, largest first, a reused 1 MiB
buffer, ``os.preadv``), which is the best any tool can do on this machine with the same page cache state.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.pool
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_BUF = 1 << 20
LIMIT_RANGE = 1_000_000_000


@dataclass(frozen=True)
class ChildResult:
    """One run of one command."""

    wall_s: float
    peak_rss_bytes: int
    returncode: int
    stderr_tail: str


#: Spawns the measured command from a tiny interpreter (``python -I -S``, ~10 MB) and reports its wall time
#: and ``wait4`` usage.  Measuring from the harness itself would be wrong: Linux carries the parent's
#: memory high-water mark into a forked child's ``ru_maxrss`` up to ``exec``, so every child would
#: report at least the harness's own (large) resident size.
_LAUNCHER = """
import json, os, sys, time
result, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(result, "w") as fh:
    json.dump({"wall": wall, "maxrss_kb": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}, fh)
"""


def run_child(cmd: Sequence[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> ChildResult:
    """Run ``cmd`` (stdout discarded, stderr to ``log``); time it from spawn to exit and read its peak RSS."""
    log.parent.mkdir(parents=True, exist_ok=True)
    result = log.with_name(log.name + ".rusage.json")
    result.unlink(missing_ok=True)
    with log.open("wb") as err:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(result), *cmd], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=env, check=False)
    text = log.read_text(errors="replace").strip().splitlines()
    tail = " | ".join(line.strip() for line in text[-3:])[-400:]
    try:
        data = json.loads(result.read_text())
    except (OSError, ValueError):
        return ChildResult(0.0, 0, proc.returncode or 1, tail or "the launcher did not report")
    return ChildResult(float(data["wall"]), int(data["maxrss_kb"]) * 1024, int(data["code"]), tail)


def model_files(model: Path) -> list[Path]:
    """The files a tool hashes (a single file, or the tree minus the default git exclusions)."""
    if model.is_file():
        return [model]
    skip = {".git", ".gitattributes", ".github", ".gitignore"}
    out = []
    for dirpath, dirnames, filenames in os.walk(model):
        top = Path(dirpath) == model
        if top:
            dirnames[:] = [d for d in dirnames if d not in skip]
        out += [Path(dirpath) / f for f in filenames if not (top and f in skip)]
    return sorted(out)


def _hash_range(item: tuple[str, int, int, str]) -> int:
    path, start, end, algo = item
    if algo == "blake3":
        import blake3

        hasher: object = blake3.blake3(max_threads=1)
    else:
        hasher = hashlib.new(algo)
    buf = bytearray(_BUF)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = start
        while pos < end:
            n = os.preadv(fd, [view[: min(_BUF, end - pos)]], pos)
            if n <= 0:
                break
            hasher.update(view[:n])  # type: ignore[attr-defined]
            pos += n
    finally:
        os.close(fd)
    hasher.digest()  # type: ignore[attr-defined]
    return end - start


class LimitMeter:
    """A pool of ``processes`` warm worker processes that read+hash a model's files as fast as possible."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        # spawn: the harness may run server threads (local Sigstore), which fork would copy mid-state
        self._pool: multiprocessing.pool.Pool = multiprocessing.get_context("spawn").Pool(processes)
        self._pool.map(_noop, range(processes))

    def measure(self, files: Sequence[Path], algo: str) -> float:
        """Seconds to read and hash ``files`` with ``algo`` ("sha256" or "blake3")."""
        items = []
        for f in files:
            size = f.stat().st_size
            items += [(str(f), s, min(size, s + LIMIT_RANGE), algo) for s in range(0, size, LIMIT_RANGE)]
            if size == 0:
                items.append((str(f), 0, 0, algo))
        items.sort(key=lambda it: it[1] - it[2])  # largest first, pulled from one queue
        start = time.perf_counter()
        list(self._pool.imap_unordered(_hash_range, items, chunksize=1 if len(items) < 256 else 16))
        return time.perf_counter() - start

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.terminate()
        self._pool.join()


def _noop(_: int) -> None:
    return None

"""Measurements: one child command (wall time, peak RSS) and the machine's raw read+hash limit.

Peak RSS comes from ``os.wait4`` (in a tiny launcher process, see ``_LAUNCHER``): Linux reports the largest
resident set of the child *or any of its descendants it waited for* (``ru_maxrss`` is a maximum, not a sum),
so for a tool that hashes in worker processes it is the biggest single process. The raw limit reads and
hashes the model's own files in ``N`` warm processes (byte ranges no larger than 1 GB or an even share of
the model, largest first, small ones batched; a reused 1 MiB buffer, ``os.preadv``), which is the best any
tool can do on this machine with the same page cache state, whatever the model's file layout.

A second limit, ``files``, does the same work in whole files (:func:`file_limit_tasks`): a manifest that
lists each file's sha256 (files serialization) needs one sequential hasher per file, so no tool can split
one file over processes, and a model with one big file is bound by one core however many there are.

A third, ``shards``, does it in the work units of shards serialization (:func:`shard_limit_tasks`): every
file cut at the shard size the run uses, each shard a task.  A shard is the unit a tool can hash in
parallel, so a model whose one file is smaller than a shard is bound by one core in shards mode too.
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
#: ranges smaller than this are batched into one task (up to this many bytes): one pool round trip per
#: small file would measure the pool's IPC, not the machine
LIMIT_BATCH = 8 << 20
LIMIT_BATCH_FILES = 256

Range = tuple[str, int, int]


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


#: how :class:`LimitMeter` splits the work: byte ranges over the processes, whole files only, or shards
SPLITS = ("ranges", "files", "shards")


def limit_tasks(files: Sequence[Path], processes: int) -> list[list[Range]]:
    """The raw limit's work: every byte of ``files`` exactly once, as tasks of ``(path, start, end)`` ranges.

    A range is at most ``LIMIT_RANGE`` and at most an even share of the model per process, so a model with
    fewer big files than processes still keeps every process busy (otherwise a tool with small shards could
    beat the "limit").  Tasks come largest first, pulled one at a time from one queue, so the processes
    finish together; ranges under ``LIMIT_BATCH`` bytes share a task.  An empty file is a range of 0 bytes
    (opening it is work every tool does too).
    """
    sizes = [(str(f), f.stat().st_size) for f in files]
    step = max(_BUF, min(LIMIT_RANGE, -(-sum(size for _, size in sizes) // processes)))
    ranges = [(path, start, min(size, start + step)) for path, size in sizes for start in range(0, size, step)]
    ranges += [(path, 0, 0) for path, size in sizes if size == 0]
    return _batched(ranges)


def file_limit_tasks(files: Sequence[Path]) -> list[list[Range]]:
    """The whole-files limit's work: each file as one range ``(path, 0, size)``, largest first, small ones batched.

    This is the bound of files serialization, which hashes a file with one sequential hasher: the processes
    pull whole files from one queue (largest first, so they finish as close together as whole files allow),
    and a file is never split, so one big file keeps one process busy while the others idle.
    """
    return _batched([(str(f), 0, f.stat().st_size) for f in files])


def shard_limit_tasks(files: Sequence[Path], shard_size: int) -> list[list[Range]]:
    """The shards limit's work: each file cut at ``shard_size`` bytes, each shard ``(path, start, end)`` one
    range, largest first, small ones batched (an empty file is one shard of 0 bytes, as the tools list it).

    This is the bound of shards serialization, which hashes each shard with one sequential hasher: a shard
    is never split, so the number of shards, not the number of processes, caps the parallelism (one file
    under ``shard_size`` keeps one process busy, like the whole-files limit).
    """
    if shard_size < 1:
        raise ValueError(f"shard size must be >= 1, not {shard_size}")
    sizes = [(str(f), f.stat().st_size) for f in files]
    ranges = [(path, start, min(size, start + shard_size))
              for path, size in sizes for start in range(0, size, shard_size)]
    ranges += [(path, 0, 0) for path, size in sizes if size == 0]
    return _batched(ranges)


def _batched(ranges: list[Range]) -> list[list[Range]]:
    """``ranges`` largest first as tasks: one per range of ``LIMIT_BATCH`` bytes or more, small ones batched."""
    ranges = sorted(ranges, key=lambda r: r[1] - r[2])
    tasks: list[list[Range]] = []
    batch: list[Range] = []  # small ranges, filled up to LIMIT_BATCH bytes or LIMIT_BATCH_FILES ranges
    batch_bytes = 0
    for r in ranges:
        n = r[2] - r[1]
        if n >= LIMIT_BATCH:
            tasks.append([r])
            continue
        if batch and (batch_bytes + n > LIMIT_BATCH or len(batch) == LIMIT_BATCH_FILES):
            tasks.append(batch)
            batch, batch_bytes = [], 0
        batch.append(r)
        batch_bytes += n
    return [*tasks, batch] if batch else tasks


def _hash_ranges(item: tuple[list[Range], str]) -> None:
    ranges, algo = item
    buf = bytearray(_BUF)
    view = memoryview(buf)
    for path, start, end in ranges:
        if algo == "blake3":
            import blake3

            hasher: object = blake3.blake3(max_threads=1)
        else:
            hasher = hashlib.new(algo)
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


class LimitMeter:
    """A pool of ``processes`` warm worker processes that read+hash a model's files as fast as possible."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        # spawn: the harness may run server threads (local Sigstore), which fork would copy mid-state
        self._pool: multiprocessing.pool.Pool = multiprocessing.get_context("spawn").Pool(processes)
        self._pool.map(_noop, range(processes))

    def measure(self, files: Sequence[Path], algo: str, split: str = "ranges",
                shard_size: int | None = None) -> float:
        """Seconds to read and hash ``files`` with ``algo`` ("sha256" or "blake3"), split as ``split`` says
        ("ranges": :func:`limit_tasks`; "files": whole files, :func:`file_limit_tasks`; "shards": shards of
        ``shard_size`` bytes, :func:`shard_limit_tasks`, which needs it)."""
        if split not in SPLITS:
            raise ValueError(f"unknown limit split {split!r}; choose from {', '.join(SPLITS)}")
        if split == "shards":
            if shard_size is None:
                raise ValueError("the shards split needs the shard size")
            work = shard_limit_tasks(files, shard_size)
        else:
            work = limit_tasks(files, self.processes) if split == "ranges" else file_limit_tasks(files)
        tasks = [(task, algo) for task in work]
        start = time.perf_counter()
        list(self._pool.imap_unordered(_hash_ranges, tasks, chunksize=1))
        return time.perf_counter() - start

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.terminate()
        self._pool.join()


def _noop(_: int) -> None:
    return None

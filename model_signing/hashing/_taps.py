"""Taps on the hashing pass: scanning every file from the buffer it is hashed from (issue 14).

A tap (:class:`model_signing.hashing._pool.Tap`) sees each chunk right after the hasher, so scanning
while signing or verifying reads no byte twice.

Shards: a scanner understands a pickle or a zip only in order, from the file's first byte to its last.
When a tap is present the plan keeps every file's shards in one work item, in offset order
(``_plan.make_plan(whole_files=True)``), so one worker hashes them one after the other -- each shard
with its own hasher, one scanner for the whole file.  Files are still hashed in parallel; only the
shards of one file are not spread over several workers until they are released (below), which costs
parallelism only for big pickles and archives in models with fewer large files than workers.
:class:`ScanTap` checks the order and refuses any other (a bug, never a wrong verdict).

Release: most of a big model file is tensor data no scanner looks at.  Once every tap says it needs no
more of a file (:meth:`ScanTap.wants_rest`: the file's scanner is past a safetensors header, a GGUF
sniff, ...; see :meth:`~model_signing.scan.FileScanner.wants_more`), the worker finishes the scan there
(:meth:`ScanTap.release`: the unseen bytes are counted, not read) and hands the file's remaining shards
back to the pool, which spreads them over every worker as without a tap.  A pickle or a zip keeps
its shards in one worker to the end; verified loading's tap keeps every byte and never releases.
Releasing a safetensors file after its header is safe: its loaders never execute tensor data (a pickle
hidden there is never unpickled), and the whole-file scan does not look at it either, only at its
length, which the release still checks (from the file's size, which every shard's identity check holds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from model_signing.hashing._plan import Task

if TYPE_CHECKING:
    from model_signing.hashing._pool import Tap
    from model_signing.scan import FileScanner, Finding, ScanConfig, ScanReport


class ScanTap:
    """Scans every file hashed: one :class:`~model_signing.scan.FileScanner` per file, fed in order.

    ``names`` maps the path a task opens to the file's name in the manifest (how findings name it).
    Findings of files finished in a worker travel back to the parent through :meth:`collect` /
    :meth:`merge`; :meth:`report` is the scan of the whole model, in manifest order.
    """

    def __init__(self, config: ScanConfig, names: Mapping[str, str], empty: Sequence[str] = ()) -> None:
        import dataclasses

        # Imported here, in the parent, so that forked workers inherit the scanner instead of each importing it.
        from model_signing.scan import FileScanner

        self._scanner = FileScanner

        # The digests cover every byte: recomputing the CRC of tensor data would double the CPU time of a
        # PyTorch checkpoint for no safety (see ScanConfig.crc_data).  Analysed members keep their check.
        self.config = dataclasses.replace(config, crc_data=False)
        self._names = dict(names)
        self._open: dict[str, FileScanner] = {}
        self._done: list[tuple[str, list[Finding]]] = []  # finished here, not yet collected
        self._merged: list[tuple[str, list[Finding]]] = []
        #: Empty files: shards serialization hashes no range of them, and there is nothing in them to scan,
        #: but they count as scanned, as in ``files`` serialization and ``scan_path``.
        self._empty = tuple(empty)

    def feed_for(self, task: Task) -> Callable[[memoryview], object]:
        scanner = self._open.get(task.path)
        if scanner is None:
            if task.start != 0:
                raise RuntimeError(f"internal error: {task.path} was hashed from byte {task.start} before byte 0, "
                                   "so it cannot be scanned in the hashing pass")
            scanner = self._open[task.path] = self._scanner(scanner_name(self._names, task.path), config=self.config)
        elif scanner.size != task.start:
            raise RuntimeError(f"internal error: {task.path}'s shards were hashed out of order "
                               f"(byte {task.start} after {scanner.size})")
        return scanner.feed

    def task_done(self, task: Task) -> None:
        if task.end >= task.size:  # the file's last byte: the verdict
            scanner = self._open.pop(task.path)
            self._done.append((scanner_name(self._names, task.path), scanner.finish()))

    def wants_rest(self, task: Task) -> bool:
        """Whether the scan of ``task``'s file still needs its bytes after ``task`` (see :class:`Tap`)."""
        scanner = self._open.get(task.path)
        return scanner is None or scanner.wants_more()  # no scanner open: a planning bug, keep the order

    def release(self, task: Task) -> None:
        """Finish the scan of ``task``'s file: the rest of it will be hashed without this tap."""
        scanner = self._open.pop(task.path)
        # The file's size is certain: every shard, wherever it is hashed, checks the file is unchanged.
        scanner.skip(task.size - scanner.size)
        self._done.append((scanner_name(self._names, task.path), scanner.finish()))

    def collect(self) -> list[tuple[str, list[Finding]]]:
        done, self._done = self._done, []
        return done

    def merge(self, collected: list[tuple[str, list[Finding]]]) -> None:
        self._merged.extend(collected)

    def report(self) -> ScanReport:
        """The scan of every file hashed so far (files in manifest order, findings in file order)."""
        from model_signing.scan import ScanReport

        if self._open:  # pragma: no cover - a planning bug, never user input
            raise RuntimeError(f"internal error: {', '.join(sorted(self._open))} were not scanned to the end")
        seen = {name for name, _ in self._merged}
        files = sorted([*self._merged, *((n, []) for n in self._empty if n not in seen)], key=lambda f: f[0])
        return ScanReport(
            files_scanned=len(files),
            findings=tuple(x for _, found in files for x in found),
            threshold=self.config.threshold,
        )


def scanner_name(names: Mapping[str, str], path: str) -> str:
    """How findings name the file opened by ``path``."""
    return names.get(path, path)


class Taps:
    """Several taps as one (verified loading keeps the bytes and scans them)."""

    def __init__(self, *taps: Tap) -> None:
        self.taps = taps

    def feed_for(self, task: Task) -> Callable[[memoryview], object] | None:
        feeds = [f for f in (t.feed_for(task) for t in self.taps) if f is not None]
        if not feeds:
            return None
        if len(feeds) == 1:
            return feeds[0]

        def feed(view: memoryview) -> None:
            for f in feeds:
                f(view)

        return feed

    def task_done(self, task: Task) -> None:
        for t in self.taps:
            t.task_done(task)

    def wants_rest(self, task: Task) -> bool:
        # Released only if every tap agrees: verified loading keeps every byte, so with it nothing is.
        return any(t.wants_rest(task) for t in self.taps)

    def release(self, task: Task) -> None:
        for t in self.taps:
            t.release(task)

    def collect(self) -> list[Any]:
        return [t.collect() for t in self.taps]

    def merge(self, collected: list[Any]) -> None:
        for t, c in zip(self.taps, collected, strict=True):
            t.merge(c)

"""Static threat scanning of model files: find what would run code when a model is loaded.

Nothing is ever unpickled, imported or executed: pickles are walked opcode by opcode, archives record by
record, and every other format is recognised by its content and checked for the constructs that load
code (Keras Lambda layers and custom objects, TensorFlow file and Python ops).  The verdict is
allowlist-first: a pickle global outside the table of known-safe globals is a finding.

Two ways in:

* :func:`scan_path` -- a file or a model directory; each byte is read once.
* :class:`FileScanner` -- push the bytes of one file as they are read elsewhere (the hashing pass), in
  chunks of any size, then :meth:`FileScanner.finish`.  Memory stays bounded whatever the file size:
  tensor data streams through a CRC and is dropped.

This package is layer L3: it imports the standard library and :mod:`model_signing.errors` only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from model_signing.errors import InputError, ModelPathError
from model_signing.scan._context import Collector, Scope
from model_signing.scan._formats import ContentScanner
from model_signing.scan._model import FileFormat, Finding, ScanConfig, ScanReport, Severity
from model_signing.scan._tables import GADGET_MODULES, GADGET_NAMES, SAFE_GLOBALS, TF_OPS, classify

__all__ = [
    "GADGET_MODULES",
    "GADGET_NAMES",
    "SAFE_GLOBALS",
    "TF_OPS",
    "FileFormat",
    "FileScanner",
    "Finding",
    "ScanConfig",
    "ScanReport",
    "Severity",
    "classify",
    "load_config",
    "make_config",
    "scan_path",
]

#: Read size of :func:`scan_path`.
CHUNK_SIZE = 1 << 20
#: Names never scanned in a model directory (the same defaults the signing walk ignores).
IGNORED_NAMES = (".git", ".gitattributes", ".github", ".gitignore")


class FileScanner:
    """The push scanner of one file: ``feed`` its bytes in order (any chunking), then ``finish``.

    ``name`` is how findings name the file.  With ``collector`` (internal) several files share one
    report; by default each scanner has its own.
    """

    def __init__(self, name: str, *, config: ScanConfig | None = None, collector: Collector | None = None) -> None:
        self._out = collector if collector is not None else Collector(config or ScanConfig())
        self._first = len(self._out.findings)
        self._content = ContentScanner(Scope(name, self._out))
        self._finished = False
        self.size = 0

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Push the next bytes of the file; the chunk is not kept after the call."""
        self.size += len(chunk) if not isinstance(chunk, memoryview) else chunk.nbytes
        self._content.feed(chunk)

    def wants_more(self) -> bool:
        """Whether the content of the file's later bytes can still change this file's findings.

        ``False`` once the analysis only drops what follows and counts it: after a safetensors header
        (parsed and checked; the data section is only measured against the tensors' offsets, and
        safetensors loaders never execute tensor data), after the sniff of a GGUF file or of content no
        parser claims, after an ONNX protobuf fails the SavedModel shape, or after an internal error.  A
        pickle or a zip archive wants its bytes until its end.  Conservative: ``True`` whenever unsure.
        Once ``False`` it stays ``False``; the rest of the file then goes to :meth:`skip`.
        """
        return not self._finished and not self._content.idle

    def skip(self, n: int) -> None:
        """The next ``n`` bytes of the file went by unseen: allowed only once :meth:`wants_more` is false.

        The findings are then those of feeding those bytes (their count still counts: a safetensors data
        section of the wrong length is still reported), so the caller must know ``n`` for certain (the
        hashing pass takes it from the file's size, which its identity checks guarantee).
        """
        if self.wants_more():
            raise RuntimeError(f"internal error: {n} bytes skipped while the scanner still needs them")
        self.size += n
        self._content.skip(n)

    def finish(self) -> list[Finding]:
        """End of the file: complete the analysis and return this file's findings (members included)."""
        if not self._finished:
            self._finished = True
            self._content.finish()
        return self._out.findings[self._first:]

    @property
    def format(self) -> str:
        """What the file was recognised as (``pickle``, ``pytorch-zip``, ``safetensors``, ``unknown``, ...)."""
        return self._content.scope.format


def make_config(
    *, allow_globals: Iterable[str] = (), threshold: Severity | str = Severity.MEDIUM, base: ScanConfig | None = None
) -> ScanConfig:
    """A :class:`ScanConfig` from user input, checking the ``allow_globals`` spellings."""
    allowed = set(base.allow_globals) if base is not None else set()
    for entry in allow_globals:
        text = entry.strip()
        if "." not in text or text.startswith(".") or text.endswith(".") or " " in text:
            raise InputError(f"allowed global {entry!r} is not of the form module.name or module.*")
        allowed.add(text)
    level = threshold if isinstance(threshold, Severity) else _severity(threshold, "threshold")
    return ScanConfig(allow_globals=frozenset(allowed), threshold=level)


def _severity(text: str, what: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise InputError(f"{what}: {exc}") from None


def load_config(path: str | os.PathLike[str]) -> ScanConfig:
    """Read a scanner config file (TOML): ``[scan]`` with ``allow_globals = [...]`` and ``fail_on = "..."``."""
    import tomllib  # only here: scanning in the hashing pass should not pay for it

    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise InputError(f"cannot read scan config {p}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"scan config {p} is not valid TOML: {exc}") from None
    section = data.get("scan", {})
    if not isinstance(section, dict):
        raise InputError(f"scan config {p}: [scan] must be a table")
    unknown = set(section) - {"allow_globals", "fail_on"}
    if unknown:
        raise InputError(f"scan config {p}: unknown key(s) {', '.join(sorted(unknown))} in [scan] "
                         "(known: allow_globals, fail_on)")
    allow = section.get("allow_globals", [])
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise InputError(f"scan config {p}: allow_globals must be a list of strings")
    fail_on = section.get("fail_on", "medium")
    if not isinstance(fail_on, str):
        raise InputError(f"scan config {p}: fail_on must be a string")
    try:
        return make_config(allow_globals=allow, threshold=_severity(fail_on, f"scan config {p}: fail_on"))
    except InputError as exc:
        raise InputError(f"scan config {p}: {exc}") from None


def _files(root: str, follow_symlinks: bool) -> list[tuple[str, str]]:
    """(display name, path) of every regular file to scan, in a stable order.

    Like the signing walk, it fails closed: symlinks are errors unless followed, special files always.
    """
    try:
        st = os.lstat(root)
    except OSError as exc:
        raise ModelPathError(f"cannot scan {root}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(st.st_mode):
        if not follow_symlinks:
            raise ModelPathError(f"{root} is a symlink; scan its target, or allow following symlinks")
        st = os.stat(root)
    if stat.S_ISREG(st.st_mode):
        return [(os.path.basename(os.path.abspath(root)), root)]
    if not stat.S_ISDIR(st.st_mode):
        raise ModelPathError(f"{root} is not a regular file or directory; nothing can be scanned in it")
    out: list[tuple[str, str]] = []
    seen_dirs: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    todo = [("", root)]
    while todo:
        rel, path = todo.pop()
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name, reverse=True)
        except OSError as exc:
            raise ModelPathError(f"cannot list {path}: {exc.strerror or exc}") from None
        for e in entries:
            if not rel and e.name in IGNORED_NAMES:
                continue
            name = f"{rel}/{e.name}" if rel else e.name
            try:
                est = e.stat(follow_symlinks=False)
                if stat.S_ISLNK(est.st_mode):
                    if not follow_symlinks:
                        raise ModelPathError(f"{e.path} is a symlink; remove it, or allow following symlinks")
                    est = os.stat(e.path)
            except OSError as exc:
                raise ModelPathError(f"cannot scan {e.path}: {exc.strerror or exc}") from None
            if stat.S_ISDIR(est.st_mode):
                key = (est.st_dev, est.st_ino)
                if key in seen_dirs:
                    raise ModelPathError(f"{e.path} leads back to a directory already scanned (a symlink loop)")
                seen_dirs.add(key)
                todo.append((name, e.path))
            elif stat.S_ISREG(est.st_mode):
                out.append((name, e.path))
            else:
                raise ModelPathError(f"{e.path} is not a regular file or directory (a FIFO, socket or device); "
                                     "remove it from the model")
    out.sort()
    return out


def scan_path(
    path: str | os.PathLike[str],
    *,
    allow_globals: Iterable[str] = (),
    config: ScanConfig | None = None,
    follow_symlinks: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> ScanReport:
    """Scan a model file or directory and return the report (never executes, never writes).

    ``allow_globals`` adds to ``config``'s allowed globals.  Raises :class:`~model_signing.errors.InputError`
    (exit code 1) for a path that cannot be scanned; unsafe content is not an error here but a report
    whose :meth:`ScanReport.unsafe` is true.
    """
    cfg = make_config(allow_globals=allow_globals, threshold=(config or ScanConfig()).threshold, base=config)
    root = os.fspath(path)
    files = _files(root, follow_symlinks)
    out = Collector(cfg)
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    for name, fpath in files:
        scanner = FileScanner(name, collector=out)
        try:
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) * (not follow_symlinks)
            fd = os.open(fpath, flags)
        except OSError as exc:
            raise InputError(f"cannot read {fpath}: {exc.strerror or exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ModelPathError(f"{fpath} is not a regular file; remove it from the model")
            with os.fdopen(fd, "rb", buffering=0) as f:
                fd = -1
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    scanner.feed(view[:n])
        except OSError as exc:
            raise InputError(f"cannot read {fpath}: {exc.strerror or exc}") from None
        finally:
            if fd >= 0:
                os.close(fd)
        scanner.finish()
    return ScanReport(
        files_scanned=len(files), findings=tuple(out.findings), formats=tuple(out.formats), threshold=cfg.threshold
    )

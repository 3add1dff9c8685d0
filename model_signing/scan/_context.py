"""What a parser reports into: the findings of one scan, the formats met, nesting."""

from __future__ import annotations

from model_signing.scan._model import FileFormat, Finding, ScanConfig, Severity


class Collector:
    """The findings and formats of one scan (shared by every file and member in it)."""

    __slots__ = ("_seen", "config", "findings", "formats")

    def __init__(self, config: ScanConfig) -> None:
        self.config = config
        self.findings: list[Finding] = []
        self.formats: list[FileFormat] = []
        self._seen: set[tuple[str, str, str]] = set()

    def formats_add(self, scope: Scope) -> None:
        """Record what a file or member was recognised as (once it is finished)."""
        self.formats.append(FileFormat(scope.name, scope.format))

    def add(self, file: str, severity: Severity, kind: str, detail: str, offset: int | None) -> None:
        # One finding per (file, kind, detail): a pickle that imports os.system 10 000 times is one finding
        # (at its first offset), and memory stays bounded by the distinct findings.
        key = (file, kind, detail)
        if key in self._seen:
            return
        if len(self._seen) >= 10_000:
            key = (file, "limit-exceeded", "more than 10000 distinct findings; the rest are not listed")
            if key in self._seen:
                return
            severity, kind, detail, offset = Severity.HIGH, key[1], key[2], None
        self._seen.add(key)
        self.findings.append(Finding(file, severity, kind, detail, offset))


class Scope:
    """One file or archive member being scanned: its display name, depth and the shared collector."""

    __slots__ = ("depth", "format", "name", "out")

    def __init__(self, name: str, out: Collector, depth: int = 0) -> None:
        self.name = name
        self.depth = depth
        self.out = out
        self.format = "unknown"

    @property
    def config(self) -> ScanConfig:
        return self.out.config

    def add(self, severity: Severity, kind: str, detail: str, offset: int | None = None) -> None:
        """Record a finding about this file or member."""
        self.out.add(self.name, severity, kind, detail, offset)

    def child(self, member: str) -> Scope:
        """The scope of a member of this archive (``archive!member``)."""
        return Scope(f"{self.name}!{member}", self.out, self.depth + 1)

    def set_format(self, fmt: str) -> None:
        self.format = fmt

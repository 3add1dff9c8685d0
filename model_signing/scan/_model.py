"""The scanner's result types: severities, findings, the report, and the settings."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """How dangerous a finding is; ordered, so ``finding.severity >= threshold`` compares."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """The lowercase name used in JSON and on the command line (``medium``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"medium"`` (any case) -> :attr:`MEDIUM`; :class:`ValueError` for anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {text!r}: use one of {', '.join(s.label for s in cls)}"
            ) from None


@dataclass(frozen=True)
class Finding:
    """One thing found in one file (or archive member).

    ``file`` is the path relative to the scanned root (the basename for a single file); a member of an
    archive is named ``archive!member`` (nested: ``a.zip!inner.zip!data.pkl``).  ``offset`` is the byte
    offset in that file or member (uncompressed), or ``None`` when the finding is about the whole.
    """

    file: str
    severity: Severity
    kind: str
    detail: str
    offset: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (one entry of ``findings``)."""
        return {
            "file": self.file,
            "severity": self.severity.label,
            "kind": self.kind,
            "detail": self.detail,
            "offset": self.offset,
        }

    def __str__(self) -> str:
        where = f" at offset {self.offset}" if self.offset is not None else ""
        return f"{self.severity.label}: {self.file}{where}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class FileFormat:
    """What a scanned file (or member) was recognised as, e.g. ``pytorch-zip``, ``safetensors``."""

    file: str
    format: str


@dataclass(frozen=True)
class ScanReport:
    """The outcome of scanning a file or a model directory."""

    files_scanned: int
    findings: tuple[Finding, ...]
    #: What each file was recognised as (top-level files and archive members), in scan order.
    formats: tuple[FileFormat, ...] = ()
    #: The threshold :attr:`is_unsafe` and :meth:`to_json` use when given none.
    threshold: Severity = Severity.MEDIUM

    def unsafe(self, threshold: Severity | None = None) -> bool:
        """Whether any finding is at or above ``threshold`` (default: the report's own)."""
        limit = self.threshold if threshold is None else threshold
        return any(f.severity >= limit for f in self.findings)

    @property
    def is_unsafe(self) -> bool:
        """:meth:`unsafe` at the report's threshold."""
        return self.unsafe()

    @property
    def max_severity(self) -> Severity | None:
        """The most severe finding's severity, ``None`` without findings."""
        return max((f.severity for f in self.findings), default=None)

    def to_json(self, threshold: Severity | None = None) -> dict[str, Any]:
        """``{"files_scanned": N, "findings": [...], "unsafe": bool}`` (the ``scan --json`` document)."""
        return {
            "files_scanned": self.files_scanned,
            "findings": [f.as_dict() for f in self.findings],
            "unsafe": self.unsafe(threshold),
        }


@dataclass(frozen=True)
class ScanConfig:
    """Settings of a scan.

    ``allow_globals``: ``module.name`` entries (or ``module.*`` for a whole module and its submodules)
    that the user accepts in pickles, beside the built-in table of safe globals.  They clear "unknown
    global" findings only: a known code-execution gadget stays critical whatever is allowed.
    """

    allow_globals: frozenset[str] = field(default_factory=frozenset)
    threshold: Severity = Severity.MEDIUM
    #: How deep archives may nest (a zip in a zip in ...) before the rest is a finding, not analysed.
    max_depth: int = 8
    #: Recompute the CRC-32 of zip members whose content is only data (tensor storage the scanner drops).
    #: A bad CRC there is no code-execution risk; the CRC of members the scanner analyses (pickles, nested
    #: archives, anything recognised) is always checked.  The scan in the hashing pass turns it off: the
    #: CRC would double the CPU time of a PyTorch checkpoint, and the signed digests cover every byte.
    crc_data: bool = True

    def allows(self, module: str, name: str) -> bool:
        """Whether the user allowed the global ``module.name``."""
        full = f"{module}.{name}"
        if full in self.allow_globals:
            return True
        parts = module.split(".")
        return any(".".join(parts[:i]) + ".*" in self.allow_globals for i in range(1, len(parts) + 1))

"""The machine description reports carry: CPU model, cores, RAM (read from /proc), OS and Python."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    """What the figures were measured on."""

    cpu_model: str
    cores: int
    ram_bytes: int
    kernel: str
    python: str
    hostname: str

    def short(self) -> str:
        """One cell of the table, e.g. ``2 x AMD EPYC 9B45, 24 GiB``."""
        return f"{self.cores} x {self.cpu_model}, {self.ram_bytes / 2**30:.0f} GiB"

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return asdict(self)


def _cpuinfo_model(text: str) -> str:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model", "Hardware") and value.strip():
            return " ".join(value.split())
    return platform.processor() or platform.machine()


def _meminfo_total(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def describe(proc: Path = Path("/proc")) -> Machine:
    """Read the machine description (cores = CPUs this process may run on)."""
    try:
        cpu = _cpuinfo_model((proc / "cpuinfo").read_text())
    except OSError:
        cpu = platform.processor() or platform.machine()
    try:
        ram = _meminfo_total((proc / "meminfo").read_text())
    except OSError:
        ram = 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Machine(cpu, cores, ram, f"{platform.system()} {platform.release()}", platform.python_version(),
                   platform.node())

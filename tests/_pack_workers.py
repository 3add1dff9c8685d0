"""Child-process bodies of the concurrency tests in test_packs.py (a small module: spawned children import it)."""

from __future__ import annotations

import os
from typing import Any


def add_publisher(registry: str, index: int, start: Any) -> None:
    """Wait for the others, then add publisher ``p<index>`` through the CLI; exit with its exit code."""
    from model_signing.cli import main

    start.wait()
    try:
        main(["registry", "add", "--registry", registry, "--id", f"p{index}", "--name", f"P {index}",
              "--secret-key-id", "hmac-sha256:" + f"{index:064x}"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    os._exit(code)


def append_many(log: str, writer: int, count: int, start: Any) -> None:
    """Wait for the others, then append ``count`` records of varying length as writer ``w<writer>``."""
    from model_signing.policy import audit

    start.wait()
    for i in range(count):
        audit.append(log, audit.AuditRecord(model_path=f"/models/w{writer}", result="verified", exit_code=0,
                                            model_name=f"w{writer}", error="x" * (i % 7) * 100))
    os._exit(0)

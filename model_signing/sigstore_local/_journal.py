"""The append-only JSON-lines file each local transparency log persists its entries in (v1 and v2)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_signing.errors import InputError

_log = logging.getLogger("model_signing.sigstore_local")


def load_entries(path: Path, label: str, check: Callable[[dict[str, Any]], None] | None = None) -> list[
    tuple[bytes, dict[str, Any]]
]:
    """Every complete entry of ``path`` as (canonical body, record), oldest first; none if it does not exist.

    A torn last line (a crash mid-append) was never acknowledged: it is dropped and cut off the file. Any
    other malformed line is :class:`InputError` (the log is corrupt; nothing is guessed). ``check`` may
    raise ``ValueError``/``KeyError``/``TypeError`` for a record missing a field its log needs.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    entries: list[tuple[bytes, dict[str, Any]]] = []
    good = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            _log.warning("%s: dropping a partial last line in %s", label, path)
            break
        try:
            record = json.loads(line)
            body = base64.b64decode(record["body"], validate=True)
            if check is not None:
                check(record)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise InputError(f"{path}:{number}: corrupt transparency log entry") from None
        entries.append((body, record))
        good += len(line)
    if good != len(data):
        with open(path, "r+b") as f:
            f.truncate(good)
    return entries

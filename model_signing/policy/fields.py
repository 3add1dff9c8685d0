"""Strict reading of the policy files (registry, lock, policy): every problem is one line naming the file,
the field and the fix (:class:`~model_signing.errors.PolicyFileError`).

The documents are plain JSON/TOML values (dicts, lists, strings); each reader takes the value and its
dotted field name (``publishers[2].keys[0].key_id``), so a message points at the exact place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Collection, Mapping
from typing import Any, NoReturn

from model_signing._internal import strict_json
from model_signing._internal.files import read_small_file
from model_signing.errors import PolicyFileError

#: Registries, locks and policies are hand-sized documents: a few kilobytes per publisher or model.
MAX_POLICY_FILE = 16 << 20


def read_document(path: str, what: str) -> Any:
    """The parsed JSON (``.json``, or anything else) or TOML (``.toml``) document at ``path``."""
    raw = read_small_file(path, what, limit=MAX_POLICY_FILE, error=PolicyFileError)
    if path.endswith(".toml"):
        import tomllib

        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PolicyFileError(f"{what} {path} is not valid TOML ({exc}); fix the syntax") from None
    try:
        return strict_json.loads(raw)
    except strict_json.StrictJSONError as exc:
        raise PolicyFileError(f"{what} {path} {exc.reason}; fix the JSON (keys must be unique)") from None


def dumps(document: Mapping[str, Any]) -> str:
    """The JSON text a policy file is written as (stable key order, one trailing newline)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


class Fields:
    """Reads the fields of one document, failing with the file's name, the field and the fix."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, field: str, problem: str, fix: str) -> NoReturn:
        """Raise the one-line error for ``field``."""
        raise PolicyFileError(f"{self.file}: {field}: {problem}; {fix}")

    def table(
        self, value: object, field: str, *, allowed: Collection[str], required: Collection[str] = ()
    ) -> Mapping[str, Any]:
        """``value`` as an object with only ``allowed`` keys and every ``required`` one."""
        if not isinstance(value, Mapping):
            self.fail(field, f"is {_kind(value)}, not an object", "write it as an object {...}")
        for key in value:
            if key not in allowed:
                self.fail(f"{field}.{key}" if field else str(key), "unknown key",
                          f"remove it (allowed here: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                self.fail(f"{field}.{key}" if field else key, "is missing", "add it")
        return value

    def list(self, value: object, field: str) -> list[Any]:
        """``value`` as a list."""
        if not isinstance(value, list):
            self.fail(field, f"is {_kind(value)}, not a list", "write it as a list [...]")
        return value

    def string(self, table: Mapping[str, Any], key: str, field: str, *, required: bool = False) -> str | None:
        """``table[key]`` as a non-empty string (``None`` when absent or null and not required)."""
        value = table.get(key)
        name = f"{field}.{key}" if field else key
        if value is None:
            if required:
                self.fail(name, "is missing", "add it")
            return None
        if not isinstance(value, str):
            self.fail(name, f"is {_kind(value)}, not a string", "write it as a string")
        if not value.strip():
            self.fail(name, "is empty", "give a value or remove the key")
        return value

    def strings(self, table: Mapping[str, Any], key: str, field: str) -> tuple[str, ...]:
        """``table[key]`` as a list of non-empty strings, without duplicates (``()`` when absent)."""
        value = table.get(key)
        name = f"{field}.{key}" if field else key
        if value is None:
            return ()
        items = self.list(value, name)
        seen: set[str] = set()
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{name}[{i}]", f"is {_kind(item)}, not a non-empty string", "write it as a string")
            if item in seen:
                self.fail(f"{name}[{i}]", f"duplicate {item!r}", "list each value once")
            seen.add(item)
        return tuple(items)

    def boolean(self, table: Mapping[str, Any], key: str, field: str, default: bool) -> bool:
        """``table[key]`` as a boolean."""
        value = table.get(key, default)
        if not isinstance(value, bool):
            name = f"{field}.{key}" if field else key
            self.fail(name, f"is {_kind(value)}, not true or false", "write true or false")
        return value

    def time(self, table: Mapping[str, Any], key: str, field: str) -> dt.datetime | None:
        """``table[key]`` as a UTC-offset time (RFC 3339 string, or a TOML offset date-time)."""
        value = table.get(key)
        name = f"{field}.{key}" if field else key
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                self.fail(name, f"{value!r} is not an RFC 3339 time", "write it like 2026-01-31T12:00:00Z")
        if not isinstance(value, dt.datetime):
            self.fail(name, f"is {_kind(value)}, not a time", "write it like 2026-01-31T12:00:00Z")
        if value.tzinfo is None:
            self.fail(name, "has no time zone", "add Z (UTC) or an offset such as +02:00")
        return value.astimezone(dt.UTC)

    def version(self, doc: Mapping[str, Any], supported: int) -> None:
        """Check ``schema_version``."""
        value = doc.get("schema_version")
        if value is None:
            self.fail("schema_version", "is missing", f"add \"schema_version\": {supported}")
        if value != supported or isinstance(value, bool):
            self.fail("schema_version", f"{value!r} is not supported", f"this version reads schema_version {supported}")

    def path(
        self, base: str, table: Mapping[str, Any], key: str, field: str, *, required: bool = False,
        anywhere: bool = False,
    ) -> str | None:
        """``table[key]`` as a relative path inside ``base`` (the file's directory); the resolved path.

        ``anywhere``: the path may also be absolute or lead out of ``base`` (a file the document refers
        to, not a member of what it describes).
        """
        rel = self.string(table, key, field, required=required)
        if rel is None:
            return None
        if anywhere:
            return os.path.normpath(os.path.join(base, rel))
        name = f"{field}.{key}" if field else key
        if os.path.isabs(rel) or "\\" in rel:
            self.fail(name, f"{rel!r} is not a relative path", f"give it relative to {self.file}'s directory")
        parts = rel.replace("\\", "/").split("/")
        if ".." in parts:
            self.fail(name, f"{rel!r} escapes {self.file}'s directory", "keep every path inside that directory")
        resolved = os.path.normpath(os.path.join(base, rel))
        root = os.path.realpath(base)
        if os.path.lexists(resolved) and os.path.commonpath([root, os.path.realpath(resolved)]) != root:
            self.fail(name, f"{rel!r} leads outside {self.file}'s directory (a symlink)",
                      "keep every path inside that directory")
        return resolved


def format_time(when: dt.datetime | None) -> str | None:
    """A time as written in the files: RFC 3339 in UTC with ``Z``."""
    if when is None:
        return None
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__

"""The audit log: one JSON line per verification, appended so that concurrent verifiers never mix or lose records.

Each record is written with one ``write`` on a descriptor opened with ``O_APPEND`` and then ``fsync``\\ ed:
the kernel places every append at the end of the file as one piece, so records of concurrent processes
never interleave, and a record is on disk before the verification is reported.

A record (:class:`AuditRecord`, keys in :meth:`AuditRecord.as_dict`) holds who signed (the structured
signer identity: key ids, certificate subjects, identities), never key material, secrets or tokens.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model_signing._internal.types import PathLike
from model_signing.errors import InputError, PolicyFileError, PublisherError

if TYPE_CHECKING:
    from model_signing.policy.registry import PublisherCheck

__all__ = ["AuditRecord", "append", "read", "record_for"]

#: Version of the record layout (``schema_version`` in every record).
SCHEMA_VERSION = 1
#: A record longer than this is refused rather than written (it would hold thousands of differences).
MAX_RECORD = 1 << 20


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _version() -> str:
    from model_signing import __version__

    return __version__


@dataclass(frozen=True)
class AuditRecord:
    """One verification, as the audit log keeps it."""

    model_path: str
    result: str
    exit_code: int
    command: str = "verify"
    model_name: str | None = None
    signature_path: str | None = None
    root_digest_expected: str | None = None
    root_digest_actual: str | None = None
    method: str | None = None
    #: The signer, only when the signature verified.
    signer_identity: Mapping[str, Any] | None = None
    #: Who the signature claims to be from when it did not verify: a claim, never an identity.
    claimed_signer_identity: Mapping[str, Any] | None = None
    publisher: str | None = None
    differences: int = 0
    policy_action: str | None = None
    error: str | None = None
    lock_file: str | None = None
    time: str = field(default_factory=_now)
    host: str = field(default_factory=socket.gethostname)
    tool_version: str = field(default_factory=_version)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object written as one line."""
        return {
            "schema_version": SCHEMA_VERSION,
            "time": self.time,
            "tool_version": self.tool_version,
            "host": self.host,
            "command": self.command,
            "lock_file": self.lock_file,
            "model_path": self.model_path,
            "model_name": self.model_name,
            "signature_path": self.signature_path,
            "root_digest_expected": self.root_digest_expected,
            "root_digest_actual": self.root_digest_actual,
            "method": self.method,
            "signer_identity": dict(self.signer_identity) if self.signer_identity is not None else None,
            "claimed_signer_identity": (dict(self.claimed_signer_identity)
                                        if self.claimed_signer_identity is not None else None),
            "publisher": self.publisher,
            "result": self.result,
            "exit_code": self.exit_code,
            "differences": self.differences,
            "policy_action": self.policy_action,
            "error": self.error,
        }


def result_word(exit_code: int) -> str:
    """The ``result`` of a verification with that exit code."""
    return {0: "verified", 1: "error", 2: "invalid-signature", 3: "content-mismatch"}.get(exit_code, "error")


def record_for(
    check: PublisherCheck,
    *,
    command: str = "verify",
    expected_root: str | None = None,
    policy_action: str | None = None,
    result: str | None = None,
    exit_code: int | None = None,
    error: str | None = None,
    model_name: str | None = None,
    lock_file: str | None = None,
) -> AuditRecord:
    """The record of a registry check (``expected_root``: a lock file's recorded digest, else the signed one)."""
    verified = check.result
    code = check.exit_code if exit_code is None else exit_code
    # A signer is recorded as one only if the signature verified; a failed one's signer is only a claim
    # (anyone can write any name into a forged bundle), kept apart so that no reader mistakes it.
    signer = check.signer.as_dict() if check.signer is not None else None
    message = error if error is not None else (str(check.error) if check.error is not None else None)
    return AuditRecord(
        model_path=check.model_path,
        model_name=model_name or (verified.model_name if verified else os.path.basename(check.model_path)),
        signature_path=check.signature_path,
        root_digest_expected=expected_root or (verified.root_digest if verified else None),
        root_digest_actual=verified.actual_root_digest if verified else None,
        method=check.method,
        signer_identity=signer if verified is not None else None,
        claimed_signer_identity=signer if verified is None else None,
        publisher=check.publisher.id if check.publisher else None,
        result=result or ("unknown-signer" if isinstance(check.error, PublisherError) else result_word(code)),
        exit_code=code,
        differences=len(verified.differences) if verified else 0,
        policy_action=policy_action,
        error=" ".join(message.split()) if message else None,
        command=command,
        lock_file=lock_file,
    )


def append(path: PathLike, record: AuditRecord) -> None:
    """Append ``record`` as one line: one ``write`` with ``O_APPEND``, then ``fsync``.

    :class:`InputError` when the log cannot be written.
    """
    where = os.fspath(path)
    line = (json.dumps(record.as_dict(), ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    if len(line) > MAX_RECORD:
        raise InputError(f"audit record for {record.model_path} is {len(line)} bytes, more than {MAX_RECORD}")
    try:
        fd = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a full disk mid-record: say so rather than leave a silent stub
                raise OSError(28, f"only {written} of {len(line)} bytes written")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InputError(f"cannot append to audit log {where}: {exc.strerror or exc}") from None


def read(
    path: PathLike, *, since: dt.datetime | None = None, model: str | None = None
) -> Iterator[dict[str, Any]]:
    """The records of the log at ``path``, oldest first; ``since`` / ``model`` (name or path) filter them.

    A line that is not a JSON record is a :class:`PolicyFileError` naming its line number.
    """
    where = os.fspath(path)
    try:
        f = open(where, "rb")  # noqa: SIM115 - closed below; a generator reads as it goes
    except FileNotFoundError:
        raise InputError(f"audit log {where} does not exist") from None
    except OSError as exc:
        raise InputError(f"audit log {where} cannot be read ({exc.strerror})") from None
    with f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise PolicyFileError(f"{where}: line {number}: is not a JSON record; the log was edited or "
                                      "written by another tool") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("time"), str):
                raise PolicyFileError(f"{where}: line {number}: is not an audit record (no time)")
            if since is not None:
                try:
                    when = dt.datetime.fromisoformat(rec["time"])
                except ValueError:
                    raise PolicyFileError(f"{where}: line {number}: time {rec['time']!r} is not RFC 3339") from None
                if when.tzinfo is None:  # written by hand without a zone: take it as UTC, as the log is
                    when = when.replace(tzinfo=dt.UTC)
                if when < since:
                    continue
            if model is not None and model not in (rec.get("model_name"), rec.get("model_path")):
                continue
            yield rec

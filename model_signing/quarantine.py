"""Quarantine: move a model that failed verification, or holds unsafe content, out of the way (L6).

``verify(..., quarantine=DIR)`` and ``load(..., quarantine=DIR)`` call :func:`quarantine_after_failure`
after a failed verification (bad signature, exit 2; content mismatch, 3) or an unsafe scan (4).  The
model goes to ``DIR/<name>-<UTC time>/<name>`` with ``incident.json`` beside it, and a copy of the
signature when it lay outside the model.

How it moves, and what it never does:

* same file system: one ``rename`` (atomic: the model is at one place or the other);
* across file systems: copy into the quarantine, rename the original aside (a hidden name beside it,
  so nothing can add to it by its path), check the copy against it file by file (type, size, SHA-256,
  link targets), and only then remove the original, entry by entry, each only if it is still the one
  checked (inode, size, mtime, ctime): what a writer changed or added after the check is kept and
  reported (``left_behind``).  A copy that fails or does not match is removed (it is ours) and the
  model is put back where it was;
* nothing of the model is ever deleted without a verified copy in the quarantine; a quarantine that
  cannot complete leaves the model in place and says so (``completed: false`` and ``error`` in the
  record, which is written to the incident directory when it can be).

The record is attached to the error as ``incident`` (and to its ``result`` when it has one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import json
import os
import shutil
import socket
import stat
from typing import Any

from model_signing.errors import InputError, ModelMismatchError, ModelSigningError, UnsafeModelError

#: The incident file written beside the quarantined model.
INCIDENT_FILE = "incident.json"

#: Private test seams, for a quarantine that crosses file systems (a test plays a writer still at work on
#: the model there); production code never sets them.  Called with the model and the destination between
#: the copy and the check, and with the set-aside original and the destination between the check and the
#: removal.
_after_copy_hook: Any = None
_after_check_hook: Any = None


def check_destination(model: str, directory: str) -> str:
    """The quarantine directory's real path, created if missing; :class:`InputError` if it cannot be used.

    Checked before verification starts, so a bad ``quarantine`` fails at once (exit 1), not after hashing.
    """
    if not directory:
        raise InputError("the `quarantine` directory is empty; give a directory to move failed models into")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create quarantine directory {directory} ({exc.strerror or exc}); give another "
                         "`quarantine` directory") from None
    real = os.path.realpath(directory)
    if not os.path.isdir(real):
        raise InputError(f"quarantine path {directory} is not a directory; give a directory for `quarantine`")
    if not os.access(real, os.W_OK | os.X_OK):
        raise InputError(f"quarantine directory {directory} is not writable; give another `quarantine` directory")
    model_real = os.path.realpath(model)
    if real == model_real or real.startswith(model_real.rstrip(os.sep) + os.sep):
        raise InputError(f"quarantine directory {directory} is inside the model {model}; give a directory "
                         "outside it for `quarantine`")
    return real


def _utc_stamp(now: datetime.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


def _incident_dir(directory: str, name: str, now: datetime.datetime) -> str:
    """Create ``directory/<name>-<stamp>`` (``-2``, ``-3``... if taken) and return it."""
    base = os.path.join(directory, f"{name}-{_utc_stamp(now)}")
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}-{n}"
        try:
            os.mkdir(candidate, 0o700)
        except FileExistsError:
            continue
        return candidate
    raise OSError(errno.EEXIST, f"no free incident directory name beside {base}")


def incident_record(exc: ModelSigningError, model: str, signature_path: str, now: datetime.datetime) -> dict[str, Any]:
    """What ``incident.json`` says about the failure (reason, exit code, findings, digests, signer, time, host)."""
    result = getattr(exc, "result", None)
    findings: list[dict[str, Any]] = []
    report = exc.report if isinstance(exc, UnsafeModelError) else getattr(result, "scan", None)
    if report is not None:
        findings = [f.as_dict() for f in report.findings]
    elif isinstance(exc, UnsafeModelError):
        findings = [f.as_dict() for f in exc.findings]
    differences = [d.as_dict() for d in exc.differences] if isinstance(exc, ModelMismatchError) else []
    identity = getattr(result, "signer_identity", None)
    return {
        "reason": " ".join(str(exc).split()),
        "error_type": type(exc).__name__,
        "exit_code": exc.exit_code,
        "model_path": os.path.abspath(model),
        "signature_path": os.path.abspath(signature_path),
        # The signed root digest is known (and trusted) only once the signature verified.
        "expected_root_digest": getattr(result, "root_digest", None),
        # Per resource: the digest the signature gives and the one the disk gave (mismatches only).
        "differences": differences,
        "findings": findings,
        "signer": getattr(result, "signer", None),
        "signer_identity": identity.as_dict() if identity is not None else None,
        "time": now.isoformat().replace("+00:00", "Z"),
        "host": socket.gethostname(),
    }


def quarantine_after_failure(model: str, signature_path: str, directory: str, exc: ModelSigningError) -> dict[str, Any]:
    """Move ``model`` into the quarantine ``directory`` after ``exc``; the record (also set as ``exc.incident``).

    Never raises for a quarantine that fails: the record says what happened (``completed``, ``error``)
    and the verification error stays the one reported.
    """
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    record = incident_record(exc, model, signature_path, now)
    name = os.path.basename(os.path.normpath(os.path.abspath(model))) or "model"
    record.update({"quarantined_to": None, "completed": False, "error": None, "moved_by": None})
    try:
        incident = _incident_dir(directory, name, now)
    except OSError as exc2:
        record["error"] = f"cannot create an incident directory in {directory}: {exc2.strerror or exc2}"
        return _attach(exc, record)
    target = os.path.join(incident, name)
    record["incident_dir"] = incident
    try:
        _move(model, target, record)
    except OSError as exc2:
        record["error"] = f"{exc2.strerror or exc2}" + (f": {exc2.filename}" if exc2.filename else "")
    if record["completed"]:
        record["quarantined_to"] = target
    _copy_signature(model, signature_path, incident, record)
    try:
        with open(os.path.join(incident, INCIDENT_FILE), "x", encoding="utf-8") as f:
            json.dump(record, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc2:
        record["incident_error"] = f"cannot write {INCIDENT_FILE}: {exc2.strerror or exc2}"
    return _attach(exc, record)


def _attach(exc: ModelSigningError, record: dict[str, Any]) -> dict[str, Any]:
    exc.incident = record
    if isinstance(exc, (ModelMismatchError, UnsafeModelError)) and exc.result is not None:
        exc.result = dataclasses.replace(exc.result, quarantine=record)
    return record


def _move(model: str, target: str, record: dict[str, Any]) -> None:
    """Rename, or copy + check + remove across file systems; sets ``record['method']``/``['completed']``."""
    try:
        os.rename(model, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        record["moved_by"], record["completed"] = "rename", True
        return
    record["moved_by"] = "copy"
    try:
        _copy(model, target)
        if _after_copy_hook is not None:
            _after_copy_hook(model, target)
    except OSError:
        _discard(target)
        raise
    # The original is renamed aside (same directory, so same file system: atomic) before it is checked:
    # from here on nothing can add to it by its path, so what is checked is what gets removed.
    try:
        staged = _stage(model)
    except OSError:
        _discard(target)
        raise
    try:
        checked = _entries(staged, identities=True)
        problem = _compare(checked, _entries(target), os.path.basename(model))
    except OSError:
        problem = "it could not be read back"
    if problem is not None:
        _discard(target)
        back = _unstage(staged, model)
        raise OSError(errno.EIO, f"the copy in the quarantine does not match the model ({problem}); "
                                 + ("the model was left where it was" if back else
                                    f"the model was left at {staged} (its path is taken now)"))
    if _after_check_hook is not None:
        _after_check_hook(staged, target)
    left = _remove_checked(staged, checked)
    if left:
        record["copy_verified"] = True
        record["left_behind"] = {"path": staged, "entries": left[:100]}
        raise OSError(errno.EBUSY, f"copied and checked into the quarantine, but {len(left)} entries of the "
                                   f"original changed or appeared after the check and were kept in {staged} "
                                   f"({', '.join(left[:3])}{', ...' if len(left) > 3 else ''}); look at them "
                                   "and remove them by hand", None)
    record["completed"] = True


def _stage(model: str) -> str:
    """Rename ``model`` to a fresh hidden name beside it; the new path."""
    parent, name = os.path.split(os.path.normpath(os.path.abspath(model)))
    for i in range(100):
        staged = os.path.join(parent, f".{name}.quarantining-{os.getpid()}-{i}")
        if os.path.lexists(staged):
            continue
        os.rename(model, staged)
        return staged
    raise OSError(errno.EEXIST, f"no free name to set {model} aside in {parent}")


def _unstage(staged: str, model: str) -> bool:
    """Put the original back at its path (unless something took the path meanwhile)."""
    if os.path.lexists(model):
        return False
    try:
        os.rename(staged, model)
    except OSError:
        return False
    return True


def _remove_checked(staged: str, checked: dict[str, tuple[str, int, str, tuple[int, ...]]]) -> list[str]:
    """Remove what was checked, entry by entry; the entries kept (changed or new since the check).

    A file whose identity (inode, size, mtime, ctime) differs from the one hashed was written after the
    check (a writer with an open descriptor): it is kept, as is anything unknown, and the directories
    holding them.
    """
    left: list[str] = []

    def rel_of(path: str) -> str:
        rel = os.path.relpath(path, staged)
        return "" if rel == "." else rel.replace(os.sep, "/")

    def unchanged(path: str, rel: str) -> bool:
        entry = checked.get(rel)
        if entry is None:
            return False
        try:
            return _identity(os.lstat(path)) == entry[3]
        except OSError:
            return False

    if os.path.isdir(staged) and not os.path.islink(staged):
        for dirpath, dirnames, filenames in os.walk(staged, topdown=False):
            for name in [*filenames, *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]:
                path = os.path.join(dirpath, name)
                rel = rel_of(path)
                if not (unchanged(path, rel) and _unlinked(path)):
                    left.append(rel)
            if rel_of(dirpath) in checked or dirpath == staged:
                with contextlib.suppress(OSError):  # it fails when it holds what was kept
                    os.rmdir(dirpath)
            else:
                left.append(rel_of(dirpath) + "/")
    elif not (unchanged(staged, "") and _unlinked(staged)):
        left.append(os.path.basename(staged))
    return left


def _unlinked(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _copy(model: str, target: str) -> None:
    if os.path.isdir(model) and not os.path.islink(model):
        shutil.copytree(model, target, symlinks=True)
    else:
        shutil.copy2(model, target, follow_symlinks=False)


def _discard(target: str) -> None:
    """Remove a copy of ours that is not (or not yet) the quarantined model."""
    try:
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.unlink(target)
    except OSError:
        pass


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _entries(root: str, *, identities: bool = False) -> dict[str, tuple[str, int, str, tuple[int, ...]]]:
    """Relative path -> (kind, size, sha256 or link target, identity) for every entry under ``root``.

    ``identities``: also the entry's identity (:func:`_identity`), taken before hashing and checked
    unchanged after it (a file written meanwhile raises), so a later removal can tell what was checked.
    """
    out: dict[str, tuple[str, int, str, tuple[int, ...]]] = {}

    def one(path: str, rel: str) -> None:
        st = os.lstat(path)
        ident = _identity(st) if identities else ()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", 0, os.readlink(path), ident)
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", 0, "", ())
            for name in sorted(os.listdir(path)):
                one(os.path.join(path, name), f"{rel}/{name}" if rel else name)
        elif stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                if identities and _identity(os.fstat(f.fileno())) != ident:
                    raise OSError(errno.EBUSY, "changed while it was checked", path)
            out[rel] = ("file", st.st_size, h.hexdigest(), ident)
        else:
            out[rel] = ("special", 0, "", ident)

    one(root, "")
    return out


def _compare(a: dict[str, tuple[str, int, str, tuple[int, ...]]],
             b: dict[str, tuple[str, int, str, tuple[int, ...]]], name: str) -> str | None:
    """``None`` when both hold the same entries (kind, size, content), else the first difference."""
    for rel in sorted(set(a) | set(b)):
        if (a[rel][:3] if rel in a else None) != (b[rel][:3] if rel in b else None):
            return f"{rel or name} differs"
    return None


def _copy_signature(model: str, signature_path: str, incident: str, record: dict[str, Any]) -> None:
    """Keep a copy of the signature beside the incident when it is not inside the (moved) model."""
    sig = os.path.abspath(signature_path)
    model_abs = os.path.abspath(model)
    if sig == model_abs or sig.startswith(model_abs.rstrip(os.sep) + os.sep) or not os.path.isfile(sig):
        record["signature_copy"] = None
        return
    dest = os.path.join(incident, os.path.basename(sig))
    if dest == os.path.join(incident, os.path.basename(model_abs)) or os.path.basename(sig) == INCIDENT_FILE:
        dest += ".signature"
    try:
        shutil.copy2(sig, dest)
        record["signature_copy"] = dest
    except OSError:
        record["signature_copy"] = None

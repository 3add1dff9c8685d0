"""What the commands print: text reports, ``--json`` documents, warnings, and errors -- in one place.

``--json`` prints one document of one schema (:mod:`model_signing.results`) for ``digest``, ``sign`` and
``verify``, on success and on error.  Errors reach :func:`fail` from :func:`model_signing.cli.main`
only: a command records what it is working on with :func:`begin`, so that ``main`` can render the
error document (with the model and signature paths) without every command catching errors itself.

Every write to stdout goes through :func:`out`, which flushes at once: a full disk or a closed pipe
becomes ``cannot write to stdout: <reason>`` (exit 1), never a traceback or a message from the
interpreter's exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from model_signing._internal.text import plural
from model_signing.cli import _terms
from model_signing.errors import (
    Difference,
    InputError,
    ModelMismatchError,
    ModelSigningError,
    UnsafeModelError,
    WrongMethodError,
)

if TYPE_CHECKING:
    from model_signing.results import DigestResult, Result, ScanOutcome, SignResult, VerifyResult

#: The commands whose ``--json`` prints a result document.
JSON_COMMANDS = ("digest", "sign", "verify")


class StdoutError(InputError):
    """Standard output cannot be written (a full disk, a closed pipe)."""


@dataclass
class _Invocation:
    """The CLI run in progress (one per :func:`model_signing.cli.main` call)."""

    command: str | None = None
    model_path: str | None = None
    signature_path: str | None = None
    as_json: bool = False
    stdout_broken: bool = False


_current = _Invocation()


def start(args: list[str]) -> None:
    """A new CLI run: forget the previous one, guess the command and ``--json`` from the arguments.

    The guess only matters when the arguments cannot even be parsed; commands then :func:`begin`.
    """
    options = args[: args.index("--")] if "--" in args else args
    _current.command = args[0] if args and args[0] in JSON_COMMANDS else None
    _current.model_path = _current.signature_path = None
    _current.as_json = "--json" in options
    _current.stdout_broken = False


def begin(command: str, *, model_path: str, signature_path: str | None = None, as_json: bool) -> None:
    """Record what the running command works on (for the error document of :func:`fail`)."""
    _current.command, _current.model_path, _current.signature_path = command, model_path, signature_path
    _current.as_json = as_json


def printable(name: str) -> str:
    """A file name with newlines and control characters escaped, so one item stays one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)


def out(text: str) -> None:
    """Write ``text`` and a newline to stdout, now; raise :class:`StdoutError` if it cannot be written."""
    if _current.stdout_broken:
        return
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError as exc:
        _current.stdout_broken = True
        _discard_stdout()
        raise StdoutError(f"cannot write to stdout: {exc.strerror or exc}") from None


def flush() -> None:
    """Flush stdout (what click or typer printed); :class:`StdoutError` if it cannot be written."""
    if _current.stdout_broken:
        return
    try:
        sys.stdout.flush()
    except OSError as exc:
        _current.stdout_broken = True
        _discard_stdout()
        raise StdoutError(f"cannot write to stdout: {exc.strerror or exc}") from None


def stdout_failed(exc: OSError) -> bool:
    """Whether ``exc`` (met outside :func:`out`: click's help, typer's echo) came from writing stdout.

    Such errors carry no file name; a frame on the way names the stream it wrote.
    If it is stdout, nothing more is written to it.
    """
    if exc.filename is not None:
        return False
    try:
        stdout_fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return False
    tb = exc.__traceback__
    while tb is not None:
        local = tb.tb_frame.f_locals
        # click's echo(file=...), a stream argument, or an object writing to its own .file (rich's Console).
        for stream in (local.get("file"), local.get("stream"), getattr(local.get("self"), "file", None)):
            with contextlib.suppress(Exception):
                if stream is not None and stream.fileno() == stdout_fd:
                    _current.stdout_broken = True
                    _discard_stdout()
                    return True
        tb = tb.tb_next
    return False


def _discard_stdout() -> None:
    # What is still buffered would fail again when the interpreter exits: point stdout at /dev/null.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def warn(message: str) -> None:
    """One warning line on stderr (a library's API terms in it spelt as the CLI's options)."""
    print("warning: " + " ".join(_terms.to_cli(message).split()), file=sys.stderr)


def print_json(result: Result) -> None:
    """The result's JSON document on stdout."""
    out(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))


def _warn_unmatched(paths: tuple[str, ...]) -> None:
    if paths:
        shown = ", ".join(repr(printable(p)) for p in paths)
        warn(
            f"--ignore-paths matched no file in the model: {shown} (ignore paths are literal paths relative to "
            "the model root; globs are not supported)"
        )


def digest(result: DigestResult, as_json: bool) -> None:
    """``digest``: the root digest, or the document."""
    _warn_unmatched(result.unmatched_ignore_paths)
    if as_json:
        print_json(result)
    else:
        out(result.root_digest)


def signed(result: SignResult, as_json: bool, *, to_stderr: bool = False) -> None:
    """``sign``: what was signed and where the signature went (on stderr when the bundle went to stdout)."""
    if result.unmatched_ignore_paths:
        _warn_unmatched(result.unmatched_ignore_paths)
        warn("the unmatched --ignore-paths are recorded in the signature anyway")
    if as_json:
        print_json(result)
        return
    where = "stdout" if to_stderr else result.signature_path
    text = (
        f"signed {result.model_path}: {plural(len(result.manifest.resources), 'resource')}, root digest "
        f"sha256:{result.root_digest}\nsignature written to {where} ({result.signer})"
    )
    text += "".join(f"\ntimestamped at {stamp}" for stamp in _timestamps_of(result.bundle_json))
    if result.scan is not None:
        text += "\n" + "\n".join(scan_lines(result.scan))
    if to_stderr:
        print(text, file=sys.stderr)
    else:
        out(text)


def _timestamps_of(bundle_json: str) -> list[str]:
    """The RFC 3161 timestamps the signer put in the bundle, as the TSA stated them (checked against the
    request, not against trust material, which only the verifier brings)."""
    if "rfc3161Timestamps" not in bundle_json:
        return []
    import base64

    from model_signing.methods.timestamps import describe_token

    material = json.loads(bundle_json).get("verificationMaterial", {})
    stamps = material.get("timestampVerificationData", {}).get("rfc3161Timestamps", [])
    shown = []
    for stamp in stamps:
        try:
            info = describe_token(base64.b64decode(stamp["signedTimestamp"]))
        except (ValueError, KeyError, TypeError):
            continue  # the signer checked each answer; nothing to add to the report otherwise
        shown.append(f"{info['time']:%Y-%m-%d %H:%M:%S} UTC (RFC 3161, by {info['tsa'] or 'an unnamed TSA'})")
    return shown


def verified(result: VerifyResult, as_json: bool) -> None:
    """``verify`` success: what matched, who signed, and the unsigned files accepted."""
    _warn_unmatched(result.unmatched_ignore_paths)
    if as_json:
        print_json(result)
        return
    unsigned = result.unsigned_files
    extra = f"; {plural(len(unsigned), 'unsigned file')} ignored" if unsigned else ""
    legacy = " (legacy v0.2 signature)" if result.legacy_encoding or result.root_digest is None else ""
    lines = [
        f"verified {result.model_path} against {result.signature_path}{legacy}: "
        f"{plural(len(result.manifest.resources), 'resource')} "
        f"{'matches' if len(result.manifest.resources) == 1 else 'match'}{extra}",
        f"signed by {result.signer}",
    ]
    # A verified RFC 3161 timestamp: when the signature existed (certificates were checked at that time).
    lines += [f"signed at {stamp.description}" for stamp in result.timestamps]
    if unsigned:
        lines.append("unsigned files accepted (--ignore-unsigned-files):")
        lines.extend(f"  {printable(name)}" for name in unsigned)
    if result.scan is not None:
        lines.extend(scan_lines(result.scan))
    out("\n".join(lines))


def finding_line(f: Any) -> str:
    """One scan finding as one report line (``scan`` prints the same)."""
    where = "" if f.offset is None else f" @{f.offset}"
    return f"{f.severity.label:<8} {printable(f.file)}{where}: {f.kind}: {printable(f.detail)}"


def scan_lines(report: ScanOutcome) -> list[str]:
    """The scan made in the hashing pass: a summary line, then each finding (all below the threshold here)."""
    findings = sorted(report.findings, key=lambda f: (-f.severity, f.file, f.offset or 0))
    above = sum(1 for f in findings if f.severity >= report.threshold)
    head = (f"scanned in the same pass: {plural(report.files_scanned, 'file')}, "
            f"{plural(len(findings), 'finding')} ({above} at or above {report.threshold.label})")
    return [head, *("  " + finding_line(f) for f in findings)]


def incident_lines(incident: dict[str, Any]) -> list[str]:
    """What the quarantine did, for stderr."""
    model = printable(str(incident.get("model_path")))
    if incident.get("completed"):
        return [f"quarantined: {model} was moved to {printable(str(incident['quarantined_to']))} "
                f"(incident record: {INCIDENT_NAME} beside it)"]
    where = incident.get("incident_dir")
    lines = [f"quarantine failed: {printable(str(incident.get('error')))}; the model was left at {model}"]
    if incident.get("copy_verified"):
        lines = [f"quarantine incomplete: {printable(str(incident.get('error')))} (a checked copy is in "
                 f"{printable(str(where))})"]
    elif where:
        lines.append(f"  (incident record in {printable(str(where))})")
    return lines


#: The quarantine's incident file (``model_signing.quarantine.INCIDENT_FILE``, not imported at start-up).
INCIDENT_NAME = "incident.json"


def difference_line(d: Difference) -> str:
    """One difference as one report line (without indentation)."""
    name = printable(d.name)
    if d.kind == "excluded":
        return f"excluded: {name} (signed, but excluded by --ignore-paths, so not checked)"
    if d.detail:
        return f"{d.kind}: {name} ({d.detail})"
    if d.expected_size is not None or d.actual_size is not None:  # shards: one line per file
        if d.kind == "modified":
            changed = d.expected_size != d.actual_size
            return f"modified: {name} (size {d.expected_size} -> {d.actual_size})" if changed else f"modified: {name}"
        size = d.expected_size if d.kind == "missing" else d.actual_size
        return f"{d.kind}: {name} (size {size})"
    return f"{d.kind}: {name} expected {d.expected or '-'} actual {d.actual or '-'}"


def _error_document(message: str, code: int, exc: BaseException | None) -> None:
    from model_signing.results import ErrorResult

    inv = _current
    if not inv.as_json or inv.command not in JSON_COMMANDS or inv.stdout_broken:
        return
    result: Result
    if isinstance(exc, ModelSigningError):
        result = ErrorResult.from_error(
            inv.command, exc, model_path=inv.model_path, signature_path=inv.signature_path, message=message
        )
    else:
        result = ErrorResult(inv.command, message, code, inv.model_path, inv.signature_path)
    with contextlib.suppress(StdoutError):  # the error itself still goes to stderr
        print_json(result)


def cli_message(exc: ModelSigningError, message: str | None = None) -> str:
    """A library error's message (or ``message``) as the CLI words it: its options, its commands, one line."""
    if isinstance(exc, WrongMethodError):  # the library says "a key verifier"; here that is a command
        message = (f"{exc.source} is a {exc.signed_with} signature, not a {exc.expected} one; verify it with "
                   f"'verify {exc.signed_with}'")
    else:
        message = _terms.to_cli(str(exc) if message is None else message)
    return " ".join(message.split())


def cli_message_text(message: str) -> str:
    """A library message (API terms between backticks) in the CLI's terms, on one line."""
    return " ".join(_terms.to_cli(message).split())


def fail(message: str, code: int, exc: BaseException | None = None) -> NoReturn:
    """Report an error -- the document on stdout with ``--json``, one line on stderr -- and exit ``code``.

    A library error's API terms (`ignore_paths`, `allow_symlinks=True`) become the CLI's options here,
    for both, so every command names its flags without catching the library's errors itself.
    """
    if isinstance(exc, ModelSigningError):
        message = cli_message(exc, message)
    message = " ".join(message.split())  # one line, always: collapse newlines a library put in its message
    if isinstance(exc, ModelMismatchError) and exc.result is not None:
        _warn_unmatched(exc.result.unmatched_ignore_paths)
    _error_document(message, code, exc)
    print("error: " + message, file=sys.stderr)
    if isinstance(exc, ModelMismatchError):
        # The one multi-line report: the summary, then every difference on its own line.
        for d in exc.differences:
            print("  " + difference_line(d), file=sys.stderr)
        if exc.result is not None and exc.result.unsigned_files:
            print(f"  ({len(exc.result.unsigned_files)} unsigned files accepted by --ignore-unsigned-files: "
                  f"{', '.join(printable(n) for n in exc.result.unsigned_files)})", file=sys.stderr)
    if isinstance(exc, UnsafeModelError) and exc.report is not None:  # `scan` printed them on stdout already
        for f in sorted(exc.findings, key=lambda f: (-f.severity, f.file, f.offset or 0)):
            print("  " + finding_line(f), file=sys.stderr)
    if isinstance(exc, ModelSigningError) and exc.incident is not None:
        for line in incident_lines(exc.incident):
            print(line, file=sys.stderr)
    sys.exit(code)

"""The command-line interface: a thin typer layer over the public API.

Each command group lives in its own small module and registers itself on :data:`app`.  Errors are
turned into one line on stderr and an exit code here, in one place (:func:`main`), never in commands.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from model_signing.errors import ModelSigningError

EXIT_BAD_INPUT = 1
#: Set by :func:`run`: this process is the program, not a caller of :func:`main` (which keeps its own
#: process as it is: no fork of it for the Sigstore helper, no quick exit).
_as_program = [False]


def _fail(message: str, code: int, exc: BaseException | None = None) -> NoReturn:
    from model_signing.cli import _report

    _report.fail(message, code, exc)


def _uses_sigstore(args: list[str]) -> bool:
    """Whether the command runs a method that uses the Sigstore helper (asked of the method registry).

    ``sign``/``verify`` followed by anything but a method name run the groups' default method.
    """
    if len(args) < 2 or args[0] not in ("sign", "verify") or any(a in ("--help", "-h") for a in args):
        return False
    if args[0] == "verify" and (args[1] == "registry" or any(a.split("=")[0] == "--registry" for a in args)):
        return False  # the registry picks the method per signature: the helper starts if a keyless one needs it
    from model_signing import methods

    spec = methods.REGISTRY.get(args[1]) or methods.REGISTRY[methods.DEFAULT]
    return spec.uses_sigstore_helper


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the only place that maps errors to exit codes (and, with ``--json``, error documents)."""
    args = sys.argv[1:] if argv is None else argv
    early: BaseException | None = None
    try:
        if _uses_sigstore(args):
            # Start the Sigstore helper before anything else: it imports sigstore (the longest step of a
            # keyless command) while this process imports the CLI, parses the arguments and hashes.
            from model_signing.methods.sigstore import service

            service.prestart(fork=_as_program[0])
    except (ModelSigningError, KeyboardInterrupt) as exc:
        early = exc  # reported below, once the report knows the command (--json)
    from model_signing.cli import _report

    _report.start(args)
    try:
        if isinstance(early, ModelSigningError):
            raise early
        if early is not None:
            raise KeyboardInterrupt
        import click
        import typer

        from model_signing.cli._app import app
    except ModelSigningError as exc:
        _fail(str(exc), exc.exit_code, exc)
    except KeyboardInterrupt:  # Ctrl-C this early: still no traceback
        _fail("interrupted", 130)

    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="modelseal", standalone_mode=False)
        _report.flush()  # what click printed (help) must reach stdout now, or fail here as one line
    except ModelSigningError as exc:
        _fail(str(exc), exc.exit_code, exc)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except click.exceptions.UsageError as exc:
        # click uses exit code 2 for usage errors; here 2 means "signature invalid", so bad
        # arguments exit 1 like every other bad input.
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _fail(exc.format_message() + hint, EXIT_BAD_INPUT)
    except click.exceptions.ClickException as exc:
        _fail(exc.format_message(), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as exc:
        if _report.stdout_failed(exc):  # click's or typer's own printing (help) to a full disk or closed pipe
            _fail(f"cannot write to stdout: {exc.strerror or exc}", EXIT_BAD_INPUT)
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}", EXIT_BAD_INPUT)
    except Exception as exc:  # the CLI promises no tracebacks
        if os.environ.get("MODEL_SIGNING_DEBUG"):
            raise
        _fail(f"internal error: {exc!r} (set MODEL_SIGNING_DEBUG=1 for a traceback and report it)", 1)
    sys.exit(rv if isinstance(rv, int) else 0)


def run() -> NoReturn:
    """The program's entry point (``modelseal``, ``python main.py``): :func:`main`, then a quick exit.

    Once the command is done, nothing is left for the interpreter's tear-down to do but free the
    modules a signing loads (sigstore, pydantic, cryptography): a tenth of a second that every command
    would wait for.  So the exit handlers run (the Sigstore helper is closed, logs are flushed), the
    standard streams are flushed, and the process ends with the command's exit code.  A thread of
    ours still running, which the interpreter would join, makes it exit the usual way.
    """
    _as_program[0] = True
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    _exit_now(code)


def _exit_now(code: object) -> NoReturn:
    import threading

    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): what the interpreter would print, and 1
        print(code, file=sys.stderr)
        code = 1
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe, or no stream at all (started with the descriptor closed): the command's own
        # output checks already reported what they could.
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                if stream is sys.stdout and code == 0:
                    code = 120  # output lost: what the interpreter's own exit would return
    os._exit(code)

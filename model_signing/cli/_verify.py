"""CLI: the ``verify`` group and what its subcommands share (one subcommand per signing method, each in
:mod:`model_signing.cli.methods`).

Exit codes come from the error raised (mapped in :func:`model_signing.cli.main`): 0 verified, 1 bad
input, 2 signature invalid, 3 model mismatch -- with every difference listed on stderr.  With ``--json``
a result document is printed on stdout in every case (see :mod:`model_signing.results`), by ``main``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from model_signing.cli import _audit, _report
from model_signing.cli import _options as opt
from model_signing.errors import ModelSigningError

if TYPE_CHECKING:
    from model_signing.verifying import Verifier

verify_app = typer.Typer(
    # Plain click help: typer's rich formatting costs ~70 ms of imports on every command's start-up.
    rich_markup_mode=None,
    name="verify",
    cls=opt.DefaultGroup,
    help="Verify a model against its OMS v1.0 signature.",
    no_args_is_help=True,
)

def begin(path: str, options: opt.VerifySettings) -> None:
    """Record the ``verify`` being run (for the ``--json`` error document); first thing in every ``verify``."""
    from model_signing.signing import default_signature_path

    sig = options.signature if options.signature is not None else default_signature_path(path)
    _report.begin("verify", model_path=path, signature_path=sig, as_json=options.as_json)


def run_verify(path: str, verifier: Verifier, options: opt.VerifySettings) -> None:
    """Run :func:`model_signing.verify` and report; shared by every ``verify`` subcommand."""
    from model_signing.signing import default_signature_path
    from model_signing.verifying import verify

    sig = options.signature if options.signature is not None else default_signature_path(path)
    # Errors (a mismatch included) propagate: main() prints them, and with --json their document.
    try:
        result = verify(
            path,
            verifier,
            signature_path=sig,
            ignore_unsigned_files=options.ignore_unsigned_files,
            ignore_paths=options.ignore_paths,
            max_workers=options.max_workers,
            progress=False if options.quiet else None,
            scan=options.scan,
            quarantine=options.quarantine,
        )
    except ModelSigningError as exc:
        if options.audit_log is not None:
            try:
                _audit.record_verification(options.audit_log, path, sig, exc)
            except ModelSigningError as audit_error:
                # The verification's own failure (exit 2/3/4) must not be replaced by the log's (exit 1).
                _report.warn(f"the failure was not recorded: {audit_error}")
        raise
    if options.audit_log is not None:
        _audit.record_verification(options.audit_log, path, sig, result)
    _report.verified(result, options.as_json)


def register(app: typer.Typer) -> None:
    """Add the ``verify`` group to the app."""
    app.add_typer(verify_app, name="verify")

"""CLI: ``audit show FILE``, and the audit records of ``verify --audit-log`` (:mod:`model_signing.policy.audit`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _report

if TYPE_CHECKING:
    from model_signing.errors import ModelSigningError
    from model_signing.results import VerifyResult

audit_app = typer.Typer(
    rich_markup_mode=None,
    name="audit",
    cls=opt.HelpGroup,
    help="Read the JSON-lines audit log that verify --audit-log and verify-all --audit-log write.",
    no_args_is_help=True,
)


def record_verification(log: str, model: str, signature: str, outcome: VerifyResult | ModelSigningError) -> None:
    """Append the record of one plain ``verify <method>`` (no registry: no publisher) to ``log``."""
    from model_signing.errors import ModelMismatchError, ModelSigningError
    from model_signing.policy import audit
    from model_signing.policy.registry import PublisherCheck

    result = outcome.result if isinstance(outcome, ModelMismatchError) else outcome
    error = outcome if isinstance(outcome, ModelSigningError) else None
    verified = result if result is not None and not isinstance(result, ModelSigningError) else None
    check = PublisherCheck(
        model, signature, verified.method if verified else None, verified.signer_identity if verified else None,
        None, verified, error=error,
    )
    message = _report.cli_message(error) if error is not None else None
    audit.append(log, audit.record_for(check, error=message))


def _since(value: str | None) -> dt.datetime | None:
    from model_signing.errors import InputError

    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since {value!r} is not a time; write it like 2026-01-31T12:00:00Z") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


@audit_app.command("show")
def show(
    log: Annotated[str, typer.Argument(metavar="FILE", help="The audit log.")],
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", help="Only records at or after TIME (RFC 3339; UTC "
                                                                   "when no offset is given).")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME", help="Only this model (name or path).")
    ] = None,
    as_json: opt.Json = False,
) -> None:
    """Show the records of an audit log, oldest first."""
    from model_signing.policy import audit

    records = list(audit.read(log, since=_since(since), model=model))
    if as_json:
        _report.out(json.dumps(records, indent=2, ensure_ascii=False))
        return
    if not records:
        _report.out("no records")
        return
    rows = [("TIME", "MODEL", "RESULT", "PUBLISHER", "ACTION", "EXIT", "SIGNER")]
    for r in records:
        signer = (r.get("signer_identity") or {}).get("description") or "-"
        rows.append((str(r.get("time")), _report.printable(str(r.get("model_name") or r.get("model_path"))),
                     str(r.get("result")), str(r.get("publisher") or "-"), str(r.get("policy_action") or "-"),
                     str(r.get("exit_code")), signer))
    _report.out(table(rows))


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns (the last one unpadded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]) for r in rows)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` group."""
    app.add_typer(audit_app, name="audit")

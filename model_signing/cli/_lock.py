"""CLI: ``lock create`` (write a model pack's lock file) and ``verify-all LOCK`` (verify the pack under its policy).

``verify-all`` exits 0 when the policy is satisfied (fallbacks used are noted), else with the exit code
of the worst failure (2 signature or signer, 3 content or lock mismatch), and 1 for a malformed lock,
registry or policy file.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from model_signing.cli import _audit, _report
from model_signing.cli import _options as opt

if TYPE_CHECKING:
    from model_signing.policy.lock import PackResult

lock_app = typer.Typer(
    rich_markup_mode=None,
    name="lock",
    cls=opt.HelpGroup,
    help="Lock files for model packs: models, root digests, publishers, roles and a verification policy.",
    no_args_is_help=True,
)

TrustConfig = Annotated[
    str | None, typer.Option("--trust-config", metavar="PATH",
                             help="Sigstore instance for keyless publishers without their own.")
]
Offline = Annotated[bool, typer.Option("--offline", help="Never touch the network (keyless).")]
PolicyFile = Annotated[
    str | None, typer.Option("--policy", metavar="FILE", help="A policy file (replaces the lock's own policy).")
]


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    from model_signing.errors import InputError

    out: dict[str, str] = {}
    for v in values or ():
        name, eq, value = v.partition("=")
        if not eq or not name or not value:
            raise InputError(f"{option} {v!r}: write it as NAME=VALUE")
        out[name] = value
    return out


@lock_app.command("create")
def create(
    models: Annotated[
        list[str] | None, typer.Argument(metavar="MODEL...", help="The models (directories or files).")
    ] = None,
    *,
    output: Annotated[str, typer.Option("--output", "-o", metavar="FILE", help="The lock file to write.")],
    from_dir: Annotated[
        str | None, typer.Option("--from-dir", metavar="DIR",
                                 help="Lock every model of DIR: each subdirectory and each top-level file.")
    ] = None,
    registry: Annotated[
        str | None, typer.Option("--registry", metavar="FILE",
                                 help="Verify each model now and record the publisher that signed it.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", metavar="PATH", help="With --from-dir: not a model (repeatable).")
    ] = None,
    policy: PolicyFile = None,
    role: Annotated[
        list[str] | None, typer.Option("--role", metavar="NAME=ROLE", help="primary (default) or shadow.")
    ] = None,
    fallback: Annotated[
        list[str] | None, typer.Option("--fallback", metavar="NAME=PRIMARY",
                                       help="Model NAME stands in for PRIMARY when the policy falls back.")
    ] = None,
    signature: Annotated[
        list[str] | None, typer.Option("--signature", metavar="NAME=PATH",
                                       help="Model NAME's signature, when it is not NAME.sig beside it (repeatable).")
    ] = None,
    overwrite: opt.Overwrite = False,
    trust_config: TrustConfig = None,
    offline: Offline = False,
) -> None:
    """Write a lock file for a model pack (signatures: NAME.sig, or a model.sig naming the model, beside each)."""
    import os

    from model_signing.errors import InputError
    from model_signing.policy.lock import Policy, create_lock, models_in

    paths = list(models or ())
    if from_dir is not None:
        skip = [p for p in (output, registry, policy, *(exclude or ())) if p is not None]
        paths += models_in(from_dir, exclude=skip)
    if not paths:
        raise InputError("no model given: pass MODEL... or --from-dir DIR")
    lock = create_lock(
        paths, output, registry=registry, roles=_pairs(role, "--role"), fallbacks=_pairs(fallback, "--fallback"),
        policy=Policy.load(policy) if policy is not None else None, overwrite=overwrite,
        signatures=_pairs(signature, "--signature"),
        trust_config=trust_config, offline=offline,
    )
    rows = [("MODEL", "ROLE", "PUBLISHERS", "ROOT DIGEST")]
    rows += [(m.name, f"fallback for {m.fallback_for}" if m.fallback_for else m.role, ",".join(m.publishers) or "any",
              "sha256:" + m.root_digest) for m in lock.models]
    _report.out(f"locked {len(lock.models)} model{'s' if len(lock.models) != 1 else ''} in {os.fspath(output)}\n"
                + _audit.table(rows))


def verify_all(
    lock_file: Annotated[str, typer.Argument(metavar="LOCK", help="The lock file (model-lock.json).")],
    *,
    as_json: opt.Json = False,
    audit_log: opt.AuditLog = None,
    max_parallel: Annotated[
        int | None, typer.Option("--max-parallel", min=1, metavar="N",
                                 help="Models verified at once (default: CPU count); they share the hashing workers.")
    ] = None,
    registry: Annotated[
        str | None, typer.Option("--registry", metavar="FILE", help="The registry (default: the lock's).")
    ] = None,
    policy: PolicyFile = None,
    trust_config: TrustConfig = None,
    offline: Offline = False,
) -> None:
    """Verify every model of a pack under its lock's policy; print what to load."""
    from model_signing.errors import ModelSigningError
    from model_signing.policy.lock import Lock, Policy

    try:
        lock = Lock.load(lock_file)
        result = lock.verify(
            policy=Policy.load(policy) if policy is not None else None, registry=registry, audit=audit_log,
            max_parallel=max_parallel, trust_config=trust_config, offline=offline,
        )
    except ModelSigningError as exc:
        if as_json:  # a script reading --json gets a document in every case; main() still prints the error
            failed = {"ok": False, "exit_code": exc.exit_code, "command": "verify-all", "lock_file": lock_file,
                      "error": _report.cli_message(exc), "models": [], "fallbacks": {}, "to_load": {}}
            _report.out(json.dumps(failed, indent=2, ensure_ascii=False))
        raise
    if as_json:
        doc = result.as_dict()
        doc["error"] = _report.cli_message_text(doc["error"]) if doc["error"] else None
        _report.out(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        _report.out(_pack_table(result))
    if not result.ok:
        print("error: policy not satisfied: " + _report.cli_message_text("; ".join(result.reasons)), file=sys.stderr)
        raise typer.Exit(result.exit_code)


def _pack_table(result: PackResult) -> str:
    rows = [("MODEL", "ROLE", "PUBLISHER", "RESULT", "ACTION", "TIME")]
    for o in result.models:
        role = f"fallback:{o.model.fallback_for}" if o.model.fallback_for else o.model.role
        action = f"fallback -> {o.replaced_by}" if o.replaced_by else o.action
        rows.append((o.model.name, role, o.publisher or "-", (o.kind or "verified").replace("_", "-"), action,
                     f"{o.seconds:.2f}s"))
    lines = [_audit.table(rows)]
    for o in result.models:
        if o.message:
            lines.append(f"  {o.model.name}: {_report.cli_message_text(o.message)}")
    if result.ok:
        used = ", ".join(f"{k} -> {v}" for k, v in result.fallbacks.items())
        lines.append("policy satisfied" + (f" (fallback used: {used})" if used else ""))
        warned = [o.model.name for o in result.models if o.action == "warn"]
        if warned:
            lines.append(f"accepted with warnings: {', '.join(warned)}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add the ``lock`` group and the ``verify-all`` command."""
    app.add_typer(lock_app, name="lock")
    app.command("verify-all")(verify_all)

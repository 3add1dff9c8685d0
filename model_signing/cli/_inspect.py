"""CLI: ``inspect SIGNATURE``: what a signature claims, NOT verified."""

from __future__ import annotations

from typing import Annotated

import typer

from model_signing.cli import _options as opt


def register(app: typer.Typer) -> None:
    """Add the ``inspect`` command."""
    app.command("inspect")(inspect)


def inspect(
    signature: Annotated[str, typer.Argument(metavar="SIGNATURE", help="The signature bundle to read.")],
    as_json: opt.Json = False,
    files: Annotated[bool, typer.Option("--files", help="List every resource with its digest.")] = False,
) -> None:
    """Show what a signature claims (method, signer, model, settings) WITHOUT verifying it."""
    from model_signing.inspecting import inspect as run

    result = run(signature)
    doc = result.as_dict(files=files)
    if as_json:
        opt.print_json(doc)
        return
    lines = [f"NOT VERIFIED: what {signature} claims (use `verify` to check it)",
             f"method:          {doc['method']}",
             f"signer:          {result.signer.description}"]
    cert = doc["certificate"]
    if cert:
        lines.append(f"certificate:     {cert['subject']} (issued by {cert['issuer']}, serial {cert['serial']})")
        lines.append(f"valid:           {cert['not_before']} to {cert['not_after']}")
        if cert["oidc_issuer"]:
            lines.append(f"oidc issuer:     {cert['oidc_issuer']}")
        lines += [f"  {k}: {v}" for k, v in cert["extensions"].items() if not k.startswith("issuer")]
    lines += [
        f"tlog entry:      index {e['log_index']}, {e['kind']} {e['version']}, "
        # A Rekor v2 entry has no integrated time: its time comes from the RFC 3161 timestamp.
        + (f"integrated {e['integrated_time']}" if e["integrated_time"] else "no integrated time (Rekor v2)")
        for e in doc["tlog_entries"]
    ]
    lines += [
        f"timestamp:       {t['time']} (RFC 3161, by {t['tsa'] or 'an unnamed TSA'}"
        + (f", TSA certificate serial {t['tsa_serial']}" if t["tsa_serial"] else "") + f"; token serial {t['serial']})"
        for t in doc["rfc3161_timestamps"]
    ]
    ser = doc["serialization"]
    lines += [
        f"model:           {doc['model_name'] or '(none: v0.2 statement)'}",
        f"root digest:     {'sha256:' + doc['root_digest'] if doc['root_digest'] else '(none)'}",
        f"predicate:       {doc['predicate_type']}",
        "serialization:   " + ", ".join(f"{k}={v}" for k, v in ser.items()),
        f"resources:       {doc['resource_count']} ({doc['file_count']} files"
        + (f", {doc['total_size']} bytes)" if doc["total_size"] is not None else "; sizes not recorded)"),
    ]
    lines += [f"  {r['name']}  {r['algorithm']}:{r['digest']}" for r in doc["resources"]]
    print("\n".join(lines))

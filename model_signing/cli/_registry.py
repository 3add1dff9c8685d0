"""CLI: the ``registry`` group (add, remove, revoke, list, show) and ``verify MODEL --registry FILE``.

Edits are atomic and serialised (:func:`model_signing.policy.registry.edit_registry`): a lock file beside
the registry, a temporary file, a rename.  A malformed registry or entry is one line naming the file
and the field (exit 1), and nothing is written.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from model_signing.cli import _audit, _report, _verify
from model_signing.cli import _options as opt

if TYPE_CHECKING:
    from model_signing.policy.registry import Publisher, PublisherCheck

registry_app = typer.Typer(
    rich_markup_mode=None,
    name="registry",
    cls=opt.HelpGroup,
    help="Edit and read a trusted-publisher registry (JSON; TOML registries are read-only).",
    no_args_is_help=True,
)

RegistryFile = Annotated[
    str, typer.Option("--registry", metavar="FILE", help="The trusted-publisher registry (JSON or TOML).")
]
PublisherId = Annotated[str, typer.Argument(metavar="ID", help="The publisher's id.")]
Many = Annotated[list[str] | None, typer.Option(metavar="PATH")]


def _pem(path: str, what: str) -> str:
    from model_signing._internal.files import MAX_CERTIFICATE_FILE, read_small_file
    from model_signing.errors import KeyMaterialError

    raw = read_small_file(path, what, limit=MAX_CERTIFICATE_FILE, error=KeyMaterialError)
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyMaterialError(f"{what} {path} is not PEM text") from None


def _key_entry(path: str) -> dict[str, str]:
    from model_signing.keymaterial.keys import key_signer, load_public_key

    key_id = key_signer(load_public_key(path)).key_id
    return {"key_id": str(key_id), "public_key": _pem(path, "public key")}


def _secret_entry(env: str | None, key_id: str | None) -> dict[str, str]:
    from model_signing.errors import InputError
    from model_signing.methods.secret import key_id as secret_key_id

    if key_id is None:
        value = os.environb.get(os.fsencode(env)) if env is not None else None
        if value is None:
            raise InputError(f"--secret-env {env}: the environment variable is not set; set it to the shared secret "
                             "or give --secret-key-id")
        key_id = secret_key_id(value)
    entry = {"key_id": key_id}
    if env is not None:
        entry["secret_env"] = env
    return entry


@registry_app.command("add")
def add(
    *,
    registry: RegistryFile,
    publisher_id: Annotated[str, typer.Option("--id", metavar="ID", help="The publisher's id (unique).")],
    name: Annotated[str, typer.Option("--name", metavar="TEXT", help="Display name.")],
    public_key: Annotated[
        list[str] | None,
        typer.Option("--public-key", metavar="PATH", help="A public key (PEM) it signs with (repeatable)."),
    ] = None,
    certificate_chain: Annotated[
        list[str] | None,
        typer.Option("--certificate-chain", metavar="PATH", help="Trust anchor (PEM) of its certificates (repeat)."),
    ] = None,
    certificate_subject: Annotated[
        str | None, typer.Option("--certificate-subject", metavar="DN", help="Required signing certificate subject.")
    ] = None,
    identity: Annotated[str | None, typer.Option("--identity", metavar="ID", help="Keyless signer identity.")] = None,
    identity_regexp: Annotated[
        str | None, typer.Option("--identity-regexp", metavar="RE", help="Keyless identity, as a full-match regexp.")
    ] = None,
    identity_provider: Annotated[
        str | None, typer.Option("--identity-provider", metavar="URL", help="The OIDC issuer of the identity.")
    ] = None,
    repository: Annotated[str | None, typer.Option("--repository", metavar="OWNER/REPO")] = None,
    ref: Annotated[str | None, typer.Option("--ref", metavar="REF")] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", metavar="NAME")] = None,
    trust_config: Annotated[
        str | None,
        typer.Option("--trust-config", metavar="PATH", help="The Sigstore instance of its keyless signatures."),
    ] = None,
    secret_env: Annotated[
        str | None, typer.Option("--secret-env", metavar="NAME", help="Variable that holds its shared secret.")
    ] = None,
    secret_key_id: Annotated[
        str | None, typer.Option("--secret-key-id", metavar="ID", help="Its shared secret's key id (hmac-sha256:...).")
    ] = None,
    trusted_since: Annotated[str | None, typer.Option("--trusted-since", metavar="TIME")] = None,
    revoked_at: Annotated[str | None, typer.Option("--revoked-at", metavar="TIME")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace the publisher with this id.")] = False,
) -> None:
    """Add a publisher (one or more of: keyless identity, public keys, certificate anchors, shared secret)."""
    from model_signing.errors import InputError
    from model_signing.policy.registry import Publisher, edit_registry

    entry: dict[str, Any] = {"id": publisher_id, "name": name}
    if trusted_since is not None:
        entry["trusted_since"] = trusted_since
    if revoked_at is not None:
        entry["revoked_at"] = revoked_at
    if identity is not None or identity_regexp is not None or identity_provider is not None:
        if identity_provider is None:
            raise InputError("--identity-provider is required with --identity or --identity-regexp")
        store: dict[str, Any] = {"issuer": identity_provider, "identity": identity, "identity_regexp": identity_regexp,
                                 "repository": repository, "ref": ref, "workflow": workflow}
        if trust_config is not None:
            store["trust_config"] = os.path.abspath(trust_config)
        entry["sigstore"] = [{k: v for k, v in store.items() if v is not None}]
    elif repository or ref or workflow or trust_config:
        raise InputError("--repository, --ref, --workflow and --trust-config need --identity or --identity-regexp")
    if public_key:
        entry["keys"] = [_key_entry(p) for p in public_key]
    if certificate_chain:
        cert: dict[str, Any] = {"trust_anchors": [_pem(p, "certificate chain file") for p in certificate_chain]}
        if certificate_subject is not None:
            cert["subject"] = certificate_subject
        entry["certificates"] = [cert]
    elif certificate_subject is not None:
        raise InputError("--certificate-subject needs --certificate-chain (the trust anchor)")
    if secret_env is not None or secret_key_id is not None:
        entry["secrets"] = [_secret_entry(secret_env, secret_key_id)]
    publisher = Publisher.from_dict(entry, registry)
    edit_registry(registry, lambda reg: reg.with_publisher(publisher, replace=replace))
    _report.out(f"{'replaced' if replace else 'added'} publisher {publisher.id} ({publisher.name}) in {registry}: "
                + ", ".join(m.describe() for m in publisher.materials))


@registry_app.command("remove")
def remove(*, publisher_id: PublisherId, registry: RegistryFile) -> None:
    """Remove a publisher."""
    from model_signing.policy.registry import edit_registry

    edit_registry(registry, lambda reg: reg.without_publisher(publisher_id), create=False)
    _report.out(f"removed publisher {publisher_id} from {registry}")


@registry_app.command("revoke")
def revoke(
    *,
    publisher_id: PublisherId,
    registry: RegistryFile,
    at: Annotated[str | None, typer.Option("--at", metavar="TIME", help="When (RFC 3339; default: now).")] = None,
) -> None:
    """Revoke a publisher: signatures made at or after TIME (or, without a trusted time, all of them) fail."""
    import dataclasses
    import datetime as dt

    from model_signing.policy.fields import Fields, format_time
    from model_signing.policy.registry import Registry, edit_registry

    when = (Fields("--at").time({"at": at}, "at", "") if at is not None else None) or dt.datetime.now(dt.UTC)

    def change(reg: Registry) -> Registry:
        return reg.with_publisher(dataclasses.replace(reg.get(publisher_id), revoked_at=when), replace=True)

    edit_registry(registry, change, create=False)
    _report.out(f"revoked publisher {publisher_id} in {registry} as of {format_time(when)}")


@registry_app.command("list")
def list_publishers(*, registry: RegistryFile, as_json: opt.Json = False) -> None:
    """List the publishers."""
    from model_signing.policy.registry import Registry

    reg = Registry.load(registry)
    if as_json:
        _report.out(json.dumps([p.as_dict() for p in reg.publishers], indent=2, ensure_ascii=False))
        return
    rows = [("ID", "NAME", "STATUS", "MATERIAL")]
    rows += [(p.id, p.name, _status(p), "; ".join(m.describe() for m in p.materials)) for p in reg.publishers]
    _report.out(_audit.table(rows) if reg.publishers else f"{registry}: no publishers")


@registry_app.command("show")
def show(*, publisher_id: PublisherId, registry: RegistryFile, as_json: opt.Json = False) -> None:
    """Show one publisher's entry (its public material in full)."""
    from model_signing.policy.registry import Registry

    reg = Registry.load(registry)
    pub = reg.get(publisher_id)
    if as_json:
        _report.out(json.dumps({**pub.as_dict(), "entry": pub.to_dict(reg.base)}, indent=2, ensure_ascii=False))
        return
    lines = [f"publisher:      {pub.id}", f"name:           {pub.name}", f"status:         {_status(pub)}"]
    lines += [f"material:       {m.describe()}" for m in pub.materials]
    _report.out("\n".join(lines))


def _status(p: Publisher) -> str:
    from model_signing.policy.fields import format_time

    if p.revoked():
        return f"revoked at {format_time(p.revoked_at)}"
    if p.revoked_at is not None:
        return f"trusted, revocation scheduled for {format_time(p.revoked_at)}"
    return f"trusted since {format_time(p.trusted_since)}" if p.trusted_since else "trusted"


# -- verify MODEL --registry FILE ---------------------------------------------------------------------


@_verify.verify_app.command("registry")
@opt.with_option_groups
def verify_registry(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    registry: RegistryFile,
    publisher: Annotated[
        str | None, typer.Option("--publisher", metavar="ID", help="Accept only this publisher.")
    ] = None,
    trust_config: Annotated[
        str | None, typer.Option("--trust-config", metavar="PATH",
                                 help="Sigstore instance for keyless publishers without their own.")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="Never touch the network (keyless).")] = False,
    signature: opt.SignatureIn = None,
    max_workers: opt.MaxWorkers = None,
    quiet: opt.Quiet = False,
    as_json: opt.Json = False,
    audit_log: opt.AuditLog = None,
) -> None:
    """Verify against a trusted-publisher registry (also: verify MODEL --registry FILE).

    The verifier is chosen from the signature's method and signer; the output names the publisher.
    A signer that is no publisher, a revoked one, or a signature made after the revocation: exit 2.
    """
    from model_signing.errors import ModelMismatchError, ModelSigningError
    from model_signing.policy import audit
    from model_signing.policy.registry import Registry
    from model_signing.signing import default_signature_path

    del quiet  # accepted like every verify's; registry verification never draws a progress bar
    model = opt.model_path(path, path_option)
    sig = signature if signature is not None else default_signature_path(model)
    _report.begin("verify", model_path=model, signature_path=sig, as_json=as_json)
    reg = Registry.load(registry)
    check = reg.check(model, sig, publisher=publisher, trust_config=trust_config, offline=offline,
                      max_workers=opt.capped_workers(max_workers))
    if audit_log is not None:
        message = _report.cli_message(check.error) if check.error is not None else None
        try:
            audit.append(audit_log, audit.record_for(check, error=message))
        except ModelSigningError as audit_error:
            if check.error is None:
                raise  # a verification that cannot be recorded does not pass (exit 1)
            # The verification's own failure (exit 2/3) must not be replaced by the log's (exit 1).
            _report.warn(f"the failure was not recorded: {audit_error}")
    if check.error is not None:
        if check.publisher is not None and isinstance(check.error, ModelMismatchError) and not as_json:
            # A mismatch: the signature is the publisher's, the content is not what it signed.
            print(f"signed by publisher {check.publisher.id} ({check.publisher.name})", file=sys.stderr)
        raise check.error
    _verified(check, as_json)


def _verified(check: PublisherCheck, as_json: bool) -> None:
    assert check.result is not None and check.publisher is not None
    pub = check.publisher
    if as_json:
        from model_signing.policy.fields import format_time

        doc = {**check.result.as_dict(), "publisher": pub.as_dict(), "signed_at": format_time(check.signed_at),
               "notes": list(check.notes)}
        _report.out(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    _report.verified(check.result, False)
    _report.out(f"publisher {pub.id} ({pub.name})")
    for note in check.notes:
        _report.out(f"note: {note}")


def register(app: typer.Typer) -> None:
    """Add the ``registry`` group (``verify registry`` registers itself on import)."""
    app.add_typer(registry_app, name="registry")

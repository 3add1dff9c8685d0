"""CLI: the ``hub`` group -- ``hub upload REPO_ID FOLDER`` and ``hub verify REPO_ID`` (:mod:`model_signing.hub`).

One command each, for every signing method: the method is the one whose options are given (``--private-key``
alone: ``key``; with ``--signing-certificate``: ``certificate``; ``--public-key``: ``key``;
``--certificate-chain`` at verify: ``certificate``; none of them: keyless ``sigstore``), or ``--method``.
The options are the ``sign <method>`` / ``verify <method>`` ones, spelt the same; the signers and
verifiers are built the same way.  ``--json`` prints the ``sign`` / ``verify`` document with a ``hub``
object added, on success and on error; errors still reach :func:`model_signing.cli.main`, which prints the
one line and exits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from model_signing._internal.text import plural
from model_signing.cli import _options as opt
from model_signing.cli import _report, _terms
from model_signing.cli.methods import certificate as _certificate_cli
from model_signing.cli.methods import sigstore as _sigstore_cli

if TYPE_CHECKING:
    from model_signing.errors import ModelSigningError
    from model_signing.methods.base import Signer, Verifier

hub_app = typer.Typer(
    # Plain click help: typer's rich formatting costs ~70 ms of imports on every command's start-up.
    rich_markup_mode=None,
    name="hub",
    cls=opt.HelpGroup,
    help="Sign and upload a model to a Hugging Face hub repository, or verify one (needs modelseal[hub]).",
    no_args_is_help=True,
)


class MethodChoice(StrEnum):
    """``--method``: the signing method (default: the one whose options are given)."""

    key = "key"
    certificate = "certificate"
    sigstore = "sigstore"


RepoId = Annotated[str, typer.Argument(metavar="REPO_ID", help="The repository, namespace/name.", show_default=False)]
Method = Annotated[
    MethodChoice | None,
    typer.Option("--method", help="Signing method (default: key/certificate when their options are given, "
                                  "else keyless sigstore)."),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="Hugging Face token (default: env HF_TOKEN or the saved login; prefer the environment: arguments "
        "show in the process list). Never printed.",
        show_default=False,
    ),
]
Endpoint = Annotated[
    str | None,
    typer.Option("--endpoint", metavar="URL", help="The hub's URL (default: env HF_ENDPOINT, else huggingface.co)."),
]
Revision = Annotated[
    str | None,
    typer.Option("--revision", metavar="REV", help="Branch, tag or commit (default: the default branch)."),
]
OptionalPrivateKey = Annotated[
    str | None,
    typer.Option("--private-key", metavar="PATH", help="key/certificate: private key (PEM; EC or Ed25519)."),
]
OptionalSigningCertificate = Annotated[
    str | None,
    typer.Option("--signing-certificate", metavar="PATH", help="certificate: the private key's leaf certificate."),
]
OptionalPublicKey = Annotated[
    str | None, typer.Option("--public-key", metavar="PATH", help="key: the signer's public key (PEM).")
]
ChainOption = Annotated[
    list[str] | None,
    typer.Option(
        "--certificate-chain",
        metavar="PATH",
        help="certificate: upload: the intermediates (and root) to bundle; verify: the trusted root(s). Repeatable.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add the ``hub`` group to the app."""
    app.add_typer(hub_app, name="hub")


# -- the method from the options -----------------------------------------------------------------------


def _method(chosen: MethodChoice | None, key_options: dict[str, object], cert_options: dict[str, object],
            sigstore_options: dict[str, object], *, certificate_uses_key: bool) -> str:
    """The method the options ask for (``--method``, else the one whose options are given).

    Options of another method are refused, named; ``certificate_uses_key``: the key options (upload's
    ``--private-key``) belong to the certificate method too.
    """
    from model_signing.errors import InputError

    def given(options: dict[str, object]) -> list[str]:
        return [name for name, value in options.items() if value not in (None, False, (), [])]

    if chosen is not None:
        method = chosen.value
    else:
        method = "certificate" if given(cert_options) else "key" if given(key_options) else "sigstore"
    foreign = {
        "key": given(cert_options) + given(sigstore_options),
        "certificate": given(sigstore_options) + ([] if certificate_uses_key else given(key_options)),
        "sigstore": given(key_options) + given(cert_options),
    }[method]
    if foreign:
        raise InputError(f"{', '.join(foreign)} cannot be used with the {method} method; give the options of one "
                         "signing method (or --method)")
    return method


def _timeout(seconds: float) -> float:
    import math

    from model_signing.errors import InputError

    if not 0 < seconds < math.inf:
        raise InputError(f"--timeout {seconds:g}: give a positive number of seconds")
    return seconds


def _print_json(doc: dict[str, Any]) -> None:
    import json

    _report.out(json.dumps(doc, indent=2, ensure_ascii=False))


def _json_error(exc: ModelSigningError, command: str, hub: dict[str, Any]) -> dict[str, Any]:
    """The error document of ``command`` (the one schema), with the ``hub`` object."""
    from model_signing.errors import HubMismatchError
    from model_signing.results import ErrorResult

    if isinstance(exc, HubMismatchError) and exc.hub_result is not None:
        return exc.hub_result.as_dict()  # type: ignore[no-any-return]
    doc = ErrorResult.from_error(command, exc, message=" ".join(_terms.to_cli(str(exc)).split())).as_dict()
    return {**doc, "hub": hub}


def _run(command: str, as_json: bool, hub: dict[str, Any], call: Callable[[], None]) -> None:
    """``call()``; with ``--json`` an error also prints its document (``main`` prints the line and exits)."""
    import logging

    from model_signing.errors import (
        ModelSigningError,
        RemoteVerificationUnsupportedError,
        VerificationError,
        WrongMethodError,
    )

    if not logging.getLogger().handlers:
        # The client logs its retries and fallbacks as warnings on stderr; the outcome is reported here, once
        # (it reads HF_HUB_VERBOSITY when it is imported, which is below; --log-level keeps its logs).
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    try:
        call()
    except RemoteVerificationUnsupportedError as exc:
        # The library says to download with download_and_verify(); here that is hub verify without --remote-only.
        message = str(exc).replace("download it and verify it with download_and_verify()",
                                   "run 'hub verify' without --remote-only to download it and verify it")
        cli_error = RemoteVerificationUnsupportedError(message)
        if as_json:
            _print_json(_json_error(cli_error, command, hub))
        raise cli_error from None
    except WrongMethodError as exc:
        # The report would advise 'verify <method>'; here it is this command with that method's options.
        wrong = VerificationError(f"{exc.source} is a {exc.signed_with} signature, not a {exc.expected} one; verify "
                                  f"it with 'hub verify' and the {exc.signed_with} method's options")
        if as_json:
            _print_json(_json_error(wrong, command, hub))
        raise wrong from None
    except ModelSigningError as exc:
        if as_json:
            _print_json(_json_error(exc, command, hub))
        raise


# -- hub upload ----------------------------------------------------------------------------------------


@hub_app.command("upload", cls=opt.PeerSpellings)
@opt.with_option_groups
def upload(  # noqa: PLR0917 - one parameter per CLI option
    repo_id: RepoId,
    folder: opt.ModelPath,
    revision: Annotated[
        str | None, typer.Option("--revision", metavar="BRANCH", help="Branch to commit to (default: main).")
    ] = None,
    commit_message: Annotated[
        str | None, typer.Option("--commit-message", metavar="TEXT", help="The commit's message.")
    ] = None,
    token: Token = None,
    endpoint: Endpoint = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repository private if it is new.")] = False,
    delete_other_files: Annotated[
        bool,
        typer.Option("--delete-other-files", help="In the same commit, delete the repository's files that are not "
                                                  "part of this upload (not .gitattributes)."),
    ] = False,
    method: Method = None,
    private_key: OptionalPrivateKey = None,
    password_env: opt.PasswordEnv = None,
    signing_certificate: OptionalSigningCertificate = None,
    certificate_chain: ChainOption = None,
    identity_token: Annotated[
        str | None,
        typer.Option("--identity-token", help="sigstore: OIDC identity token (default: env SIGSTORE_IDENTITY_TOKEN)."),
    ] = None,
    disable_ambient: Annotated[
        bool, typer.Option("--oidc-disable-ambient-providers", help="sigstore: do not pick up CI credentials.")
    ] = False,
    force_oob: Annotated[bool, typer.Option("--oauth-force-oob", help="sigstore: out-of-band OAuth flow.")] = False,
    staging: _sigstore_cli.Staging = False,
    trust_config: _sigstore_cli.TrustConfig = None,
    timeout: _sigstore_cli.Timeout = 60.0,
    *,
    hashing: opt.HashingOptions,
    as_json: opt.Json = False,
) -> None:
    """Hash and sign FOLDER, then upload its signed files and model.sig (at the root) in one commit."""
    from model_signing.integrations import hub

    chosen = _method(
        method, {"--private-key": private_key, "--password-env": password_env},
        {"--signing-certificate": signing_certificate, "--certificate-chain": certificate_chain},
        {"--identity-token": identity_token, "--oidc-disable-ambient-providers": disable_ambient,
         "--oauth-force-oob": force_oob, "--staging": staging, "--trust-config": trust_config},
        certificate_uses_key=True,
    )
    _report.begin("hub", model_path=folder, as_json=as_json)
    signer = _signer(chosen, private_key=private_key, password_env=password_env,
                     signing_certificate=signing_certificate, certificate_chain=certificate_chain,
                     identity_token=identity_token, disable_ambient=disable_ambient, force_oob=force_oob,
                     staging=staging, trust_config=trust_config, timeout=timeout)
    context = {"repo_id": repo_id, "revision": revision or "main", "endpoint": endpoint}

    def call() -> None:
        result = hub.sign_and_upload(
            repo_id, folder, signer(), revision=revision,
            commit_message=commit_message or hub.DEFAULT_COMMIT_MESSAGE, hashing=hashing, token=token,
            endpoint=endpoint, private=private or None, delete_other_files=delete_other_files,
            progress=hashing.progress,
        )
        _uploaded(result, as_json)

    _run("sign", as_json, context, call)


def _signer(method: str, *, private_key: str | None, password_env: str | None, signing_certificate: str | None,
            certificate_chain: list[str] | None, identity_token: str | None, disable_ambient: bool, force_oob: bool,
            staging: bool, trust_config: str | None, timeout: float) -> Callable[[], Signer]:
    """What builds the signer (called once the inputs are known to be usable, as ``sign`` does)."""
    from model_signing.errors import InputError

    if method == "sigstore":
        from model_signing.methods.sigstore import SigstoreSigner, TokenSource

        source = TokenSource(identity_token=identity_token, use_ambient_credentials=not disable_ambient,
                             oauth_force_oob=force_oob)
        seconds = _timeout(timeout)
        return lambda: SigstoreSigner(trust_config=trust_config, staging=staging, token_source=source, timeout=seconds)
    if private_key is None:
        raise InputError(f"the {method} method needs --private-key")
    if method == "key":
        from model_signing.methods.key import KeySigner

        def key_signer() -> Signer:
            made = KeySigner(private_key, password=opt.password_from_env(password_env))
            opt.warn_if_peer_cannot_verify(made.algorithm)
            return made

        return key_signer
    if signing_certificate is None:
        raise InputError("the certificate method needs --signing-certificate")
    from model_signing.methods.certificate import CertificateSigner

    def certificate_signer() -> Signer:
        made = CertificateSigner(private_key, signing_certificate, tuple(certificate_chain or ()),
                                 password=opt.password_from_env(password_env))
        for warning in made.warnings:
            _report.warn(warning)
        return made

    return certificate_signer


def _uploaded(result: Any, as_json: bool) -> None:
    if as_json:
        _print_json(result.as_dict())
        return
    signed = result.signing
    _report.out(
        f"signed {signed.model_path}: {plural(len(signed.manifest.resources), 'resource')}, root digest "
        f"sha256:{signed.root_digest} ({signed.signer})\n"
        f"uploaded {plural(len(result.uploaded) - 1, 'file')} and {result.signature_in_repo} to {result.repo_id} "
        f"(branch {result.revision}) in commit {result.commit}"
        + (f", deleting {plural(len(result.deleted), 'other file')}" if result.deleted else "") + "\n"
        f"verify it with: modelseal hub verify {result.repo_id} --revision {result.commit} ..."
    )


# -- hub verify ----------------------------------------------------------------------------------------


@hub_app.command("verify", cls=opt.PeerSpellings)
@opt.with_option_groups
def verify(  # noqa: PLR0917 - one parameter per CLI option
    repo_id: RepoId,
    revision: Revision = None,
    remote_only: Annotated[
        bool,
        typer.Option(
            "--remote-only",
            help="Download only model.sig and the small files; check the large (LFS) files against the SHA-256 "
            "the hub reports for them (files signatures with sha256 only).",
        ),
    ] = False,
    local_dir: Annotated[
        str | None,
        typer.Option("--local-dir", metavar="PATH", help="Where the verified files go (absent or empty; default: "
                                                         "./NAME, the repository's name). Not with --remote-only."),
    ] = None,
    allow_patterns: Annotated[
        list[str] | None,
        typer.Option("--allow-patterns", metavar="GLOB", help="Download only matching files (repeatable); "
                                                              "every signed file must still match."),
    ] = None,
    token: Token = None,
    endpoint: Endpoint = None,
    method: Method = None,
    public_key: OptionalPublicKey = None,
    certificate_chain: ChainOption = None,
    strict_x509: _certificate_cli.StrictX509 = False,
    identity: Annotated[str | None, typer.Option("--identity", "--cert-identity",
                                                 help="sigstore: expected signer identity, exactly.")] = None,
    identity_regexp: Annotated[str | None, typer.Option(
        "--identity-regexp", "--cert-identity-regexp", help="sigstore: regexp the WHOLE identity must match.")] = None,
    identity_provider: Annotated[str | None, typer.Option(
        "--identity-provider", "--cert-oidc-issuer", help="sigstore: expected OIDC issuer URL (required).")] = None,
    repository: Annotated[str | None, typer.Option("--repository", help="sigstore, GitHub: owner/repo.")] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="sigstore, GitHub: expected git ref.")] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", help="sigstore, GitHub: workflow name.")] = None,
    workflow_trigger: Annotated[str | None, typer.Option("--workflow-trigger", help="sigstore, GitHub: event.")] = None,
    workflow_sha: Annotated[str | None, typer.Option("--workflow-sha", help="sigstore, GitHub: commit SHA.")] = None,
    staging: _sigstore_cli.Staging = False,
    trust_config: _sigstore_cli.TrustConfig = None,
    trusted_root: Annotated[
        str | None, typer.Option("--trusted-root", metavar="PATH", help="sigstore: trusted root JSON.")
    ] = None,
    offline: Annotated[bool, typer.Option("--offline", help="sigstore: no network for Sigstore.")] = False,
    timeout: _sigstore_cli.Timeout = 60.0,
    ignore_unsigned_files: opt.IgnoreUnsigned = False,
    ignore_paths: opt.ExtraIgnorePaths = None,
    max_workers: opt.MaxWorkers = None,
    quiet: opt.Quiet = False,
    as_json: opt.Json = False,
) -> None:
    """Verify REPO_ID against its model.sig at one pinned commit: download and verify, or --remote-only."""
    from model_signing.errors import InputError
    from model_signing.integrations import hub

    chosen = _method(
        method, {"--public-key": public_key}, {"--certificate-chain": certificate_chain, "--strict-x509": strict_x509},
        {"--identity": identity, "--identity-regexp": identity_regexp, "--identity-provider": identity_provider,
         "--repository": repository, "--ref": ref, "--workflow": workflow, "--workflow-trigger": workflow_trigger,
         "--workflow-sha": workflow_sha, "--staging": staging, "--trust-config": trust_config,
         "--trusted-root": trusted_root, "--offline": offline},
        certificate_uses_key=False,
    )
    if remote_only and (local_dir is not None or allow_patterns):
        raise InputError("--remote-only downloads no model: --local-dir and --allow-patterns do not apply")
    _report.begin("hub", model_path=repo_id, as_json=as_json)
    workers = opt.capped_workers(max_workers)
    verifier = _verifier(
        chosen, public_key=public_key, certificate_chain=certificate_chain, strict_x509=strict_x509,
        identity=identity, identity_regexp=identity_regexp, identity_provider=identity_provider,
        repository=repository, ref=ref, workflow=workflow, workflow_trigger=workflow_trigger,
        workflow_sha=workflow_sha, staging=staging, trust_config=trust_config, trusted_root=trusted_root,
        offline=offline, timeout=timeout,
    )
    context = {"repo_id": repo_id, "revision": revision, "endpoint": endpoint, "remote_only": remote_only}
    progress = False if quiet else None

    def call() -> None:
        if remote_only:
            result = hub.verify_remote(
                repo_id, verifier, revision=revision, ignore_unsigned_files=ignore_unsigned_files,
                ignore_paths=tuple(ignore_paths or ()), token=token, endpoint=endpoint, max_workers=workers,
                progress=progress,
            )
        else:
            target = local_dir if local_dir is not None else os.path.join(".", repo_id.rpartition("/")[2])
            result = hub.download_and_verify(
                repo_id, verifier, revision=revision, local_dir=target, allow_patterns=allow_patterns,
                ignore_unsigned_files=ignore_unsigned_files, ignore_paths=tuple(ignore_paths or ()), token=token,
                endpoint=endpoint, max_workers=workers, progress=progress,
            )
        _verified(result, as_json)

    _run("verify", as_json, context, call)


def _verifier(method: str, *, public_key: str | None, certificate_chain: list[str] | None, strict_x509: bool,
              identity: str | None, identity_regexp: str | None, identity_provider: str | None,
              repository: str | None, ref: str | None, workflow: str | None, workflow_trigger: str | None,
              workflow_sha: str | None, staging: bool, trust_config: str | None, trusted_root: str | None,
              offline: bool, timeout: float) -> Verifier:
    """The verifier ``verify <method>`` would build from the same options."""
    from model_signing.errors import InputError

    if method == "key":
        from model_signing.methods.key import KeyVerifier

        if public_key is None:
            raise InputError("the key method needs --public-key")
        return KeyVerifier(public_key)
    if method == "certificate":
        from model_signing.methods.certificate import CertificateVerifier

        if not certificate_chain:
            raise InputError("the certificate method needs --certificate-chain (the trusted root certificates)")
        return CertificateVerifier(certificate_chain, strict=strict_x509)
    from model_signing.methods.sigstore import IdentityPolicy, SigstoreVerifier

    policy = IdentityPolicy(
        issuer=identity_provider or "", identity=identity, identity_regexp=identity_regexp, repository=repository,
        ref=ref, workflow=workflow, workflow_trigger=workflow_trigger, workflow_sha=workflow_sha,
    )
    return SigstoreVerifier(policy, trust_config=trust_config, trusted_root=trusted_root, staging=staging,
                            offline=offline, timeout=_timeout(timeout))


def _verified(result: Any, as_json: bool) -> None:
    if as_json:
        _print_json(result.as_dict())
        return
    v = result.verification
    count = len(v.manifest.resources)
    lines = [
        f"verified {result.repo_id} at commit {result.commit} against its {v.signature_path.rpartition('/')[2]}: "
        f"{plural(count, 'resource')} {'matches' if count == 1 else 'match'}",
        f"signed by {v.signer}",
    ]
    if result.remote_only:
        lines.append(f"note: {result.note}")
    else:
        lines.append(f"verified files in {result.local_dir}")
    if v.unsigned_files:
        lines.append("unsigned files accepted (--ignore-unsigned-files):")
        lines.extend(f"  {_report.printable(name)}" for name in v.unsigned_files)
    _report.out("\n".join(lines))

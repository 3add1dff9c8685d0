"""CLI: ``sign sigstore`` and ``verify sigstore`` (keyless; the default method of both groups).

``sign MODEL`` / ``sign --path MODEL`` and ``verify --path MODEL --identity ... --identity-provider ...``
(the seed's forms) reach these commands through the groups' default subcommand.
"""

from __future__ import annotations

from typing import Annotated

import typer

from model_signing.cli import _options as opt
from model_signing.cli._sign import begin as begin_sign
from model_signing.cli._sign import run_sign, sign_app
from model_signing.cli._verify import begin as begin_verify
from model_signing.cli._verify import run_verify, verify_app

TrustConfig = Annotated[
    str | None,
    typer.Option(
        "--trust-config",
        metavar="PATH",
        help="ClientTrustConfig JSON of a private instance (trusted root + signing config)."
    ),
]
Staging = Annotated[bool, typer.Option("--staging", help="Use Sigstore's staging instance.")]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Give up on a Sigstore service (TUF, Fulcio, Rekor, timestamp authority) that does not connect or "
        "answer within this many seconds.",
    ),
]


def _timeout(seconds: float) -> float:
    import math

    from model_signing.errors import InputError

    if not 0 < seconds < math.inf:
        raise InputError(f"--timeout {seconds:g}: give a positive number of seconds")
    return seconds


@sign_app.command("sigstore", cls=opt.PeerSpellings)
@opt.with_option_groups
def sign_sigstore(  # noqa: PLR0917 - one parameter per CLI option
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    identity_token: Annotated[
        str | None,
        typer.Option(
            "--identity-token",
            # SIGSTORE_IDENTITY_TOKEN is read by the library (not as a typer envvar) so errors name the source.
            help="OIDC identity token to sign with (default: env SIGSTORE_IDENTITY_TOKEN); skips ambient "
            "detection and the browser flow.",
        ),
    ] = None,
    disable_ambient: Annotated[
        bool,
        typer.Option(
            "--oidc-disable-ambient-providers",
            help="Do not pick up CI credentials (GitHub Actions, GitLab, Buildkite, GCP, CircleCI).",
        ),
    ] = False,
    force_oob: Annotated[
        bool, typer.Option("--oauth-force-oob", help="Out-of-band OAuth flow (print a URL, paste the code).")
    ] = False,
    client_id: Annotated[str, typer.Option("--client-id", help="OIDC client id.")] = "sigstore",
    client_secret: Annotated[
        str,
        typer.Option(
            "--client-secret",
            envvar="SIGSTORE_OIDC_CLIENT_SECRET",
            show_envvar=True,
            help="OIDC client secret (prefer the environment variable: arguments show in the process list).",
        ),
    ] = "",
    oidc_issuer: Annotated[
        str | None,
        typer.Option("--oidc-issuer", help="OIDC issuer for the browser flow (default: the instance's)."),
    ] = None,
    staging: Staging = False,
    trust_config: TrustConfig = None,
    rekor_version: Annotated[
        int | None,
        typer.Option(
            "--rekor-version",
            min=1,
            max=2,
            help="Rekor API version of the transparency log to sign to (1 or 2; default: the highest the "
            "signing config offers, as sigstore picks). v2 entries carry no time: a timestamp authority is needed.",
        ),
    ] = None,
    timeout: Timeout = 60.0,
    signature: opt.SignatureOut = None,
    overwrite: opt.Overwrite = False,
    *,
    hashing: opt.HashingOptions,
    scanning: opt.ScanOptions,
    as_json: opt.Json = False,
) -> None:
    """Sign keyless with Sigstore (the default): OIDC identity -> Fulcio certificate -> Rekor entry."""
    from model_signing.methods.sigstore import SigstoreSigner, TokenSource

    model = opt.model_path(path, path_option)
    begin_sign(model, signature, as_json)
    source = TokenSource(
        identity_token=identity_token,
        use_ambient_credentials=not disable_ambient,
        oauth_force_oob=force_oob,
        client_id=client_id,
        client_secret=client_secret,
        oidc_issuer=oidc_issuer,
    )
    seconds = _timeout(timeout)  # a bad option fails before any other work

    def signer() -> SigstoreSigner:
        return SigstoreSigner(trust_config=trust_config, staging=staging, token_source=source, timeout=seconds,
                              rekor_version=rekor_version)

    run_sign(model, signer, hashing, signature=signature, overwrite=overwrite, as_json=as_json,
             scan=scanning)


@verify_app.command("sigstore", cls=opt.PeerSpellings)
@opt.with_option_groups
def verify_sigstore(  # noqa: PLR0917 - one parameter per CLI option
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    identity: Annotated[
        str | None, typer.Option(
            "--identity",
            "--cert-identity",
            help="Expected signer identity (email or URI), exactly (required: this or --identity-regexp).",
        )
    ] = None,
    identity_regexp: Annotated[
        str | None,
        typer.Option(
            "--identity-regexp",
            "--cert-identity-regexp",
            help="Regexp the WHOLE signer identity must match (a full match, unlike cosign's search: "
            "'.*@example\\.com', not '@example\\.com').",
        ),
    ] = None,
    identity_provider: Annotated[
        str | None,
        typer.Option(
            "--identity-provider",
            "--cert-oidc-issuer",
            help="Expected OIDC issuer URL of the signer (required).",
        ),
    ] = None,
    repository: Annotated[
        str | None, typer.Option("--repository", help="GitHub Actions: expected repository (owner/repo).")
    ] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="GitHub Actions: expected git ref (refs/...).")] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", help="GitHub Actions: expected workflow name.")] = None,
    workflow_trigger: Annotated[
        str | None, typer.Option("--workflow-trigger", help="GitHub Actions: expected event (e.g. push).")
    ] = None,
    workflow_sha: Annotated[
        str | None, typer.Option("--workflow-sha", help="GitHub Actions: expected commit SHA.")
    ] = None,
    staging: Staging = False,
    trust_config: TrustConfig = None,
    trusted_root: Annotated[
        str | None,
        typer.Option("--trusted-root", metavar="PATH", help="Trusted root JSON to verify against (no network)."),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="No network: use --trust-config/--trusted-root, or the public-good root shipped with sigstore.",
        ),
    ] = False,
    timeout: Timeout = 60.0,
    *,
    options: opt.VerifyOptions,
) -> None:
    """Verify a keyless signature: certificate chain, transparency log, and the signer's identity."""
    from model_signing.methods.sigstore import IdentityPolicy, SigstoreVerifier

    model = opt.model_path(path, path_option)
    begin_verify(model, options)
    # IdentityPolicy refuses a missing issuer ("`issuer` is required", which the report spells --identity-provider).
    policy = IdentityPolicy(
        issuer=identity_provider or "", identity=identity, identity_regexp=identity_regexp, repository=repository,
        ref=ref, workflow=workflow, workflow_trigger=workflow_trigger, workflow_sha=workflow_sha,
    )
    verifier = SigstoreVerifier(
        policy, trust_config=trust_config, trusted_root=trusted_root, staging=staging, offline=offline,
        timeout=_timeout(timeout),
    )
    run_verify(model, verifier, options)


def register(app: typer.Typer) -> None:
    """The commands attach to the ``sign`` / ``verify`` groups on import; nothing to add to ``app``."""

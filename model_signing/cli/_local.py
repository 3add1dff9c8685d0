"""CLI: ``sigstore-local serve`` / ``sigstore-local token`` -- run the local Sigstore instance, mint tokens."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from model_signing.cli._options import HelpGroup

local_app = typer.Typer(
    # Plain click help: typer's rich formatting costs ~70 ms of imports on every command's start-up.
    rich_markup_mode=None,
    name="sigstore-local",
    help="A local Sigstore instance (OIDC issuer, Fulcio, Rekor, TSA) for tests and air-gapped sites.",
    cls=HelpGroup,
    no_args_is_help=True,
)


def _stop_on_signals() -> threading.Event:
    """SIGINT and SIGTERM set the returned event, so the server stops cleanly (state kept, exit 0).

    Installed explicitly because a shell starting ``serve &`` without job control makes the process inherit
    an *ignored* SIGINT.  The handler only sets an event (rather than raising KeyboardInterrupt) so a
    signal can never land in the middle of start-up output or shutdown and turn into exit code 130.
    """
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@local_app.command()
def serve(  # noqa: PLR0917 - one parameter per CLI option
    trust_config_out: Annotated[
        Path | None,
        typer.Option("--trust-config-out", help="Also write the ClientTrustConfig JSON here (atomically)."),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Keys, certificates and log; reuse it to keep verifying old bundles "
                                         "(default: a temporary directory, deleted on exit)."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535,
                     help="Port; 0 picks a free one (default: the port --state-dir was served on last, else free)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --trust-config-out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not log each request served.")] = False,
    rekor_version: Annotated[
        int,
        typer.Option("--rekor-version", min=1, max=2,
                     help="Rekor API offered to signers: 1, or 2 to also serve a Rekor v2 log (tile-backed, "
                          "0.0.2 entries, timestamps from the local TSA) and offer it first."),
    ] = 1,
) -> None:
    """Serve the local instance until Ctrl-C (or SIGTERM); prints its URLs and writes its trust config."""
    from model_signing.errors import InputError
    from model_signing.sigstore_local import LocalSigstore, is_trust_config_of

    # Checked before anything is created; a restart may rewrite its own trust config (same state dir).
    if (
        trust_config_out is not None
        and trust_config_out.exists()
        and not overwrite
        and not (state_dir is not None and is_trust_config_of(trust_config_out, state_dir))
    ):
        raise InputError(
            f"--trust-config-out {trust_config_out}: already exists and is not the trust config of "
            f"{'--state-dir ' + str(state_dir) if state_dir is not None else 'this instance'}; "
            "pass --overwrite to replace it"
        )
    if not quiet:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("sigstore-local: %(message)s"))
        logger = logging.getLogger("model_signing.sigstore_local")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    stop = _stop_on_signals()
    with LocalSigstore(state_dir, host=host, port=port, trust_config_out=trust_config_out, overwrite=overwrite,
                       rekor_version=rekor_version) as inst:
        shown_config = trust_config_out or inst.trust_config_path
        print(f"local Sigstore instance serving at {inst.base_url}")
        print(f"  OIDC issuer:   {inst.oidc_issuer}")
        print(f"  Fulcio, Rekor: {inst.base_url}")
        if inst.rekor_v2_url is not None:
            offered = "offered to signers" if inst.rekor_version == 2 else "kept for verification, not offered"
            print(f"  Rekor v2:      {inst.rekor_v2_url} ({offered})")
        print(f"  TSA:           {inst.tsa_url}")
        print(f"  state dir:     {inst.state_dir}")
        print(f"  trust config:  {shown_config}")
        print(f"mint a token:  sigstore-local token --state-dir {inst.state_dir} --identity you@example.com")
        import urllib.request  # only here: it costs ~40 ms at start-up of every other command

        if urllib.request.getproxies().get("http") and not urllib.request.proxy_bypass(inst.base_url.split("//")[1]):
            print(f"warning: an HTTP proxy is configured; clients need NO_PROXY={host} to reach this instance",
                  file=sys.stderr)
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopped", file=sys.stderr)


@local_app.command()
def token(  # noqa: PLR0917 - one parameter per CLI option
    state_dir: Annotated[Path, typer.Option("--state-dir", help="State directory of the instance.")],
    identity: Annotated[
        str | None, typer.Option("--identity", help="Email address or URI the token names.")
    ] = None,
    repository: Annotated[
        str | None, typer.Option("--repository", help="Instead of --identity: a GitHub-workflow token for owner/name.")
    ] = None,
    workflow: Annotated[
        str, typer.Option("--workflow", help="Workflow path (with --repository).")
    ] = ".github/workflows/release.yml",
    ref: Annotated[str, typer.Option("--ref", help="Git ref (with --repository).")] = "refs/heads/main",
    issuer_url: Annotated[
        str | None, typer.Option("--issuer-url", help="Issuer URL (default: the instance serving from --state-dir).")
    ] = None,
    expires_in: Annotated[int, typer.Option("--expires-in", min=1, max=86400, help="Lifetime in seconds.")] = 600,
) -> None:
    """Print an identity token (aud "sigstore") signed by the instance's issuer; no browser needed."""
    from model_signing.errors import InputError
    from model_signing.sigstore_local import github_claims, mint_token

    if (identity is None) == (repository is None):
        raise InputError("pass exactly one of --identity and --repository")
    if repository is not None:
        claims = github_claims(repository, workflow=workflow, ref=ref)
        print(mint_token(state_dir, str(claims["sub"]), issuer_url=issuer_url, expires_in=expires_in,
                         extra_claims=claims))
    else:
        assert identity is not None
        print(mint_token(state_dir, identity, issuer_url=issuer_url, expires_in=expires_in))


def register(app: typer.Typer) -> None:
    """Add the ``sigstore-local`` command group to the app."""
    app.add_typer(local_app, name="sigstore-local")

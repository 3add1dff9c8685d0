"""CLI: ``verify key`` and ``verify certificate`` (the ``verify`` group also hosts keyless ``verify sigstore``).

Exit codes come from the error raised (mapped in :func:`model_signing.cli.main`): 0 verified, 1 bad
input, 2 signature invalid, 3 model mismatch -- with every difference listed on stderr.  With ``--json``
a result document is printed on stdout in every case (see :mod:`model_signing.results`), by ``main``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _report

if TYPE_CHECKING:
    from model_signing.verifying import Verifier

verify_app = typer.Typer(
    name="verify",
    cls=opt.DefaultGroup,
    help="Verify a model against its OMS v1.0 signature.",
    no_args_is_help=True,
)

PublicKey = Annotated[
    str, typer.Option("--public-key", metavar="PATH", help="EC public key (PEM) paired with the signing key.")
]
TrustedCertificates = Annotated[
    list[str],
    typer.Option(
        "--certificate-chain",
        metavar="PATH",
        help="Trusted root certificate(s) the signing certificate must chain to (PEM; repeatable).",
    ),
]
StrictX509 = Annotated[
    bool,
    typer.Option(
        "--strict-x509",
        help="Apply RFC 5280's end-entity rules to the signing certificate: refuse basicConstraints CA:TRUE "
        "and a signing certificate that is itself trusted (both accepted by default, as model-signing does).",
    ),
]


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
    result = verify(
        path,
        verifier,
        signature_path=sig,
        ignore_unsigned_files=options.ignore_unsigned_files,
        ignore_paths=options.ignore_paths,
        max_workers=options.max_workers,
        progress=False if options.quiet else None,
    )
    _report.verified(result, options.as_json)


@verify_app.command("key", cls=opt.PeerSpellings)
@opt.with_option_groups
def verify_key(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    public_key: PublicKey,
    options: opt.VerifyOptions,
) -> None:
    """Verify a signature made with `sign key`, using the paired public key."""
    from model_signing.verifying import KeyVerifier

    model = opt.model_path(path, path_option)
    begin(model, options)
    run_verify(model, KeyVerifier(public_key), options)


@verify_app.command("certificate", cls=opt.PeerSpellings)
@opt.with_option_groups
def verify_certificate(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    certificate_chain: TrustedCertificates,
    log_fingerprints: Annotated[
        bool,
        typer.Option(
            "--log-fingerprints", help="Print the SHA-256 fingerprint of each trusted and each bundled certificate."
        ),
    ] = False,
    options: opt.VerifyOptions,
    strict_x509: StrictX509 = False,
) -> None:
    """Verify a signature made with `sign certificate` against trusted root certificates.

    The certificates are checked at the current time: key and certificate bundles carry no trusted
    timestamp, so a signature made with a certificate that has since expired no longer verifies.
    """
    from model_signing.verifying import CertificateVerifier

    model = opt.model_path(path, path_option)
    begin(model, options)
    verifier = CertificateVerifier(certificate_chain, strict=strict_x509)
    if log_fingerprints:
        _print_fingerprints(certificate_chain, options.signature or _default_signature(model))
    run_verify(model, verifier, options)


def _default_signature(model: str) -> str:
    from model_signing.signing import default_signature_path

    return default_signature_path(model)


def _print_fingerprints(trusted: list[str], signature: str) -> None:
    """model-signing's --log_fingerprints, on stderr: ``[trusted]`` / ``[bundle]`` SHA-256 fingerprints."""
    import sys

    from cryptography.hazmat.primitives import hashes

    from model_signing import _bundle, _keymaterial
    from model_signing.errors import ModelSigningError

    def show(where: str, cert: Any) -> None:
        print(f"[{where}] SHA-256 fingerprint {cert.fingerprint(hashes.SHA256()).hex(':').upper()} "
              f"{cert.subject.rfc4514_string()}", file=sys.stderr)

    for cert in _keymaterial.load_certificates(trusted, "certificate chain file"):
        show("trusted", cert)
    try:
        bundled = _bundle.read_bundle(signature).certificate_chain()
    except (ModelSigningError, OSError):
        return  # verification reports what is wrong with the signature
    for cert in bundled:
        show("bundle", cert)


def register(app: typer.Typer) -> None:
    """Add the ``verify`` group to the app."""
    app.add_typer(verify_app, name="verify")

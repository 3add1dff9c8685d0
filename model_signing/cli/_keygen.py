"""CLI: ``keygen`` -- generate a key pair for ``sign key`` / ``verify key`` (and certificate requests)."""

from __future__ import annotations

import shlex
from typing import Annotated

import click
import typer

from model_signing.cli import _options as opt

#: Kept literal (equal to keymaterial.algorithms.names(); a test checks it) so `--help` imports nothing.
ALGORITHM_NAMES = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519")


def register(app: typer.Typer) -> None:
    """Add the ``keygen`` command to the app."""

    @app.command()
    def keygen(
        output: Annotated[
            str,
            typer.Option(
                "--output", metavar="DIR", help="Directory for private.pem and public.pem (created if missing)."
            ),
        ],
        algorithm: Annotated[
            str,
            typer.Option(
                "--algorithm",
                click_type=click.Choice(ALGORITHM_NAMES),
                help="Key algorithm. Default ecdsa-p256: every OMS verifier, model-signing 1.1.1 included, verifies "
                "it; model-signing 1.1.1 cannot verify ed25519 signatures.",
            ),
        ] = "ecdsa-p256",
        password_env: Annotated[
            str | None,
            typer.Option(
                "--password-env",
                metavar="VARIABLE",
                help="Encrypt private.pem with the password held in this environment variable (never pass it as "
                "an argument).",
            ),
        ] = None,
        overwrite: Annotated[
            bool, typer.Option("--overwrite", help="Replace an existing private.pem / public.pem.")
        ] = False,
    ) -> None:
        """Generate a key pair: DIR/private.pem (PKCS#8, mode 0600) and DIR/public.pem, written atomically."""
        from model_signing.keymaterial.generate import KeyPairExistsError, generate_key

        password = opt.password_from_env(password_env)
        try:
            made = generate_key(algorithm, output, password=password, overwrite=overwrite)
        except KeyPairExistsError as exc:
            raise KeyPairExistsError(
                exc.paths,
                f"{' and '.join(exc.paths)} already exist{'s' if len(exc.paths) == 1 else ''}; nothing was written; "
                "choose another --output, or pass --overwrite to replace the key pair",
            ) from None
        assert made.private_path is not None and made.public_path is not None
        private, public = shlex.quote(str(made.private_path)), shlex.quote(str(made.public_path))
        unlock = f" --password-env {shlex.quote(password_env)}" if password_env else ""
        state = "encrypted" if made.encrypted else "not encrypted"
        print(f"generated {made.algorithm.name} ({made.algorithm.label}) key pair")
        print(f"private key: {made.private_path} (PKCS#8, mode 0600, {state}; keep it secret)")
        print(f"public key:  {made.public_path}")
        print(f"key id:      {made.key_id}")
        print(f"sign:        modelseal sign key MODEL --private-key {private}{unlock}")
        print(f"verify:      modelseal verify key MODEL --public-key {public}")
        opt.warn_if_peer_cannot_verify(made.algorithm)

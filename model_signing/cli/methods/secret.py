"""CLI of the ``secret`` method: ``sign secret`` and ``verify secret`` (HMAC-SHA256, symmetric).

The secret is read from an environment variable, never from the command line (which other users of the
machine can read in the process list).
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from model_signing.cli import _options as opt
from model_signing.cli import _sign, _verify

DEFAULT_ENV = "MODEL_SIGNING_KEY"

SecretEnv = Annotated[
    str,
    typer.Option(
        "--secret-env",
        metavar="NAME",
        help=f"Environment variable holding the shared secret (at least 32 bytes; default {DEFAULT_ENV}).",
    ),
]

_WARNING = (
    "A shared secret is symmetric: anyone who can verify can also sign. Prefer keyless signing "
    "(`sign sigstore`) or a key pair (`sign key`); use this only where neither is possible."
)


def _secret(variable: str) -> bytes:
    from model_signing.errors import KeyMaterialError
    from model_signing.methods.secret import MIN_SECRET_BYTES

    value = os.environb.get(os.fsencode(variable))
    if value is None:
        raise KeyMaterialError(f"--secret-env {variable}: the environment variable {variable} is not set; put the "
                               "shared secret in it")
    if len(value) < MIN_SECRET_BYTES:
        raise KeyMaterialError(
            f"--secret-env {variable}: the shared secret is {len(value)} bytes; it must be at least "
            f"{MIN_SECRET_BYTES} bytes (generate one with: openssl rand -base64 48)"
        )
    return value


@_sign.sign_app.command("secret", help=f"Sign with a shared secret (HMAC-SHA256). {_WARNING}")
@opt.with_option_groups
def sign_secret(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    secret_env: SecretEnv = DEFAULT_ENV,
    signature: opt.SignatureOut = None,
    overwrite: opt.Overwrite = False,
    hashing: opt.HashingOptions,
    scanning: opt.ScanOptions,
    as_json: opt.Json = False,
) -> None:
    from model_signing.methods.secret import SecretSigner

    model = opt.model_path(path, path_option)
    _sign.begin(model, signature, as_json)
    secret = _secret(secret_env)
    _sign.run_sign(model, lambda: SecretSigner(secret), hashing, signature=signature, overwrite=overwrite,
                   as_json=as_json, scan=scanning)


@_verify.verify_app.command("secret", help=f"Verify a signature made with `sign secret`. {_WARNING}")
@opt.with_option_groups
def verify_secret(
    *,
    path: opt.OptionalModelPath = None,
    path_option: opt.PathOption = None,
    secret_env: SecretEnv = DEFAULT_ENV,
    options: opt.VerifyOptions,
) -> None:
    from model_signing.methods.secret import SecretVerifier

    model = opt.model_path(path, path_option)
    _verify.begin(model, options)
    _verify.run_verify(model, SecretVerifier(_secret(secret_env)), options)

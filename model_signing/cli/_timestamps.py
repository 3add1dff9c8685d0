"""The RFC 3161 timestamp options of ``sign key|certificate`` and ``verify key|certificate``.

Signing: ``--timestamp-authority URL`` (repeatable) and/or the TSA URLs of a ``--trust-config``, each request
bounded by ``--timeout`` (the same option, default and meaning as for the Sigstore requests of
``sign sigstore``).  Verifying: ``--timestamp-certificate-chain PEM`` (repeatable, one TSA's chain per file)
and/or the ``timestampAuthorities`` of a ``--trusted-root`` or ``--trust-config``.
"""

from __future__ import annotations

from typing import Annotated

import typer

TimestampAuthorities = Annotated[
    list[str] | None,
    typer.Option(
        "--timestamp-authority",
        metavar="URL",
        help="RFC 3161 timestamp authority to timestamp the signature (repeatable). With a timestamp, a "
        "certificate signature stays verifiable after the certificate expires.",
    ),
]
SigningTrustConfig = Annotated[
    str | None,
    typer.Option(
        "--trust-config",
        metavar="PATH",
        help="Sigstore ClientTrustConfig JSON: timestamp the signature with the TSAs of its signing config.",
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Give up on a timestamp authority that does not connect or answer within this many seconds.",
    ),
]
TimestampCertificateChains = Annotated[
    list[str] | None,
    typer.Option(
        "--timestamp-certificate-chain",
        metavar="PATH",
        help="Certificate chain (PEM: the root CA, optionally intermediates and the TSA certificate) of a "
        "timestamp authority whose RFC 3161 timestamps to trust (repeatable: one file per TSA).",
    ),
]
VerifyTrustConfig = Annotated[
    str | None,
    typer.Option(
        "--trust-config",
        metavar="PATH",
        help="Sigstore ClientTrustConfig JSON: trust the timestamp authorities of its trusted root.",
    ),
]
TrustedRoot = Annotated[
    str | None,
    typer.Option(
        "--trusted-root",
        metavar="PATH",
        help="Sigstore trusted root JSON: trust its timestamp authorities.",
    ),
]


def timeout_seconds(seconds: float) -> float:
    """``--timeout`` checked as ``sign sigstore`` checks it (a positive, finite number of seconds)."""
    import math

    from model_signing.errors import InputError

    if not 0 < seconds < math.inf:
        raise InputError(f"--timeout {seconds:g}: give a positive number of seconds")
    return seconds

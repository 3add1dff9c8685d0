"""The command line's spelling of the API terms in library messages: the one table from parameter to flag.

Library messages say what to change in terms of the Python API (architecture rule 4), and always in the
same form, between backticks:

* a parameter: `ignore_paths`, `trust_config`;
* a switch and its value: `allow_symlinks=True`, `use_ambient_credentials=False`;
* a parameter and a value, as a Python literal: `ignore_paths=['d/loop']`, `method='files'`,
  `trusted_root='root.json'`.

:func:`to_cli` rewrites each term into the option that does the same on the command line
(``--ignore-paths``, ``--allow-symlinks``, ``--ignore-paths d/loop``, ``--serialization files``...);
:mod:`model_signing.cli._report` applies it to every library error and warning it prints, on stderr and
in the ``--json`` error document.  Backticks mark the terms so that a file name or URL in the same
message (``identity``, ``issuer`` and ``password`` are ordinary words too) is never rewritten.

Every term means the same option in every command (``certificate_chain`` is ``--certificate-chain`` in
``sign certificate`` and ``verify certificate``; ``issuer`` exists only in ``verify sigstore``), so one
table serves them all.  A term missing here is left as the library wrote it; ``tests/test_messages.py``
checks that every term a library message uses is here.
"""

from __future__ import annotations

import re

#: API term, exactly as a library message writes it between backticks -> the command line's spelling.
#: Parameters taking a value are keyed by name alone: `name=<value>` becomes ``<flag> <value>``.
TERMS: dict[str, str] = {
    # HashingConfig and verify() (digest, sign, verify)
    "ignore_paths": "--ignore-paths",
    "allow_symlinks=True": "--allow-symlinks",
    "method": "--serialization",  # HashingConfig.method: 'files' or 'shards'
    "digest_cache": "--digest-cache",  # HashingConfig.digest_cache (digest, sign)
    "reuse_from": "--reuse-from",  # sign(reuse_from=...)
    "executor": "--executor",  # HashingConfig.executor (digest, sign)
    # sign() / verify()
    "signature_path": "--signature",
    "overwrite=True": "--overwrite",
    # KeySigner / CertificateSigner / CertificateVerifier
    "password": "--password-env VARIABLE",
    "certificate_chain": "--certificate-chain",
    "signing_certificate": "--signing-certificate",
    "strict=True": "--strict-x509",
    # RFC 3161 timestamps (KeySigner / CertificateSigner / KeyVerifier / CertificateVerifier)
    "timestamp_authorities": "--timestamp-authority",
    "timestamp_certificate_chain": "--timestamp-certificate-chain",
    "timeout": "--timeout",
    # TokenSource (sign sigstore)
    "identity_token": "--identity-token",
    "use_ambient_credentials=False": "--oidc-disable-ambient-providers",
    "oauth_force_oob=True": "--oauth-force-oob",
    # IdentityPolicy (verify sigstore)
    "issuer": "--identity-provider",
    "identity": "--identity",
    "identity_regexp": "--identity-regexp",
    # SigstoreSigner / SigstoreVerifier
    "trust_config": "--trust-config",
    "trusted_root": "--trusted-root",
    "staging=True": "--staging",
    "offline=True": "--offline",
    # model_signing.hub (hub upload / hub verify)
    "revision": "--revision",
    "token": "--token",
    "endpoint": "--endpoint",
    "local_dir": "--local-dir",
    "allow_patterns": "--allow-patterns",
    "rekor_version": "--rekor-version",
    # Registry / Lock (registry, lock create, verify-all)
    "registry": "--registry",
    "replace=True": "--replace",
    # verify(quarantine=...) / load(quarantine=...)
    "quarantine": "--quarantine",
}

_STRING = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
#: A term: a parameter name, optionally ``=`` a bool, a string literal, or a one-element list of one.
TERM = re.compile(rf"`(?P<name>[a-z][a-z0-9_]*)(?:=(?P<value>True|False|{_STRING}|\[(?:{_STRING})\]))?`")


def _cli_spelling(match: re.Match[str]) -> str:
    term = match.group(0)[1:-1]
    if term in TERMS:
        return TERMS[term]
    flag, value = TERMS.get(match["name"]), match["value"]
    if flag is None or value is None or value in ("True", "False"):
        return match.group(0)
    import ast  # only when a message has a value to read back

    parsed = ast.literal_eval(value)
    if isinstance(parsed, list):
        parsed = parsed[0]
    # The value as typed after the flag (today's CLI messages give paths unquoted).
    return f"{flag} {parsed}"


def to_cli(message: str) -> str:
    """``message`` with every API term (between backticks) replaced by the command line's option."""
    return TERM.sub(_cli_spelling, message) if "`" in message else message

"""Which Sigstore instance to trust: public good, staging, or a private one from a ClientTrustConfig file.

sigstore is imported lazily (inside functions) so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import TYPE_CHECKING

from model_signing._internal.files import MAX_TRUST_FILE, read_small_file
from model_signing.errors import InputError

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig, TrustedRoot

_PRODUCTION_TUF = "https://tuf-repo-cdn.sigstore.dev"
_STAGING_TUF = "https://tuf-repo-cdn.sigstage.dev"


def load_trust_config(path: str | os.PathLike[str]) -> ClientTrustConfig:
    """Read a ClientTrustConfig JSON file (trusted root + signing config)."""
    from sigstore.models import ClientTrustConfig

    raw = _read(path, "`trust_config`")
    _check_depth(raw, path, _NOT_A_TRUST_CONFIG)
    try:
        return ClientTrustConfig.from_json(raw)
    except Exception as exc:  # noqa: BLE001 - sigstore raises assorted parse errors
        raise InputError(_NOT_A_TRUST_CONFIG.format(path=os.fspath(path), reason=type(exc).__name__)) from None


def check_signing_sources(
    trust_config: str | os.PathLike[str] | None, staging: bool, *, read_files: bool = True
) -> None:
    """Fail fast, without importing sigstore, on signing trust options that cannot work.

    ``read_files=False`` checks only how the options combine (the loaders below, which read the files
    anyway, use that rather than reading and parsing each file twice).
    """
    if trust_config is not None:
        if staging:
            raise InputError("`staging=True` and `trust_config` are exclusive; pass only one")
        if read_files:
            _precheck(trust_config, "`trust_config`", ("trustedRoot", "signingConfig"), _NOT_A_TRUST_CONFIG)


def check_verification_sources(
    *,
    trust_config: str | os.PathLike[str] | None,
    trusted_root: str | os.PathLike[str] | None,
    staging: bool,
    read_files: bool = True,
) -> None:
    """Fail fast, without importing sigstore, on verification trust options that cannot work."""
    if trusted_root is not None and trust_config is not None:
        raise InputError("`trusted_root` and `trust_config` are exclusive; pass only one")
    if staging and (trusted_root is not None or trust_config is not None):
        # As when signing: an explicit root would silently win over `staging`.
        option = "`trusted_root`" if trusted_root is not None else "`trust_config`"
        raise InputError(f"`staging=True` and {option} are exclusive; pass only one")
    if not read_files:
        return
    if trusted_root is not None:
        _precheck(trusted_root, "`trusted_root`", (), _NOT_A_TRUSTED_ROOT)
    if trust_config is not None:
        _precheck(trust_config, "`trust_config`", ("trustedRoot", "signingConfig"), _NOT_A_TRUST_CONFIG)


_NOT_A_TRUST_CONFIG = (
    "{path}: not a valid Sigstore ClientTrustConfig JSON ({reason}); "
    "pass the file written by 'sigstore-local serve --trust-config-out' or your instance's config"
)
_NOT_A_TRUSTED_ROOT = "{path}: not a valid Sigstore trusted root JSON ({reason})"


def _precheck(path: str | os.PathLike[str], option: str, keys: tuple[str, ...], message: str) -> None:
    # Only the shape (readable UTF-8 JSON object with the top-level members): sigstore parses it fully later.
    import json

    text = _read(path, option)
    _check_depth(text, path, message)
    try:
        doc = json.loads(text)
    except ValueError:
        raise InputError(message.format(path=os.fspath(path), reason="JSONDecodeError")) from None
    if not isinstance(doc, dict):
        raise InputError(message.format(path=os.fspath(path), reason="not a JSON object"))
    missing = [k for k in keys if k not in doc]
    if missing:
        raise InputError(message.format(path=os.fspath(path), reason=f"no {missing[0]!r} member"))


def signing_trust_config(trust_config: str | os.PathLike[str] | None, staging: bool) -> ClientTrustConfig:
    """The trust config used to sign: an explicit file, staging, or the public-good instance (via TUF)."""
    if trust_config is not None:
        check_signing_sources(trust_config, staging, read_files=False)
        return load_trust_config(trust_config)
    from sigstore.models import ClientTrustConfig

    try:
        return ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
    except Exception as exc:  # noqa: BLE001 - TUF refresh failures are network errors here
        instance = "staging" if staging else "public-good"
        raise InputError(
            f"cannot fetch the {instance} Sigstore trust root from {_STAGING_TUF if staging else _PRODUCTION_TUF} "
            f"({_tuf_reason(exc)}); check the network, or pass a `trust_config` file for a private instance"
        ) from None


def _tuf_reason(exc: BaseException) -> str:
    # TUFError wraps the real cause; a timeout is worth naming as one (the deadline is the request's).
    chain = [exc]
    while len(chain) < 8 and (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(nxt)
    if any(type(link).__name__ in ("SlowRetrievalError", "ConnectTimeoutError", "ReadTimeoutError")
           or isinstance(link, TimeoutError) for link in chain):
        from model_signing.methods.sigstore._deadline import request_timeout

        return f"no answer within {request_timeout():g} s"
    return type(exc).__name__


def verification_trusted_root(
    *,
    trust_config: str | os.PathLike[str] | None,
    trusted_root: str | os.PathLike[str] | None,
    staging: bool,
    offline: bool,
) -> TrustedRoot:
    """The trusted root to verify against.

    An explicit ``trusted_root`` or ``trust_config`` is used as is (no network).  Otherwise the
    public-good (or staging) root: refreshed through TUF online, or, with ``offline``, the copy that
    ships inside the sigstore package, so air-gapped machines verify public-good bundles.
    """
    check_verification_sources(trust_config=trust_config, trusted_root=trusted_root, staging=staging, read_files=False)
    if trusted_root is not None:
        text = _read(trusted_root, "`trusted_root`")
        _check_depth(text, trusted_root, _NOT_A_TRUSTED_ROOT)
        return _parse_trusted_root(text, str(trusted_root))
    if trust_config is not None:
        return load_trust_config(trust_config).trusted_root
    if offline:
        return _embedded_trusted_root(_STAGING_TUF if staging else _PRODUCTION_TUF)
    return signing_trust_config(None, staging).trusted_root


def _embedded_trusted_root(tuf_url: str) -> TrustedRoot:
    # sigstore ships the trusted roots of its two public instances as package data, keyed by the
    # percent-encoded TUF URL; read it directly rather than through a user-writable TUF cache.
    from urllib.parse import quote

    data = resources.files("sigstore._store").joinpath(quote(tuf_url, safe=""), "trusted_root.json")
    try:
        raw = data.read_bytes()
    except OSError:
        raise InputError(
            "this sigstore installation ships no embedded trusted root; "
            "pass a `trusted_root` file with `offline=True`"
        ) from None
    return _parse_trusted_root(raw, f"embedded trusted root for {tuf_url}")


def _parse_trusted_root(raw: str | bytes, where: str) -> TrustedRoot:
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot import v1 as trustroot_v1

    try:
        return TrustedRoot(trustroot_v1.TrustedRoot.from_json(raw))
    except Exception as exc:  # noqa: BLE001 - pydantic/json errors
        raise InputError(_NOT_A_TRUSTED_ROOT.format(path=where, reason=type(exc).__name__)) from None


def _check_depth(text: str, path: str | os.PathLike[str], message: str) -> None:
    # Before any parser sees it: Python's json (and pydantic's) would end a deep document in a RecursionError.
    from model_signing._internal import strict_json as _strict_json

    try:
        _strict_json.check_depth(text)
    except _strict_json.StrictJSONError as exc:
        raise InputError(message.format(path=os.fspath(path), reason=exc.reason)) from None


def _read(path: str | os.PathLike[str], option: str) -> str:
    raw = read_small_file(path, f"{option} file", limit=MAX_TRUST_FILE)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{option} file {os.fspath(path)} is not UTF-8 JSON") from None

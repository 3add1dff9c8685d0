"""A local Sigstore instance: OIDC issuer, Fulcio CA (with CT SCTs), Rekor v1 (and v2) log and RFC 3161 TSA.

For tests and air-gapped sites: everything is served from one port on 127.0.0.1, the unmodified
``sigstore`` client signs and verifies against it through the ClientTrustConfig it writes, and its keys,
certificates and log live in a state directory, so a restarted instance still verifies old bundles::

    with LocalSigstore(state_dir) as inst:
        token = inst.mint_token("alice@example.com")
        # sign with ClientTrustConfig.from_json(inst.trust_config_json()) and token;
        # verify with Identity(identity="alice@example.com", issuer=inst.oidc_issuer)

``rekor_version=2`` also serves a Rekor v2 log (tile-backed API, ``hashedrekord``/``dsse`` 0.0.2 entries,
signed C2SP checkpoints) under ``/rekor-v2`` and offers it in the signing config, so the client signs
to it (with an RFC 3161 timestamp from the local TSA, since v2 entries carry no time).  Once a state
directory has a v2 log, its key stays in the trusted root after a restart with ``rekor_version=1``, so
bundles logged there keep verifying.

Identities: email addresses (email SAN) and URIs (URI SAN); GitHub-workflow tokens
(:meth:`LocalSigstore.mint_github_token`, or ambient detection through
:meth:`LocalSigstore.github_actions_env`) get a workflow URI SAN and Fulcio's GitHub extensions;
GitLab CI tokens (:meth:`LocalSigstore.mint_gitlab_token`) the pipeline URI SAN Fulcio gives GitLab.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from model_signing.errors import InputError
from model_signing.sigstore_local import _oidc, _pki
from model_signing.sigstore_local._ct import CTLog
from model_signing.sigstore_local._fulcio import FulcioCA
from model_signing.sigstore_local._keys import StateDir, atomic_write
from model_signing.sigstore_local._oidc import (
    AUDIENCE,
    OidcIssuer,
    github_workflow_identity,
    gitlab_pipeline_identity,
)
from model_signing.sigstore_local._rekor import TransparencyLog
from model_signing.sigstore_local._rekor2 import PATH_PREFIX as REKOR_V2_PATH
from model_signing.sigstore_local._rekor2 import TransparencyLogV2
from model_signing.sigstore_local._server import (
    ACTIONS_TOKEN_PATH,
    OIDC_PATH,
    TSA_PATH,
    HttpFrontEnd,
    Services,
)
from model_signing.sigstore_local._trust import client_trust_config
from model_signing.sigstore_local._tsa import TimestampAuthority, tsa_certificate

__all__ = [
    "AUDIENCE",
    "LocalSigstore",
    "github_claims",
    "github_workflow_identity",
    "gitlab_claims",
    "gitlab_pipeline_identity",
    "is_trust_config_of",
    "mint_token",
]

_log = logging.getLogger("model_signing.sigstore_local")

TRUST_CONFIG_FILE = "trust_config.json"
_CLIENT_SECRET = "oidc-client"
_REKOR_V2_KEY = "rekor-v2"
REKOR_VERSIONS = (1, 2)


#: A ClientTrustConfig of a local instance is a few KB; anything much larger is not one.
_TRUST_CONFIG_MAX_BYTES = 1 << 20


def is_trust_config_of(path: Path, state_dir: Path) -> bool:
    """Whether ``path`` holds a trust config written by the instance of ``state_dir`` (at any port).

    True when the file's trusted root lists the state directory's Fulcio root certificate: then
    replacing it (a restart, perhaps on another port) loses nothing, so no ``overwrite`` is needed.
    Anything unreadable or different is False.
    """
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        root_pem = (state_dir / "certs" / "fulcio-root.crt").read_bytes()
        root = base64.b64encode(x509.load_pem_x509_certificate(root_pem).public_bytes(Encoding.DER)).decode()
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size > _TRUST_CONFIG_MAX_BYTES:
                return False
            data = json.loads(f.read())
        authorities = data["trustedRoot"]["certificateAuthorities"]
        return any(
            cert.get("rawBytes") == root
            for authority in authorities
            for cert in authority["certChain"]["certificates"]
        )
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return False


def _created_ancestor(path: Path) -> Path | None:
    """The outermost directory that creating ``path`` would create (None if ``path`` exists)."""
    path = path.absolute()
    if os.path.lexists(path):
        return None
    while not os.path.lexists(path.parent) and path.parent != path:
        path = path.parent
    return path


def github_claims(repository: str, **options: str) -> dict[str, Any]:
    """The claims of a GitHub Actions ID token for ``repository`` ("owner/name").

    ``options`` (all strings): ``workflow`` (path, default ``.github/workflows/release.yml``), ``ref``
    (default ``refs/heads/main``), ``sha``, ``event_name`` (``push``), ``workflow_name``, ``run_id``,
    ``run_attempt``, ``repository_id``, ``repository_owner_id``, ``repository_visibility``,
    ``runner_environment``, ``job_workflow_ref`` (a reusable workflow the job runs:
    ``owner/repo/.github/workflows/f.yml@ref``).  The certificate's SAN is :func:`github_workflow_identity`
    of the result.
    """
    try:
        return _oidc.github_claims(repository, **options)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None


def gitlab_claims(project_path: str, **options: str) -> dict[str, Any]:
    """The claims of a GitLab CI ``id_tokens`` token for ``project_path`` ("group/project").

    ``options`` (all strings): ``server_host`` (``gitlab.com``), ``config_path`` (``.gitlab-ci.yml``),
    ``ref`` (``main``), ``ref_type`` (``branch`` or ``tag``), ``sha``, ``pipeline_source``, ``pipeline_id``,
    ``job_id``, ``project_id``, ``namespace_id``, ``project_visibility``, ``runner_environment``.  The
    certificate's SAN is :func:`gitlab_pipeline_identity` of the result.
    """
    try:
        return _oidc.gitlab_claims(project_path, **options)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None


def _token_claims(identity: str, extra_claims: Mapping[str, Any] | None) -> dict[str, Any]:
    extra = dict(extra_claims or {})
    try:
        # A CI token (GitHub workflow, GitLab pipeline) names its identity through its claims; ``sub`` is
        # free-form there.
        ci = extra.get("job_workflow_ref") or extra.get("ci_config_ref_uri")
        claims = {"sub": identity} if ci else _oidc.identity_claims(identity)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    claims.update(extra)
    return claims


def _issuer_from_state(state: StateDir) -> OidcIssuer:
    info = state.read_instance()
    if info is None:
        raise InputError(
            f"{state.path}: no running local Sigstore instance is recorded there; start one with "
            "`sigstore-local serve --state-dir DIR` or pass the issuer URL"
        )
    pid = int(info.get("pid", 0))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if pid > 0:
            os.kill(pid, 0)
            return OidcIssuer(state.load_private_key("oidc"), str(info["oidc_issuer"]), "")
    raise InputError(
        f"{state.path / 'instance.json'}: the recorded instance (pid {pid}) is not running; "
        "start it again or pass the issuer URL"
    )


def mint_token(
    state_dir: Path,
    identity: str,
    *,
    issuer_url: str | None = None,
    expires_in: int = 600,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """An ID token (``aud`` "sigstore") for ``identity`` from the instance whose state is ``state_dir``.

    Needs no network: it signs with the issuer key kept in the state directory.  ``issuer_url`` defaults
    to the issuer of the instance currently serving from that directory.
    """
    if not state_dir.is_dir():
        raise InputError(f"{state_dir}: no such state directory (the --state-dir of `sigstore-local serve`)")
    state = StateDir(state_dir)
    if issuer_url is None:
        issuer = _issuer_from_state(state)
    else:
        issuer = OidcIssuer(state.load_private_key("oidc"), issuer_url.rstrip("/"), "")
    try:
        return issuer.mint(_token_claims(identity, extra_claims), expires_in=expires_in)
    except ValueError as exc:
        raise InputError(str(exc)) from None


class LocalSigstore:
    """A running local Sigstore instance (use as a context manager, or :meth:`start` / :meth:`close`)."""

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        trust_config_out: Path | None = None,
        overwrite: bool = False,
        rekor_version: int = 1,
    ) -> None:
        """Configure an instance; ``state_dir`` None means a fresh temporary one, removed on close.

        ``port`` None reuses the port the state directory was last served on (so the issuer URL, which
        certificates embed, stays the same across restarts) and otherwise picks a free one; 0 always
        picks a free one.  ``trust_config_out``, if given, is written at start as by
        :meth:`write_trust_config` (with ``overwrite``), so that failing to write it fails the start.
        A start that fails removes the state directory if it created it.  ``rekor_version`` 2 also serves
        a Rekor v2 log and offers it to signers (1, the default: v1 only, as before).
        """
        if isinstance(rekor_version, bool) or rekor_version not in REKOR_VERSIONS:
            raise InputError(f"`rekor_version` must be 1 or 2, not {rekor_version!r}")
        self._rekor_version = rekor_version
        self._requested_state_dir = state_dir
        self._trust_config_out = trust_config_out
        self._overwrite = overwrite
        self._host = host
        self._port = port
        self._stack = contextlib.ExitStack()
        self._services: Services | None = None
        self._state: StateDir | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> LocalSigstore:
        """Load (or create) keys, bind the port, write the trust config and start serving."""
        if self._services is not None:
            raise RuntimeError("this LocalSigstore is already running")
        if ":" in self._host:
            raise InputError(f"host {self._host!r}: only IPv4 addresses and host names are supported")
        created = None if self._requested_state_dir is None else _created_ancestor(self._requested_state_dir)
        try:
            self._start()
        except BaseException:
            self._stack.close()
            self._state = None
            self._services = None
            if created is not None:  # no half-made state directory left behind (keys without a log...)
                shutil.rmtree(created, ignore_errors=True)
            raise
        return self

    def _start(self) -> None:
        if self._requested_state_dir is None:
            path = Path(tempfile.mkdtemp(prefix="sigstore-local-"))
            self._stack.callback(shutil.rmtree, path, ignore_errors=True)
        else:
            path = self._requested_state_dir
        state = StateDir(path)
        self._stack.enter_context(state.exclusive())
        self._state = state

        front = self._bind(state)
        self._stack.callback(front.stop)
        state.update_metadata(port=front.port)
        url_host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        self.base_url = f"http://{url_host}:{front.port}"

        self._services = self._build_services(state)
        atomic_write(self.trust_config_path, self.trust_config_json().encode())
        if self._trust_config_out is not None:
            self.write_trust_config(self._trust_config_out, overwrite=self._overwrite)
        front.start(self._services)
        state.write_instance(
            {"base_url": self.base_url, "oidc_issuer": self.oidc_issuer, "pid": os.getpid(),
             "trust_config": str(self.trust_config_path)}
        )
        self._stack.callback(self._forget_instance, state)

    def _bind(self, state: StateDir) -> HttpFrontEnd:
        last = state.metadata().get("port")
        if self._port is not None or not last:
            return self._listen(self._port or 0)
        try:
            return HttpFrontEnd(self._host, int(last))
        except OSError:
            front = self._listen(0)
            _log.warning(
                "port %s, which %s was served on before, is busy; serving on %d instead, so the OIDC issuer "
                "URL changed (bundles signed before name the old issuer, http://%s:%s%s)",
                last, state.path, front.port, self._host, last, OIDC_PATH,
            )
            return front

    def _listen(self, port: int) -> HttpFrontEnd:
        try:
            return HttpFrontEnd(self._host, port)
        except OSError as exc:  # the OS reason alone ("Address already in use") names neither host nor port
            raise InputError(
                f"cannot serve on {self._host}:{port} ({exc.strerror or exc}); choose another --port "
                "(0 picks a free one) or --host"
            ) from None

    def _build_services(self, state: StateDir) -> Services:
        created = state.created
        root_key = state.private_key("fulcio-root")
        root = state.certificate(
            "fulcio-root",
            lambda: _pki.ca_certificate(key=root_key, subject=_pki.name("local fulcio root"),
                                        not_before=created, path_length=1),
        )
        intermediate_key = state.private_key("fulcio-intermediate")
        intermediate = state.certificate(
            "fulcio-intermediate",
            lambda: _pki.ca_certificate(key=intermediate_key, subject=_pki.name("local fulcio intermediate"),
                                        not_before=created, issuer_key=root_key, issuer_cert=root,
                                        path_length=0),
        )
        tsa_root_key = state.private_key("tsa-root")
        tsa_root = state.certificate(
            "tsa-root",
            lambda: _pki.ca_certificate(key=tsa_root_key, subject=_pki.name("local timestamp root"),
                                        not_before=created, path_length=0),
        )
        tsa_key = state.private_key("tsa")
        tsa_cert = state.certificate(
            "tsa", lambda: tsa_certificate(key=tsa_key, root_key=tsa_root_key, root=tsa_root, not_before=created)
        )
        issuer = OidcIssuer(state.private_key("oidc"), self.oidc_issuer, state.secret(_CLIENT_SECRET))
        ctlog = CTLog(state.private_key("ctlog"))
        rekor_v2 = None
        # A v2 log made by an earlier start is kept (read side, trusted root) even when v2 is not offered.
        if self._rekor_version == 2 or state.has_key(_REKOR_V2_KEY):
            rekor_v2 = TransparencyLogV2(state.ed25519_key(_REKOR_V2_KEY), state.tree_id,
                                         state.path / "rekor-v2" / "entries.jsonl",
                                         accepting=self._rekor_version == 2)
        return Services(
            issuer=issuer,
            ctlog=ctlog,
            fulcio=FulcioCA(root=root, intermediate=intermediate, intermediate_key=intermediate_key,
                            ctlog=ctlog, issuer=issuer),
            rekor=TransparencyLog(state.private_key("rekor"), state.tree_id, state.path / "rekor" / "entries.jsonl"),
            tsa=TimestampAuthority(tsa_key, tsa_cert, tsa_root),
            rekor_v2=rekor_v2,
        )

    @staticmethod
    def _forget_instance(state: StateDir) -> None:
        with contextlib.suppress(FileNotFoundError):
            (state.path / "instance.json").unlink()

    def close(self) -> None:
        """Stop serving (the state directory is kept unless it was a temporary one)."""
        self._services = None
        self._stack.close()

    def __enter__(self) -> LocalSigstore:
        """Start the instance."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the instance."""
        self.close()

    # -- where things are --------------------------------------------------------------------------

    def _running(self) -> Services:
        if self._services is None:
            raise RuntimeError("the LocalSigstore instance is not running (use it as a context manager)")
        return self._services

    def _state_or_fail(self) -> StateDir:
        if self._state is None:
            raise RuntimeError("the LocalSigstore instance is not running (use it as a context manager)")
        return self._state

    @property
    def state_dir(self) -> Path:
        """The state directory (keys, certificates, log, trust config)."""
        return self._state_or_fail().path

    @property
    def oidc_issuer(self) -> str:
        """The OIDC issuer URL: tokens' ``iss`` and the certificates' issuer extension."""
        return f"{self.base_url}{OIDC_PATH}"

    @property
    def tsa_url(self) -> str:
        """The RFC 3161 timestamp endpoint."""
        return f"{self.base_url}{TSA_PATH}"

    @property
    def rekor_v2_url(self) -> str | None:
        """The Rekor v2 log's URL (the client posts to ``<url>/api/v2/log/entries``), if it has one."""
        return f"{self.base_url}{REKOR_V2_PATH}" if self._running().rekor_v2 is not None else None

    @property
    def rekor_version(self) -> int:
        """The Rekor API version offered to signers (the highest in the signing config)."""
        return self._rekor_version

    @property
    def trust_config_path(self) -> Path:
        """The ClientTrustConfig JSON written into the state directory at start."""
        return self.state_dir / TRUST_CONFIG_FILE

    def trust_config(self) -> dict[str, Any]:
        """The ClientTrustConfig describing this instance (trusted root + signing config)."""
        services = self._running()
        v2 = services.rekor_v2
        return client_trust_config(
            base_url=self.base_url,
            oidc_url=self.oidc_issuer,
            tsa_url=self.tsa_url,
            fulcio_chain=services.fulcio.chain,
            ctlog_key=services.ctlog.key.public_key(),
            rekor_key=services.rekor.key.public_key(),
            tsa_chain=services.tsa.chain,
            keys_created=self._state_or_fail().created,
            rekor_v2=None if v2 is None else (f"{self.base_url}{REKOR_V2_PATH}", v2.public_key_der(), v2.log_id,
                                              self._state_or_fail().created),
            offer_rekor_v2=self._rekor_version == 2,
        )

    def trust_config_json(self) -> str:
        """:meth:`trust_config` as JSON text (what ``ClientTrustConfig.from_json`` reads)."""
        return json.dumps(self.trust_config(), indent=2) + "\n"

    def write_trust_config(self, path: Path, *, overwrite: bool = False) -> None:
        """Write the trust config to ``path`` atomically.

        An existing file is replaced only with ``overwrite``, or when it is this state directory's own
        trust config (:func:`is_trust_config_of`: a restart rewrites it, maybe with a new port).
        """
        if path.exists() and not overwrite and not is_trust_config_of(path, self.state_dir):
            raise InputError(
                f"{path}: already exists and is not the trust config of {self.state_dir}; "
                "pass --overwrite to replace it"
            )
        atomic_write(path, self.trust_config_json().encode())

    # -- identity tokens ---------------------------------------------------------------------------

    def mint_token(
        self,
        identity: str,
        *,
        expires_in: int = 600,
        audience: str = AUDIENCE,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed ID token for ``identity`` (email address or URI), ``aud`` "sigstore" by default.

        ``extra_claims`` are merged in (and win), e.g. to test Fulcio's checks with odd claims.
        """
        try:
            return self._running().issuer.mint(
                _token_claims(identity, extra_claims), audience=audience, expires_in=expires_in
            )
        except ValueError as exc:
            raise InputError(str(exc)) from None

    def mint_github_token(self, repository: str, *, expires_in: int = 600, **options: str) -> str:
        """An ID token shaped like a GitHub Actions workflow's (see :func:`github_claims`)."""
        claims = github_claims(repository, **options)
        return self.mint_token(str(claims["sub"]), expires_in=expires_in, extra_claims=claims)

    def mint_gitlab_token(self, project_path: str, *, expires_in: int = 600, **options: str) -> str:
        """An ID token shaped like a GitLab CI job's ``id_tokens`` one (see :func:`gitlab_claims`)."""
        claims = gitlab_claims(project_path, **options)
        return self.mint_token(str(claims["sub"]), expires_in=expires_in, extra_claims=claims)

    def github_actions_env(self, repository: str, *, lifetime: int = 3600, **options: str) -> dict[str, str]:
        """Environment variables that make sigstore's ambient detection fetch a workflow token from here.

        ``GITHUB_ACTIONS``, ``ACTIONS_ID_TOKEN_REQUEST_URL`` and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``: the
        request token (valid ``lifetime`` seconds) carries :func:`github_claims` of the arguments.
        """
        claims = github_claims(repository, **options)
        request_token = self._running().issuer.actions_request_token(claims, expires_in=lifetime)
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.base_url}{ACTIONS_TOKEN_PATH}",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": request_token,
        }

"""HTTP front end: one stdlib ThreadingHTTPServer on one port serving every local service.

Paths follow the real services so the unmodified client finds them under a single base URL:
Fulcio ``/api/v2/...``, Rekor ``/api/v1/log...``, TSA ``/api/v1/timestamp``, the OIDC issuer under
``/oidc`` and the GitHub-Actions-style token request under ``/github-actions/token``.  The Rekor v2 log,
when there is one, lives under ``/rekor-v2`` (its ``/api/v2/log/entries``, ``/checkpoint`` and ``/tile/...``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization

from model_signing.sigstore_local._ct import CTLog
from model_signing.sigstore_local._errors import RequestRejected
from model_signing.sigstore_local._fulcio import FulcioCA
from model_signing.sigstore_local._oidc import OidcIssuer
from model_signing.sigstore_local._rekor import TransparencyLog
from model_signing.sigstore_local._rekor2 import PATH_PREFIX as REKOR_V2_PATH
from model_signing.sigstore_local._rekor2 import TransparencyLogV2, tile_index
from model_signing.sigstore_local._tsa import TimestampAuthority

_log = logging.getLogger("model_signing.sigstore_local")

MAX_BODY = 16 * 1024 * 1024
OIDC_PATH = "/oidc"
ACTIONS_TOKEN_PATH = "/github-actions/token"
TSA_PATH = "/api/v1/timestamp"
_ENTRIES = "/api/v1/log/entries"


@dataclass
class Services:
    """The services behind the server."""

    issuer: OidcIssuer
    ctlog: CTLog
    fulcio: FulcioCA
    rekor: TransparencyLog
    tsa: TimestampAuthority
    #: The Rekor v2 log (None: the instance serves v1 only).
    rekor_v2: TransparencyLogV2 | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    services: Services | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "modelseal-local-sigstore"

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)

    # -- plumbing ----------------------------------------------------------------------------------

    def _services(self) -> Services:
        if self.server.services is None:
            raise RequestRejected(503, "the local Sigstore instance is starting")
        return self.server.services

    def _body(self) -> bytes:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise RequestRejected(411, "a Content-Length header is required")
        try:
            length = int(length_header)
        except ValueError:
            raise RequestRejected(400, "Content-Length is not a number") from None
        if not 0 <= length <= MAX_BODY:
            raise RequestRejected(413, f"request bodies are limited to {MAX_BODY} bytes")
        return self.rfile.read(length)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(value, indent=2).encode() + b"\n", "application/json", headers)

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            self._route(method, url.path.rstrip("/") or "/", query)
        except RequestRejected as exc:
            _log.info("%s %s rejected: %s", method, url.path, exc.message)
            self._json(exc.status, {"code": exc.status, "message": exc.message})
        except Exception as exc:  # noqa: BLE001 - a server answers 500, it does not die
            _log.exception("%s %s failed", method, url.path)
            self._json(500, {"code": 500, "message": f"internal error: {exc!r}"})

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- routes ------------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, str]) -> None:
        services = self._services()
        route = (method, path)
        if route == ("GET", f"{OIDC_PATH}/.well-known/openid-configuration"):
            self._json(200, services.issuer.discovery())
        elif route == ("GET", f"{OIDC_PATH}/keys"):
            self._json(200, services.issuer.jwks())
        elif route == ("POST", f"{OIDC_PATH}/token"):
            self._json(200, services.issuer.token_endpoint(self._form(), self._basic_auth()))
        elif path == f"{OIDC_PATH}/auth":
            raise RequestRejected(
                400,
                "the local issuer has no interactive login: mint a token with "
                "`sigstore-local token --state-dir DIR --identity EMAIL` (or the token endpoint)",
            )
        elif route == ("GET", ACTIONS_TOKEN_PATH):
            self._json(200, services.issuer.actions_id_token(self.headers.get("Authorization"), query.get("audience")))
        elif route == ("POST", "/api/v2/signingCert"):
            self._json(201, services.fulcio.signing_cert(self.headers.get("Authorization"), self._body()))
        elif route == ("GET", "/api/v2/trustBundle"):
            pems = [c.public_bytes(serialization.Encoding.PEM).decode() for c in services.fulcio.chain]
            self._json(200, {"chains": [{"certificates": pems}]})
        elif route == ("POST", _ENTRIES):
            uuid, entry = services.rekor.add(self._body())
            self._json(201, {uuid: entry}, {"Location": f"{_ENTRIES}/{uuid}"})
        elif route == ("GET", _ENTRIES):
            try:
                index = int(query["logIndex"])
            except (KeyError, ValueError):
                raise RequestRejected(400, "logIndex query parameter (an integer) is required") from None
            uuid, entry = services.rekor.get(index=index)
            self._json(200, {uuid: entry})
        elif method == "GET" and path.startswith(_ENTRIES + "/"):
            uuid, entry = services.rekor.get(uuid=path[len(_ENTRIES) + 1 :])
            self._json(200, {uuid: entry})
        elif route == ("GET", "/api/v1/log"):
            self._json(200, services.rekor.info())
        elif route == ("GET", "/api/v1/log/publicKey"):
            self._send(200, services.rekor.public_key_pem().encode(), "application/x-pem-file")
        elif route == ("POST", TSA_PATH):
            self._send(200, services.tsa.timestamp(self._body()), "application/timestamp-reply")
        elif route == ("GET", f"{TSA_PATH}/certchain"):
            pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in services.tsa.chain)
            self._send(200, pem.encode(), "application/pem-certificate-chain")
        elif path.startswith(REKOR_V2_PATH + "/") and services.rekor_v2 is not None:
            self._rekor_v2(method, path[len(REKOR_V2_PATH):], services.rekor_v2)
        elif route == ("GET", "/healthz"):
            self._json(200, {"status": "ok"})
        else:
            raise RequestRejected(404, f"no such endpoint: {method} {path}")

    def _rekor_v2(self, method: str, path: str, log: TransparencyLogV2) -> None:
        if (method, path) == ("POST", "/api/v2/log/entries"):
            self._json(201, log.add(self._body()))
        elif (method, path) == ("GET", "/checkpoint"):
            self._send(200, log.checkpoint().encode(), "text/plain; charset=utf-8")
        elif method == "GET" and path.startswith("/tile/"):
            self._send(200, self._tile(log, path[len("/tile/"):]), "application/octet-stream")
        else:
            raise RequestRejected(404, f"no such endpoint: {method} {REKOR_V2_PATH}{path}")

    @staticmethod
    def _tile(log: TransparencyLogV2, rest: str) -> bytes:
        # tlog-tiles: <L>/<N>[.p/<W>] or entries/<N>[.p/<W>], N in x-prefixed 3-digit groups.
        level_text, _, rest = rest.partition("/")
        rest, partial, width_text = rest.partition(".p/")
        index = tile_index(rest)
        width = int(width_text) if partial and width_text.isdigit() and len(width_text) <= 3 else None
        if index is None or (partial and width is None):
            raise RequestRejected(404, "not a tlog-tiles tile path")
        if level_text == "entries":
            return log.entry_bundle(index, width)
        if not level_text.isdigit() or len(level_text) > 2:
            raise RequestRejected(404, "not a tlog-tiles tile path")
        return log.tile(int(level_text), index, width)

    def _form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self._body().decode("utf-8", "replace")))

    def _basic_auth(self) -> tuple[str, str] | None:
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise RequestRejected(401, "malformed Basic authorization header") from None
        return urllib.parse.unquote(user), urllib.parse.unquote(password)


class HttpFrontEnd:
    """The bound server and the background thread serving it."""

    def __init__(self, host: str, port: int) -> None:
        """Bind ``host:port`` now (port 0 picks a free port) so the URL is known before serving."""
        self._server = _Server((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    def start(self, services: Services) -> None:
        """Serve ``services`` from a daemon thread."""
        self._server.services = services
        self._thread = threading.Thread(target=self._server.serve_forever, name="sigstore-local", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()


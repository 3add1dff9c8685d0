"""The state directory of a local Sigstore instance: keys, certificates, metadata, all persisted.

Everything that makes signatures verifiable later (private keys, CA and TSA certificates, the log's tree id,
the time the keys were created) lives here, so a restarted instance pointed at the same directory keeps its
identity and still verifies the bundles it issued before.  Files are written atomically (temp file + rename)
and private keys are readable by the owner only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from model_signing._internal.atomic import write_atomic
from model_signing.errors import InputError

STATE_VERSION = 1
_KEY_DIR = "keys"
_CERT_DIR = "certs"


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC, truncated to whole seconds (what X.509 and Rekor carry)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically (the package's one atomic write), creating its directory.

    Readers never see a half-written file; ``mode`` is applied before any byte is written, so a private
    key is never world-readable, even briefly.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, overwrite=True, mode=mode)


class StateDir:
    """One instance's state directory (created on first use)."""

    def __init__(self, path: Path) -> None:
        """Open (and create if needed) the state directory at ``path``."""
        self.path = path
        if path.exists() and not path.is_dir():
            raise InputError(f"{path}: the state directory path exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._metadata: dict[str, Any] | None = None

    # -- locking -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the directory's lock: only one running instance may append to its log."""
        lock_path = self.path / "lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(
                    f"{self.path}: this state directory is in use by another running local Sigstore "
                    "instance; stop it or use another --state-dir"
                ) from None
            yield
        finally:
            os.close(fd)

    # -- metadata ----------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The instance's persistent metadata (creation time, log tree id), created on first use."""
        if self._metadata is None:
            path = self.path / "state.json"
            if path.exists():
                data = self._read_json(path)
                if data.get("version") != STATE_VERSION:
                    raise InputError(
                        f"{path}: unsupported state version {data.get('version')!r} "
                        f"(expected {STATE_VERSION}); use a fresh --state-dir"
                    )
            else:
                data = {
                    "version": STATE_VERSION,
                    "created": utcnow().isoformat(),
                    # A Trillian-style tree id: a positive 63-bit integer naming this log.
                    "tree_id": secrets.randbits(62) + 1,
                }
                atomic_write(path, json.dumps(data, indent=2).encode() + b"\n")
            self._metadata = data
        return self._metadata

    def update_metadata(self, **fields: Any) -> None:
        """Record more metadata (e.g. the port last served on), keeping what is there."""
        data = {**self.metadata(), **fields}
        atomic_write(self.path / "state.json", json.dumps(data, indent=2).encode() + b"\n")
        self._metadata = data

    @property
    def created(self) -> dt.datetime:
        """When this instance's keys were first created (start of their validity in the trust root)."""
        return dt.datetime.fromisoformat(str(self.metadata()["created"]))

    @property
    def tree_id(self) -> int:
        """The transparency log's tree id (part of its checkpoint origin)."""
        return int(self.metadata()["tree_id"])

    # -- keys, certificates, secrets ---------------------------------------------------------------

    def private_key(self, name: str) -> ec.EllipticCurvePrivateKey:
        """Load the ECDSA P-256 key ``name``, creating it on first use."""
        path = self.path / _KEY_DIR / f"{name}.pem"
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            atomic_write(path, pem, mode=0o600)
        return self.load_private_key(name)

    def load_private_key(self, name: str) -> ec.EllipticCurvePrivateKey:
        """Load the existing key ``name``; a clear error when the directory has none."""
        path = self.path / _KEY_DIR / f"{name}.pem"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            raise InputError(
                f"{path}: no such key; is {self.path} the state directory of a local Sigstore instance "
                "(started with `sigstore-local serve --state-dir`)?"
            ) from None
        except ValueError as exc:
            raise InputError(f"{path}: unreadable private key ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InputError(f"{path}: expected an ECDSA private key")
        return key

    def has_key(self, name: str) -> bool:
        """Whether the key ``name`` exists (was created by an earlier start)."""
        return (self.path / _KEY_DIR / f"{name}.pem").exists()

    def ed25519_key(self, name: str) -> ed25519.Ed25519PrivateKey:
        """Load the Ed25519 key ``name`` (the Rekor v2 log's: what the public-good v2 logs use), creating it."""
        path = self.path / _KEY_DIR / f"{name}.pem"
        if not path.exists():
            pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            atomic_write(path, pem, mode=0o600)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise InputError(f"{path}: unreadable private key ({exc})") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise InputError(f"{path}: expected an Ed25519 private key")
        return key

    def certificate(self, name: str, make: Callable[[], x509.Certificate]) -> x509.Certificate:
        """Load the certificate ``name``, creating it with ``make()`` on first use."""
        path = self.path / _CERT_DIR / f"{name}.crt"
        if not path.exists():
            cert = make()
            atomic_write(path, cert.public_bytes(serialization.Encoding.PEM))
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError as exc:
            raise InputError(f"{path}: unreadable certificate ({exc})") from None

    def secret(self, name: str) -> str:
        """A random secret ``name`` (e.g. the token endpoint's client secret), created on first use."""
        path = self.path / f"{name}.secret"
        if not path.exists():
            atomic_write(path, secrets.token_urlsafe(32).encode() + b"\n", mode=0o600)
        return path.read_text().strip()

    # -- the running instance's address ------------------------------------------------------------

    def write_instance(self, info: dict[str, Any]) -> None:
        """Record where the running instance listens (read by ``sigstore-local token``)."""
        atomic_write(self.path / "instance.json", json.dumps(info, indent=2).encode() + b"\n")

    def read_instance(self) -> dict[str, Any] | None:
        """What :meth:`write_instance` recorded last, or None."""
        path = self.path / "instance.json"
        return self._read_json(path) if path.exists() else None

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: unreadable state file ({exc}); use a fresh --state-dir") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a JSON object; use a fresh --state-dir")
        return data

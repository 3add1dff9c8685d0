"""Key generation: a fresh key pair of a supported algorithm, optionally written as ``private.pem`` and
``public.pem`` (:func:`generate_key`).

The private key is PKCS#8 PEM, encrypted with cryptography's best available encryption when a password is
given, and written with mode 0600 from its first byte.  Neither file is ever replaced without
``overwrite=True``, and both are checked before either is written; if the second write fails, the first is
removed, so a directory never holds a half-written or mismatched pair.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from model_signing._internal.atomic import AtomicFile
from model_signing._internal.types import PathLike
from model_signing.errors import InputError, KeyMaterialError
from model_signing.keymaterial import algorithms as _algorithms

if TYPE_CHECKING:
    from model_signing.keymaterial.algorithms import Algorithm, PrivateKey, PublicKey

PRIVATE_NAME = "private.pem"
PUBLIC_NAME = "public.pem"


class KeyPairExistsError(InputError):
    """A key file of the pair already exists and ``overwrite`` was not given (``paths``: the existing ones)."""

    def __init__(self, paths: tuple[str, ...], message: str | None = None) -> None:
        self.paths = paths
        super().__init__(
            message
            or f"{' and '.join(paths)} already exist{'s' if len(paths) == 1 else ''}; nothing was written; choose "
            "another output directory, or pass overwrite=True to replace the key pair"
        )


@dataclass(frozen=True)
class GeneratedKey:
    """A generated key pair: its algorithm, key id and PEM encodings, and where it was written (if it was)."""

    algorithm: Algorithm
    #: ``sha256:<hex>``: SHA-256 of the public key's PEM SubjectPublicKeyInfo, as ``SignerIdentity.key_id``
    #: and a key bundle's ``publicKey.hint`` (without the prefix) name it.
    key_id: str
    #: The private key object (to sign with directly: ``KeySigner(result.private_key)``).
    private_key: PrivateKey = field(repr=False)
    #: ``private.pem``'s content: PKCS#8 PEM, encrypted when a password was given.
    private_pem: bytes = field(repr=False)
    #: ``public.pem``'s content: PEM SubjectPublicKeyInfo.
    public_pem: bytes
    encrypted: bool
    #: The files written (``None`` when no ``output_dir`` was given).
    private_path: Path | None = None
    public_path: Path | None = None

    @property
    def public_key(self) -> PublicKey:
        """The public key object (``KeyVerifier(result.public_key)``)."""
        return self.private_key.public_key()


def generate_key(
    algorithm: str | Algorithm = _algorithms.DEFAULT,
    output_dir: PathLike | None = None,
    *,
    password: str | bytes | None = None,
    overwrite: bool = False,
) -> GeneratedKey:
    """Generate a key pair of ``algorithm`` (``ecdsa-p256`` (default), ``ecdsa-p384``, ``ecdsa-p521``,
    ``ed25519``), and write it to ``output_dir`` (``private.pem``, ``public.pem``) if given.

    ``ecdsa-p256`` is the default because every OMS verifier accepts it; model-signing 1.1.1 cannot verify
    Ed25519 signatures (``result.algorithm.peer_verifies`` says so).  ``password`` encrypts the private key.
    ``output_dir`` is created (mode 0700) if missing.  Raises :class:`KeyPairExistsError` when a file of the
    pair exists and ``overwrite`` is false, :class:`~model_signing.errors.KeyMaterialError` when the files
    cannot be written.
    """
    from cryptography.hazmat.primitives import serialization

    from model_signing.oms.bundle import public_key_hint

    chosen = _algorithms.by_name(algorithm) if isinstance(algorithm, str) else algorithm
    secret = password.encode("utf-8") if isinstance(password, str) else password
    if secret is not None and not secret:
        raise InputError("the password for the new private key is empty; give a non-empty password, or none")
    key = chosen.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_key = key.public_key()
    public_pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    result = GeneratedKey(
        algorithm=chosen, key_id=f"sha256:{public_key_hint(public_key)}", private_key=key,
        private_pem=private_pem, public_pem=public_pem, encrypted=secret is not None,
    )
    if output_dir is None:
        return result
    directory = Path(output_dir)
    private_path, public_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    _write_pair(directory, (public_path, public_pem, 0o644), (private_path, private_pem, 0o600), overwrite)
    return GeneratedKey(
        algorithm=chosen, key_id=result.key_id, private_key=key, private_pem=private_pem, public_pem=public_pem,
        encrypted=result.encrypted, private_path=private_path, public_path=public_path,
    )


def _write_pair(
    directory: Path, first: tuple[Path, bytes, int], second: tuple[Path, bytes, int], overwrite: bool
) -> None:
    """Write both files or neither (the public key first: if the private one then fails, it is removed)."""
    if not overwrite:
        existing = tuple(str(p) for p, _, _ in (second, first) if os.path.lexists(p))
        if existing:
            raise KeyPairExistsError(existing)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyMaterialError(f"cannot create the key directory {directory}: {exc.strerror or exc}") from None
    claims: list[AtomicFile] = []
    written: list[Path] = []
    try:
        try:
            # Claim both before writing either: a directory that refuses new files fails here, with nothing written.
            claims = [AtomicFile.claim(first[0]), AtomicFile.claim(second[0])]
            for claim, (path, data, mode) in zip(claims, (first, second), strict=True):
                claim.commit(data, overwrite=overwrite, mode=mode)
                written.append(path)
        except FileExistsError as exc:  # appeared meanwhile: never clobbered
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise KeyPairExistsError((str(exc.filename or first[0]),)) from None
        except OSError as exc:
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
            where = exc.filename or directory
            raise KeyMaterialError(
                f"cannot write the key pair to {where}: {exc.strerror or exc}; nothing was left behind"
            ) from None
    finally:
        for claim in claims:
            claim.release()

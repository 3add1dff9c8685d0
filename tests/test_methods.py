"""The method registry, the pipelines' shared checks, the optional-capability protocols, and the public names
that earlier releases exported from where they are today (issue 10's layout must not break callers)."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization

import model_signing as ms
from model_signing import methods
from model_signing._internal.atomic import AtomicFile, write_atomic
from model_signing.errors import SigningError, VerificationError, WrongMethodError
from model_signing.methods.base import BackgroundVerifier, FailsFast, Preparing, VerifiedSignature
from model_signing.oms.bundle import SignatureBundle
from tests import _pki

# -- the registry ---------------------------------------------------------------------------------------


def test_the_registry_lists_each_method_once_with_an_importable_pair() -> None:
    # Classification order: secret before key (both carry a publicKey hint), sigstore before certificate.
    assert methods.names() == ("secret", "key", "sigstore", "certificate")
    for name, spec in methods.REGISTRY.items():
        module = spec.load()
        assert name == module.NAME
        assert getattr(spec.signer_class(), "method") == name and getattr(spec.verifier_class(), "method") == name  # noqa: B009
    assert methods.REGISTRY[methods.DEFAULT].uses_sigstore_helper


@pytest.mark.parametrize(
    ("material", "media_type", "expected"),
    [
        ({"publicKey": {"hint": "abc"}, "tlogEntries": []}, "application/vnd.dev.sigstore.bundle.v0.3+json", "key"),
        ({"certificate": {"rawBytes": "AA=="}, "tlogEntries": [{}]},
         "application/vnd.dev.sigstore.bundle.v0.3+json", "sigstore"),
        ({"x509CertificateChain": {"certificates": []}, "tlogEntries": []},
         "application/vnd.dev.sigstore.bundle.v0.3+json", "certificate"),
        # Before v0.3 a keyless bundle carried its Fulcio certificate as a one-element chain, with log entries.
        ({"x509CertificateChain": {"certificates": []}, "tlogEntries": [{}]},
         "application/vnd.dev.sigstore.bundle+json;version=0.2", "sigstore"),
        ({"x509CertificateChain": {"certificates": []}, "tlogEntries": [{}]},
         "application/vnd.dev.sigstore.bundle.v0.3+json", "certificate"),
    ],
)
def test_bundles_are_classified_by_the_registry(material: dict[str, Any], media_type: str, expected: str) -> None:
    assert methods.classify(material, media_type) == expected


def test_the_cli_asks_the_registry_which_commands_start_the_sigstore_helper() -> None:
    from model_signing.cli import _uses_sigstore

    assert _uses_sigstore(["sign", "sigstore", "m"]) and _uses_sigstore(["verify", "m"])  # the default method
    assert not _uses_sigstore(["sign", "key", "m"]) and not _uses_sigstore(["verify", "certificate", "m"])
    assert not _uses_sigstore(["sign", "sigstore", "--help"]) and not _uses_sigstore(["digest", "m"])


def test_every_registered_method_has_sign_and_verify_commands(run: Any) -> None:
    for name in methods.names():
        for group in ("sign", "verify"):
            code, out, _ = run(group, name, "--help")
            assert code == 0 and f"modelseal {group} {name}" in out


# -- earlier import paths keep working ----------------------------------------------------------------------


def test_every_public_name_imports_from_the_package() -> None:
    for name in ms.__all__:
        assert getattr(ms, name) is not None, name


@pytest.mark.parametrize(
    ("module", "name", "home"),
    [
        ("model_signing.signing", "KeySigner", "model_signing.methods.key"),
        ("model_signing.signing", "CertificateSigner", "model_signing.methods.certificate"),
        ("model_signing.signing", "Signer", "model_signing.methods.base"),
        ("model_signing.signing", "Preparing", "model_signing.methods.base"),
        ("model_signing.signing", "IdentifiedSigner", "model_signing.methods.base"),
        ("model_signing.verifying", "KeyVerifier", "model_signing.methods.key"),
        ("model_signing.verifying", "CertificateVerifier", "model_signing.methods.certificate"),
        ("model_signing.verifying", "Verifier", "model_signing.methods.base"),
        ("model_signing.verifying", "VerifiedSignature", "model_signing.methods.base"),
        ("model_signing.keyless", "SigstoreSigner", "model_signing.methods.sigstore"),
        ("model_signing.keyless", "SigstoreVerifier", "model_signing.methods.sigstore"),
        ("model_signing.keyless", "IdentityPolicy", "model_signing.methods.sigstore.identity"),
        ("model_signing.keyless", "TokenSource", "model_signing.methods.sigstore._token"),
        ("model_signing.hashing", "HashingConfig", "model_signing.hashing"),
        ("model_signing.manifest", "Manifest", "model_signing.manifest"),
        ("model_signing.sigstore_local", "LocalSigstore", "model_signing.sigstore_local"),
        ("model_signing.cli", "main", "model_signing.cli"),
    ],
)
def test_moved_names_are_re_exported_where_they_were(module: str, name: str, home: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(importlib.import_module(home), name)


def test_serialization_method_is_named_apart_from_the_signing_method() -> None:
    from model_signing import manifest

    assert manifest.Method is manifest.SerializationMethod
    assert manifest.METHODS == ("files", "shards")


# -- the pipelines' shared checks -------------------------------------------------------------------------


def _keys(tmp_path: Path) -> tuple[Path, Path]:
    key = _pki.ec_key()
    return _pki.write_private_key(key, tmp_path / "k.pem"), _pki.write_public_key(key, tmp_path / "k.pub")


class _Forwarding:
    """A third-party signer built on the key signer (what a plug-in might do), with a fault to inject."""

    def __init__(self, priv: Path, *, method: str = "key", tamper: bool = False) -> None:
        self._inner = ms.KeySigner(priv)
        self.method = method
        self._tamper = tamper

    @property
    def description(self) -> str:
        return "forwarding signer"

    def sign(self, payload: bytes) -> Any:
        return self._inner.sign(payload + b" " if self._tamper else payload)


def test_a_signer_that_writes_another_methods_bundle_is_refused(small_model: Path, tmp_path: Path) -> None:
    priv, _ = _keys(tmp_path)
    sig = tmp_path / "model.sig"
    with pytest.raises(SigningError, match="certificate signer produced a key bundle"):
        ms.sign(small_model, _Forwarding(priv, method="certificate"), signature_path=sig)
    assert not sig.exists()


def test_a_signer_that_signs_another_payload_is_refused(small_model: Path, tmp_path: Path) -> None:
    priv, _ = _keys(tmp_path)
    sig = tmp_path / "model.sig"
    with pytest.raises(SigningError, match="signed another payload"):
        ms.sign(small_model, _Forwarding(priv, tamper=True), signature_path=sig)
    assert not sig.exists() and not list(tmp_path.glob(".model.sig.*"))


def test_a_failing_fails_fast_signer_stops_the_signing(small_model: Path, tmp_path: Path) -> None:
    priv, _ = _keys(tmp_path)

    class Failing(_Forwarding):
        polls = 0

        def raise_if_failed(self) -> None:
            Failing.polls += 1
            raise SigningError("the certificate request was refused")

    signer = Failing(priv)
    assert isinstance(signer, FailsFast) and not isinstance(_Forwarding(priv), FailsFast)
    with pytest.raises(SigningError, match="refused"):
        ms.sign(small_model, signer, signature_path=tmp_path / "model.sig")
    assert Failing.polls >= 1 and not (tmp_path / "model.sig").exists()


def test_a_verifier_that_crashes_has_not_verified(small_model: Path, tmp_path: Path) -> None:
    priv, _ = _keys(tmp_path)
    sig = tmp_path / "model.sig"
    ms.sign(small_model, ms.KeySigner(priv), signature_path=sig)

    class Crashing:
        method = "key"

        def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
            raise RuntimeError("boom")

    with pytest.raises(VerificationError, match="the key verifier failed: RuntimeError") as exc:
        ms.verify(small_model, Crashing(), signature_path=sig)
    assert exc.value.exit_code == 2


def test_a_background_verifier_is_a_declared_capability(small_model: Path, tmp_path: Path) -> None:
    priv, pub = _keys(tmp_path)
    sig = tmp_path / "model.sig"
    ms.sign(small_model, ms.KeySigner(priv), signature_path=sig)
    started: list[str] = []

    class Pending:
        def __init__(self, value: VerifiedSignature) -> None:
            self.value = value

        def raise_if_failed(self) -> None:
            return None

        def result(self) -> VerifiedSignature:
            return self.value

    class Background:
        method = "key"

        def __init__(self) -> None:
            self._inner = ms.KeyVerifier(pub)

        def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
            raise AssertionError("a background verifier is asked to verify in the background")

        def verify_in_background(self, bundle: SignatureBundle) -> Pending:
            started.append(bundle.source)
            return Pending(self._inner.verify(bundle))

    verifier = Background()
    assert isinstance(verifier, BackgroundVerifier) and not isinstance(ms.KeyVerifier(pub), BackgroundVerifier)
    assert ms.verify(small_model, verifier, signature_path=sig).method == "key"
    assert started == [str(sig)]
    # The built-in keyless signer declares its capabilities the same way (protocols of methods only).
    assert issubclass(ms.SigstoreSigner, Preparing) and issubclass(ms.SigstoreSigner, FailsFast)
    assert not issubclass(ms.KeySigner, Preparing) and not issubclass(ms.KeySigner, FailsFast)


def test_a_bundle_of_another_method_is_a_wrong_method_error(small_model: Path, tmp_path: Path, pki: Any) -> None:
    priv, _ = _keys(tmp_path)
    sig = tmp_path / "model.sig"
    ms.sign(small_model, ms.KeySigner(priv), signature_path=sig)
    with pytest.raises(WrongMethodError) as exc:
        ms.verify(small_model, ms.CertificateVerifier([pki.root_pem]), signature_path=sig)
    assert (exc.value.signed_with, exc.value.expected, exc.value.exit_code) == ("key", "certificate", 2)


# -- hashing's public file identities ----------------------------------------------------------------------


def test_file_identities_are_the_walks_files_with_their_stat(small_model: Path) -> None:
    ids = ms.hashing.file_identities(small_model)
    expected = sorted(
        str(p.relative_to(small_model).as_posix()) for p in small_model.rglob("*") if p.is_file()
    )
    assert [i.name for i in ids] == expected
    for ident in ids:
        st = os.stat(small_model / ident.name)
        assert (ident.dev, ident.inode, ident.size, ident.mtime_ns, ident.ctime_ns) == (
            st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
        )
    # The same files the manifest holds (files serialization: one resource per file, digest = sha256).
    manifest = ms.hash_model(small_model)
    digests = {r.name: r.digest.hex() for r in manifest.resources}
    assert set(digests) == set(expected)
    assert digests["config.json"] == hashlib.sha256((small_model / "config.json").read_bytes()).hexdigest()


# -- the one atomic write ------------------------------------------------------------------------------


def test_atomic_write_sets_the_mode_before_writing_and_never_clobbers(tmp_path: Path) -> None:
    target = tmp_path / "secret.pem"
    write_atomic(target, b"PRIVATE", overwrite=False, mode=0o600)
    assert target.read_bytes() == b"PRIVATE" and stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_atomic(target, b"OTHER", overwrite=False)
    assert target.read_bytes() == b"PRIVATE"
    write_atomic(target, "replaced", overwrite=True, mode=0o644)
    assert target.read_text() == "replaced" and stat.S_IMODE(target.stat().st_mode) == 0o644
    claimed = AtomicFile.claim(tmp_path / "later.sig")
    assert claimed.tmp is not None and Path(claimed.tmp).parent == tmp_path
    claimed.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.pem"]  # no temporary file left


def test_a_signature_written_through_the_pipeline_is_the_parsed_bundle(small_model: Path, tmp_path: Path) -> None:
    # The payload in the written file is the statement of this model: decoded by hand, not by the code.
    priv, _ = _keys(tmp_path)
    sig = tmp_path / "model.sig"
    result = ms.sign(small_model, ms.KeySigner(priv), signature_path=sig)
    doc = json.loads(sig.read_text())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    assert statement["subject"][0]["digest"]["sha256"] == result.root_digest
    # The key hint is what the peer writes: hex SHA-256 of the PEM SubjectPublicKeyInfo.
    pub = serialization.load_pem_public_key((tmp_path / "k.pub").read_bytes())
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert doc["verificationMaterial"]["publicKey"]["hint"] == hashlib.sha256(pem).hexdigest()


def test_the_cli_names_the_command_for_a_bundle_of_another_method(
    run: Any, small_model: Path, tmp_path: Path, pki: Any
) -> None:
    priv, _ = _keys(tmp_path)
    sig = tmp_path / "model.sig"
    ms.sign(small_model, ms.KeySigner(priv), signature_path=sig)
    code, _, err = run("verify", "certificate", small_model, "--signature", sig, "--certificate-chain", pki.root_pem)
    assert code == 2
    assert f"error: {sig} is a key signature, not a certificate one; verify it with 'verify key'" in err


def test_signing_key_references_are_resolved_by_kind() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from model_signing.errors import KeyMaterialError
    from model_signing.keymaterial.sources import LocalKey, open_signing_key

    key = _pki.ec_key()
    wrapped = open_signing_key(key)
    assert isinstance(wrapped, LocalKey)
    public = wrapped.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()
    assert open_signing_key(wrapped) is wrapped  # a source is used as given
    message = b"pae bytes"
    key.public_key().verify(wrapped.sign(message), message, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(KeyMaterialError, match=r"not a supported key \(RSA\)"):
        open_signing_key(_pki.rsa_key())  # type: ignore[arg-type]  # refused at run time too, not passed through

"""Keys in an HSM: ``pkcs11:`` URIs signed with on a real SoftHSM2 token (issue 11).

A token is initialised in a temporary ``SOFTHSM2_CONF`` directory with ``softhsm2-util``, and its keys are
generated ON the token with python-pkcs11 (P-256, P-384, P-521, Ed25519) in a separate process, which also reads
back each public key's ``CKA_EC_POINT``.  The test turns those bytes into PEM public keys itself (the DER
length prefix stripped by hand, the key built with ``cryptography``), so what ``verify key`` and the peer
``model-signing==1.1.1`` are given never went through the code under test.  Then:

* ``sign key --private-key URI`` and the peer's ``sign pkcs11-key --pkcs11_uri URI`` sign, our ``verify key``
  verifies with the exported key, the peer verifies the EC signatures, the signature is checked by hand
  (DSSE PAE built here, ``cryptography`` verifying), and the bundle validates against the OMS v1.0 schemas;
* ``sign certificate`` / ``sign pkcs11-certificate`` take the certificate from a file or from the token;
* wrong PIN, missing object, missing or unloadable module, a missing python-pkcs11 and a token removed
  while the model is hashed each give one ``error:`` line naming the URI part, exit 1, nothing written, and
  never the PIN.

No PKCS #11 call is mocked; python-pkcs11 is imported only by the child processes and the code under test.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from benchmarks.peer import ensure_peer_venv, peer_cli
from tests import _pki
from tests._cli import Run
from tests.test_oms_vectors import _validate

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
SO_PIN, PIN = "so-secret-12", "user-pin-3456"
LABEL = "modelseal-test"
#: label, CKA_ID (hex), curve: what the fixture generates on the token.
KEYS = (
    ("p256", "01", "secp256r1"), ("p384", "02", "secp384r1"), ("ed25519", "03", "ed25519"), ("p521", "05", "secp521r1"),
    ("signer", "a1b2", "secp256r1"),  # its certificate is stored on the token too
)

#: Runs in a child process (SOFTHSM2_CONF set): generate the keys on the token, print each CKA_EC_POINT.
GENERATE = r"""
import json, sys
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters

module, label, pin, keys = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
# The private key stays on the token: sensitive, never extractable.
private = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
points = {}
with pkcs11.lib(module).get_token(token_label=label).open(user_pin=pin, rw=True) as session:
    for name, ident, curve in keys:
        if curve == "ed25519":
            public, _ = session.generate_keypair(
                KeyType.EC_EDWARDS, store=True, label=name, id=bytes.fromhex(ident),
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN, private_template=private,
                public_template={Attribute.EC_PARAMS: bytes.fromhex("06032b6570")},  # OID 1.3.101.112, DER
            )
        else:
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True)
            public, _ = params.generate_keypair(store=True, label=name, id=bytes.fromhex(ident),
                                                private_template=private)
        points[name] = bytes(public[Attribute.EC_POINT]).hex()
print(json.dumps(points))
"""

#: Child process: store a DER certificate on the token as a CKO_CERTIFICATE with the key's label and id.
STORE_CERTIFICATE = r"""
import sys
import pkcs11
from pkcs11 import Attribute, CertificateType, ObjectClass

module, label, pin, name, ident, der, subject = sys.argv[1:8]
with pkcs11.lib(module).get_token(token_label=label).open(user_pin=pin, rw=True) as session:
    session.create_object({
        Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
        Attribute.TOKEN: True, Attribute.LABEL: name, Attribute.ID: bytes.fromhex(ident),
        Attribute.VALUE: bytes.fromhex(der), Attribute.SUBJECT: bytes.fromhex(subject),
    })
"""


def _module() -> str:
    if shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2; `make softhsm` does it)")
    for path in MODULES:
        if os.path.exists(path):
            return path
    pytest.skip(f"libsofthsm2.so not found in {', '.join(MODULES)}")


def _softhsm_conf(directory: Path) -> Path:
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    return conf


def _init_token(conf: Path, module: str, keys: tuple[tuple[str, str, str], ...]) -> dict[str, bytes]:
    """A fresh token in ``conf``'s directory with ``keys`` generated on it; their CKA_EC_POINTs."""
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", LABEL, "--so-pin", SO_PIN, "--pin", PIN],
                   env=env, check=True, capture_output=True, timeout=60)
    made = subprocess.run([sys.executable, "-c", GENERATE, module, LABEL, PIN, json.dumps(keys)],
                          env=env, check=True, capture_output=True, text=True, timeout=120)
    return {name: bytes.fromhex(point) for name, point in json.loads(made.stdout).items()}


def _public_key(point: bytes, curve: str) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey:
    """The key from CKA_EC_POINT, a DER OCTET STRING (tag 0x04, then the length: one byte below 128, else
    0x81 and one byte), by hand."""
    size = {"secp256r1": 65, "secp384r1": 97, "secp521r1": 133, "ed25519": 32}[curve]
    header = bytes([0x04, size]) if size < 128 else bytes([0x04, 0x81, size])
    assert point[: len(header)] == header and len(point) == size + len(header), point.hex()
    raw = point[len(header):]
    if curve == "ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    assert raw[0] == 0x04  # an uncompressed point
    curves = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(), "secp521r1": ec.SECP521R1()}
    return ec.EllipticCurvePublicKey.from_encoded_point(curves[curve], raw)


def _pem(key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class Token:
    module: str
    conf: Path
    pin_file: Path
    public_pem: dict[str, Path]
    public: dict[str, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey]
    pki: _pki.Pki
    signer_cert: x509.Certificate
    signer_cert_pem: Path

    def uri(self, name: str = "p256", *, pin: str | None = None, by_id: bool = False, module: str | None = None,
            extra: str = "") -> str:
        """The key's URI; the PIN from the pin file unless ``pin`` is given."""
        ident = dict((k[0], k[1]) for k in KEYS)[name]
        path = f"token={LABEL};" + (f"id={''.join(f'%{b:02x}' for b in bytes.fromhex(ident))}" if by_id
                                    else f"object={name}")
        query = f"module-path={module or self.module}&" + (f"pin-value={pin}" if pin is not None
                                                           else f"pin-source=file:{self.pin_file}")
        return f"pkcs11:{path}{extra}?{query}"


def _leaf_for(public: ec.EllipticCurvePublicKey, pki: _pki.Pki) -> x509.Certificate:
    """A code-signing leaf for the token's public key, issued by the test intermediate CA."""
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "hsm-signer")])
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(pki.inter.subject).public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("hsm@example.com")]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.inter_key.public_key()), critical=False)
        .sign(pki.inter_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    module = _module()
    directory = tmp_path_factory.mktemp("softhsm")
    conf = _softhsm_conf(directory)
    points = _init_token(conf, module, KEYS)
    curves = {name: curve for name, _, curve in KEYS}
    public = {name: _public_key(point, curves[name]) for name, point in points.items()}
    pems = {}
    for name, key in public.items():
        pems[name] = directory / f"{name}.pub"
        pems[name].write_bytes(_pem(key))
    pin_file = directory / "pin"
    pin_file.write_text(PIN + "\n")  # as `echo PIN > pin` writes it
    pki = _pki.Pki(directory / "pki")
    signer = public["signer"]
    assert isinstance(signer, ec.EllipticCurvePublicKey)
    cert = _leaf_for(signer, pki)
    subprocess.run(
        [sys.executable, "-c", STORE_CERTIFICATE, module, LABEL, PIN, "signer", "a1b2",
         cert.public_bytes(serialization.Encoding.DER).hex(), cert.subject.public_bytes().hex()],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)}, check=True, capture_output=True, timeout=60,
    )
    cert_pem = _pki.write_certs(directory / "signer.pem", cert)
    with pytest.MonkeyPatch.context() as mp:
        # The in-process CLI loads SoftHSM2 once per process; it reads this on its first use.
        mp.setenv("SOFTHSM2_CONF", str(conf))
        yield Token(module, conf, pin_file, pems, public, pki, cert, cert_pem)


@pytest.fixture
def model(make_model: object) -> Path:
    files = {"config.json": b'{"layers": 2}\n', "weights/w.bin": bytes(range(256)) * 5, "empty": b""}
    return make_model(files)  # type: ignore[operator, no-any-return]


def _peer(cwd: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*peer_cli(ensure_peer_venv()), *(str(a) for a in args)], cwd=cwd, capture_output=True,
                          text=True, check=False, timeout=300)


def _error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith(("INFO ", "DEBUG "))]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _check_bundle(sig: Path, model: Path, public: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
                  curve: str, ignored: tuple[str, ...] = ()) -> dict[str, object]:
    """The bundle by hand: OMS schemas, key hint, resources' digests and the signature over the DSSE PAE."""
    raw = sig.read_bytes()
    _validate(raw)
    bundle = json.loads(raw)
    envelope = bundle["dsseEnvelope"]
    payload, payload_type = base64.b64decode(envelope["payload"]), envelope["payloadType"]
    statement = json.loads(payload)
    resources = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    expected = {p.relative_to(model).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in model.rglob("*") if p.is_file() and p.relative_to(model).as_posix() not in ignored}
    assert resources == expected
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)
    signature = base64.b64decode(envelope["signatures"][0]["sig"])
    if isinstance(public, ed25519.Ed25519PublicKey):
        assert len(signature) == 64
        public.verify(signature, pae)  # PureEdDSA over the PAE itself
    else:
        assert signature[0] == 0x30  # DER, not the token's raw r || s
        chosen = {"secp256r1": hashes.SHA256(), "secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512()}[curve]
        public.verify(signature, pae, ec.ECDSA(chosen))
    return bundle  # type: ignore[no-any-return]


# --- sign key with a token key -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["p256", "p384", "p521", "ed25519"])
def test_sign_key_on_the_token_verifies_with_the_exported_key(run: Run, token: Token, model: Path, tmp_path: Path,
                                                               name: str) -> None:
    sig = tmp_path / "model.sig"
    code, out, err = run("sign", "key", model, "--private-key", token.uri(name), "--signature", sig, "-q")
    assert code == 0, err
    assert PIN not in out + err
    curve = dict((k[0], k[2]) for k in KEYS)[name]
    if curve == "ed25519":
        assert "model-signing 1.1.1 cannot verify Ed25519" in err
    else:
        assert err == ""
    bundle = _check_bundle(sig, model, token.public[name], curve)
    # The key hint is the SHA-256 of the PEM public key (as model-signing writes it), from the token's key.
    hint = hashlib.sha256(token.public_pem[name].read_bytes()).hexdigest()
    assert bundle["verificationMaterial"] == {"publicKey": {"hint": hint}, "tlogEntries": []}
    assert f"key sha256:{hint}" in out
    code, out, err = run("verify", "key", model, "--public-key", token.public_pem[name], "--signature", sig, "-q")
    assert (code, err) == (0, ""), err
    # Another key (the token's P-256 for the others, P-384 for P-256) is refused: exit 2.
    other = "p384" if name == "p256" else "p256"
    code, _, err = run("verify", "key", model, "--public-key", token.public_pem[other], "--signature", sig, "-q")
    assert code == 2, err
    (model / "weights" / "w.bin").write_bytes(b"tampered")
    code, _, err = run("verify", "key", model, "--public-key", token.public_pem[name], "--signature", sig, "-q")
    assert code == 3 and "modified: weights/w.bin" in err


@pytest.mark.parametrize("name", ["p256", "p384", "p521"])
def test_the_peer_verifies_token_signatures(run: Run, token: Token, model: Path, tmp_path: Path, name: str) -> None:
    sig = tmp_path / "model.sig"
    code, _, err = run("sign", "key", model, "--private-key", token.uri(name, by_id=True), "--signature", sig, "-q")
    assert code == 0, err
    proc = _peer(tmp_path, "verify", "key", "--public_key", token.public_pem[name], "--signature", sig, model)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wrong = _peer(tmp_path, "verify", "key", "--public_key", token.public_pem["p256" if name == "p384" else "p384"],
                  "--signature", sig, model)
    assert wrong.returncode != 0


def test_api_signs_with_a_uri_and_the_pin_from_password(token: Token, model: Path, tmp_path: Path) -> None:
    import model_signing as ms

    # No PIN in the URI: `password` is the token's PIN (the CLI's --password-env).
    uri = f"pkcs11:token={LABEL};object=p384?module-path={token.module}"
    sig = tmp_path / "model.sig"
    result = ms.sign(model, ms.KeySigner(uri, password=PIN), signature_path=sig,
                     hashing=ms.HashingConfig(max_workers=1, progress=False))
    assert result.signer_identity is not None and result.signer_identity.key_algorithm == "P-384"
    _check_bundle(sig, model, token.public["p384"], "secp384r1")
    ms.verify(model, ms.KeyVerifier(token.public_pem["p384"]), signature_path=sig, max_workers=1)


def test_a_wrong_pin_is_refused_after_a_good_login_in_the_same_process(token: Token) -> None:
    # A PKCS #11 login belongs to the whole process: a session left logged in would let this one through.
    from model_signing.errors import KeyMaterialError
    from model_signing.keymaterial.pkcs11 import open_key

    good = open_key(token.uri("p256"))
    assert good.public_key() == token.public["p256"]
    with pytest.raises(KeyMaterialError, match="refused the PIN from pin-value"):
        open_key(token.uri("p384", pin="not-the-pin"))
    message = b"a message"
    signature = good.sign(message)  # and the first key still signs (a session of its own)
    public = token.public["p256"]
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, message, ec.ECDSA(hashes.SHA256()))


def test_keys_on_one_token_sign_from_several_threads(token: Token) -> None:
    # Each signature logs in and out, and a login is the process's: uses are serialised, none fails.
    from concurrent.futures import ThreadPoolExecutor

    from model_signing.keymaterial.pkcs11 import open_key

    keys = {name: open_key(token.uri(name)) for name in ("p256", "p384", "ed25519")}
    jobs = [(name, f"message {i}".encode()) for i in range(4) for name in keys]
    with ThreadPoolExecutor(max_workers=3) as pool:
        signatures = list(pool.map(lambda job: keys[job[0]].sign(job[1]), jobs))
    for (name, message), signature in zip(jobs, signatures, strict=True):
        public = token.public[name]
        if isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, message)
        else:
            public.verify(signature, message, ec.ECDSA(hashes.SHA256() if name == "p256" else hashes.SHA384()))


def test_cli_pin_from_password_env(run: Run, token: Token, model: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_PIN", PIN)
    uri = f"pkcs11:token={LABEL};object=p256?module-path={token.module}"
    sig = tmp_path / "model.sig"
    code, _, err = run("sign", "key", model, "--private-key", uri, "--password-env", "TOKEN_PIN", "--signature", sig,
                       "-q")
    assert (code, err) == (0, "")
    _check_bundle(sig, model, token.public["p256"], "secp256r1")


def test_module_name_in_a_directory(run: Run, token: Token, model: Path, tmp_path: Path) -> None:
    # RFC 7512's module-name, looked up in the module-path directory (p11-kit style).
    directory, library = os.path.split(token.module)
    uri = (f"pkcs11:token={LABEL};object=p256?module-path={directory}&module-name={library.removesuffix('.so')}"
           f"&pin-value={PIN}")
    sig = tmp_path / "model.sig"
    code, _, err = run("sign", "key", model, "--private-key", uri, "--signature", sig, "-q")
    assert (code, err) == (0, "")
    _check_bundle(sig, model, token.public["p256"], "secp256r1")


def test_pem_keys_and_help_never_import_python_pkcs11(tmp_path: Path, model: Path) -> None:
    key = _pki.ec_key()
    pem = _pki.write_private_key(key, tmp_path / "k.pem")
    code = (
        "import sys\nfrom model_signing.cli import main\n"
        "for args in (['sign', 'pkcs11-key', '--help'], ['sign', 'key', sys.argv[1], '--private-key', sys.argv[2],"
        " '--signature', sys.argv[3], '-q']):\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n        assert not e.code, e.code\n"
        "print('LOADED=' + ','.join(m for m in sys.modules if m.split('.')[0] == 'pkcs11'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(model), str(pem), str(tmp_path / "model.sig")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "LOADED="
    assert (tmp_path / "model.sig").exists()


# --- the peer's command shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["--pkcs11_uri", "--pkcs11-uri"])
def test_sign_pkcs11_key_alias(run: Run, token: Token, model: Path, tmp_path: Path, spelling: str) -> None:
    sig = tmp_path / "model.sig"
    # model-signing's own command line, option spellings and order included.
    code, _, err = run("sign", "pkcs11-key", "--signature", sig, spelling, token.uri("p256"), "--ignore-paths",
                       model / "empty", model)
    assert code == 0, err
    _check_bundle(sig, model, token.public["p256"], "secp256r1", ignored=("empty",))
    code, _, err = run("verify", "key", model, "--public-key", token.public_pem["p256"], "--signature", sig, "-q")
    assert (code, err) == (0, ""), err
    proc = _peer(tmp_path, "verify", "key", "--public_key", token.public_pem["p256"], "--signature", sig,
                 "--ignore-paths", model / "empty", model)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sign_pkcs11_key_refuses_a_path(run: Run, token: Token, model: Path, tmp_path: Path) -> None:
    code, _, err = run("sign", "pkcs11-key", model, "--pkcs11-uri", token.public_pem["p256"],
                       "--signature", tmp_path / "s.sig")
    assert code == 1 and "--pkcs11-uri must be a pkcs11: URI" in _error_line(err)


def test_sign_pkcs11_certificate_alias(run: Run, token: Token, model: Path, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    code, _, err = run("sign", "pkcs11-certificate", "--signature", sig, "--pkcs11_uri", token.uri("signer"),
                       "--signing_certificate", token.signer_cert_pem, "--certificate_chain", token.pki.chain_pem,
                       model)
    assert code == 0, err
    bundle = _check_bundle(sig, model, token.public["signer"], "secp256r1")
    chain = bundle["verificationMaterial"]["x509CertificateChain"]["certificates"]  # type: ignore[index]
    assert [base64.b64decode(c["rawBytes"]) for c in chain] == [
        token.signer_cert.public_bytes(serialization.Encoding.DER),
        token.pki.inter.public_bytes(serialization.Encoding.DER),
    ]
    code, out, err = run("verify", "certificate", model, "--certificate-chain", token.pki.root_pem, "--signature", sig)
    assert (code, err) == (0, ""), err
    assert "CN=hsm-signer" in out
    proc = _peer(tmp_path, "verify", "certificate", "--certificate_chain", token.pki.root_pem, "--signature", sig,
                 model)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the certificate from the token ------------------------------------------------------------------------


@pytest.mark.parametrize("by_id", [False, True], ids=["by-label", "by-id"])
def test_sign_certificate_takes_the_certificate_from_the_token(run: Run, token: Token, model: Path, tmp_path: Path,
                                                               by_id: bool) -> None:
    sig = tmp_path / "model.sig"
    code, _, err = run("sign", "certificate", model, "--private-key", token.uri("signer", by_id=by_id),
                       "--certificate-chain", token.pki.chain_pem, "--certificate-chain", token.pki.root_pem,
                       "--signature", sig, "-q")
    assert (code, err) == (0, "")
    bundle = _check_bundle(sig, model, token.public["signer"], "secp256r1")
    leaf = bundle["verificationMaterial"]["x509CertificateChain"]["certificates"][0]  # type: ignore[index]
    assert base64.b64decode(leaf["rawBytes"]) == token.signer_cert.public_bytes(serialization.Encoding.DER)
    code, _, err = run("verify", "certificate", model, "--certificate-chain", token.pki.root_pem, "--signature", sig,
                       "-q")
    assert (code, err) == (0, ""), err
    proc = _peer(tmp_path, "verify", "certificate", "--certificate_chain", token.pki.root_pem, "--signature", sig,
                 model)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sign_certificate_without_one_on_the_token_says_so(run: Run, token: Token, model: Path,
                                                           tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    code, _, err = run("sign", "certificate", model, "--private-key", token.uri("p256"), "--signature", sig)
    assert code == 1
    assert "holds no certificate for it; pass --signing-certificate" in _error_line(err)
    assert not sig.exists()
    # A certificate of another key is refused before hashing.
    code, _, err = run("sign", "certificate", model, "--private-key", token.uri("p256"), "--signing-certificate",
                       token.signer_cert_pem, "--signature", sig)
    assert code == 1 and "does not belong to the private key" in _error_line(err)
    assert not sig.exists()


# --- refusals: one line naming the URI part, exit 1, nothing written, no PIN -------------------------------


def _refused(run: Run, model: Path, tmp_path: Path, uri: str, *extra: object) -> str:
    sig = tmp_path / "model.sig"
    code, out, err = run("sign", "key", model, "--private-key", uri, "--signature", sig, *extra)
    assert code == 1, err
    assert not sig.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # not even a temp file
    assert PIN not in out + err
    return _error_line(err)


def test_wrong_pin(run: Run, token: Token, model: Path, tmp_path: Path) -> None:
    line = _refused(run, model, tmp_path, token.uri(pin="wrong-pin-000"))
    assert line == (f"error: PKCS #11 URI: the token '{LABEL}' refused the PIN from pin-value (wrong PIN); give the "
                    "token's user PIN (it is never shown)")
    assert "wrong-pin-000" not in line
    bad = token.conf.parent / "bad-pin"
    bad.write_text("not-the-pin\n")
    uri = f"pkcs11:token={LABEL};object=p256?module-path={token.module}&pin-source=file:{bad}"
    try:
        line = _refused(run, model, tmp_path, uri)
    finally:
        bad.unlink()
    assert f"refused the PIN from pin-source=file:{bad} (wrong PIN)" in line and "not-the-pin" not in line


def test_missing_object(run: Run, token: Token, model: Path, tmp_path: Path) -> None:
    line = _refused(run, model, tmp_path, token.uri().replace("object=p256", "object=no-such-key"))
    assert line.startswith(f"error: PKCS #11 URI: no private key matches object=no-such-key on the token '{LABEL}'")
    assert "object=p256 id=%01" in line and line.endswith("fix object= or id= in the URI")
    line = _refused(run, model, tmp_path, token.uri(by_id=True).replace("id=%01", "id=%7f"))
    assert "no private key matches id=%7F" in line
    # Without a PIN the token hides its private keys: the line says that, not merely "missing".
    line = _refused(run, model, tmp_path, f"pkcs11:token={LABEL};object=p256?module-path={token.module}")
    assert "and the URI gives no PIN (private keys are only visible after login); add pin-source=" in line


def test_missing_or_unloadable_module(run: Run, token: Token, model: Path, tmp_path: Path) -> None:
    line = _refused(run, model, tmp_path, token.uri(module="/nonexistent/libnothing.so"))
    assert line == ("error: PKCS #11 URI: module-path=/nonexistent/libnothing.so: no such file; give the absolute "
                    "path of the token's PKCS #11 library (SoftHSM2's is /usr/lib/softhsm/libsofthsm2.so)")
    line = _refused(run, model, tmp_path, f"pkcs11:token={LABEL};object=p256?pin-value={PIN}")
    assert line.startswith("error: PKCS #11 URI names no PKCS #11 library: add module-path=/path/to/library.so")
    line = _refused(run, model, tmp_path, token.uri(module=str(token.pin_file)))
    assert line.startswith(f"error: PKCS #11 URI: module-path={token.pin_file} cannot be loaded as a PKCS #11 "
                           "library (")
    line = _refused(run, model, tmp_path, token.uri(module="libsofthsm2.so"))
    assert "module-path=libsofthsm2.so is not an absolute path" in line


def test_malformed_uris(run: Run, token: Token, model: Path, tmp_path: Path) -> None:
    line = _refused(run, model, tmp_path, token.uri().replace("object=", "objekt="))
    assert line.startswith("error: PKCS #11 URI: unknown attribute 'objekt' in the path part; the path part may hold "
                           "token, manufacturer")
    line = _refused(run, model, tmp_path, token.uri() + "&pin-file=x")
    assert "unknown attribute 'pin-file' in the query part" in line
    line = _refused(run, model, tmp_path, token.uri(by_id=True).replace("id=%01", "id=%0g"))
    assert "id= has a '%' not followed by two hex digits" in line
    line = _refused(run, model, tmp_path, token.uri().replace(f"token={LABEL}", "token=elsewhere"))
    assert f"no token matches token=elsewhere; the tokens present: '{LABEL}'" in line
    line = _refused(run, model, tmp_path, token.uri().replace(str(token.pin_file), "/nonexistent/pin"))
    assert line == "error: PKCS #11 URI: the PIN file of pin-source, /nonexistent/pin does not exist"
    line = _refused(run, model, tmp_path, f"pkcs11:token={LABEL}?module-path={token.module}&pin-value={PIN}")
    assert "names no key: add object=LABEL or id=%XX" in line and PIN not in line and "pin-value=***" in line


def test_uri_parsing_percent_decodes() -> None:
    from model_signing.errors import KeyMaterialError
    from model_signing.keymaterial.pkcs11 import Pkcs11Uri

    uri = Pkcs11Uri.parse("pkcs11:token=My%20Token;object=a%3Bb;id=%01%FF;slot-id=3?module-path=/m.so&pin-value=p%26w")
    assert uri.text("token") == "My Token" and uri.text("object") == "a;b" and uri.id == b"\x01\xff"
    assert uri.query["pin-value"] == b"p&w" and uri.text("slot-id") == "3"
    assert "p%26w" not in uri.shown() and "p&w" not in uri.shown() and "pin-value=***" in uri.shown()
    assert "id=%01%FF" in uri.shown()
    for bad, message in [
        ("pkcs11:object=k;object=k", "object= is given twice"),
        ("pkcs11:object=k;slot-id=x", "slot-id=x is not a number"),
        ("pkcs11:object=k;type=cert", "type=cert names no private key"),
        ("pkcs11:object=k?pin-value=1&pin-source=file:/p", "give the PIN once"),
        ("pkcs11:object", "'object' in the path part is not NAME=VALUE"),
        ("pkcs11:object=k;slot-id=\u00b2", "is not a number"),
        ("pkcs11:object=k?module-path=/m.so&pin-value1234", "attribute 2 in the query part is not NAME=VALUE$"),
    ]:
        with pytest.raises(KeyMaterialError, match=message):
            Pkcs11Uri.parse(bad)


def test_missing_extra(token: Token, model: Path, tmp_path: Path) -> None:
    # Without python-pkcs11 (its import made to fail, as on an install without the extra), in a child process.
    code = ("import sys\nsys.modules['pkcs11'] = None\nfrom model_signing.cli import main\n"
            "main(sys.argv[1:])")
    sig = tmp_path / "model.sig"
    proc = subprocess.run([sys.executable, "-c", code, "sign", "key", str(model), "--private-key", token.uri(),
                           "--signature", str(sig)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert proc.returncode == 1
    assert _error_line(proc.stderr) == ("error: PKCS #11 URI: keys in an HSM need the python-pkcs11 package; install "
                                        "it with pip install 'modelseal[pkcs11]'")
    assert not sig.exists()


def test_token_removed_while_hashing(token: Token, tmp_path: Path) -> None:
    """The token's storage is deleted after the key is opened and before the signature is made."""
    conf = _softhsm_conf(tmp_path / "removable")
    points = _init_token(conf, token.module, (("p256", "01", "secp256r1"),))
    assert set(points) == {"p256"}
    model = tmp_path / "big"
    model.mkdir()
    with open(model / "weights.bin", "wb") as f:  # sparse: seconds to hash, nothing on disk
        f.truncate(512 << 20)
    sig = tmp_path / "model.sig"
    uri = f"pkcs11:token={LABEL};object=p256?module-path={token.module}&pin-value={PIN}"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--log-level", "INFO", "sign", "key", str(model), "--private-key", uri,
         "--signature", str(sig), "--max-workers", "1", "-q"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "SOFTHSM2_CONF": str(conf), "PYTHONPATH": str(ROOT)},
    )
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:  # the key is opened, hashing starts: take the token away
            seen.append(line)
            if "opened PKCS #11 key object=p256" in line:
                shutil.rmtree(tmp_path / "removable" / "tokens")
                break
        out, rest = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(seen) + rest
    assert proc.returncode == 1, err
    line = _error_line(err)
    # What the library reports in the parentheses depends on where the token's absence shows first.
    assert line.startswith(f"error: PKCS #11 URI: the token '{LABEL}' could not sign with object=p256 ("), line
    assert line.endswith("): it was removed, or its storage went away, after the key was opened; reconnect it and "
                         "sign again"), line
    assert PIN not in err + out
    assert not sig.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".") or "sig" in p.name]
    # With the token's storage gone before the start, SoftHSM2 itself cannot start: said so, nothing written.
    again = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "sign", "key", str(model), "--private-key", uri, "--signature",
         str(sig), "-q"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "SOFTHSM2_CONF": str(conf), "PYTHONPATH": str(ROOT)},
    )
    assert again.returncode == 1
    assert _error_line(again.stderr) == (
        f"error: PKCS #11 URI: the PKCS #11 library module-path={token.module} failed to start (general error); "
        "check its configuration (SoftHSM2: the token directory named by SOFTHSM2_CONF exists and is readable)"
    )
    assert PIN not in again.stderr and not sig.exists()


def test_the_pin_is_in_no_repr_nor_in_the_not_a_uri_message(run: Run, model: Path, tmp_path: Path) -> None:
    # A parsed URI is kept on the key (Pkcs11Key.uri): a log line or a debugger's repr of it must not show
    # the PIN, nor may the CLI's answer to a mistyped scheme.
    from model_signing.keymaterial.pkcs11 import Pkcs11Uri

    uri = Pkcs11Uri.parse("pkcs11:token=T;object=k?module-path=/m.so&pin-value=s3cr3t-PIN")
    assert uri.query["pin-value"] == b"s3cr3t-PIN"
    for shown in (repr(uri), str(uri), f"{uri}"):
        assert "s3cr3t" not in shown and "pin-value=***" in shown
    code, _, err = run("sign", "pkcs11-key", model, "--pkcs11-uri", "pkcs11;object=k?pin-value=s3cr3t-PIN",
                       "--signature", tmp_path / "s.sig")
    assert code == 1 and "--pkcs11-uri must be a pkcs11: URI" in _error_line(err) and "s3cr3t" not in err


def test_a_pin_with_an_unencoded_ampersand_is_not_echoed() -> None:
    # "pin-value=ab&cd=ef" splits the PIN at '&': the rest is an unknown attribute named after part of the PIN.
    from model_signing.errors import KeyMaterialError
    from model_signing.keymaterial.pkcs11 import Pkcs11Uri

    with pytest.raises(KeyMaterialError) as err:
        Pkcs11Uri.parse("pkcs11:object=k?module-path=/m.so&pin-value=ab&PINPART=ef")
    assert "PINPART" not in str(err.value) and "attribute 3 in the query part" in str(err.value)
    assert "%26" in str(err.value)  # says how to write a '&' in a PIN

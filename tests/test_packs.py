"""Model packs: the trusted-publisher registry, lock files with their policy, the audit log (issue 13).

One real pack is built per module: five models signed by four publishers with four methods -- a key
(``asr``, and its ``asr-shadow``), a certificate chain (``asr-small``, the fallback of ``asr``), keyless on
the local Sigstore instance (``llm``) and an HMAC secret (``tts``).  Tests that change the pack work on a
copy.  Expected digests are computed here with hashlib; nothing is mocked.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

import model_signing as ms
from model_signing.errors import InputError, PolicyFileError, PublisherError
from model_signing.policy import Lock, Policy, Registry, create_lock
from model_signing.sigstore_local import LocalSigstore
from tests import _pack_workers, _pki
from tests._cli import Run

EMAIL = "release@example.com"
SECRET = b"pack-secret-0123456789-abcdefghijkl"  # 35 bytes
SECRET_ENV = "PACK_TEST_HMAC_SECRET"
FAST = ms.HashingConfig(max_workers=1)
FILES: dict[str, dict[str, bytes]] = {
    "asr": {"config.json": b'{"arch": "conformer"}\n', "weights.bin": bytes(range(256)) * 40},
    "asr-shadow": {"weights.bin": b"\x07" * 3000},
    "asr-small": {"weights.bin": b"\x01" * 1000, "vocab.txt": b"a\nb\n"},
    "llm": {"model.safetensors": b"\x00\x01" * 2048, "tokenizer.json": b"{}"},
    "tts": {"voice.onnx": b"onnx" * 500},
}


def root_digest(files: dict[str, bytes]) -> str:
    """OMS files/sha256 root digest, computed independently: SHA-256 over the file digests in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def key_id(public_pem: bytes) -> str:
    """``sha256:`` + SHA-256 of the PEM SubjectPublicKeyInfo (the bundle's key hint)."""
    key = serialization.load_pem_public_key(public_pem)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(pem).hexdigest()


def secret_key_id(secret: bytes) -> str:
    return "hmac-sha256:" + hashlib.sha256(b"modelseal secret key id v1\x00" + secret).hexdigest()


@dataclass(frozen=True)
class Pack:
    root: Path
    registry: Path
    keys: Path
    inst: LocalSigstore
    token: str
    signed_at: dt.datetime

    def model(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


@pytest.fixture(scope="module", autouse=True)
def secret_env() -> Iterator[None]:
    os.environ[SECRET_ENV] = SECRET.decode()
    yield
    os.environ.pop(SECRET_ENV, None)


def _write_model(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return root


def _cli(*args: object) -> int:
    from model_signing.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


@pytest.fixture(scope="module")
def pack(inst: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> Pack:
    base = tmp_path_factory.mktemp("pack")
    keys = base / "keys"
    keys.mkdir()
    root = base / "pack"
    for name, files in FILES.items():
        _write_model(root / name, files)
    speech = _pki.ec_key()
    _pki.write_private_key(speech, keys / "speech.pem")
    _pki.write_public_key(speech, keys / "speech.pub")
    pki = _pki.Pki(keys / "pki")
    ms.sign(root / "asr", ms.KeySigner(keys / "speech.pem"), signature_path=root / "asr.sig", hashing=FAST)
    ms.sign(root / "asr-shadow", ms.KeySigner(keys / "speech.pem"), signature_path=root / "asr-shadow.sig",
            hashing=FAST)
    ms.sign(root / "asr-small", ms.CertificateSigner(pki.key_pem, pki.leaf_pem, [pki.chain_pem]),
            signature_path=root / "asr-small.sig", hashing=FAST)
    ms.sign(root / "tts", ms.SecretSigner(SECRET), signature_path=root / "tts.sig", hashing=FAST)
    token = inst.mint_token(EMAIL)
    signer = ms.SigstoreSigner(trust_config=inst.trust_config_path, token_source=ms.TokenSource(identity_token=token))
    ms.sign(root / "llm", signer, signature_path=root / "llm.sig", hashing=FAST)
    entries = json.loads((root / "llm.sig").read_text())["verificationMaterial"]["tlogEntries"]
    signed_at = dt.datetime.fromtimestamp(int(entries[0]["integratedTime"]), dt.UTC)

    # The registry is written through the CLI, as an operator would.
    registry = root / "publishers.json"
    assert _cli("registry", "add", "--registry", registry, "--id", "speech", "--name", "Speech team",
                "--public-key", keys / "speech.pub") == 0
    assert _cli("registry", "add", "--registry", registry, "--id", "vendor", "--name", "ASR vendor",
                "--certificate-chain", pki.root_pem, "--certificate-subject", "O=Test,CN=signer") == 0
    assert _cli("registry", "add", "--registry", registry, "--id", "release-ci", "--name", "Release CI",
                "--identity", EMAIL, "--identity-provider", inst.oidc_issuer,
                "--trust-config", inst.trust_config_path) == 0
    assert _cli("registry", "add", "--registry", registry, "--id", "tts-vendor", "--name", "TTS vendor",
                "--secret-env", SECRET_ENV) == 0
    return Pack(root, registry, keys, inst, token, signed_at)


def copy_pack(pack: Pack, dest: Path) -> Path:
    shutil.copytree(pack.root, dest / "pack")
    return dest / "pack"


def lock_pack(root: Path, *, policy: dict[str, Any] | None = None, extra: tuple[object, ...] = ()) -> Path:
    args: list[object] = ["lock", "create", "--output", root / "model-lock.json", "--registry",
                          root / "publishers.json", "--fallback", "asr-small=asr", "--role", "asr-shadow=shadow",
                          "--from-dir", root, *extra]
    if policy is not None:
        (root.parent / "policy.json").write_text(json.dumps({"schema_version": 1, **policy}))
        args += ["--policy", root.parent / "policy.json"]
    assert _cli(*args) == 0
    return root / "model-lock.json"


# -- the registry ---------------------------------------------------------------------------------------


def test_registry_written_by_the_cli_has_the_documented_schema(pack: Pack) -> None:
    doc = json.loads(pack.registry.read_text())
    assert doc["schema_version"] == 1
    by_id = {p["id"]: p for p in doc["publishers"]}
    assert list(by_id) == ["speech", "vendor", "release-ci", "tts-vendor"]
    speech_pub = (pack.keys / "speech.pub").read_bytes()
    assert by_id["speech"]["keys"] == [{"key_id": key_id(speech_pub), "public_key": speech_pub.decode()}]
    assert by_id["vendor"]["certificates"][0]["subject"] == "O=Test,CN=signer"
    assert by_id["vendor"]["certificates"][0]["trust_anchors"] == [(pack.keys / "pki" / "root.pem").read_text()]
    assert by_id["release-ci"]["sigstore"][0] == {
        "issuer": pack.inst.oidc_issuer, "identity": EMAIL, "trust_config": str(pack.inst.trust_config_path)}
    # The registry names the secret, never holds it.
    assert by_id["tts-vendor"]["secrets"] == [{"key_id": secret_key_id(SECRET), "secret_env": SECRET_ENV}]
    assert SECRET.decode() not in pack.registry.read_text()


def test_registry_list_and_show(pack: Pack, run: Run) -> None:
    code, out, _ = run("registry", "list", "--registry", pack.registry)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["ID", "speech", "vendor", "release-ci", "tts-vendor"]
    code, out, _ = run("registry", "show", "speech", "--registry", pack.registry, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["id"] == "speech" and shown["revoked"] is False
    assert shown["material"] == [f"key {key_id((pack.keys / 'speech.pub').read_bytes())}"]
    code, _, err = run("registry", "show", "nobody", "--registry", pack.registry)
    assert code == 1 and err.startswith("error: registry ") and "no publisher 'nobody'" in err


@pytest.mark.parametrize(("model", "publisher", "method"), [
    ("asr", "speech", "key"), ("asr-small", "vendor", "certificate"), ("llm", "release-ci", "sigstore"),
    ("tts", "tts-vendor", "secret"),
])
def test_registry_verify_names_the_publisher_of_each_method(pack: Pack, model: str, publisher: str,
                                                            method: str) -> None:
    checked = Registry.load(pack.registry).verify(pack.model(model), pack.root / f"{model}.sig")
    assert checked.publisher is not None and checked.publisher.id == publisher
    assert checked.result is not None and checked.result.method == method
    assert checked.result.root_digest == root_digest(FILES[model])
    assert checked.result.actual_root_digest == root_digest(FILES[model])
    if method == "sigstore":
        assert checked.signed_at == pack.signed_at  # the log's integrated time


def test_cli_verify_with_registry(pack: Pack, run: Run) -> None:
    code, out, err = run("verify", pack.model("asr"), "--signature", pack.root / "asr.sig", "--registry",
                         pack.registry)
    assert code == 0, err
    assert out.splitlines()[-1] == "publisher speech (Speech team)"
    code, out, err = run("verify", pack.model("llm"), "--signature", pack.root / "llm.sig", "--registry",
                         pack.registry, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["verified"] is True and doc["publisher"]["id"] == "release-ci"
    assert doc["signer_identity"]["identity"] == EMAIL
    assert doc["signed_at"] == pack.signed_at.isoformat().replace("+00:00", "Z")


def test_publisher_option_restricts_the_candidates(pack: Pack, run: Run) -> None:
    code, _, err = run("verify", pack.model("asr"), "--signature", pack.root / "asr.sig", "--registry",
                       pack.registry, "--publisher", "vendor")
    assert code == 2
    assert err.startswith("error: ") and "is not publisher 'vendor'" in err
    code, _, err = run("verify", pack.model("asr"), "--signature", pack.root / "asr.sig", "--registry",
                       pack.registry, "--publisher", "ghost")
    assert code == 1 and "no publisher 'ghost'" in err


def test_unknown_signer_exits_2(pack: Pack, tmp_path: Path, run: Run) -> None:
    other = _pki.ec_key()
    _pki.write_private_key(other, tmp_path / "other.pem")
    model = _write_model(tmp_path / "m", {"w.bin": b"w"})
    ms.sign(model, ms.KeySigner(tmp_path / "other.pem"), signature_path=tmp_path / "m.sig", hashing=FAST)
    code, _, err = run("verify", model, "--signature", tmp_path / "m.sig", "--registry", pack.registry)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "is not any publisher in registry" in lines[0]
    with pytest.raises(PublisherError):
        Registry.load(pack.registry).verify(model, tmp_path / "m.sig")


def test_tampered_signature_of_a_publisher_exits_2(pack: Pack, tmp_path: Path, run: Run) -> None:
    doc = json.loads((pack.root / "asr.sig").read_text())
    sig = doc["dsseEnvelope"]["signatures"][0]
    raw = bytearray(__import__("base64").b64decode(sig["sig"]))
    raw[-1] ^= 1
    sig["sig"] = __import__("base64").b64encode(bytes(raw)).decode()
    (tmp_path / "bad.sig").write_text(json.dumps(doc))
    code, _, err = run("verify", pack.model("asr"), "--signature", tmp_path / "bad.sig", "--registry", pack.registry)
    assert code == 2 and "publisher 'speech'" in err


def test_content_mismatch_names_the_publisher(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    (root / "asr" / "config.json").write_bytes(b"{}")
    code, _, err = run("verify", root / "asr", "--signature", root / "asr.sig", "--registry", root / "publishers.json")
    assert code == 3
    assert "signed by publisher speech (Speech team)" in err and "modified: config.json" in err


def _registry_with(tmp_path: Path, pack: Pack, publisher: str, **changes: Any) -> Path:
    doc = json.loads(pack.registry.read_text())
    for p in doc["publishers"]:
        if p["id"] == publisher:
            p.update(changes)
    path = tmp_path / "reg.json"
    path.write_text(json.dumps(doc))
    return path


def _z(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def test_revoked_key_publisher_exits_2_without_a_trusted_time(pack: Pack, tmp_path: Path, run: Run) -> None:
    now = dt.datetime.now(dt.UTC)
    reg = _registry_with(tmp_path, pack, "speech", revoked_at=_z(now - dt.timedelta(minutes=1)))
    code, _, err = run("verify", pack.model("asr"), "--signature", pack.root / "asr.sig", "--registry", reg)
    assert code == 2 and "was revoked at" in err and "no trusted time" in err
    # A revocation that lies ahead does not stop it yet.
    reg = _registry_with(tmp_path, pack, "speech", revoked_at=_z(now + dt.timedelta(days=1)))
    assert run("verify", pack.model("asr"), "--signature", pack.root / "asr.sig", "--registry", reg)[0] == 0


def test_keyless_revocation_uses_the_signature_time(pack: Pack, tmp_path: Path, run: Run) -> None:
    args = ("verify", pack.model("llm"), "--signature", pack.root / "llm.sig", "--registry")
    # Revoked before the signature was logged: the signature is refused.
    reg = _registry_with(tmp_path, pack, "release-ci", revoked_at=_z(pack.signed_at - dt.timedelta(hours=1)))
    code, _, err = run(*args, reg)
    assert code == 2 and "after publisher 'release-ci' was revoked" in err
    # Revoked after it was logged (and before now): still valid, with a note.
    revoked = pack.signed_at + dt.timedelta(seconds=1)
    while dt.datetime.now(dt.UTC) < revoked:
        time.sleep(0.1)
    reg = _registry_with(tmp_path, pack, "release-ci", revoked_at=_z(revoked))
    code, out, err = run(*args, reg)
    assert code == 0, err
    assert "note: signed at" in out and "before publisher 'release-ci' was revoked" in out
    # Signed before the publisher was trusted.
    reg = _registry_with(tmp_path, pack, "release-ci", trusted_since=_z(pack.signed_at + dt.timedelta(seconds=1)))
    code, _, err = run(*args, reg)
    assert code == 2 and "before publisher 'release-ci' was trusted" in err


def test_keyless_signed_before_trusted_since_is_refused_when_a_revocation_is_also_set(
    pack: Pack, tmp_path: Path, run: Run
) -> None:
    # A revocation still ahead of the signature must not skip the trusted_since check.
    reg = _registry_with(tmp_path, pack, "release-ci", trusted_since=_z(pack.signed_at + dt.timedelta(seconds=1)),
                         revoked_at=_z(pack.signed_at + dt.timedelta(days=1)))
    code, _, err = run("verify", pack.model("llm"), "--signature", pack.root / "llm.sig", "--registry", reg)
    assert code == 2 and "before publisher 'release-ci' was trusted" in err


def test_keyless_revocation_judges_the_time_of_the_bundle_that_verified(pack: Pack, tmp_path: Path) -> None:
    """A signature file swapped between the claim's read and the verification's read cannot lend the
    verified bundle another bundle's (earlier) log time: the revocation is judged by the bundle verified."""
    import sys

    revoked = pack.signed_at + dt.timedelta(seconds=1)
    while dt.datetime.now(dt.UTC) < revoked + dt.timedelta(seconds=1):
        time.sleep(0.1)
    signer = ms.SigstoreSigner(trust_config=pack.inst.trust_config_path,
                               token_source=ms.TokenSource(identity_token=pack.inst.mint_token(EMAIL)))
    late = tmp_path / "late.sig"  # signed after the revocation, a genuine signature of the same model
    ms.sign(pack.model("llm"), signer, signature_path=late, hashing=FAST)
    late_at = int(json.loads(late.read_text())["verificationMaterial"]["tlogEntries"][0]["integratedTime"])
    assert dt.datetime.fromtimestamp(late_at, dt.UTC) > revoked
    reg = Registry.load(_registry_with(tmp_path, pack, "release-ci", revoked_at=_z(revoked)))
    sig = tmp_path / "model.sig"
    shutil.copy(pack.root / "llm.sig", sig)  # the earlier bundle, read first
    staged = tmp_path / "staged.sig"
    shutil.copy(late, staged)
    opens: list[str] = []

    def swap_on_second_read(event: str, args: tuple[Any, ...]) -> None:
        # An audit hook cannot be removed: it stays inert once it has swapped.
        if event == "open" and args and isinstance(args[0], str) and args[0] == str(sig) and staged.exists():
            opens.append(event)
            if len(opens) == 2:
                os.replace(staged, sig)

    sys.addaudithook(swap_on_second_read)
    check = reg.check(pack.model("llm"), sig, trust_config=pack.inst.trust_config_path)
    assert len(opens) == 2  # the swap happened
    assert not check.ok
    assert isinstance(check.error, PublisherError) and "after publisher 'release-ci' was revoked" in str(check.error)


def test_registry_revoke_command(pack: Pack, tmp_path: Path, run: Run) -> None:
    reg = tmp_path / "reg.json"
    shutil.copy(pack.registry, reg)
    code, out, _ = run("registry", "revoke", "speech", "--registry", reg, "--at", "2020-01-01T00:00:00Z")
    assert code == 0 and "revoked publisher speech" in out
    assert json.loads(reg.read_text())["publishers"][0]["revoked_at"] == "2020-01-01T00:00:00Z"
    code, _, err = run("verify", pack.model("asr"), "--signature", pack.root / "asr.sig", "--registry", reg)
    assert code == 2 and "revoked" in err
    code, out, _ = run("registry", "remove", "speech", "--registry", reg)
    assert code == 0 and [p["id"] for p in json.loads(reg.read_text())["publishers"]] == [
        "vendor", "release-ci", "tts-vendor"]


MALFORMED: list[tuple[str, Any, str]] = [
    ("unknown top key", {"schema_version": 1, "publishers": [], "extra": 1}, "extra: unknown key"),
    ("version", {"schema_version": 2, "publishers": []}, "schema_version: 2 is not supported"),
    ("no version", {"publishers": []}, "schema_version: is missing"),
    ("wrong type", {"schema_version": 1, "publishers": {}}, "publishers: is an object, not a list"),
    ("unknown publisher key", {"schema_version": 1, "publishers": [
        {"id": "a", "name": "A", "secrets": [{"key_id": "hmac-sha256:" + "0" * 64}], "colour": "red"}]},
     "publishers[0].colour: unknown key"),
    ("no material", {"schema_version": 1, "publishers": [{"id": "a", "name": "A"}]},
     "publishers[0]: publisher 'a' has no verification material"),
    ("duplicate id", {"schema_version": 1, "publishers": [
        {"id": "a", "name": "A", "secrets": [{"key_id": "hmac-sha256:" + "0" * 64}]},
        {"id": "a", "name": "B", "secrets": [{"key_id": "hmac-sha256:" + "1" * 64}]}]},
     "publishers[1].id: duplicate publisher id 'a'"),
    ("bad key id", {"schema_version": 1, "publishers": [
        {"id": "a", "name": "A", "secrets": [{"key_id": "sha256:00"}]}]},
     "publishers[0].secrets[0].key_id: 'sha256:00' is not a secret key id"),
    ("naive time", {"schema_version": 1, "publishers": [
        {"id": "a", "name": "A", "revoked_at": "2026-01-01T00:00:00",
         "secrets": [{"key_id": "hmac-sha256:" + "0" * 64}]}]},
     "publishers[0].revoked_at: has no time zone"),
    ("identity and regexp", {"schema_version": 1, "publishers": [
        {"id": "a", "name": "A", "sigstore": [{"issuer": "https://i", "identity": "x", "identity_regexp": "y"}]}]},
     "publishers[0].sigstore[0]: needs exactly one of identity and identity_regexp"),
    ("name type", {"schema_version": 1, "publishers": [
        {"id": "a", "name": 3, "secrets": [{"key_id": "hmac-sha256:" + "0" * 64}]}]},
     "publishers[0].name: is a number, not a string"),
]


@pytest.mark.parametrize(("case", "doc", "message"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_registry_is_one_line_and_nothing_is_written(
    tmp_path: Path, run: Run, case: str, doc: Any, message: str
) -> None:
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps(doc))
    before = reg.read_bytes()
    code, _, err = run("registry", "list", "--registry", reg)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith(f"error: {reg}: ") and message in lines[0]
    code, _, err = run("registry", "add", "--registry", reg, "--id", "new", "--name", "N", "--secret-key-id",
                       "hmac-sha256:" + "2" * 64)
    assert code == 1 and message in err
    assert reg.read_bytes() == before
    with pytest.raises(PolicyFileError):
        Registry.load(reg)


def test_registry_key_id_must_match_the_key(pack: Pack, tmp_path: Path, run: Run) -> None:
    doc = json.loads(pack.registry.read_text())
    doc["publishers"][0]["keys"][0]["key_id"] = "sha256:" + "0" * 64
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps(doc))
    code, _, err = run("registry", "list", "--registry", reg)
    assert code == 1 and "publishers[0].keys[0].key_id" in err
    assert key_id((pack.keys / "speech.pub").read_bytes()) in err  # the fix names the right id


def test_duplicate_json_keys_and_an_existing_publisher(pack: Pack, tmp_path: Path, run: Run) -> None:
    reg = tmp_path / "reg.json"
    reg.write_text('{"schema_version": 1, "schema_version": 1, "publishers": []}')
    code, _, err = run("registry", "list", "--registry", reg)
    assert code == 1 and "repeats the JSON key 'schema_version'" in err
    shutil.copy(pack.registry, reg)
    code, _, err = run("registry", "add", "--registry", reg, "--id", "speech", "--name", "again",
                       "--secret-key-id", "hmac-sha256:" + "3" * 64)
    assert code == 1 and "already has a publisher 'speech'" in err and "--replace" in err
    assert reg.read_bytes() == pack.registry.read_bytes()


def test_toml_registry_reads_the_same_and_is_read_only(pack: Pack, tmp_path: Path, run: Run) -> None:
    pub = (pack.keys / "speech.pub").read_text()
    reg = tmp_path / "reg.toml"
    reg.write_text(
        'schema_version = 1\n\n[[publishers]]\nid = "speech"\nname = "Speech team"\n'
        "trusted_since = 2020-01-01T00:00:00Z\n\n[[publishers.keys]]\n"
        f'key_id = "{key_id(pub.encode())}"\npublic_key = """{pub}"""\n'
    )
    checked = Registry.load(reg).verify(pack.model("asr"), pack.root / "asr.sig")
    assert checked.publisher is not None and checked.publisher.trusted_since == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    code, _, err = run("registry", "remove", "speech", "--registry", reg)
    assert code == 1 and "read-only" in err


def test_concurrent_registry_edits_are_never_lost(tmp_path: Path) -> None:
    reg = str(tmp_path / "reg.json")
    # spawn, not fork: this process runs the local Sigstore instance's threads; a barrier starts all at once.
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(8)
    procs = [ctx.Process(target=_pack_workers.add_publisher, args=(reg, i, start)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * 8
    ids = sorted(p.id for p in Registry.load(reg).publishers)
    assert ids == sorted(f"p{i}" for i in range(8))


# -- the audit log --------------------------------------------------------------------------------------


def test_audit_log_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    log = str(tmp_path / "audit.log")
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(8)
    procs = [ctx.Process(target=_pack_workers.append_many, args=(log, w, 200, start)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 8
    lines = Path(log).read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == 1600
    counts = {f"w{w}": 0 for w in range(8)}
    for r in records:
        counts[r["model_name"]] += 1
        assert r["model_path"] == "/models/" + r["model_name"] and r["schema_version"] == 1
    assert set(counts.values()) == {200}


def test_verify_audit_log_records_and_audit_show(pack: Pack, tmp_path: Path, run: Run) -> None:
    log = tmp_path / "audit.log"
    root = copy_pack(pack, tmp_path)
    assert run("verify", "key", root / "asr", "--public-key", pack.keys / "speech.pub", "--signature",
               root / "asr.sig", "--audit-log", log)[0] == 0
    assert run("verify", root / "tts", "--signature", root / "tts.sig", "--registry", root / "publishers.json",
               "--audit-log", log)[0] == 0
    assert run("verify", root / "llm", "--signature", root / "llm.sig", "--registry", root / "publishers.json",
               "--audit-log", log)[0] == 0
    (root / "asr" / "weights.bin").write_bytes(b"tampered")
    assert run("verify", root / "asr", "--signature", root / "asr.sig", "--registry", root / "publishers.json",
               "--audit-log", log)[0] == 3
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["model_name"], r["publisher"], r["result"], r["exit_code"]) for r in records] == [
        ("asr", None, "verified", 0), ("tts", "tts-vendor", "verified", 0), ("llm", "release-ci", "verified", 0),
        ("asr", "speech", "content-mismatch", 3)]
    first, *_, last = records
    assert first["root_digest_expected"] == first["root_digest_actual"] == root_digest(FILES["asr"])
    tampered = {**FILES["asr"], "weights.bin": b"tampered"}
    assert last["root_digest_expected"] == root_digest(FILES["asr"])
    assert last["root_digest_actual"] == root_digest(tampered)
    assert last["differences"] == 1 and last["signer_identity"]["method"] == "key"
    assert records[2]["signer_identity"]["identity"] == EMAIL and records[2]["method"] == "sigstore"
    for r in records:
        assert dt.datetime.fromisoformat(r["time"]).tzinfo is not None
        assert r["host"] and r["tool_version"] == ms.__version__
    text = log.read_text()
    # Never a secret or a token.
    assert SECRET.decode() not in text and pack.token not in text and pack.token.split(".")[1] not in text

    code, out, _ = run("audit", "show", log, "--model", "asr", "--json")
    assert code == 0 and [r["result"] for r in json.loads(out)] == ["verified", "content-mismatch"]
    code, out, _ = run("audit", "show", log, "--since", records[3]["time"])
    assert code == 0 and len(out.strip().splitlines()) == 2 and "content-mismatch" in out
    code, out, _ = run("audit", "show", log, "--since", "2999-01-01T00:00:00Z")
    assert code == 0 and out.strip() == "no records"


def test_audit_log_never_records_a_forged_signatures_claim_as_its_signer(pack: Pack, tmp_path: Path,
                                                                         run: Run) -> None:
    # A bundle names its signer; until the signature verifies that is a claim anyone can write.
    log = tmp_path / "audit.log"
    root = copy_pack(pack, tmp_path)
    bundle = json.loads((root / "asr.sig").read_text())
    sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 1
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    (root / "asr.sig").write_text(json.dumps(bundle))
    code, _, err = run("verify", root / "asr", "--signature", root / "asr.sig", "--registry",
                       root / "publishers.json", "--audit-log", log)
    assert code == 2, err
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["result"] in {"invalid-signature", "unknown-signer"} and record["exit_code"] == 2
    assert record["signer_identity"] is None and record["publisher"] is None
    pub = serialization.load_pem_public_key((pack.keys / "speech.pub").read_bytes())
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert record["claimed_signer_identity"]["key_id"] == "sha256:" + hashlib.sha256(pem).hexdigest()


def test_audit_show_malformed(tmp_path: Path, run: Run) -> None:
    log = tmp_path / "audit.log"
    log.write_text('{"time": "2026-01-01T00:00:00Z"}\nnot json\n')
    code, _, err = run("audit", "show", log)
    assert code == 1 and err.strip() == f"error: {log}: line 2: is not a JSON record; the log was edited or " \
                                        "written by another tool"
    code, _, err = run("audit", "show", tmp_path / "none.log")
    assert code == 1 and "does not exist" in err
    code, _, err = run("audit", "show", log, "--since", "yesterday")
    assert code == 1 and "--since 'yesterday' is not a time" in err


# -- lock files and verify-all --------------------------------------------------------------------------


def test_lock_create_records_every_model(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root)
    doc = json.loads(lock_path.read_text())
    assert doc["schema_version"] == 1 and doc["registry"] == "publishers.json"
    models = {m["name"]: m for m in doc["models"]}
    assert sorted(models) == sorted(FILES)
    publishers = {"asr": "speech", "asr-shadow": "speech", "asr-small": "vendor", "llm": "release-ci",
                  "tts": "tts-vendor"}
    for name, m in models.items():
        assert m["path"] == name and m["signature"] == f"{name}.sig"
        assert m["root_digest"] == root_digest(FILES[name])
        assert m["serialization"]["method"] == "files" and m["serialization"]["hash_type"] == "sha256"
        assert m["publishers"] == [publishers[name]]
    assert models["asr-small"]["role"] == {"fallback_for": "asr"}
    assert models["asr-shadow"]["role"] == "shadow" and models["asr"]["role"] == "primary"
    assert doc["policy"]["on_failure"]["invalid_signature"] == "halt"
    # An existing lock is not replaced without --overwrite.
    code, _, err = run("lock", "create", "--output", lock_path, root / "asr")
    assert code == 1 and "already exists" in err


def test_lock_create_refuses_and_writes_nothing(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    (root / "tts.sig").unlink()
    out = root / "model-lock.json"
    code, _, err = run("lock", "create", "--output", out, "--from-dir", root, "--exclude", root / "publishers.json")
    assert code == 1 and "no signature found for model" in err and not out.exists()
    (root / "asr" / "config.json").write_bytes(b"changed")
    code, _, err = run("lock", "create", "--output", out, root / "asr", "--registry", root / "publishers.json")
    assert code == 3 and not out.exists()
    code, _, err = run("lock", "create", "--output", out, pack.model("llm"))
    assert code == 1 and "outside the lock file's directory" in err and not out.exists()
    # A signature elsewhere in the pack is named with --signature NAME=PATH.
    (root / "sigs").mkdir()
    shutil.move(root / "llm.sig", root / "sigs" / "llm.sig")
    code, _, err = run("lock", "create", "--output", out, root / "llm", "--signature",
                       f"llm={root / 'sigs' / 'llm.sig'}")
    assert code == 0, err
    assert json.loads(out.read_text())["models"][0]["signature"] == "sigs/llm.sig"


def test_verify_all_passes_and_names_each_publisher(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root)
    log = tmp_path / "audit.log"
    code, out, err = run("verify-all", lock_path, "--audit-log", log, "--max-parallel", 2)
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:6]}
    assert rows["asr"][1:5] == ["primary", "speech", "verified", "verified"]
    assert rows["llm"][2] == "release-ci" and rows["tts"][2] == "tts-vendor"
    assert rows["asr-small"][1:5] == ["fallback:asr", "vendor", "verified", "standby"]
    assert out.splitlines()[-1] == "policy satisfied"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["model_name"] for r in records) == sorted(FILES)
    assert all(r["command"] == "verify-all" and r["lock_file"] == str(lock_path) for r in records)


def _verify_all(run: Run, lock_path: Path, *extra: object) -> tuple[int, dict[str, Any], str]:
    code, out, err = run("verify-all", lock_path, "--json", *extra)
    return code, json.loads(out), err


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in doc["models"]}


@pytest.mark.parametrize("case", [
    ("fail", 3, "fail", None),
    ("fallback", 0, "fallback", "asr-small"),
    ("warn", 0, "warn", "asr"),
], ids=["fail", "fallback", "warn"])
def test_content_mismatch_actions(pack: Pack, tmp_path: Path, run: Run, case: tuple[str, int, str, str | None]) -> None:
    action, code, asr_action, to_load = case
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root, policy={"on_failure": {"content_mismatch": action}})
    (root / "asr" / "weights.bin").write_bytes(b"changed")
    got, doc, err = _verify_all(run, lock_path)
    assert got == code, err
    asr = _by_name(doc)["asr"]
    assert asr["failure"] == "content_mismatch" and asr["action"] == asr_action
    assert asr["differences"][0]["name"] == "weights.bin"
    if to_load is None:
        assert doc["ok"] is False and doc["to_load"] == {} and "error: policy not satisfied: asr:" in err
    else:
        assert doc["to_load"]["asr"] == str(root / to_load)
        assert doc["to_load"]["tts"] == str(root / "tts")
    if action == "fallback":
        assert doc["fallbacks"] == {"asr": "asr-small"}
        assert _by_name(doc)["asr-small"]["action"] == "used-as-fallback"
        _, out, _ = run("verify-all", lock_path)
        assert "policy satisfied (fallback used: asr -> asr-small)" in out


def test_missing_model_falls_back_or_fails(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root, policy={"on_failure": {"missing_model": "fallback"}})
    shutil.rmtree(root / "asr")
    code, doc, _ = _verify_all(run, lock_path)
    assert code == 0 and doc["to_load"]["asr"] == str(root / "asr-small")
    assert _by_name(doc)["asr"]["failure"] == "missing_model"
    # The default for a missing model: fail (exit 3).
    code, doc, err = _verify_all(run, lock_path, "--policy", _policy_file(tmp_path, {}))
    assert code == 3 and _by_name(doc)["asr"]["action"] == "fail"
    # A fallback that fails too: no fallback, the pack fails.
    (root / "asr-small" / "vocab.txt").write_bytes(b"x")
    code, doc, err = _verify_all(run, lock_path)
    assert code == 3 and "its fallback asr-small did not verify" in err


def _policy_file(tmp_path: Path, policy: dict[str, Any]) -> Path:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"schema_version": 1, **policy}))
    return path


def test_invalid_signature_halts_and_never_falls_back(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root, policy={"require": "any", "on_failure": {"content_mismatch": "fallback"}})
    doc = json.loads((root / "asr.sig").read_text())
    doc["dsseEnvelope"]["signatures"][0]["sig"] = doc["dsseEnvelope"]["signatures"][0]["sig"][::-1]
    (root / "asr.sig").write_text(json.dumps(doc))
    code, result, _ = _verify_all(run, lock_path)
    assert code == 2
    asr = _by_name(result)["asr"]
    assert asr["failure"] == "invalid_signature" and asr["action"] == "halt" and asr["replaced_by"] is None
    assert result["to_load"] == {}
    # A missing signature is a security failure too.
    (root / "asr.sig").unlink()
    code, result, _ = _verify_all(run, lock_path)
    assert code == 2 and _by_name(result)["asr"]["failure"] == "invalid_signature"


def test_unknown_signer_halts(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root)
    other = _pki.ec_key()
    _pki.write_private_key(other, tmp_path / "other.pem")
    ms.sign(root / "tts", ms.KeySigner(tmp_path / "other.pem"), signature_path=root / "tts.sig", overwrite=True,
            hashing=FAST)
    code, result, err = _verify_all(run, lock_path)
    assert code == 2 and _by_name(result)["tts"]["failure"] == "unknown_signer"
    assert _by_name(result)["tts"]["action"] == "halt"
    # Signed by a registered publisher that the lock does not allow for this model: also unknown_signer.
    ms.sign(root / "tts", ms.KeySigner(pack.keys / "speech.pem"), signature_path=root / "tts.sig", overwrite=True,
            hashing=FAST)
    code, result, err = _verify_all(run, lock_path)
    assert code == 2 and "speech" in _by_name(result)["tts"]["error"] and "not among the allowed" in err


def test_resigned_but_not_relocked(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root)
    (root / "asr" / "weights.bin").write_bytes(b"new weights")
    ms.sign(root / "asr", ms.KeySigner(pack.keys / "speech.pem"), signature_path=root / "asr.sig", overwrite=True,
            hashing=FAST)
    code, result, err = _verify_all(run, lock_path)
    assert code == 3
    asr = _by_name(result)["asr"]
    assert asr["failure"] == "lock_mismatch" and asr["publisher"] == "speech"
    assert asr["root_digest_signed"] == root_digest({**FILES["asr"], "weights.bin": b"new weights"})
    assert asr["root_digest_expected"] == root_digest(FILES["asr"])
    assert "re-signed (by speech) but not re-locked" in err
    # Re-locking accepts it.
    lock_pack(root, extra=("--overwrite",))
    assert run("verify-all", lock_path)[0] == 0


def test_shadow_and_require(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root)
    (root / "asr-shadow" / "weights.bin").write_bytes(b"x")
    code, result, _ = _verify_all(run, lock_path)
    assert code == 0 and _by_name(result)["asr-shadow"]["action"] == "fail"  # a shadow's failure is reported only
    assert "asr-shadow" not in result["to_load"]
    (root / "llm" / "tokenizer.json").write_bytes(b"[]")
    assert _verify_all(run, lock_path)[0] == 3  # require: all
    assert _verify_all(run, lock_path, "--policy", _policy_file(tmp_path, {"require": "any"}))[0] == 0
    assert _verify_all(run, lock_path, "--policy", _policy_file(tmp_path, {"require": ["asr", "tts"]}))[0] == 0
    assert _verify_all(run, lock_path, "--policy", _policy_file(tmp_path, {"require": ["llm"]}))[0] == 3


def test_revoked_publisher_in_a_pack_halts(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root)
    assert run("registry", "revoke", "tts-vendor", "--registry", root / "publishers.json")[0] == 0
    code, result, err = _verify_all(run, lock_path)
    assert code == 2 and _by_name(result)["tts"]["failure"] == "unknown_signer" and "revoked" in err


def test_python_api_returns_what_to_load(pack: Pack, tmp_path: Path) -> None:
    root = copy_pack(pack, tmp_path)
    create_lock([root / n for n in FILES], root / "model-lock.json", registry=root / "publishers.json",
                fallbacks={"asr-small": "asr"})
    shutil.rmtree(root / "asr")
    lock = Lock.load(root / "model-lock.json")
    strict = lock.verify()
    assert not strict.ok and strict.exit_code == 3 and strict.to_load == {}
    policy = Policy(on_failure={"missing_model": "fallback"})
    log = tmp_path / "a.log"
    result = lock.verify(policy=policy, audit=log, max_parallel=1)
    assert result.ok and result.to_load["asr"] == str(root / "asr-small")
    assert result.to_load["llm"] == str(root / "llm")
    assert len(log.read_text().splitlines()) == len(FILES)
    with pytest.raises(PolicyFileError, match="fallback"):
        Lock.from_document({"schema_version": 1, "models": [], "policy": {
            "on_failure": {"unknown_signer": "fallback"}}}, "x.json")


def test_a_policy_built_in_python_cannot_require_nothing(pack: Pack, tmp_path: Path) -> None:
    """``require`` empty (or not all/any) would leave no model required: a content mismatch then passed."""
    root = copy_pack(pack, tmp_path)
    create_lock([root / n for n in FILES], root / "model-lock.json", registry=root / "publishers.json")
    (root / "asr" / "config.json").write_bytes(b"{}")
    lock = Lock.load(root / "model-lock.json")
    assert lock.verify(max_parallel=1).exit_code == 3
    for require in ((), "", "ANY", ("asr", 3)):
        with pytest.raises(InputError, match="require"):
            lock.verify(policy=Policy(require=require), max_parallel=1)  # type: ignore[arg-type]


def _lock_doc(pack: Pack) -> dict[str, Any]:
    return {"schema_version": 1, "registry": "publishers.json", "models": [
        {"name": "asr", "path": "asr", "signature": "asr.sig", "root_digest": root_digest(FILES["asr"]),
         "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False,
                           "ignore_paths": [".git", ".gitattributes", ".github", ".gitignore"]},
         "publishers": ["speech"]}]}


def _edit(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    target: Any = doc
    keys = path.split("/")
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    last = keys[-1]
    if isinstance(target, list):
        target.append(value) if last == "+" else target.__setitem__(int(last), value)
    else:
        target[last] = value
    return doc


BAD_LOCKS: list[tuple[str, str, Any, str]] = [
    ("unknown key", "models/0/colour", "red", "models[0].colour: unknown key"),
    ("escaping path", "models/0/path", "../asr", "models[0].path: '../asr' escapes"),
    ("absolute path", "models/0/signature", "/etc/asr.sig", "models[0].signature: '/etc/asr.sig' is not a relative"),
    ("bad digest", "models/0/root_digest", "sha256:00", "models[0].root_digest: 'sha256:00' is not a SHA-256"),
    ("bad role", "models/0/role", "tertiary", "models[0].role: 'tertiary' is not a role"),
    ("fallback to nothing", "models/0/role", {"fallback_for": "ghost"}, "models[0].role.fallback_for: names no model"),
    ("bad action", "policy", {"on_failure": {"invalid_signature": "fallback"}},
     "policy.on_failure.invalid_signature: 'fallback' is not an action for this failure; security failures"),
    ("warn on unknown signer", "policy", {"on_failure": {"unknown_signer": "warn"}},
     "policy.on_failure.unknown_signer: 'warn' is not an action"),
    ("bad require", "policy", {"require": "most"}, "policy.require: 'most' is neither all nor any"),
    ("require unknown", "policy", {"require": ["ghost"]}, "policy.require[0]: names no model of the lock"),
    ("unknown publisher", "models/0/publishers", ["ghost"], "models[0].publishers[0]: publisher 'ghost' is not in"),
    ("wrong type", "models/0/publishers", "speech", "models[0].publishers: is a string, not a list"),
    ("serialization", "models/0/serialization", {"method": "bits", "hash_type": "sha256", "allow_symlinks": False},
     "models[0].serialization: unknown serialization method"),
]


@pytest.mark.parametrize("case", BAD_LOCKS, ids=[c[0] for c in BAD_LOCKS])
def test_malformed_lock_exits_1_naming_the_field(pack: Pack, tmp_path: Path, run: Run,
                                                 case: tuple[str, str, Any, str]) -> None:
    _, where, value, message = case
    root = copy_pack(pack, tmp_path)
    lock_path = root / "model-lock.json"
    lock_path.write_text(json.dumps(_edit(_lock_doc(pack), where, value)))
    code, out, err = run("verify-all", lock_path)
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1, err
    assert lines[0].startswith(f"error: {lock_path}: ") and message in lines[0]


def test_duplicate_model_names_and_malformed_json(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = root / "model-lock.json"
    doc = _lock_doc(pack)
    doc["models"].append(dict(doc["models"][0]))
    lock_path.write_text(json.dumps(doc))
    code, _, err = run("verify-all", lock_path)
    assert code == 1 and "models[1].name: duplicate model name 'asr' (also models[0])" in err
    lock_path.write_text("{")
    code, out, err = run("verify-all", lock_path, "--json")
    assert code == 1 and err.startswith(f"error: lock file {lock_path} is not valid JSON")
    assert json.loads(out)["exit_code"] == 1 and json.loads(out)["error"] == err.strip()[len("error: "):]
    lock_path.write_text(json.dumps(_lock_doc(pack)))
    code, _, err = run("verify-all", lock_path, "--policy", _policy_file(tmp_path, {"colour": 1}))
    assert code == 1 and f"error: {tmp_path / 'p.json'}: colour: unknown key" in err
    assert run("verify-all", lock_path)[0] == 0  # the minimal hand-written lock itself is valid


# -- sign-all ------------------------------------------------------------------------------------------


def test_sign_all_signs_skips_and_updates_the_lock(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = tmp_path / "p"
    for name in ("a", "b"):
        _write_model(root / name, {"w.bin": name.encode() * 10})
    (root / "c.onnx").write_bytes(b"onnx-file")
    lock_path = root / "model-lock.json"
    key = ("key", root, "--private-key", pack.keys / "speech.pem")
    code, out, err = run("sign-all", "--lock", lock_path, *key)
    assert code == 0, err
    assert [line.split()[:2] for line in out.splitlines()[1:4]] == [["a", "signed"], ["b", "signed"],
                                                                   ["c.onnx", "signed"]]
    doc = json.loads(lock_path.read_text())
    assert {m["name"]: m["root_digest"] for m in doc["models"]} == {
        "a": root_digest({"w.bin": b"a" * 10}), "b": root_digest({"w.bin": b"b" * 10}),
        "c.onnx": root_digest({"c.onnx": b"onnx-file"})}
    # A hand-tuned policy and roles survive the update.
    doc["policy"]["require"] = "any"
    doc["models"][1]["role"] = {"fallback_for": "a"}
    lock_path.write_text(json.dumps(doc))
    before = (root / "a.sig").read_bytes()
    (root / "b" / "w.bin").write_bytes(b"changed")
    code, out, err = run("sign-all", *key, "--lock", lock_path, f"--registry={pack.registry}")  # options anywhere
    assert code == 0, err
    actions = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:4]}
    assert actions == {"a": "skipped", "b": "signed", "c.onnx": "skipped"}
    assert "verifies (publisher speech)" in out
    assert (root / "a.sig").read_bytes() == before
    doc = json.loads(lock_path.read_text())
    assert doc["policy"]["require"] == "any" and doc["models"][1]["role"] == {"fallback_for": "a"}
    assert doc["models"][1]["root_digest"] == root_digest({"w.bin": b"changed"})
    assert all(m["publishers"] == ["speech"] for m in doc["models"])
    assert run("verify-all", lock_path, "--registry", pack.registry)[0] == 0
    # --force signs everything again; another signer's signature is never kept.
    code, out, _ = run("sign-all", "--force", *key)
    assert code == 0 and out.count(" signed ") == 3
    other = _pki.ec_key()
    _pki.write_private_key(other, tmp_path / "other.pem")
    code, out, _ = run("sign-all", "key", root, "--private-key", tmp_path / "other.pem")
    assert code == 0 and out.count(" signed ") == 3
    code, _, err = run("sign-all", *key, "--signature", tmp_path / "x.sig")
    assert code == 1 and "--signature does not apply to sign-all" in err


def test_sign_all_signs_again_when_the_signer_now_asks_for_timestamps(pack: Pack, tmp_path: Path,
                                                                       run: Run) -> None:
    root = tmp_path / "p"
    _write_model(root / "a", {"w.bin": b"a" * 10})
    key = ("key", root, "--private-key", pack.keys / "speech.pem")
    assert run("sign-all", *key)[0] == 0
    assert "rfc3161Timestamps" not in json.dumps(json.loads((root / "a.sig").read_text())["verificationMaterial"])
    # Same key, now with a timestamp authority: the old signature has no timestamp, so it is not kept.
    code, out, err = run("sign-all", *key, "--timestamp-authority", pack.inst.tsa_url)
    assert code == 0, err
    assert out.splitlines()[1].split()[:2] == ["a", "signed"]
    material = json.loads((root / "a.sig").read_text())["verificationMaterial"]
    assert len(material["timestampVerificationData"]["rfc3161Timestamps"]) == 1
    # Timestamped now: the next run with the same TSA keeps it.
    code, out, err = run("sign-all", *key, "--timestamp-authority", pack.inst.tsa_url)
    assert code == 0 and out.splitlines()[1].split()[:2] == ["a", "skipped"], out + err


def test_sign_all_keyless_one_identity_for_the_pack(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = tmp_path / "p"
    for name in ("x", "y"):
        _write_model(root / name, {"w.bin": name.encode() * 100})
    # Without a method name: keyless, as for `sign`.
    code, _, err = run("sign-all", root, "--lock", root / "model-lock.json", "--trust-config",
                       pack.inst.trust_config_path, "--identity-token", pack.inst.mint_token(EMAIL))
    assert code == 0, err
    code, out, err = run("verify-all", root / "model-lock.json", "--registry", pack.registry)
    assert code == 0, err
    assert [line.split()[2] for line in out.splitlines()[1:3]] == ["release-ci", "release-ci"]


def test_the_readme_examples_are_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Model packs"):readme.index("## Python API")]
    blocks = [b.split("```", 1)[0] for b in section.split("```json\n")[1:]]
    registry_doc, lock_doc = (json.loads(b) for b in blocks[:2])
    registry = Registry.from_document(registry_doc, str(tmp_path / "publishers.json"))
    assert [p.id for p in registry.publishers] == ["speech", "asr-vendor", "release-ci", "tts-vendor"]
    assert {m.method for p in registry.publishers for m in p.materials} == {"key", "certificate", "sigstore", "secret"}
    lock = Lock.from_document(lock_doc, str(tmp_path / "model-lock.json"))
    assert [(m.name, m.role, m.fallback_for) for m in lock.models] == [
        ("asr", "primary", None), ("asr-shadow", "shadow", None), ("asr-small", "fallback", "asr")]
    assert lock.policy.action("content_mismatch") == "fallback" and lock.policy.action("invalid_signature") == "halt"


def test_cli_input_errors_write_nothing(pack: Pack, tmp_path: Path, run: Run) -> None:
    reg = tmp_path / "reg.json"
    code, _, err = run("registry", "add", "--registry", reg, "--id", "a", "--name", "A")
    assert code == 1 and "publisher 'a' has no verification material" in err and not reg.exists()
    code, _, err = run("registry", "add", "--registry", reg, "--id", "a", "--name", "A", "--identity", EMAIL)
    assert code == 1 and "--identity-provider is required" in err and not reg.exists()
    code, _, err = run("registry", "add", "--registry", reg, "--id", "a b", "--name", "A", "--secret-key-id",
                       "hmac-sha256:" + "0" * 64)
    assert code == 1 and "publisher.id: 'a b' is not a valid id" in err and not reg.exists()
    root = copy_pack(pack, tmp_path)
    code, _, err = run("lock", "create", "--output", root / "l.json", root / "asr", "--role", "asr=tertiary")
    assert code == 1 and "role 'tertiary' of asr is not a role" in err and not (root / "l.json").exists()
    code, _, err = run("lock", "create", "--output", root / "l.json", root / "asr", "--fallback", "asr")
    assert code == 1 and "--fallback 'asr': write it as NAME=VALUE" in err
    # `verify --path MODEL --registry=FILE` is the registry verification too.
    code, out, err = run("verify", "--path", root / "asr", "--signature", root / "asr.sig",
                         f"--registry={root / 'publishers.json'}")
    assert code == 0 and "publisher speech" in out, err


# -- the documented JSON Schemas (docs/schemas) --------------------------------------------------------


SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def _validator(name: str) -> Any:
    import jsonschema
    import referencing

    resources = []
    for path in SCHEMA_DIR.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        resource = referencing.Resource.from_contents(schema)
        resources += [(schema["$id"], resource), (path.name, resource)]
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_written_documents_match_the_published_schemas(pack: Pack, tmp_path: Path, run: Run) -> None:
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root, policy={"require": ["asr"], "on_failure": {"content_mismatch": "warn"}})
    log = tmp_path / "audit.log"
    (root / "tts" / "voice.onnx").write_bytes(b"x")
    shutil.rmtree(root / "asr-shadow")
    run("verify-all", lock_path, "--audit-log", log)
    run("verify", root / "asr", "--signature", root / "asr.sig", "--registry", root / "publishers.json",
        "--publisher", "vendor", "--audit-log", log)
    _validator("registry-v1.schema.json").validate(json.loads(pack.registry.read_text()))
    _validator("lock-v1.schema.json").validate(json.loads(lock_path.read_text()))
    _validator("policy-v1.schema.json").validate(json.loads((root.parent / "policy.json").read_text()))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    audit_schema = _validator("audit-record-v1.schema.json")
    for r in records:
        audit_schema.validate(r)
    assert {r["result"] for r in records} == {"verified", "content-mismatch", "missing-model", "unknown-signer"}
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Model packs"):readme.index("## Python API")]
    registry_doc, lock_doc = (json.loads(b.split("```", 1)[0]) for b in section.split("```json\n")[1:3])
    _validator("registry-v1.schema.json").validate(registry_doc)
    _validator("lock-v1.schema.json").validate(lock_doc)


@pytest.mark.parametrize("case", [
    ("lock-v1.schema.json", {"schema_version": 1, "models": [{"name": "a", "path": "../a", "signature": "a.sig",
                             "root_digest": "0" * 64, "serialization": {"method": "files", "hash_type": "sha256",
                                                                        "allow_symlinks": False}}]}),
    ("policy-v1.schema.json", {"on_failure": {"invalid_signature": "fallback"}}),
    ("registry-v1.schema.json", {"schema_version": 1, "publishers": [{"id": "a", "name": "A"}]}),
], ids=["escaping path", "security fallback", "no material"])
def test_the_schemas_refuse_what_the_loaders_refuse(case: tuple[str, Any]) -> None:
    import jsonschema

    name, doc = case
    with pytest.raises(jsonschema.ValidationError):
        _validator(name).validate(doc)


def test_an_earlier_timestamp_never_moves_a_keyless_signature_before_a_revocation(pack: Pack) -> None:
    import dataclasses

    from model_signing import inspecting
    from model_signing.policy import registry as registry_module

    claim = inspecting.inspect(pack.root / "llm.sig")
    early = pack.signed_at - dt.timedelta(days=30)
    # The log's (SET-covered) time wins over any RFC 3161 timestamp the bundle carries ...
    with_early = dataclasses.replace(claim, timestamps=(early,))
    assert registry_module._trusted_time(with_early) == pack.signed_at
    # ... and without a log time, the latest timestamp counts, never the earliest.
    no_log = dataclasses.replace(claim, tlog_entries=(), timestamps=(early, pack.signed_at))
    assert registry_module._trusted_time(no_log) == pack.signed_at


@pytest.mark.parametrize("case", [
    ("missing_model", "warn", 0, None), ("missing_model", "fallback", 0, "asr-small"),
    ("lock_mismatch", "warn", 0, "asr"), ("lock_mismatch", "fallback", 0, "asr-small"),
    ("lock_mismatch", "fail", 3, None),
], ids=lambda c: f"{c[0]}-{c[1]}")
def test_every_action_of_missing_and_lock_mismatch(pack: Pack, tmp_path: Path, run: Run,
                                                   case: tuple[str, str, int, str | None]) -> None:
    kind, action, code, loaded = case
    root = copy_pack(pack, tmp_path)
    lock_path = lock_pack(root, policy={"on_failure": {kind: action}})
    if kind == "missing_model":
        shutil.rmtree(root / "asr")
    else:
        (root / "asr" / "config.json").write_bytes(b"{}")
        ms.sign(root / "asr", ms.KeySigner(pack.keys / "speech.pem"), signature_path=root / "asr.sig",
                overwrite=True, hashing=FAST)
    got, doc, err = _verify_all(run, lock_path)
    assert got == code, err
    asr = _by_name(doc)["asr"]
    assert asr["failure"] == kind and asr["action"] == ("fallback" if action == "fallback" else action)
    if loaded is None:
        assert "asr" not in doc["to_load"]
    else:
        assert doc["to_load"]["asr"] == str(root / loaded)
    if code == 0:
        assert doc["to_load"]["llm"] == str(root / "llm")


@pytest.mark.parametrize("method", ["key", "secret"])
def test_sign_all_without_a_registry_keeps_only_signatures_that_verify(
    pack: Pack, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """A signature is kept because it verifies with the signer's own key/secret, not because it claims it."""
    import base64

    root = tmp_path / "p"
    for name in ("a", "b"):
        _write_model(root / name, {"w.bin": name.encode() * 10})
    monkeypatch.setenv("MODEL_SIGNING_KEY", "s" * 40)
    args = ("key", root, "--private-key", pack.keys / "speech.pem") if method == "key" else ("secret", root)
    code, out, err = run("sign-all", *args)
    assert code == 0 and out.count(" signed ") == 2, err
    # b.sig: same claims (key hint, payload), but the signature bytes are not the signer's.
    doc = json.loads((root / "b.sig").read_text())
    raw = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[len(raw) // 2] ^= 0x01
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    (root / "b.sig").write_text(json.dumps(doc))
    before_a = (root / "a.sig").read_bytes()
    code, out, err = run("sign-all", *args)
    assert code == 0, err
    actions = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:3]}
    assert actions == {"a": "skipped", "b": "signed"}
    assert (root / "a.sig").read_bytes() == before_a
    verify = ("verify", "key", root / "b", "--public-key", pack.keys / "speech.pub") if method == "key" else (
        "verify", "secret", root / "b")
    assert run(*verify, "--signature", root / "b.sig")[0] == 0


def test_sign_all_signs_again_when_the_ignore_paths_changed(tmp_path: Path) -> None:
    # A signature made while logs/ was ignored covers none of it: when sign-all is now asked to cover every
    # file, "content unchanged" must not keep it (logs/ could hold anything, and verify would pass).
    from model_signing.policy.batch import sign_all

    root = tmp_path / "p"
    _write_model(root / "a", {"w.bin": b"w" * 10})
    (root / "a" / "logs").mkdir()
    (root / "a" / "logs" / "x.pkl").write_bytes(b"not covered")
    key = _pki.ec_key()
    _pki.write_private_key(key, tmp_path / "k.pem")
    signer = ms.KeySigner(tmp_path / "k.pem")
    first = sign_all(root, signer, hashing=ms.HashingConfig(max_workers=1, ignore_paths=["logs"]))
    assert [m.action for m in first.models] == ["signed"]
    again = sign_all(root, signer, hashing=ms.HashingConfig(max_workers=1, ignore_paths=["logs"]))
    assert [m.action for m in again.models] == ["skipped"]
    now = sign_all(root, signer, hashing=FAST)
    assert [m.action for m in now.models] == ["signed"]
    payload = json.loads(base64.b64decode(json.loads((root / "a.sig").read_text())["dsseEnvelope"]["payload"]))
    names = {r["name"] for r in payload["predicate"]["resources"]}
    assert names == {"w.bin", "logs/x.pkl"}
    digests = {r["name"]: r["digest"] for r in payload["predicate"]["resources"]}
    assert digests["logs/x.pkl"] == hashlib.sha256(b"not covered").hexdigest()


def test_an_unwritable_audit_log_never_hides_a_failed_verification(pack: Pack, tmp_path: Path, run: Run) -> None:
    """A failed verify keeps its exit code when the log cannot be written; a passing one fails (exit 1)."""
    root = copy_pack(pack, tmp_path)
    log = tmp_path / "no-such-dir" / "audit.log"
    key = ("--public-key", pack.keys / "speech.pub", "--signature", root / "asr.sig", "--audit-log", log)
    code, _, err = run("verify", "key", root / "asr", *key)
    assert code == 1 and str(log) in err  # verified, but not recorded: not a pass
    (root / "asr" / "weights.bin").write_bytes(b"tampered")
    code, _, err = run("verify", "key", root / "asr", *key)
    assert code == 3 and "the failure was not recorded" in err
    reg = ("--signature", root / "asr.sig", "--registry", root / "publishers.json", "--audit-log", log)
    code, _, err = run("verify", root / "asr", *reg)
    assert code == 3 and "the failure was not recorded" in err
    assert not log.parent.exists()

"""The Hugging Face hub integration (``model_signing.hub``, ``hub upload`` / ``hub verify``) end to end.

The real ``huggingface_hub`` client talks to a local hub (:mod:`tests._hub_server`, 127.0.0.1, a random
port) backed by a temporary directory: repo creation, revision resolution, tree listings with LFS sha256,
downloads, preupload, LFS basic transfers and ndjson commits.  Xet is off (``HF_HUB_DISABLE_XET``): the
local hub speaks the LFS protocol only.  Keyless signing uses the local Sigstore instance.  Expected
digests are computed here with hashlib; the server's stored state is read directly, not through the client.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model_signing.errors import HubError, HubMismatchError, RemoteVerificationUnsupportedError, VerificationError
from model_signing.hashing import HashingConfig
from model_signing.methods.key import KeySigner, KeyVerifier
from model_signing.sigstore_local import LocalSigstore
from tests import _pki
from tests._hub_server import HubServer, git_blob_id, hub_env

ROOT = Path(__file__).resolve().parent.parent
MAIN = [sys.executable, str(ROOT / "main.py")]
TOKEN = "hf_local_test_token_7f3a"
REPO = "acme/tiny-model"
EMAIL = "alice@example.com"
FILES = {
    "config.json": b'{"hidden": 8, "layers": 2}\n',
    "README.md": b"---\nlicense: apache-2.0\n---\n# tiny model\n",
    "model.safetensors": bytes(range(256)) * 40,  # LFS by name (the hub's default .gitattributes)
    "weights/part-0.bin": hashlib.sha256(b"seed").digest() * 500,  # LFS, in a folder
    "tokenizer/vocab.txt": b"a\nb\nc\n",
}
LFS_FILES = ("model.safetensors", "weights/part-0.bin")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_model(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HubServer]:
    with HubServer(tmp_path / "hub-store", token=TOKEN) as hub:
        yield hub


@pytest.fixture
def client_env(server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The client set up for the local hub, for subprocesses (the returned env) and this process."""
    import huggingface_hub.constants

    env = {**hub_env(server, tmp_path / "hf-home"), "HF_TOKEN": TOKEN}
    # The in-process client read its settings at import: Xet off (the local hub speaks LFS only), and a
    # cache of this test's own, so the user's is neither read nor written.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    for name in ("HF_HUB_DISABLE_XET", "NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, env[name])
    return env


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    key = _pki.ec_key()
    return _pki.write_private_key(key, tmp_path / "k.pem"), _pki.write_public_key(key, tmp_path / "k.pub")


def cli(env: dict[str, str], *args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*MAIN, *(str(a) for a in args)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert TOKEN not in proc.stdout + proc.stderr  # the token is never printed
    return proc


def error_lines(proc: subprocess.CompletedProcess[str], code: int) -> list[str]:
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), proc.stderr
    return lines


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    lines = error_lines(proc, code)
    assert len(lines) == 1, proc.stderr
    return lines[0]


def upload_with_key(server: HubServer, model: Path, priv: Path, **kw: Any) -> str:
    from model_signing import hub

    result = hub.sign_and_upload(REPO, model, KeySigner(priv), token=TOKEN, endpoint=server.url, **kw)
    return result.commit


def no_staging_left(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if "modelseal-hub" in p.name]


# -- the round trip through the API ------------------------------------------------------------------


def test_upload_then_download_and_verify_with_a_key(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from model_signing import hub

    priv, pub = keys
    model = write_model(tmp_path / "tiny-model")
    up = hub.sign_and_upload(REPO, model, KeySigner(priv), token=TOKEN, endpoint=server.url,
                             commit_message="signed upload")
    # One commit holds the files and the signature, on main.
    assert up.commit == server.head(REPO) and up.revision == "main"
    commit = server.resolve(REPO, up.commit)
    assert commit.message == "signed upload" and commit.parent is not None
    stored = server.files(REPO, up.commit)
    assert set(stored) == {*FILES, "model.sig", ".gitattributes"}
    assert set(up.uploaded) == {*FILES, "model.sig"}
    for name in LFS_FILES:  # LFS files: the object id is the file's SHA-256
        assert stored[name].lfs_sha256 == sha256(FILES[name]) and stored[name].size == len(FILES[name])
    config = stored["config.json"]
    assert config.lfs_sha256 is None and config.blob_id == git_blob_id(FILES["config.json"])
    assert {r.name: r.hex for r in up.signing.manifest.resources} == {n: sha256(d) for n, d in FILES.items()}
    assert server.read(stored["model.sig"]).decode() == up.signing.bundle_json

    target = tmp_path / "downloaded"
    got = hub.download_and_verify(REPO, KeyVerifier(pub), local_dir=target, token=TOKEN, endpoint=server.url)
    assert got.ok and got.commit == up.commit and got.local_dir == str(target) and not got.remote_only
    for name, data in FILES.items():
        assert (target / name).read_bytes() == data
    assert (target / "model.sig").read_bytes() == server.read(stored["model.sig"])
    # Only the repository's files, none of the client's bookkeeping (.cache/huggingface).
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == sorted(
        [*FILES, "model.sig", ".gitattributes"])
    assert got.verification.signer_identity is not None and got.verification.signer_identity.method == "key"
    no_staging_left(tmp_path)
    # The downloaded copy verifies with the ordinary verify, too.
    from model_signing.verifying import verify

    assert verify(target, KeyVerifier(pub), signature_path=target / "model.sig").ok


def test_a_downloaded_copy_is_re_signed_and_replaces_the_old_version(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from model_signing import hub

    priv, pub = keys
    first = upload_with_key(server, write_model(tmp_path / "m"), priv)
    copy = tmp_path / "copy"
    hub.download_and_verify(REPO, KeyVerifier(pub), local_dir=copy, token=TOKEN, endpoint=server.url)
    # A new version: one file changed, one removed. The copy holds the old model.sig and .gitattributes,
    # and the client's bookkeeping as a plain snapshot_download(local_dir=...) leaves it.
    (copy / "config.json").write_bytes(b'{"hidden": 16}\n')
    (copy / ".cache" / "huggingface").mkdir(parents=True)
    (copy / ".cache" / "huggingface" / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55")
    (copy / "tokenizer" / "vocab.txt").unlink()
    second = hub.sign_and_upload(REPO, copy, KeySigner(priv), token=TOKEN, endpoint=server.url,
                                 delete_other_files=True)
    assert second.commit != first and server.resolve(REPO, second.commit).parent == first
    assert second.deleted == ("tokenizer/vocab.txt",)
    # The old signature was neither hashed nor kept: the new one names exactly the new files.
    expected = {n: sha256(d) for n, d in FILES.items() if n != "tokenizer/vocab.txt"}
    expected["config.json"] = sha256(b'{"hidden": 16}\n')
    assert {r.name: r.hex for r in second.signing.manifest.resources} == expected
    assert {"model.sig", ".cache/huggingface"} <= set(second.signing.manifest.serialization.ignore_paths)
    assert set(server.files(REPO)) == {*expected, "model.sig", ".gitattributes"}
    assert hub.verify_remote(REPO, KeyVerifier(pub), token=TOKEN, endpoint=server.url).ok
    # The first version is still there, and still verifies at its commit.
    assert hub.verify_remote(REPO, KeyVerifier(pub), revision=first, token=TOKEN, endpoint=server.url).ok


def test_without_a_local_dir_the_files_land_in_a_new_directory(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    from model_signing import hub

    priv, pub = keys
    upload_with_key(server, write_model(tmp_path / "m"), priv)
    got = hub.download_and_verify(REPO, KeyVerifier(pub), token=TOKEN, endpoint=server.url)
    try:
        assert got.local_dir is not None
        place = Path(got.local_dir)
        assert place.name == "tiny-model" and place.parent.name.startswith("modelseal-hub-verified-")
        assert {n: (place / n).read_bytes() for n in FILES} == FILES
        assert not [p for p in place.parent.parent.iterdir() if p.name.startswith(".modelseal-hub-staging-")
                    and p.stat().st_mtime >= place.stat().st_mtime - 1]
    finally:
        if got.local_dir is not None:
            shutil.rmtree(Path(got.local_dir).parent)


def test_importing_the_hub_module_does_not_import_the_client() -> None:
    code = ("import sys, model_signing.hub, model_signing.cli._app\n"
            "print('huggingface_hub' in sys.modules, 'httpx2' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert proc.stdout.split() == ["False", "False"]


def test_verify_remote_checks_large_files_against_the_hubs_digests(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from model_signing import hub

    priv, pub = keys
    commit = upload_with_key(server, write_model(tmp_path / "m"), priv)
    before = len(server.requests)
    result = hub.verify_remote(REPO, KeyVerifier(pub), token=TOKEN, endpoint=server.url)
    assert result.ok and result.remote_only and result.commit == commit
    assert {c.name: (c.sha256, c.size) for c in result.remote_checked} == {
        n: (sha256(FILES[n]), len(FILES[n])) for n in LFS_FILES}
    assert set(result.downloaded) == {n for n in FILES if n not in LFS_FILES} | {"model.sig", ".gitattributes"}
    assert "reports" in result.note and commit in result.note
    assert result.as_dict()["hub"]["checked_against_server_digests"] is True
    # The weights were never fetched: no request named them, only the small files.
    fetched = [path for method, path in server.requests[before:] if "/resolve/" in path]
    assert fetched and not [p for p in fetched if p.endswith(LFS_FILES)]
    assert all(f"/resolve/{commit}/" in p for p in fetched)  # every download named the pinned commit


def test_keyless_round_trip_through_the_cli(
    server: HubServer, client_env: dict[str, str], tmp_path: Path
) -> None:
    model = write_model(tmp_path / "tiny-model")
    with LocalSigstore() as inst:
        env = {k: v for k, v in client_env.items() if not k.startswith(("GITHUB_", "ACTIONS_", "SIGSTORE_"))}
        up = cli(env, "hub", "upload", REPO, model, "--trust-config", inst.trust_config_path,
                 "--identity-token", inst.mint_token(EMAIL), "--json")
        assert up.returncode == 0, up.stderr
        doc = json.loads(up.stdout)
        assert doc["ok"] and doc["method"] == "sigstore" and doc["hub"]["commit"] == server.head(REPO)
        assert doc["signer_identity"]["identity"] == EMAIL
        verify_args = ["--trust-config", inst.trust_config_path, "--identity", EMAIL,
                       "--identity-provider", inst.oidc_issuer]
        got = cli(env, "hub", "verify", REPO, *verify_args, "--local-dir", tmp_path / "dl")
        assert got.returncode == 0, got.stderr
        assert f"verified {REPO} at commit {server.head(REPO)}" in got.stdout and EMAIL in got.stdout
        for name, data in FILES.items():
            assert (tmp_path / "dl" / name).read_bytes() == data
        remote = cli(env, "hub", "verify", REPO, *verify_args, "--remote-only", "--json")
        assert remote.returncode == 0, remote.stderr
        rdoc = json.loads(remote.stdout)
        assert rdoc["verified"] and rdoc["hub"]["remote_only"]
        checked = {c["name"]: c["sha256"] for c in rdoc["hub"]["remote_checked"]}
        assert checked == {n: sha256(FILES[n]) for n in LFS_FILES}
        # Another identity is a signature failure (exit 2), remotely and after a download.
        wrong = ["--trust-config", inst.trust_config_path, "--identity", "mallory@example.com",
                 "--identity-provider", inst.oidc_issuer]
        one_error_line(cli(env, "hub", "verify", REPO, *wrong, "--remote-only"), 2)
        one_error_line(cli(env, "hub", "verify", REPO, *wrong, "--local-dir", tmp_path / "dl2"), 2)
        assert not (tmp_path / "dl2").exists()


def test_certificate_round_trip_through_the_cli(
    server: HubServer, client_env: dict[str, str], pki: _pki.Pki, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "tiny-model")
    up = cli(client_env, "hub", "upload", REPO, model, "--private-key", pki.key_pem, "--signing-certificate",
             pki.leaf_pem, "--certificate-chain", pki.chain_pem, "-q")
    assert up.returncode == 0, up.stderr
    assert f"in commit {server.head(REPO)}" in up.stdout
    bundle = json.loads(server.read(server.files(REPO)["model.sig"]))
    assert "x509CertificateChain" in bundle["verificationMaterial"]
    remote = cli(client_env, "hub", "verify", REPO, "--certificate-chain", pki.root_pem, "--remote-only", "--json")
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["method"] == "certificate"
    got = cli(client_env, "hub", "verify", REPO, "--certificate-chain", pki.root_pem, "--local-dir", tmp_path / "dl")
    assert got.returncode == 0, got.stderr
    assert {n: (tmp_path / "dl" / n).read_bytes() for n in FILES} == FILES
    # A key verifier for a certificate signature: the method is named (exit 2).
    other = _pki.write_public_key(_pki.ec_key(), tmp_path / "other.pub")
    line = one_error_line(cli(client_env, "hub", "verify", REPO, "--public-key", other, "--remote-only"), 2)
    assert line == (f"error: hf://{REPO}@{server.head(REPO)}/model.sig is a certificate signature, not a key one; "
                    "verify it with 'hub verify' and the certificate method's options")


# -- tampering ---------------------------------------------------------------------------------------


def test_a_tampered_file_on_the_hub_is_caught_remotely_and_after_download(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    signed_commit = upload_with_key(server, write_model(tmp_path / "m"), priv)
    evil = b"\x00" * len(FILES["model.safetensors"])
    tampered_commit = server.push(REPO, "model.safetensors", evil)  # the hub honestly reports the new digest
    assert server.files(REPO)["model.safetensors"].lfs_sha256 == sha256(evil)

    remote = cli(client_env, "hub", "verify", REPO, "--public-key", pub, "--remote-only")
    lines = error_lines(remote, 3)
    assert "does not match its signature: 1 difference" in lines[0]
    assert lines[1:] == [f"  modified: model.safetensors expected {sha256(FILES['model.safetensors'])} actual "
                         f"{sha256(evil)}"]
    target = tmp_path / "dl"
    after = cli(client_env, "hub", "verify", REPO, "--public-key", pub, "--local-dir", target)
    assert error_lines(after, 3)[1:] == remote.stderr.strip().splitlines()[1:]
    assert not target.exists()  # nothing that looks verified
    no_staging_left(tmp_path)

    # The API: the same verdict as data, with the pinned commit.
    from model_signing import hub

    with pytest.raises(HubMismatchError) as exc:
        hub.verify_remote(REPO, KeyVerifier(pub), token=TOKEN, endpoint=server.url)
    assert exc.value.exit_code == 3 and exc.value.hub_result.commit == tampered_commit
    found = [(d.kind, d.name, d.actual) for d in exc.value.differences]
    assert found == [("modified", "model.safetensors", sha256(evil))]
    # The signed commit itself is still intact: pinning it verifies.
    ok = cli(client_env, "hub", "verify", REPO, "--public-key", pub, "--revision", signed_commit, "--remote-only")
    assert ok.returncode == 0, ok.stderr
    assert signed_commit in ok.stdout and "digests the hub reports" in ok.stdout


def test_a_hub_that_lies_about_an_lfs_object_is_caught_after_download(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from model_signing import hub

    priv, pub = keys
    upload_with_key(server, write_model(tmp_path / "m"), priv)
    other = bytes(reversed(FILES["weights/part-0.bin"]))  # same size: the client's size check passes
    server.corrupt_lfs_object(sha256(FILES["weights/part-0.bin"]), other)
    # It reports the signed digest, so the remote check (which trusts the report, and says so) passes ...
    remote = hub.verify_remote(REPO, KeyVerifier(pub), token=TOKEN, endpoint=server.url)
    assert remote.ok and "weights/part-0.bin" in {c.name for c in remote.remote_checked}
    # ... but the bytes it serves do not match the signature.
    target = tmp_path / "dl"
    with pytest.raises(HubMismatchError) as exc:
        hub.download_and_verify(REPO, KeyVerifier(pub), local_dir=target, token=TOKEN, endpoint=server.url)
    assert [(d.kind, d.name, d.expected, d.actual) for d in exc.value.differences] == [
        ("modified", "weights/part-0.bin", sha256(FILES["weights/part-0.bin"]), sha256(other))]
    assert not target.exists()
    no_staging_left(tmp_path)
    proc = cli(client_env, "hub", "verify", REPO, "--public-key", pub, "--local-dir", tmp_path / "dl-cli", "--json")
    lines = error_lines(proc, 3)
    signed = sha256(FILES["weights/part-0.bin"])
    assert lines[1] == f"  modified: weights/part-0.bin expected {signed} actual {sha256(other)}"
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 3 and doc["verified"] is False and doc["hub"]["remote_only"] is False


def test_an_unsigned_large_file_on_the_hub_is_extra(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from model_signing import hub

    priv, pub = keys
    upload_with_key(server, write_model(tmp_path / "m"), priv)
    added = b"\x07" * 2000
    server.push(REPO, "extra.bin", added)
    with pytest.raises(HubMismatchError) as exc:
        hub.verify_remote(REPO, KeyVerifier(pub), token=TOKEN, endpoint=server.url)
    assert [(d.kind, d.name, d.actual) for d in exc.value.differences] == [("extra", "extra.bin", sha256(added))]
    accepted = hub.verify_remote(REPO, KeyVerifier(pub), token=TOKEN, endpoint=server.url, ignore_unsigned_files=True)
    assert accepted.ok and accepted.verification.unsigned_files == ("extra.bin",)


# -- refusals ----------------------------------------------------------------------------------------


def test_shards_signatures_cannot_be_checked_remotely(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    model = write_model(tmp_path / "m")
    up = cli(client_env, "hub", "upload", REPO, model, "--private-key", priv, "--serialization", "shards",
             "--shard-size", "4096")
    assert up.returncode == 0, up.stderr
    line = one_error_line(cli(client_env, "hub", "verify", REPO, "--public-key", pub, "--remote-only"), 1)
    assert "shards serialization" in line and "without --remote-only" in line
    from model_signing import hub

    with pytest.raises(RemoteVerificationUnsupportedError, match="download_and_verify"):
        hub.verify_remote(REPO, KeyVerifier(pub), token=TOKEN, endpoint=server.url)
    # Downloading verifies it.
    assert cli(client_env, "hub", "verify", REPO, "--public-key", pub, "--local-dir", tmp_path / "dl").returncode == 0
    assert (tmp_path / "dl" / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def test_cli_refusals_are_one_line(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    model = write_model(tmp_path / "m")
    # No token: the hub refuses the write, and the message says what to check (never the token itself).
    no_token = {k: v for k, v in client_env.items() if k != "HF_TOKEN"}
    line = one_error_line(cli(no_token, "hub", "upload", REPO, model, "--private-key", priv), 1)
    assert "401" in line and "--token" in line
    assert REPO not in server.repos
    # --token on the command line works (and is sent as a bearer token).
    assert cli(no_token, "hub", "upload", REPO, model, "--private-key", priv, "--token", TOKEN).returncode == 0
    assert f"Bearer {TOKEN}" in server.authorizations
    # A repository without a signature.
    server.create_repo("acme/unsigned")
    line = one_error_line(cli(client_env, "hub", "verify", "acme/unsigned", "--public-key", pub, "--remote-only"), 1)
    assert "has no model.sig" in line
    # No such repository, no such revision.
    assert "was not found" in one_error_line(cli(client_env, "hub", "verify", "acme/nope", "--public-key", pub,
                                                 "--remote-only"), 1)
    assert "does not exist" in one_error_line(cli(client_env, "hub", "verify", REPO, "--public-key", pub,
                                                  "--revision", "v9", "--remote-only"), 1)
    # A wrong key is a signature failure.
    other = _pki.write_public_key(_pki.ec_key(), tmp_path / "other.pub")
    one_error_line(cli(client_env, "hub", "verify", REPO, "--public-key", other, "--remote-only"), 2)
    # A local dir that is not empty is refused before anything is downloaded.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep")
    before = len(server.requests)
    line = one_error_line(cli(client_env, "hub", "verify", REPO, "--public-key", pub, "--local-dir", busy), 1)
    assert "--local-dir" in line and "not empty" in line
    assert not [p for _, p in server.requests[before:] if "/resolve/" in p]
    assert [p.name for p in busy.iterdir()] == ["x"]
    # Options of two methods.
    line = one_error_line(cli(client_env, "hub", "verify", REPO, "--public-key", pub, "--identity", EMAIL), 1)
    assert "--identity cannot be used with the key method" in line
    # A hub that is not there.
    down = {**client_env, "HF_ENDPOINT": "http://127.0.0.1:9"}
    assert "cannot reach the hub" in one_error_line(cli(down, "hub", "verify", REPO, "--public-key", pub,
                                                        "--remote-only"), 1)


def test_a_hub_that_fails_to_serve_files_leaves_nothing(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    upload_with_key(server, write_model(tmp_path / "m"), priv)
    server.fail_paths = {"/resolve/"}
    target = tmp_path / "dl"
    line = one_error_line(cli(client_env, "hub", "verify", REPO, "--public-key", pub, "--local-dir", target), 1)
    assert "did not serve every file" in line and "403" in line
    assert not target.exists()
    no_staging_left(tmp_path)


def test_api_errors_are_the_hierarchys(
    server: HubServer, client_env: dict[str, str], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from model_signing import hub

    priv, pub = keys
    upload_with_key(server, write_model(tmp_path / "m"), priv, hashing=HashingConfig(hash_type="blake2b"))
    with pytest.raises(RemoteVerificationUnsupportedError, match="blake2b"):
        hub.verify_remote(REPO, KeyVerifier(pub), token=TOKEN, endpoint=server.url)
    other = _pki.write_public_key(_pki.ec_key(), tmp_path / "other.pub")
    with pytest.raises(VerificationError):
        hub.download_and_verify(REPO, KeyVerifier(other), local_dir=tmp_path / "dl", token=TOKEN, endpoint=server.url)
    assert not (tmp_path / "dl").exists()
    with pytest.raises(HubError, match="was not found") as exc:
        hub.verify_remote("acme/missing", KeyVerifier(pub), token=TOKEN, endpoint=server.url)
    assert exc.value.exit_code == 1


def test_a_missing_extra_names_the_install_command(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    _, pub = keys
    # huggingface_hub made unimportable in the child, as if modelseal[hub] were not installed.
    code = ("import sys; sys.modules['huggingface_hub'] = None\n"
            "from model_signing.cli import main\n"
            f"main(['hub', 'verify', 'acme/x', '--public-key', {str(pub)!r}, '--remote-only'])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    line = one_error_line(proc, 1)
    assert "pip install 'modelseal[hub]'" in line and "huggingface_hub" in line

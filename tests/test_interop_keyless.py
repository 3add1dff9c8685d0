"""Keyless interoperability with the real peer, ``model-signing==1.1.1`` (own venv, ``benchmarks/peer.py``).

Both sides sign against the same local Sigstore instance (one per module) and verify with its trust config:

* the peer verifies our keyless bundles (its CLI, files) and rejects them for a wrong identity;
* for our shard bundles the peer's Sigstore check passes and only its known shard-label limitation remains
  (it expects ``"sha256-sharded-<N>"`` digest labels, which the OMS schema does not allow; see
  ``test_interop_peer.py``);
* we verify the peer's keyless bundles: its CLI (files), its Python API (shards), and its ambient GitHub
  Actions credentials (a workflow certificate), and reject them for a wrong identity or a changed model.

The peer always runs as ``python -I`` from a temporary directory, so this project (also ``model_signing``)
cannot shadow it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import model_signing as ms
from benchmarks.peer import ensure_peer_venv, peer_cli
from model_signing.errors import ModelMismatchError, VerificationError
from model_signing.sigstore_local import LocalSigstore

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "alice@example.com"
FAST = ms.HashingConfig(max_workers=1, progress=False)
WEIGHTS = bytes(range(256)) * 3
FILES = {"config.json": b'{"layers": 2}\n', "weights/w.bin": WEIGHTS}
_AMBIENT_PREFIXES = ("GITHUB_", "ACTIONS_", "SIGSTORE_", "GITLAB_", "CI_", "BUILDKITE", "CIRCLECI", "GOOGLE_")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT_PREFIXES) and k != "CI"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def peer() -> Path:
    return ensure_peer_venv()


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def run_peer(
    peer: Path, cwd: Path, *args: object, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*peer_cli(peer), *(str(a) for a in args)], cwd=cwd, env=env or clean_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=300, check=False,
    )


def run_peer_api(peer: Path, cwd: Path, code: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in the peer's interpreter (``sys.argv[1:]`` = ``args``)."""
    return subprocess.run(
        [str(peer), "-I", "-c", "import sys, pathlib, model_signing as m\n" + code, *(str(a) for a in args)],
        cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def our_sign(inst: LocalSigstore, model: Path, signature: Path, hashing: ms.HashingConfig = FAST) -> ms.SignResult:
    signer = ms.SigstoreSigner(trust_config=inst.trust_config_path,
                               token_source=ms.TokenSource(identity_token=inst.mint_token(EMAIL)))
    return ms.sign(model, signer, signature_path=signature, hashing=hashing)


def our_verify(
    inst: LocalSigstore, model: Path, signature: Path, identity: str = EMAIL, **claims: str
) -> ms.VerifyResult:
    policy = ms.IdentityPolicy(issuer=inst.oidc_issuer, identity=identity, **claims)
    return ms.verify(model, ms.SigstoreVerifier(policy, trust_config=inst.trust_config_path),
                     signature_path=signature, max_workers=1)


def signed_resources(signature: Path) -> dict[str, str]:
    statement = json.loads(base64.b64decode(json.loads(signature.read_text())["dsseEnvelope"]["payload"]))
    return {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}


# -- the peer verifies our bundles -------------------------------------------------------------------------


def test_peer_cli_verifies_our_keyless_bundle(peer: Path, inst: LocalSigstore, model: Path, tmp_path: Path) -> None:
    signature = tmp_path / "ours.sig"
    our_sign(inst, model, signature)

    def peer_verify(identity: str) -> subprocess.CompletedProcess[str]:
        return run_peer(peer, tmp_path, "verify", "sigstore", "--trust_config", inst.trust_config_path,
                        "--identity", identity, "--identity_provider", inst.oidc_issuer,
                        "--signature", signature, model)

    assert "Verification succeeded" in ok(peer_verify(EMAIL)).stdout
    wrong = peer_verify("mallory@example.com")
    assert wrong.returncode != 0
    assert "SANs do not match" in wrong.stdout + wrong.stderr
    (model / "config.json").write_bytes(b"{}")
    changed = peer_verify(EMAIL)
    assert changed.returncode != 0
    assert "config.json" in changed.stdout + changed.stderr


def test_peer_api_checks_our_keyless_shard_bundle(
    peer: Path, inst: LocalSigstore, model: Path, tmp_path: Path
) -> None:
    signature = tmp_path / "ours.sig"
    hashing = ms.HashingConfig(method="shards", shard_size=256, max_workers=1, progress=False)
    our_sign(inst, model, signature, hashing)
    assert signed_resources(signature)["weights/w.bin:256:512"] == sha256_hex(WEIGHTS[256:512])
    code = (
        "def attempt(identity):\n"
        "    try:\n"
        "        m.verifying.Config().use_sigstore_verifier(identity=identity, oidc_issuer=sys.argv[2],\n"
        "            trust_config=pathlib.Path(sys.argv[1])).verify(sys.argv[3], sys.argv[4])\n"
        "    except Exception as exc:\n"
        "        return f'{type(exc).__name__}: {exc}'\n"
        "    return 'verified'\n"
        "print(attempt('mallory@example.com'))\n"
        "print(attempt(sys.argv[5]))\n"
    )
    proc = ok(run_peer_api(peer, tmp_path, code, inst.trust_config_path, inst.oidc_issuer, model, signature, EMAIL))
    wrong, right = proc.stdout.strip().splitlines()
    # With a wrong identity the peer's Sigstore verification refuses the bundle...
    assert "SANs do not match" in wrong
    # ...with the right one it accepts it, and only its shard digest labels differ from the schema's.
    assert right.startswith("ValueError: Signature mismatch")
    assert "algorithm='sha256-sharded-256'" in right
    assert "SANs" not in right and "VerificationError" not in right


# -- we verify the peer's bundles ----------------------------------------------------------------------------


def test_we_verify_peer_cli_keyless_bundle(peer: Path, inst: LocalSigstore, model: Path, tmp_path: Path) -> None:
    signature = tmp_path / "peer.sig"
    ok(run_peer(peer, tmp_path, "sign", "sigstore", "--trust_config", inst.trust_config_path,
                "--identity_token", inst.mint_token(EMAIL), "--signature", signature, model))
    expected = {name: sha256_hex(data) for name, data in FILES.items()}
    assert signed_resources(signature) == expected

    proc = subprocess.run(
        [sys.executable, "main.py", "verify", "sigstore", str(model), "--trust-config", str(inst.trust_config_path),
         "--identity", EMAIL, "--identity-provider", inst.oidc_issuer, "--signature", str(signature), "--json"],
        cwd=ROOT, env=clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )
    result = json.loads(ok(proc).stdout)
    root = hashlib.sha256(b"".join(bytes.fromhex(expected[n]) for n in sorted(expected))).hexdigest()
    assert result["root_digest"] == root
    assert result["signer"] == f"{EMAIL} via {inst.oidc_issuer} (Sigstore certificate)"

    with pytest.raises(VerificationError, match="SANs do not match"):
        our_verify(inst, model, signature, "mallory@example.com")
    (model / "config.json").write_bytes(b"{}")
    with pytest.raises(ModelMismatchError) as info:
        our_verify(inst, model, signature)
    assert [(d.kind, d.name, d.actual) for d in info.value.differences] == [
        ("modified", "config.json", sha256_hex(b"{}"))
    ]


def test_we_verify_peer_api_keyless_shard_bundle(peer: Path, inst: LocalSigstore, model: Path, tmp_path: Path) -> None:
    signature = tmp_path / "peer.sig"
    code = (
        "m.signing.Config().use_sigstore_signer(identity_token=sys.argv[1], trust_config=pathlib.Path(sys.argv[2]))"
        ".set_hashing_config(m.hashing.Config().use_shard_serialization(shard_size=256))"
        ".sign(sys.argv[3], sys.argv[4])\n"
    )
    ok(run_peer_api(peer, tmp_path, code, inst.mint_token(EMAIL), inst.trust_config_path, model, signature))
    result = our_verify(inst, model, signature)
    assert result.manifest.serialization.method == "shards"
    expected = {f"weights/w.bin:{i}:{i + 256}": sha256_hex(WEIGHTS[i : i + 256]) for i in (0, 256, 512)}
    expected["config.json:0:14"] = sha256_hex(FILES["config.json"])
    assert {r.name: r.hex for r in result.manifest.resources} == expected


def test_we_verify_peer_ambient_workflow_bundle(peer: Path, inst: LocalSigstore, model: Path, tmp_path: Path) -> None:
    repository, ref = "octo-org/models", "refs/heads/release"
    identity = f"https://github.com/{repository}/.github/workflows/release.yml@{ref}"
    signature = tmp_path / "peer.sig"
    env = clean_env(**inst.github_actions_env(repository, ref=ref))
    ok(run_peer(peer, tmp_path, "sign", "sigstore", "--use_ambient_credentials", "--trust_config",
                inst.trust_config_path, "--signature", signature, model, env=env))
    result = our_verify(inst, model, signature, identity, repository=repository, ref=ref)
    assert result.signer.startswith(identity)
    with pytest.raises(VerificationError, match="GitHubWorkflowRepository does not match"):
        our_verify(inst, model, signature, identity, repository="octo-org/other")

"""``sigstore-local serve`` / ``token`` as a user runs them, and the peer signing against the instance.

The server runs as a real subprocess; tokens come from the ``token`` command; signing and verification use
the unmodified sigstore client, and the peer ``model-signing==1.1.1`` in its own venv.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sigstore.models import Bundle, ClientTrustConfig
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext
from sigstore.verify import Verifier, policy

from benchmarks.peer import ensure_peer_venv, peer_cli

ROOT = Path(__file__).resolve().parent.parent
MAIN = [sys.executable, str(ROOT / "main.py")]
EMAIL = "alice@example.com"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MAIN, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@dataclass
class Served:
    proc: subprocess.Popen[str]
    state: Path
    trust_config: Path
    issuer: str
    banner: list[str]


def start_serve(state: Path, trust_config: Path) -> Served:
    proc = subprocess.Popen(
        [*MAIN, "sigstore-local", "serve", "--state-dir", str(state), "--trust-config-out", str(trust_config)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    banner: list[str] = []
    # The banner ends with this line, printed once the trust config is written and the port serves.
    while not banner or banner[-1] != "Press Ctrl-C to stop.":
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=60)
            raise AssertionError(f"serve exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        banner.append(line.rstrip("\n"))
    [issuer] = [line.split()[-1] for line in banner if line.strip().startswith("OIDC issuer:")]
    return Served(proc, state, trust_config, issuer, banner)


def stop(served: Served) -> tuple[int, str]:
    served.proc.send_signal(signal.SIGINT)
    _, err = served.proc.communicate(timeout=60)
    return served.proc.returncode, err


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    instance = start_serve(tmp / "state", tmp / "tc.json")
    yield instance
    if instance.proc.poll() is None:
        stop(instance)


def token_for(served: Served, *args: str) -> str:
    result = run("sigstore-local", "token", "--state-dir", str(served.state), *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_serve_writes_the_trust_config_and_token_signs(served: Served) -> None:
    trust = ClientTrustConfig.from_json(served.trust_config.read_text())
    assert served.trust_config.read_text() == (served.state / "trust_config.json").read_text()
    assert trust.signing_config.get_oidc_url() == served.issuer
    token = token_for(served, "--identity", EMAIL)
    assert IdentityToken(token).issuer == served.issuer
    with SigningContext.from_trust_config(trust).signer(IdentityToken(token)) as signer:
        bundle = signer.sign_artifact(b"served")
    verifier = Verifier(trusted_root=trust.trusted_root)
    verifier.verify_artifact(b"served", bundle, policy.Identity(identity=EMAIL, issuer=served.issuer))


def test_token_for_a_github_workflow(served: Served) -> None:
    token = token_for(served, "--repository", "octo-org/models", "--ref", "refs/tags/v2")
    trust = ClientTrustConfig.from_json(served.trust_config.read_text())
    with SigningContext.from_trust_config(trust).signer(IdentityToken(token)) as signer:
        bundle = signer.sign_artifact(b"ci")
    identity = "https://github.com/octo-org/models/.github/workflows/release.yml@refs/tags/v2"
    Verifier(trusted_root=trust.trusted_root).verify_artifact(
        b"ci", bundle,
        policy.AllOf([policy.Identity(identity=identity, issuer=served.issuer),
                      policy.GitHubWorkflowRepository("octo-org/models")]),
    )


def test_token_rejects_bad_arguments(served: Served) -> None:
    bad_identity = run("sigstore-local", "token", "--state-dir", str(served.state), "--identity", "alice")
    assert bad_identity.returncode == 1
    assert "must be an email address" in bad_identity.stderr
    both = run("sigstore-local", "token", "--state-dir", str(served.state), "--identity", EMAIL,
               "--repository", "o/r")
    assert both.returncode == 1
    assert "exactly one of --identity and --repository" in both.stderr
    for result in (bad_identity, both):
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_serve_refuses_to_overwrite_the_trust_config(served: Served, tmp_path: Path) -> None:
    existing = tmp_path / "tc.json"
    existing.write_text("keep me")
    result = run("sigstore-local", "serve", "--trust-config-out", str(existing))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: --trust-config-out {existing}: already exists and is not the trust config of this instance; "
        "pass --overwrite to replace it"
    )
    assert existing.read_text() == "keep me"


def test_serve_names_the_address_it_cannot_listen_on(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("sigstore-local", "serve", "--port", str(port), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot serve on 127.0.0.1:{port} ("), result.stderr
    assert "--port" in lines[0]
    assert not (tmp_path / "state" / "instance.json").exists()


def test_token_without_a_running_instance(tmp_path: Path) -> None:
    result = run("sigstore-local", "token", "--state-dir", str(tmp_path), "--identity", EMAIL)
    assert result.returncode == 1
    assert "no running local Sigstore instance" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run("sigstore-local", "token", "--state-dir", str(tmp_path / "nowhere"), "--identity", EMAIL)
    assert missing.returncode == 1
    assert "no such state directory" in missing.stderr
    assert not (tmp_path / "nowhere").exists()


def test_peer_signs_and_verifies_against_the_instance(served: Served, tmp_path: Path) -> None:
    peer = peer_cli(ensure_peer_venv())
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}\n')
    (model / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    signature = tmp_path / "model.sig"
    sign = subprocess.run(
        [*peer, "sign", "sigstore", "--trust_config", str(served.trust_config),
         "--identity_token", token_for(served, "--identity", EMAIL), "--signature", str(signature), str(model)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    assert sign.returncode == 0, sign.stderr
    bundle = json.loads(signature.read_text())
    assert bundle["verificationMaterial"]["tlogEntries"][0]["kindVersion"]["kind"] == "dsse"
    # The peer's bundle is a standard one: the sigstore client verifies it against our trust root too.
    trust = ClientTrustConfig.from_json(served.trust_config.read_text())
    payload_type, _ = Verifier(trusted_root=trust.trusted_root).verify_dsse(
        Bundle.from_json(signature.read_text()), policy.Identity(identity=EMAIL, issuer=served.issuer)
    )
    assert payload_type == "application/vnd.in-toto+json"

    def peer_verify(identity: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*peer, "verify", "sigstore", "--trust_config", str(served.trust_config), "--identity", identity,
             "--identity_provider", served.issuer, "--signature", str(signature), str(model)],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
        )

    good = peer_verify(EMAIL)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Verification succeeded" in good.stdout
    wrong = peer_verify("mallory@example.com")
    assert wrong.returncode != 0
    assert "SANs do not match" in wrong.stdout + wrong.stderr


def test_serve_stops_on_sigint(tmp_path: Path) -> None:
    served = start_serve(tmp_path / "state", tmp_path / "tc.json")
    assert (served.state / "instance.json").exists()
    code, err = stop(served)
    assert code == 0
    assert "stopped" in err
    assert "Traceback" not in err
    # The running-instance record is gone; keys and trust config stay for the next start.
    assert not (served.state / "instance.json").exists()
    assert (served.state / "keys" / "oidc.pem").exists()
    ClientTrustConfig.from_json(served.trust_config.read_text())

"""Hangs and unbounded resources (issue 9, point 4), driven through the CLI as a user runs it.

- A Sigstore service that accepts the connection and never answers (or trickles its answer) fails the
  command within a bounded time, with one line naming the service and its URL (``--timeout``).
- ``--max-workers`` is capped (processes at 4 per CPU, blake3 threads at the CPU count) with a warning.
- Signatures, keys, certificates and trust configs are refused on their size before they are read.
- Deeply nested JSON in a signature, a validly signed payload or a trust config is a format error.

Every command runs ``python main.py ...`` in a subprocess with a time limit; expected digests are computed
here with hashlib/blake3, and the silent services are plain TCP servers run by the test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import model_signing as ms
from model_signing.errors import InputError
from model_signing.sigstore_local import LocalSigstore
from tests import _pki

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "alice@example.com"
CPUS = len(os.sched_getaffinity(0))
DEEP = "[" * 100_000


def _env(**extra: str) -> dict[str, str]:
    # No CI credentials or tokens from the environment: only what a test passes explicitly.
    prefixes = ("GITHUB_", "ACTIONS_", "SIGSTORE_", "GITLAB_", "CI_", "BUILDKITE", "CIRCLECI", "GOOGLE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k != "CI"}
    return {**env, **extra}


def cli(*args: object, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *(str(a) for a in args)], cwd=ROOT, env=env or _env(),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False,
    )


def error_line(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    return lines[0]


def write_model(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


# -- Sigstore services that never answer ------------------------------------------------------------


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and then, per ``mode``:

    ``silent``: reads the request and never answers; ``trickle``: sends response headers announcing a
    large body, then one byte every 0.3 s (no single read ever waits long, yet the answer never ends).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self.connections = 0
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                if self.mode == "trickle":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 1000000\r\n\r\n")
                while not self._stop.wait(0.3):
                    if self.mode == "trickle":
                        conn.sendall(b" ")
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "model", {"config.json": b'{"layers": 2}\n', "w.bin": bytes(range(256)) * 4})


def trust_config_with(inst: LocalSigstore, service: str, url: str, dest: Path) -> Path:
    """The local instance's trust config, with the signing config's ``service`` URL replaced by ``url``."""
    config = inst.trust_config()
    entries = config["signingConfig"][service]
    assert entries, service
    for entry in entries:
        entry["url"] = url
    dest.write_text(json.dumps(config))
    return dest


@pytest.mark.parametrize(
    "case",
    [("caUrls", "Fulcio", "/api/v2/signingCert"), ("rekorTlogUrls", "Rekor", "/api/v1/log/entries")],
    ids=["fulcio", "rekor"],
)
def test_a_silent_service_fails_the_signing_within_the_timeout(
    inst: LocalSigstore, model: Path, tmp_path: Path, case: tuple[str, str, str]
) -> None:
    service, name, path = case
    server = SilentServer("silent")
    try:
        config = trust_config_with(inst, service, server.url, tmp_path / "tc.json")
        signature = tmp_path / "model.sig"
        start = time.monotonic()
        proc = cli("sign", "sigstore", model, "--trust-config", config, "--identity-token", inst.mint_token(EMAIL),
                   "--signature", signature, "--timeout", 2, "--max-workers", 1, timeout=90)
        elapsed = time.monotonic() - start
    finally:
        server.close()
    line = error_line(proc, 1)
    assert name in line and f"{server.url}{path}" in line and "within 2 s" in line, line
    assert server.connections >= 1  # it did reach the server, which accepted and stayed silent
    assert elapsed < 45, elapsed  # 2 s per network operation, plus start-up on a busy machine
    assert not signature.exists()


def test_a_service_that_never_finishes_its_answer_is_given_up(inst: LocalSigstore, model: Path, tmp_path: Path) -> None:
    # Each read gets a byte well within the 1 s timeout, so only the caller's bound on the whole wait
    # (3 x timeout + 10 s without any news from the helper) can end this.
    server = SilentServer("trickle")
    try:
        config = trust_config_with(inst, "caUrls", server.url, tmp_path / "tc.json")
        start = time.monotonic()
        proc = cli("sign", "sigstore", model, "--trust-config", config, "--identity-token", inst.mint_token(EMAIL),
                   "--signature", tmp_path / "model.sig", "--timeout", 1, "--max-workers", 1, timeout=90)
        elapsed = time.monotonic() - start
    finally:
        server.close()
    line = error_line(proc, 1)
    assert "Fulcio" in line and f"{server.url}/api/v2/signingCert" in line, line
    assert 13 <= elapsed < 60, elapsed
    assert not (tmp_path / "model.sig").exists()


def test_timeout_is_accepted_by_verify_and_checked(inst: LocalSigstore, model: Path, tmp_path: Path) -> None:
    signature = tmp_path / "model.sig"
    signed = cli("sign", "sigstore", model, "--trust-config", inst.trust_config_path, "--identity-token",
                 inst.mint_token(EMAIL), "--signature", signature, "--timeout", 30, "--max-workers", 1)
    assert signed.returncode == 0, signed.stderr
    verified = cli("verify", "sigstore", model, "--trust-config", inst.trust_config_path, "--identity", EMAIL,
                   "--identity-provider", inst.oidc_issuer, "--signature", signature, "--timeout", 30, "-q")
    assert verified.returncode == 0, verified.stderr
    for bad in ("0", "-1", "nan", "inf"):
        proc = cli("verify", "sigstore", model, "--trust-config", inst.trust_config_path, "--identity", EMAIL,
                   "--identity-provider", inst.oidc_issuer, "--signature", signature, "--timeout", bad)
        assert "--timeout" in error_line(proc, 1)
        proc = cli("sign", "sigstore", model, "--trust-config", inst.trust_config_path, "--identity-token",
                   inst.mint_token(EMAIL), "--signature", tmp_path / "other.sig", "--timeout", bad)
        assert "--timeout" in error_line(proc, 1)
        assert not (tmp_path / "other.sig").exists()


def test_library_timeout_is_checked(inst: LocalSigstore) -> None:
    policy = ms.IdentityPolicy(identity=EMAIL, issuer=inst.oidc_issuer)
    for bad in (0, -5, float("nan"), float("inf"), True):
        with pytest.raises(InputError, match="timeout must be a positive number of seconds"):
            ms.SigstoreVerifier(policy, trust_config=inst.trust_config_path, timeout=bad)
        with pytest.raises(InputError, match="timeout must be a positive number of seconds"):
            ms.SigstoreSigner(trust_config=inst.trust_config_path, timeout=bad,
                              token_source=ms.TokenSource(identity_token=inst.mint_token(EMAIL)))


# -- worker processes and threads ---------------------------------------------------------------------

# Logs every fork of the CLI process (an audit hook armed through sitecustomize): the hashing workers.
FORK_LOG = """import os, sys
log = os.environ["FORK_LOG"]
def count(event, args):
    if event == "os.fork":
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\\n")
sys.addaudithook(count)
"""
_HOOK_DIR = Path(tempfile.mkdtemp(prefix="fork-log-"))
(_HOOK_DIR / "sitecustomize.py").write_text(FORK_LOG)


def _peak_threads(proc: subprocess.Popen[str], limit: float) -> int:
    """Sample the process's thread count until it exits (a lower bound of its peak: samples can miss).

    A process still running after ``limit`` seconds is killed (the test then fails on its exit code).
    """
    peak = 0
    deadline = time.monotonic() + limit
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            break
        try:
            peak = max(peak, len(os.listdir(f"/proc/{proc.pid}/task")))
        except OSError:
            break
        time.sleep(0.002)
    return peak


def test_huge_max_workers_with_blake3_is_capped(tmp_path: Path) -> None:
    data = os.urandom(48 << 20)  # one big stream: blake3 hashes it with its own threads
    model = write_model(tmp_path / "model", {"weights.bin": data})
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "main.py", "digest", str(model), "--max-workers", "1000000",
                             "--hash", "blake3"], cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = _peak_threads(proc, limit=60)
    out, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, err
    # The root digest: SHA-256 over the one resource's BLAKE3 digest.
    assert out.strip() == hashlib.sha256(blake3.blake3(data).digest()).hexdigest()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: --max-workers 1000000 "), err
    assert f"using {4 * CPUS} " in lines[0], lines[0]
    assert elapsed < 60, elapsed
    # Main thread, blake3's threads (at most one per CPU), the read-ahead thread, and a little slack.
    assert peak <= CPUS + 6, peak


def test_tiny_shards_fork_no_more_workers_than_the_cap(tmp_path: Path) -> None:
    data = os.urandom(20_000)  # 20,000 one-byte shards: hundreds of work items
    model = write_model(tmp_path / "model", {"w.bin": data})
    log = tmp_path / "forks.log"
    log.touch()
    env = _env(PYTHONPATH=str(_HOOK_DIR), FORK_LOG=str(log))
    proc = cli("digest", model, "--serialization", "shards", "--shard-size", 1, "--max-workers", 1000, env=env)
    assert proc.returncode == 0, proc.stderr
    # Resources are named path:start:end and ordered by name as text; each digest is SHA-256 of one byte.
    names = sorted((f"w.bin:{i}:{i + 1}", i) for i in range(len(data)))
    expected = hashlib.sha256(b"".join(hashlib.sha256(data[i:i + 1]).digest() for _, i in names)).hexdigest()
    assert proc.stdout.strip() == expected
    assert proc.stderr.startswith("warning: --max-workers 1000 ") and proc.stderr.count("\n") == 1, proc.stderr
    forks = log.read_text().split()
    assert 2 <= len(forks) <= 4 * CPUS, len(forks)


def test_workers_within_the_cap_need_no_warning(tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", {"a": b"a", "b": b"b"})
    proc = cli("digest", model, "--max-workers", 4 * CPUS)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    expected = hashlib.sha256(hashlib.sha256(b"a").digest() + hashlib.sha256(b"b").digest()).hexdigest()
    assert proc.stdout.strip() == expected


# -- sizes of user-named files ------------------------------------------------------------------------


def _sparse(path: Path, size: int = 2 << 30) -> Path:
    with path.open("wb") as f:
        f.truncate(size)  # a sparse 2 GiB file: no disk used, but reading it would take seconds and memory
    return path


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    key = _pki.ec_key("P-256")
    return _pki.write_private_key(key, tmp_path / "key.pem"), _pki.write_public_key(key, tmp_path / "key.pub")


def test_huge_files_are_refused_before_reading(model: Path, tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    pub = keypair[1]
    big = _sparse(tmp_path / "big")
    cases = [
        (["verify", "key", model, "--public-key", pub, "--signature", big], "signature", "64 MiB"),
        (["verify", "key", model, "--public-key", big, "--signature", tmp_path / "none.sig"], "public key", "256 KiB"),
        (["sign", "key", model, "--private-key", big, "--signature", tmp_path / "new.sig"], "private key", "256 KiB"),
        (["verify", "certificate", model, "--certificate-chain", big, "--signature", tmp_path / "none.sig"],
         "certificate chain file", "512 KiB"),
        (["verify", "sigstore", model, "--trust-config", big, "--identity", EMAIL, "--identity-provider",
          "https://issuer.example", "--signature", tmp_path / "none.sig"], "--trust-config file", "4 MiB"),
    ]
    for args, what, limit in cases:
        start = time.monotonic()
        proc = cli(*args)
        elapsed = time.monotonic() - start
        line = error_line(proc, 1)
        assert f"{what} {big} is 2 GiB, more than the {limit} limit" in line, line
        assert elapsed < 15, (what, elapsed)  # interpreter start-up; reading 2 GiB would add seconds
    assert not (tmp_path / "new.sig").exists()


def test_sign_refuses_a_signature_too_large_to_verify(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    # 14,000 files whose names are ~3,760 characters each: a statement of ~52 MB, ~69 MiB in the bundle,
    # over the 64 MiB a signature may be when read back, so it could never be verified.
    deep = Path(*["d" * 250] * 15)
    model = write_model(tmp_path / "model", {f"{deep}/{i:06d}": b"x" for i in range(14_000)})
    signature = tmp_path / "model.sig"
    proc = cli("sign", "key", model, "--private-key", keypair[0], "--signature", signature)
    line = error_line(proc, 1)
    assert "14000 resources" in line and "64 MiB" in line, line
    assert not signature.exists()


# -- deeply nested JSON -------------------------------------------------------------------------------


def _pae(payload_type: str, payload: bytes) -> bytes:
    # DSSE's pre-authentication encoding, written out here rather than taken from the code under test.
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def test_deep_json_in_a_signature_is_a_format_error(model: Path, tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    signature = tmp_path / "deep.sig"
    signature.write_text(DEEP)
    line = error_line(cli("verify", "key", model, "--public-key", keypair[1], "--signature", signature), 1)
    assert str(signature) in line and "deeper than 100 levels" in line, line


def test_deep_json_in_a_validly_signed_payload_is_a_format_error(
    model: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    priv, pub = keypair
    signature = tmp_path / "model.sig"
    signed = cli("sign", "key", model, "--private-key", priv, "--signature", signature)
    assert signed.returncode == 0, signed.stderr
    # Replace the statement with a deeply nested one and sign it again with the same key (by hand, with
    # cryptography): the signature is valid, only the payload it covers is malformed.
    doc = json.loads(signature.read_text())
    envelope = doc["dsseEnvelope"]
    payload = ('{"_type": "https://in-toto.io/Statement/v1", "subject": ' + DEEP + "]" * 100_000 + "}").encode()
    key = serialization.load_pem_private_key(priv.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    sig = key.sign(_pae(envelope["payloadType"], payload), ec.ECDSA(hashes.SHA256()))
    envelope["payload"] = base64.b64encode(payload).decode()
    envelope["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    signature.write_text(json.dumps(doc))
    line = error_line(cli("verify", "key", model, "--public-key", pub, "--signature", signature), 1)
    assert f"the signed payload of {signature}" in line and "deeper than 100 levels" in line, line


def test_deep_json_in_a_trust_config_is_a_format_error(model: Path, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    policy = ["--identity", EMAIL, "--identity-provider", "https://issuer.example", "--signature", tmp_path / "x.sig"]
    cases = [
        ["sign", "sigstore", model, "--trust-config", deep, "--identity-token", "not.a.token",
         "--signature", tmp_path / "new.sig"],
        ["verify", "sigstore", model, "--trust-config", deep, *policy],
        ["verify", "sigstore", model, "--trusted-root", deep, *policy],
    ]
    for args in cases:
        line = error_line(cli(*args), 1)
        assert str(deep) in line and "deeper than 100 levels" in line, line
    assert not (tmp_path / "new.sig").exists()

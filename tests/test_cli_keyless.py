"""CLI ``sign``/``verify`` keyless (``sigstore``, the default method) end to end, as a user runs them.

Every command runs ``python main.py ...`` in a subprocess (stdin closed, with a time limit) against one
local Sigstore instance per module, over 127.0.0.1, with the unmodified sigstore client.  Checked: exit
codes (0 verified, 1 bad input, 2 signature invalid, 3 model mismatch), and that every failure other
than a mismatch report is ONE stderr line starting with ``error:`` that names the problem -- never a
traceback.  Expected digests are computed here with hashlib.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

import model_signing as ms
from model_signing.sigstore_local import LocalSigstore

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "alice@example.com"
FILES = {
    "config.json": b'{"layers": 2}\n',
    "weights/w.bin": bytes(range(256)) * 3,
    "weights/empty": b"",
}
REPOSITORY = "octo-org/models"
REF = "refs/tags/v1.0"
WORKFLOW = ".github/workflows/sign.yml"
# The URI SAN GitHub-workflow certificates carry (Fulcio's format), written out rather than derived.
WORKFLOW_IDENTITY = f"https://github.com/{REPOSITORY}/{WORKFLOW}@{REF}"

# An audit hook that refuses every socket connection and name lookup (loopback included), installed as a
# sitecustomize module so that it is armed in every Python process a command starts (the Sigstore helper
# too, which a fork inherits it in), each recording its pid: a command that succeeds under it provably used
# no network.
NO_NETWORK = """import os, sys
def refuse(event, args):
    if event in ("socket.connect", "socket.getaddrinfo"):
        raise RuntimeError(f"network access attempted: {event} {args!r}")
sys.addaudithook(refuse)
def record():
    with open(os.environ["NO_NETWORK_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
record()
os.register_at_fork(after_in_child=record)  # a forked process (the CLI's helper) inherits the hook
"""
_HOOK_DIR = Path(tempfile.mkdtemp(prefix="no-network-"))
(_HOOK_DIR / "sitecustomize.py").write_text(NO_NETWORK)

# Variables through which a CI provider or a token could reach the signer; removed so that only what
# a test sets explicitly is ambient.
_AMBIENT_PREFIXES = ("GITHUB_", "ACTIONS_", "SIGSTORE_", "GITLAB_", "CI_", "BUILDKITE", "CIRCLECI", "GOOGLE_")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT_PREFIXES) and k != "CI"}
    env.update(extra)
    return env


def cli(*args: object, env: dict[str, str] | None = None, offline: bool = False) -> subprocess.CompletedProcess[str]:
    env = env if env is not None else clean_env()
    if offline:
        log = _HOOK_DIR / f"armed-{time.monotonic_ns()}"
        env = {**env, "PYTHONPATH": str(_HOOK_DIR), "NO_NETWORK_LOG": str(log)}
    proc = subprocess.run(
        [sys.executable, "main.py", *(str(a) for a in args)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,  # nothing can answer a prompt: a command that waits for one fails the test
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if offline:
        # The CLI and its Sigstore helper (forked, or a new interpreter), and any hashing worker: the hook
        # was armed in each.
        armed = set(log.read_text().split())
        assert len(armed) >= 2, armed
    return proc


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The one ``error:`` line of a failed command with exit ``code``."""
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def root_digest(files: dict[str, bytes]) -> str:
    """The OMS subject digest: SHA-256 over the raw file digests in name order (files serialization)."""
    return hashlib.sha256(b"".join(hashlib.sha256(files[n]).digest() for n in sorted(files))).hexdigest()


def write_model(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


# -- one local instance and one signed model per module ----------------------------------------------


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


@dataclass(frozen=True)
class Signed:
    model: Path
    signature: Path
    sign: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def signed(inst: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    """The model signed with the seed's form, ``sign --path MODEL`` (signature beside it, ``model.sig``)."""
    model = write_model(tmp_path_factory.mktemp("signed") / "model")
    proc = cli("sign", "--path", model, "--trust-config", inst.trust_config_path,
               "--identity-token", inst.mint_token(EMAIL), "--max-workers", 1)
    return Signed(model, model.parent / "model.sig", proc)


def verify_args(inst: LocalSigstore, model: Path, signature: Path, *extra: object) -> list[object]:
    return ["verify", "sigstore", model, "--trust-config", inst.trust_config_path,
            "--identity", EMAIL, "--identity-provider", inst.oidc_issuer, "--signature", signature, "-q", *extra]


def edited(signature: Path, dest: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads(signature.read_text())
    edit(doc)
    dest.write_text(json.dumps(doc))
    return dest


def flip_b64(value: str, index: int = -1) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def tlog(doc: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = doc["verificationMaterial"]["tlogEntries"][0]
    return entry


def statement(doc: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    return decoded


# -- sign and verify ----------------------------------------------------------------------------------


def test_seed_sign_form_writes_a_keyless_bundle_beside_the_model(signed: Signed) -> None:
    ok(signed.sign)
    assert signed.sign.stderr == ""
    assert f"root digest sha256:{root_digest(FILES)}" in signed.sign.stdout
    assert f"signature written to {signed.signature}" in signed.sign.stdout
    assert EMAIL in signed.sign.stdout
    doc = json.loads(signed.signature.read_text())
    cert = x509.load_der_x509_certificate(base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"]))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [EMAIL]
    assert tlog(doc)["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
    assert doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    resources = {r["name"]: r["digest"] for r in statement(doc)["predicate"]["resources"]}
    assert resources == {name: sha256_hex(data) for name, data in FILES.items()}
    assert statement(doc)["subject"][0]["digest"] == {"sha256": root_digest(FILES)}


def test_verify_json_names_the_signer(inst: LocalSigstore, signed: Signed) -> None:
    proc = ok(cli(*verify_args(inst, signed.model, signed.signature, "--json")))
    result = json.loads(proc.stdout)
    assert result["verified"] is True
    assert result["method"] == "sigstore"
    assert EMAIL in result["signer"] and inst.oidc_issuer in result["signer"]
    assert result["root_digest"] == root_digest(FILES)
    assert result["resource_count"] == len(FILES)
    assert {r["name"]: r["digest"] for r in result["resources"]} == {n: sha256_hex(d) for n, d in FILES.items()}
    # The signer as fields: the verified certificate's SAN identity and OIDC issuer.
    identity = result["signer_identity"]
    assert (identity["method"], identity["identity"], identity["issuer"]) == ("sigstore", EMAIL, inst.oidc_issuer)
    assert identity["identities"] == [EMAIL] and identity["key_id"] is None


def test_seed_verify_form_with_the_default_signature(inst: LocalSigstore, signed: Signed) -> None:
    proc = ok(cli("verify", "--path", signed.model, "--identity-provider", inst.oidc_issuer, "--identity", EMAIL,
                  "--trust-config", inst.trust_config_path))
    assert f"verified {signed.model} against {signed.signature}" in proc.stdout
    assert f"signed by {EMAIL} via {inst.oidc_issuer}" in proc.stdout


def test_cosign_style_aliases(inst: LocalSigstore, signed: Signed) -> None:
    ok(cli("verify", "sigstore", signed.model, "--cert-identity", EMAIL, "--cert-oidc-issuer", inst.oidc_issuer,
           "--trust-config", inst.trust_config_path, "--signature", signed.signature, "-q"))


def test_matching_identity_regexp(inst: LocalSigstore, signed: Signed) -> None:
    ok(cli("verify", signed.model, "--identity-regexp", r"[a-z]+@example\.com", "--identity-provider",
           inst.oidc_issuer, "--trust-config", inst.trust_config_path, "--signature", signed.signature, "-q"))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (["--identity", "mallory@example.com", "--identity-provider", None], "SANs do not match"),
        (["--identity", EMAIL, "--identity-provider", "https://accounts.example.com"], "OIDCIssuer does not match"),
        (["--identity-regexp", r"alice@example\.org", "--identity-provider", None], "no certificate identity matches"),
        # A regexp must match the whole identity, not a part of it.
        (["--identity-regexp", "alice", "--identity-provider", None], "no certificate identity matches"),
    ],
    ids=["wrong-identity", "wrong-issuer", "regexp-mismatch", "regexp-partial"],
)
def test_wrong_signer_exits_2(inst: LocalSigstore, signed: Signed, policy: list[str | None], message: str) -> None:
    args = [inst.oidc_issuer if a is None else a for a in policy]
    proc = cli("verify", "sigstore", signed.model, *args, "--trust-config", inst.trust_config_path,
               "--signature", signed.signature, "-q", "--json")
    line = error_line(proc, 2)
    assert str(signed.signature) in line and message in line
    # --json reports the failure on stdout too.
    result = json.loads(proc.stdout)
    assert (result["verified"], result["exit_code"]) == (False, 2) and message in result["error"]


def test_policy_arguments_are_checked(inst: LocalSigstore, signed: Signed) -> None:
    both = cli("verify", signed.model, "--identity", EMAIL, "--identity-regexp", ".*", "--identity-provider",
               inst.oidc_issuer, "--trust-config", inst.trust_config_path, "--signature", signed.signature)
    assert "exactly one of --identity and --identity-regexp" in error_line(both, 1)
    no_issuer = cli("verify", signed.model, "--identity", EMAIL, "--trust-config", inst.trust_config_path,
                    "--signature", signed.signature)
    assert "--identity-provider is required" in error_line(no_issuer, 1)


# -- tampering ----------------------------------------------------------------------------------------


def test_tampered_model_exits_3_with_the_digests(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    model = shutil.copytree(signed.model, tmp_path / "model")
    changed = bytearray(FILES["weights/w.bin"])
    changed[300] ^= 0xFF
    (model / "weights" / "w.bin").write_bytes(bytes(changed))
    proc = cli("verify", "sigstore", model, "--identity", EMAIL, "--identity-provider", inst.oidc_issuer,
               "--trust-config", inst.trust_config_path, "--signature", signed.signature)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "error: the model does not match its signature: 1 difference"
    assert lines[1:] == [
        f"  modified: weights/w.bin expected {sha256_hex(FILES['weights/w.bin'])} actual {sha256_hex(bytes(changed))}"
    ]


def _tampered_payload(doc: dict[str, Any]) -> None:
    st = statement(doc)
    st["predicate"]["resources"][0]["digest"] = sha256_hex(b"something else")
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()


def _tampered_signature(doc: dict[str, Any]) -> None:
    sig = doc["dsseEnvelope"]["signatures"][0]
    sig["sig"] = flip_b64(sig["sig"], -5)


def _corrupt_set(doc: dict[str, Any]) -> None:
    promise = tlog(doc)["inclusionPromise"]
    promise["signedEntryTimestamp"] = flip_b64(promise["signedEntryTimestamp"], 10)


def _corrupt_checkpoint(doc: dict[str, Any]) -> None:
    checkpoint = tlog(doc)["inclusionProof"]["checkpoint"]
    note, _, signature_line = checkpoint["envelope"].partition("\n\n")
    dash, name, signature = signature_line.rstrip("\n").split(" ")
    # Keep the 4-byte key hint, so the client finds the log key, and break the signature after it.
    checkpoint["envelope"] = f"{note}\n\n{dash} {name} {flip_b64(signature, 12)}\n"


def _corrupt_root_hash(doc: dict[str, Any]) -> None:
    proof = tlog(doc)["inclusionProof"]
    proof["rootHash"] = flip_b64(proof["rootHash"], 0)


def _corrupt_log_body(doc: dict[str, Any]) -> None:
    # The logged entry no longer hashes to the leaf the inclusion proof is about.
    tlog(doc)["canonicalizedBody"] = flip_b64(tlog(doc)["canonicalizedBody"], 30)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_tampered_payload, "DSSE: invalid signature"),
        (_tampered_signature, "DSSE: invalid signature"),
        (_corrupt_set, "SET: invalid inclusion promise"),
        (_corrupt_checkpoint, "checkpoint: invalid signature"),
        (_corrupt_root_hash, "inclusion proof contains invalid root hash"),
        (_corrupt_log_body, "invalid log entry"),
    ],
    ids=["envelope-payload", "envelope-signature", "set", "checkpoint", "inclusion-root-hash", "log-entry-body"],
)
def test_tampered_bundle_exits_2(
    inst: LocalSigstore, signed: Signed, tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    bad = edited(signed.signature, tmp_path / "bad.sig", edit)
    line = error_line(cli(*verify_args(inst, signed.model, bad)), 2)
    assert f"{bad} does not verify" in line and message in line


@pytest.fixture(scope="module")
def later(inst: LocalSigstore, signed: Signed, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    """A second signature of the model, so its log entry has a non-empty inclusion proof (audit path)."""
    signature = tmp_path_factory.mktemp("later") / "model.sig"
    signer = ms.SigstoreSigner(trust_config=inst.trust_config_path,
                               token_source=ms.TokenSource(identity_token=inst.mint_token(EMAIL)))
    ms.sign(signed.model, signer, signature_path=signature, hashing=ms.HashingConfig(max_workers=1, progress=False))
    return Signed(signed.model, signature, signed.sign)


def test_corrupted_inclusion_proof_hashes_exit_2(inst: LocalSigstore, later: Signed, tmp_path: Path) -> None:
    assert tlog(json.loads(later.signature.read_text()))["inclusionProof"]["hashes"]
    ok(cli(*verify_args(inst, later.model, later.signature)))

    def corrupt(doc: dict[str, Any]) -> None:
        proof = tlog(doc)["inclusionProof"]
        proof["hashes"][0] = flip_b64(proof["hashes"][0], 0)

    bad = edited(later.signature, tmp_path / "bad.sig", corrupt)
    line = error_line(cli(*verify_args(inst, later.model, bad)), 2)
    assert "inclusion proof contains invalid root hash" in line
    assert len(line) < 500  # the reason, not sigstore's repr of the whole checkpoint


def test_timestamp_is_verified_when_it_is_the_only_time_source(
    inst: LocalSigstore, signed: Signed, tmp_path: Path
) -> None:
    # A broken timestamp would go unnoticed beside a valid SET, so drop the SET: the TSA's timestamp then
    # establishes the time alone...
    no_set = edited(signed.signature, tmp_path / "no-set.sig", lambda doc: tlog(doc).pop("inclusionPromise"))
    ok(cli(*verify_args(inst, signed.model, no_set)))

    def corrupt(doc: dict[str, Any]) -> None:
        tlog(doc).pop("inclusionPromise")
        stamp = doc["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
        # The last bytes are the TSA's ECDSA signature: still parseable, no longer valid.
        stamp["signedTimestamp"] = flip_b64(stamp["signedTimestamp"], -3)

    # ...and once it is broken too, nothing vouches for the signing time.
    bad = edited(signed.signature, tmp_path / "bad-tsa.sig", corrupt)
    assert "verified time" in error_line(cli(*verify_args(inst, signed.model, bad)), 2)


def test_bundle_and_token_from_another_instance(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.sig"
    with LocalSigstore() as other:
        signer = ms.SigstoreSigner(trust_config=other.trust_config_path,
                                   token_source=ms.TokenSource(identity_token=other.mint_token(EMAIL)))
        ms.sign(signed.model, signer, signature_path=foreign, hashing=ms.HashingConfig(max_workers=1, progress=False))
        ok(cli("verify", signed.model, "--identity", EMAIL, "--identity-provider", other.oidc_issuer,
               "--trust-config", other.trust_config_path, "--signature", foreign, "-q"))
        # The other instance's certificate does not chain to this instance's trusted root.
        line = error_line(cli("verify", signed.model, "--identity", EMAIL, "--identity-provider", other.oidc_issuer,
                              "--trust-config", inst.trust_config_path, "--signature", foreign, "-q"), 2)
        assert f"{foreign} does not verify" in line
        assert (f"the signing certificate was not issued by the trusted root in use (--trust-config "
                f"{inst.trust_config_path}); pass the --trust-config of the instance that signed it") in line
        # This instance's CA refuses a token the other instance's issuer signed.
        refused = cli("sign", signed.model, "--trust-config", inst.trust_config_path,
                      "--identity-token", other.mint_token(EMAIL), "--signature", tmp_path / "x.sig")
        line = error_line(refused, 1)
        assert "the Fulcio CA refused the request (HTTP 401" in line and "not valid for this issuer" in line
        assert not (tmp_path / "x.sig").exists()


# -- offline verification ------------------------------------------------------------------------------


def test_the_no_network_hook_catches_loopback(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    # Signing needs the (local) services: under the hook it must fail, so the hook is effective.
    proc = cli("sign", signed.model, "--trust-config", inst.trust_config_path,
               "--identity-token", inst.mint_token(EMAIL), "--signature", tmp_path / "x.sig", offline=True)
    assert "network access attempted" in error_line(proc, 1)


def test_offline_with_a_trust_config(inst: LocalSigstore, signed: Signed) -> None:
    ok(cli(*verify_args(inst, signed.model, signed.signature, "--offline"), offline=True))


def test_offline_with_a_trusted_root(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps(json.loads(inst.trust_config_path.read_text())["trustedRoot"]))
    proc = ok(cli("verify", "sigstore", signed.model, "--offline", "--trusted-root", root, "--identity", EMAIL,
                  "--identity-provider", inst.oidc_issuer, "--signature", signed.signature, "--json", offline=True))
    assert json.loads(proc.stdout)["verified"] is True


def test_offline_without_a_root_uses_the_embedded_public_good_root(inst: LocalSigstore, signed: Signed) -> None:
    proc = cli("verify", "sigstore", signed.model, "--offline", "--identity", EMAIL, "--identity-provider",
               inst.oidc_issuer, "--signature", signed.signature, "-q", offline=True)
    # Rejected for trust (our local chains are not in the public-good root), not for lack of a network,
    # with what to do instead of sigstore's "candidates exhausted".
    line = error_line(proc, 2)
    assert line.endswith(
        "the signing certificate was not issued by the trusted root in use (public-good); pass the "
        "--trust-config of the instance that signed it"
    ), line
    assert "candidates exhausted" not in line
    assert "network" not in line and "TUF" not in line


# -- identity sources ----------------------------------------------------------------------------------


def test_ambient_github_actions_credentials(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    env = clean_env(**inst.github_actions_env(REPOSITORY, ref=REF, workflow=WORKFLOW))
    signature = tmp_path / "ci.sig"
    proc = ok(cli("sign", signed.model, "--trust-config", inst.trust_config_path, "--signature", signature,
                  "--json", env=env))
    result = json.loads(proc.stdout)
    assert result["signer"] == f"{WORKFLOW_IDENTITY} via {inst.oidc_issuer}"
    # sign --json has the signer as fields too: the certificate's SAN (the workflow URI), not the token's sub.
    identity = result["signer_identity"]
    assert (identity["method"], identity["identity"], identity["issuer"]) == (
        "sigstore", WORKFLOW_IDENTITY, inst.oidc_issuer
    )
    doc = json.loads(signature.read_text())
    cert = x509.load_der_x509_certificate(base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"]))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [WORKFLOW_IDENTITY]

    common = ["verify", signed.model, "--identity", WORKFLOW_IDENTITY, "--identity-provider", inst.oidc_issuer,
              "--trust-config", inst.trust_config_path, "--signature", signature, "-q", "--ref", REF]
    ok(cli(*common, "--repository", REPOSITORY, "--workflow-trigger", "push"))
    line = error_line(cli(*common, "--repository", "octo-org/other"), 2)
    assert "GitHubWorkflowRepository does not match" in line


def test_github_actions_without_the_id_token_permission(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    # A workflow without `permissions: id-token: write` has GITHUB_ACTIONS but no token request variables.
    proc = cli("sign", signed.model, "--trust-config", inst.trust_config_path, "--signature", tmp_path / "x.sig",
               env=clean_env(GITHUB_ACTIONS="true"))
    line = error_line(proc, 1)
    assert "ambient CI credential detection failed" in line and "ACTIONS_ID_TOKEN_REQUEST_TOKEN" in line
    assert "--identity-token" in line
    assert not (tmp_path / "x.sig").exists()


def test_no_token_and_no_terminal_fails_fast(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    # Ambient credentials are there but disabled; nothing can answer the browser or code prompt.
    env = clean_env(**inst.github_actions_env(REPOSITORY))
    signature = tmp_path / "x.sig"
    proc = cli("sign", signed.model, "--trust-config", inst.trust_config_path, "--oidc-disable-ambient-providers",
               "--signature", signature, env=env)
    line = error_line(proc, 1)
    assert "no identity token" in line and "--identity-token" in line and "ambient CI credentials are disabled" in line
    assert proc.stdout == ""  # no verification-code prompt
    assert not signature.exists()
    # Without the flag and without CI variables, the same.
    proc = cli("sign", signed.model, "--trust-config", inst.trust_config_path, "--oauth-force-oob",
               "--signature", signature)
    assert "no terminal" in error_line(proc, 1)
    assert not signature.exists()


def test_with_a_terminal_the_out_of_band_flow_runs(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    # stdin and stdout on a pseudo-terminal: the flow prints the link, reads the code typed in, and the
    # issuer's refusal of a wrong code ends it with one clear error.
    master, slave = pty.openpty()
    signature = tmp_path / "x.sig"
    proc = subprocess.Popen(
        [sys.executable, "main.py", "sign", str(signed.model), "--trust-config", str(inst.trust_config_path),
         "--oauth-force-oob", "--signature", str(signature)],
        cwd=ROOT, env=clean_env(), stdin=slave, stdout=slave, stderr=subprocess.PIPE,
    )
    os.close(slave)
    try:
        assert proc.stderr is not None
        prompt = b""
        deadline = time.monotonic() + 60
        while b"Enter verification code" not in prompt and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stderr], [], [], 0.2)[0]:
                prompt += os.read(proc.stderr.fileno(), 4096)
        assert f"{inst.oidc_issuer}/auth?".encode() in prompt, prompt
        os.write(master, b"not-the-code\n")
        rest = proc.stderr.read()
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    errors = [line for line in (prompt + rest).decode().splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].endswith(
        f"error: interactive sign-in with {inst.oidc_issuer} failed (IdentityError: Token request failed with 400); "
        "try again, or pass --identity-token"
    ), prompt + rest
    assert b"Traceback" not in rest
    assert not signature.exists()


def _expired(inst: LocalSigstore) -> str:
    now = int(time.time())
    return inst.mint_token(EMAIL, extra_claims={"iat": now - 1200, "nbf": now - 1200, "exp": now - 600})


def test_expired_token_fails_before_the_model_is_read(inst: LocalSigstore, tmp_path: Path) -> None:
    # The model holds a FIFO, which hashing refuses: the token is checked first, before any hashing (only the
    # model's existence and the signature's destination, as cheap, are checked before it).
    model = write_model(tmp_path / "model")
    os.mkfifo(model / "pipe")
    proc = cli("sign", model, "--trust-config", inst.trust_config_path, "--identity-token", _expired(inst))
    line = error_line(proc, 1)
    assert "identity token from --identity-token is unusable: it expired at" in line
    assert "FIFO" not in line


def test_wrong_audience_token(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    proc = cli("sign", signed.model, "--trust-config", inst.trust_config_path,
               "--identity-token", inst.mint_token(EMAIL, audience="not-sigstore"), "--signature", tmp_path / "x.sig")
    assert "its audience is 'not-sigstore', not 'sigstore'" in error_line(proc, 1)
    assert not (tmp_path / "x.sig").exists()


def test_token_from_the_environment(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    signature = tmp_path / "env.sig"
    env = clean_env(SIGSTORE_IDENTITY_TOKEN=inst.mint_token("bob@example.com"))
    ok(cli("sign", signed.model, "--trust-config", inst.trust_config_path, "--signature", signature, "-q", env=env))
    ok(cli("verify", signed.model, "--identity", "bob@example.com", "--identity-provider", inst.oidc_issuer,
           "--trust-config", inst.trust_config_path, "--signature", signature, "-q"))
    stale = clean_env(SIGSTORE_IDENTITY_TOKEN=_expired(inst))
    proc = cli("sign", signed.model, "--trust-config", inst.trust_config_path, "--signature", tmp_path / "y.sig",
               env=stale)
    assert "identity token from SIGSTORE_IDENTITY_TOKEN is unusable: it expired" in error_line(proc, 1)

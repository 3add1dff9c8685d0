"""The Sigstore helper process and the overlap of signature work with hashing.

Everything runs for real: the unmodified sigstore client in the helper, against the local instance.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import model_signing as ms
from model_signing.errors import FileChangedError, ModelPathError, VerificationError
from model_signing.methods.sigstore import service as _sigstore_service
from model_signing.oms.bundle import SignatureBundle
from model_signing.sigstore_local import LocalSigstore
from model_signing.verifying import VerifiedSignature

ROOT = Path(__file__).resolve().parents[1]
EMAIL = "alice@example.com"


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


def _model(root: Path, size: int = 64 * 1024) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_bytes(b'{"n": 1}\n')
    (root / "weights.bin").write_bytes(hashlib.sha256(b"seed").digest() * (size // 32))
    return root


def _signed(inst: LocalSigstore, tmp_path: Path) -> tuple[Path, Path]:
    model = _model(tmp_path / "model")
    signature = tmp_path / "model.sig"
    signer = ms.SigstoreSigner(trust_config=inst.trust_config_path,
                               token_source=ms.TokenSource(identity_token=inst.mint_token(EMAIL)))
    ms.sign(model, signer, signature_path=signature, hashing=ms.HashingConfig(progress=False))
    return model, signature


def _verifier(inst: LocalSigstore, identity: str = EMAIL) -> ms.SigstoreVerifier:
    return ms.SigstoreVerifier(ms.IdentityPolicy(identity=identity, issuer=inst.oidc_issuer),
                               trust_config=inst.trust_config_path)


def _children() -> set[int]:
    """Live (non-zombie) child processes of this test process."""
    pids = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def test_a_bad_signature_outranks_a_model_that_cannot_be_hashed(inst: LocalSigstore, tmp_path: Path) -> None:
    model, signature = _signed(inst, tmp_path)
    os.mkfifo(model / "pipe")  # refused while hashing: exit 1 on its own
    with pytest.raises(ModelPathError, match="FIFO"):
        ms.verify(model, _verifier(inst), signature_path=signature)
    # The signature check runs while the model is hashed, but its verdict is reported first.
    with pytest.raises(VerificationError, match="does not verify for"):
        ms.verify(model, _verifier(inst, "mallory@example.com"), signature_path=signature)


def test_a_failed_signature_check_stops_hashing(inst: LocalSigstore, tmp_path: Path) -> None:
    model, signature = _signed(inst, tmp_path)
    before = _children()
    calls: list[int] = []
    verifier = _verifier(inst, "mallory@example.com")
    bundle_check = verifier.verify_in_background

    # Count how often hashing asked whether to go on; it must stop once the verdict (a failure) is known.
    def counting(bundle: SignatureBundle) -> _sigstore_service.Pending[VerifiedSignature]:
        pending = bundle_check(bundle)
        check = pending.raise_if_failed

        def counted() -> None:
            calls.append(1)
            check()

        pending.raise_if_failed = counted  # type: ignore[method-assign]
        return pending

    verifier.verify_in_background = counting  # type: ignore[method-assign]
    with pytest.raises(VerificationError):
        ms.verify(model, verifier, signature_path=signature, max_workers=2)
    assert calls, "hashing never polled the signature check"
    assert _children() <= before  # no hashing worker left behind (the helper may stay)


def test_poll_stops_hashing_in_process_and_in_workers(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    for i in range(4):
        (model / f"w{i}.bin").write_bytes(os.urandom(3 << 20))
    before = _children()
    for workers in (1, 2):
        seen: list[int] = []

        def poll(seen: list[int] = seen) -> None:
            seen.append(1)
            if len(seen) >= 2:
                raise FileChangedError("stop here")

        with pytest.raises(FileChangedError, match="stop here"):
            ms.hash_model(model, ms.HashingConfig(max_workers=workers, progress=False), poll=poll)
        assert len(seen) == 2
        assert _children() <= before


def test_the_statement_used_must_be_the_verified_payload(tmp_path: Path) -> None:
    # A (third-party) background verifier that returns another payload than the bundle's: refused, so
    # no model is ever compared against settings that were not signed.
    public = tmp_path / "k.pub"
    private = tmp_path / "k.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    model = _model(tmp_path / "model")
    ms.sign(model, ms.KeySigner(private), signature_path=tmp_path / "m.sig", hashing=ms.HashingConfig(progress=False))
    real = ms.KeyVerifier(public)

    class Done:
        def __init__(self, value: VerifiedSignature) -> None:
            self.value = value

        def raise_if_failed(self) -> None:
            pass

        def result(self) -> VerifiedSignature:
            return self.value

    class Swapping:
        method = "key"
        description = "swapping"

        def verify(self, bundle: SignatureBundle) -> VerifiedSignature:
            return real.verify(bundle)

        def verify_in_background(self, bundle: SignatureBundle) -> Done:
            verified = real.verify(bundle)
            doc = json.loads(verified.payload)
            doc["predicate"]["serialization"]["ignore_paths"] = ["weights.bin"]
            return Done(VerifiedSignature(json.dumps(doc).encode(), verified.signer))

    ms.verify(model, real, signature_path=tmp_path / "m.sig")
    with pytest.raises(VerificationError, match="payload other than the bundle's"):
        ms.verify(model, Swapping(), signature_path=tmp_path / "m.sig")
    # Also when hashing fails before the verdict: the error met under the bundle's (unsigned) statement
    # is outranked by the verdict, which is that the signature does not cover that statement.
    os.mkfifo(model / "pipe")
    with pytest.raises(ModelPathError, match="FIFO"):
        ms.verify(model, real, signature_path=tmp_path / "m.sig")
    with pytest.raises(VerificationError, match="payload other than the bundle's"):
        ms.verify(model, Swapping(), signature_path=tmp_path / "m.sig")


def _run(args: list[object], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SIGSTORE_", "GITHUB_", "ACTIONS_"))}
    return subprocess.run([sys.executable, ROOT / "main.py", *map(str, args)], cwd=cwd, env={**base, **(env or {})},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)


def test_the_helper_ignores_modules_in_the_current_directory(inst: LocalSigstore, tmp_path: Path) -> None:
    # Models (a PyTorch Hub repo, say) hold .py files; run from inside one, nothing of it may be imported.
    model = _model(tmp_path / "repo")
    marker = tmp_path / "imported"
    for name in ("requests", "jwt", "pydantic", "cryptography"):
        (model / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name}\\n')\n")
    signature = tmp_path / "repo.sig"
    proc = _run(["sign", ".", "--trust-config", inst.trust_config_path, "--identity-token", inst.mint_token(EMAIL),
                 "--signature", signature, "-q"], cwd=model)
    assert proc.returncode == 0, proc.stderr
    proc = _run(["verify", ".", "--trust-config", inst.trust_config_path, "--identity", EMAIL,
                 "--identity-provider", inst.oidc_issuer, "--signature", signature, "-q"], cwd=model)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists(), marker.read_text()


def test_a_broken_sigstore_install_is_one_line(inst: LocalSigstore, tmp_path: Path) -> None:
    model, signature = _signed(inst, tmp_path)
    shadow = tmp_path / "shadow" / "sigstore"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('this sigstore is broken')\n")
    proc = _run(["verify", model, "--trust-config", inst.trust_config_path, "--identity", EMAIL,
                 "--identity-provider", inst.oidc_issuer, "--signature", signature],
                cwd=tmp_path, env={"PYTHONPATH": str(shadow.parent)})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: cannot load the Sigstore client (ImportError: this sigstore is broken); reinstall modelseal"
    ]


def test_the_helper_exits_with_its_parent(tmp_path: Path) -> None:
    # The parent vanishes without closing anything: the helper sees its request pipe close and exits.
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[1]);"
        "from model_signing.methods.sigstore import service as s; svc = s.shared();"
        "print(svc._proc.pid, flush=True); os._exit(0)"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=60,
                          check=True)
    pid = int(proc.stdout)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
        if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
            break
        time.sleep(0.05)
    alive = Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    assert not alive


def test_one_helper_serves_many_requests_and_threads(inst: LocalSigstore, tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    model, signature = _signed(inst, tmp_path)
    service = _sigstore_service.shared()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ms.verify(model, _verifier(inst), signature_path=signature,
                                                    max_workers=1).signer, range(8)))
    assert results == [f"{EMAIL} via {inst.oidc_issuer} (Sigstore certificate)"] * 8
    assert _sigstore_service.shared() is service


def test_a_forked_child_gets_its_own_helper(inst: LocalSigstore, tmp_path: Path) -> None:
    # multiprocessing's fork start method copies the parent's helper object: the child must not talk on
    # (and corrupt) the parent's pipes, but start its own helper.
    model, signature = _signed(inst, tmp_path)
    parent_service = _sigstore_service.shared()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        verdict = b"E"
        try:
            own = _sigstore_service.shared()
            signer = ms.verify(model, _verifier(inst), signature_path=signature, max_workers=1).signer
            verdict = b"1" if own is not parent_service and signer.startswith(EMAIL) else b"0"
        finally:
            os.write(write_end, verdict)
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 1) == b"1"
    os.close(read_end)
    assert _sigstore_service.shared() is parent_service
    assert ms.verify(model, _verifier(inst), signature_path=signature, max_workers=1).signer.startswith(EMAIL)


def test_ctrl_c_while_the_helper_starts_does_not_reach_it() -> None:
    # A terminal's Ctrl-C reaches the whole process group, the helper included, possibly before its own
    # code runs: it must neither die nor print a traceback (the parent alone handles Ctrl-C).
    service = _sigstore_service.Service()
    try:
        os.kill(service._proc.pid, signal.SIGINT)  # at once: the helper is still starting its interpreter
        assert service.submit("forget_signer", 0).result() is None
    finally:
        service.close()
    assert service._proc.returncode == 0


def test_ctrl_c_while_the_cli_starts_is_exit_130_without_a_traceback(tmp_path: Path) -> None:
    # The CLI imports its modules after starting the helper; a Ctrl-C during those imports (simulated by
    # a module that raises KeyboardInterrupt on import) is still "interrupted", exit 130.
    shadow = tmp_path / "shadow" / "typer"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise KeyboardInterrupt\n")
    proc = _run(["verify", tmp_path, "--identity", EMAIL], cwd=tmp_path, env={"PYTHONPATH": str(shadow.parent)})
    assert proc.returncode == 130
    assert proc.stderr.splitlines() == ["error: interrupted"]


def test_closing_with_work_owed_stops_the_helper_at_once() -> None:
    # After Ctrl-C (or any error) nobody reads the helper's reply: it is killed rather than waited for,
    # which could take as long as a slow network request. With nothing owed it exits by itself.
    idle = _sigstore_service.Service()
    idle.close(timeout=60)  # it may still be importing sigstore: let it finish and exit on its own
    assert idle._proc.returncode == 0
    busy = _sigstore_service.Service()
    busy.submit("forget_signer", 12345)  # the helper is still importing sigstore: the reply is owed
    busy.close()
    assert busy._proc.returncode == -9


@pytest.mark.parametrize("how", ["fork", "threads", "env"])
def test_the_helper_is_forked_only_from_a_single_threaded_process(how: str) -> None:
    # Forked (no second interpreter start-up on a keyless command's critical path) from the CLI, which has
    # no other thread then; with a thread alive a fork could copy a held lock, so a new interpreter it is.
    script = (
        "import os, sys, threading, time; sys.path.insert(0, sys.argv[1])\n"
        "if sys.argv[2] == 'threads':\n"
        "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "from model_signing.methods.sigstore import service as s\n"
        "r, w = os.pipe()\n"
        "s.prestart(fork=True)\n"
        "os.close(w)\n"
        "import select; assert select.select([r], [], [], 10)[0] and os.read(r, 1) == b'', 'the helper kept w'\n"
        "svc = s.shared()\n"
        "for _ in range(100):  # a new interpreter's command line shows once its exec is through\n"
        "    argv = open(f'/proc/{svc._proc.pid}/cmdline', 'rb').read().split(b'\\0')\n"
        "    if argv[1:3] == [b'-P', b'-c'] or sys.argv[2] == 'fork': break\n"
        "    time.sleep(0.05)\n"
        "print(type(svc._proc).__name__, argv[1:3] == [b'-P', b'-c'])\n"
        "print(svc.submit('forget_signer', 0).result())\n"
        "svc.close()\n"
        "print(svc._proc.returncode)\n"
    )
    env = {**os.environ, "MODELSEAL_HELPER_SPAWN": "1" if how == "env" else "0"}
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT), how], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    kind, spawned = proc.stdout.splitlines()[0].split()
    assert (kind, spawned) == (("_Forked", "False") if how == "fork" else ("Popen", "True"))
    assert proc.stdout.splitlines()[1:] == ["None", "0"]


def test_a_library_caller_always_gets_a_new_interpreter(tmp_path: Path) -> None:
    # A library caller's process may hold threads and open files (a pipe's write end a fork would keep
    # open): helpers started on first use are spawned; only the CLI's prestart forks.
    script = ("import sys; sys.path.insert(0, sys.argv[1])\n"
              "from model_signing.methods.sigstore import service as s\n"
              "svc = s.shared(); print(type(svc._proc).__name__); svc.close()\n")
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=60,
                          check=True)
    assert proc.stdout.split() == ["Popen"]


def test_a_forked_helper_works_from_a_removed_working_directory(tmp_path: Path) -> None:
    # CI scratch directories vanish under running commands; the spawned helper never minded, nor may the fork.
    gone = tmp_path / "gone"
    gone.mkdir()
    script = ("import os, sys; sys.path.insert(0, sys.argv[1]); os.chdir(sys.argv[2]); os.rmdir(sys.argv[2])\n"
              "from model_signing.methods.sigstore import service as s\n"
              "s.prestart(fork=True); svc = s.shared()\n"
              "print(type(svc._proc).__name__, svc.submit('forget_signer', 0).result()); svc.close()\n")
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT), str(gone)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["_Forked", "None"]

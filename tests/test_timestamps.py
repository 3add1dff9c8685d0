"""RFC 3161 trusted timestamps (issue 12), against the local Sigstore instance's TSA over real HTTP.

* ``sign key|certificate --timestamp-authority URL`` (or ``--trust-config``) puts a timestamp over the DSSE
  signature into ``verificationMaterial.timestampVerificationData``; the bundle stays OMS-schema valid and
  model-signing 1.1.1 still verifies it;
* ``verify certificate`` with the TSA's trust material checks the chain at the timestamp's time: a
  certificate that expired after signing verifies with the timestamp, and not without it;
* a timestamp from another TSA, a corrupted token, a token over another signature, or a timestamp with
  no TSA trust material given is exit 2 naming it -- for key, certificate and keyless bundles;
* a TSA that cannot be reached, refuses, or does not answer is exit 1 with nothing written;
* ``inspect`` shows the time and the TSA.

Expected values are computed here: hashes with hashlib, TSA certificates read from the trust config.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from rfc3161_client import decode_timestamp_response

from benchmarks.peer import ensure_peer_venv, peer_cli
from model_signing.sigstore_local import LocalSigstore
from tests import _pki
from tests._cli import Run
from tests.test_oms_vectors import _validate

EMAIL = "tsa-tester@example.com"
TSA_SUBJECT = "CN=local timestamp authority,O=modelseal local Sigstore"
FAST = ("--max-workers", 1, "-q")


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


@pytest.fixture(scope="module")
def other() -> Iterator[LocalSigstore]:
    """A second instance: another TSA, with its own keys (and the same subject names)."""
    with LocalSigstore() as instance:
        yield instance


def _tsa_chain(instance: LocalSigstore) -> list[x509.Certificate]:
    doc = json.loads(instance.trust_config_path.read_text())
    [authority] = doc["trustedRoot"]["timestampAuthorities"]
    certs = authority["certChain"]["certificates"]
    return [x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"])) for c in certs]


def _chain_pem(instance: LocalSigstore, path: Path, *, root_only: bool = False) -> Path:
    chain = _tsa_chain(instance)
    return _pki.write_certs(path, *(chain[-1:] if root_only else chain))


def _tokens(sig: Path) -> list[bytes]:
    doc = json.loads(sig.read_text())
    stamps = doc["verificationMaterial"].get("timestampVerificationData", {}).get("rfc3161Timestamps", [])
    return [base64.b64decode(s["signedTimestamp"]) for s in stamps]


def _set_tokens(sig: Path, tokens: list[bytes] | None, out: Path | None = None) -> Path:
    doc = json.loads(sig.read_text())
    if tokens is None:
        doc["verificationMaterial"].pop("timestampVerificationData", None)
    else:
        doc["verificationMaterial"]["timestampVerificationData"] = {
            "rfc3161Timestamps": [{"signedTimestamp": base64.b64encode(t).decode()} for t in tokens]
        }
    target = out or sig
    target.write_text(json.dumps(doc))
    return target


def _dsse_signature(sig: Path) -> bytes:
    return base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["signatures"][0]["sig"])


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _sign_cert(run: Run, model: Path, pki: _pki.Pki, sig: Path, *extra: object) -> tuple[int, str, str]:
    return run("sign", "certificate", model, "--private-key", pki.key_pem, "--signing-certificate", pki.leaf_pem,
               "--certificate-chain", pki.chain_pem, "--certificate-chain", pki.root_pem, "--signature", sig, *FAST,
               *extra)


def _verify_cert(run: Run, model: Path, pki: _pki.Pki, sig: Path, *extra: object) -> tuple[int, str, str]:
    return run("verify", "certificate", model, "--certificate-chain", pki.root_pem, "--signature", sig, *FAST, *extra)


# --- certificates that outlive their validity -------------------------------------------------------


def test_expired_certificate_verifies_with_its_timestamp_and_not_without(
    run: Run, inst: LocalSigstore, small_model: Path, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=8)  # room to sign on a loaded machine; then it expires
    pki = _pki.Pki(tmp_path / "pki", leaf_kwargs={"not_before": now - dt.timedelta(hours=2), "not_after": expires})
    sig = tmp_path / "model.sig"
    code, out, err = _sign_cert(run, small_model, pki, sig, "--timestamp-authority", inst.tsa_url)
    assert (code, err) == (0, ""), err
    [token] = _tokens(sig)
    stamp = decode_timestamp_response(token)
    assert f"timestamped at {stamp.tst_info.gen_time:%Y-%m-%d %H:%M:%S} UTC (RFC 3161, by {TSA_SUBJECT})" in out
    # Over the DSSE signature bytes, with SHA-256 (what sigstore timestamps for keyless bundles).
    assert stamp.tst_info.message_imprint.message == hashlib.sha256(_dsse_signature(sig)).digest()
    assert stamp.tst_info.gen_time <= expires

    chain = _chain_pem(inst, tmp_path / "tsa.pem")
    code, out, err = _verify_cert(run, small_model, pki, sig, "--timestamp-certificate-chain", chain)
    assert (code, err) == (0, ""), err  # still valid: the timestamp is checked as well
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)
    assert dt.datetime.now(dt.UTC) > pki.leaf.not_valid_after_utc

    code, out, err = _verify_cert(run, small_model, pki, sig, "--timestamp-certificate-chain", chain)
    assert (code, err) == (0, ""), err
    assert f"signed at {stamp.tst_info.gen_time:%Y-%m-%d %H:%M:%S} UTC (RFC 3161 timestamp by {TSA_SUBJECT}" in out
    code, out, err = _verify_cert(run, small_model, pki, sig, "--trust-config", inst.trust_config_path, "--json")
    assert code == 0, err
    [doc_stamp] = json.loads(out)["timestamps"]
    assert dt.datetime.fromisoformat(doc_stamp["time"]) == stamp.tst_info.gen_time.replace(tzinfo=dt.UTC)
    assert doc_stamp["tsa"] == TSA_SUBJECT and doc_stamp["tsa_serial"] == f"{_tsa_chain(inst)[0].serial_number:x}"

    # The same bundle without its timestamp: checked now, and the certificate has expired.
    bare = _set_tokens(sig, None, tmp_path / "bare.sig")
    code, _, err = _verify_cert(run, small_model, pki, bare)
    assert code == 2
    line = _one_error(err)
    assert "CN=signer is not valid now: it expired on" in line and "carries no timestamp" in line
    assert "--timestamp-authority" in line  # the way to sign for signatures that outlive the certificate


def test_a_certificate_expired_before_the_timestamp_is_refused(
    run: Run, inst: LocalSigstore, small_model: Path, tmp_path: Path
) -> None:
    import model_signing as ms
    from model_signing.methods.timestamps import request_timestamp
    from model_signing.oms import bundle as _bundle
    from model_signing.oms.statement import statement_payload

    now = dt.datetime.now(dt.UTC)
    pki = _pki.Pki(tmp_path / "pki", leaf_kwargs={"not_before": now - dt.timedelta(days=3),
                                                   "not_after": now - dt.timedelta(days=1)})
    # The signer refuses an expired certificate; a forger is not so polite.
    payload = statement_payload(ms.hash_model(small_model, ms.HashingConfig(max_workers=1, progress=False)))
    signature = pki.leaf_key.sign(_bundle.pae(payload), ec.ECDSA(hashes.SHA256()))
    token = request_timestamp(inst.tsa_url, signature, timeout=10)
    sig = tmp_path / "model.sig"
    material = _bundle.certificate_material([pki.leaf, pki.inter])
    sig.write_text(_bundle.bundle_json(_bundle.assemble(payload, signature, material, timestamps=[token])))
    code, _, err = _verify_cert(run, small_model, pki, sig, "--trust-config", inst.trust_config_path)
    assert code == 2
    line = _one_error(err)
    assert "CN=signer was not valid when the signature was timestamped" in line and "it expired on" in line


# --- key bundles: the signing time ------------------------------------------------------------------


def test_key_bundle_reports_its_signing_time(
    run: Run, inst: LocalSigstore, small_model: Path, tmp_path: Path, ec_keypair: Any
) -> None:
    priv, pub = ec_keypair()
    sig = tmp_path / "model.sig"
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # The TSA of the trust config's signing config.
    code, _, err = run("sign", "key", small_model, "--private-key", priv, "--signature", sig, *FAST,
                       "--trust-config", inst.trust_config_path)
    assert (code, err) == (0, ""), err
    [token] = _tokens(sig)
    assert decode_timestamp_response(token).tst_info.message_imprint.message == hashlib.sha256(
        _dsse_signature(sig)).digest()
    _validate(sig.read_bytes())

    code, out, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, *FAST,
                         "--trust-config", inst.trust_config_path, "--json")
    assert code == 0, err
    [stamp] = json.loads(out)["timestamps"]
    # The local TSA stamps with its own clock: within a minute of ours.
    assert abs(dt.datetime.fromisoformat(stamp["time"]) - before) < dt.timedelta(minutes=1)
    assert stamp["tsa"] == TSA_SUBJECT
    code, out, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, *FAST,
                         "--timestamp-certificate-chain", _chain_pem(inst, tmp_path / "tsa.pem"))
    assert code == 0, err
    assert "signed at " in out and f"RFC 3161 timestamp by {TSA_SUBJECT}" in out

    # Present but nothing to check it with: fail closed, saying what to pass.
    code, _, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, *FAST)
    assert code == 2
    line = _one_error(err)
    assert "carries an RFC 3161 timestamp but no timestamp authority is trusted" in line
    assert "--timestamp-certificate-chain" in line and "--trusted-root" in line and "--trust-config" in line
    # The trusted root alone (the trust config's trustedRoot) works too; a chain of the root only as well.
    root = tmp_path / "trusted_root.json"
    root.write_text(json.dumps(json.loads(inst.trust_config_path.read_text())["trustedRoot"]))
    for option in (("--trusted-root", root),
                   ("--timestamp-certificate-chain", _chain_pem(inst, tmp_path / "root.pem", root_only=True))):
        code, _, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, *FAST, *option)
        assert code == 0, (option, err)
    code, _, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, *FAST,
                       "--trusted-root", root, "--trust-config", inst.trust_config_path)
    assert code == 1 and "--trusted-root and --trust-config are exclusive" in _one_error(err)
    # A trusted root entry vouches only for timestamps inside its validFor.
    doc = json.loads(root.read_text())
    doc["timestampAuthorities"][0]["validFor"]["end"] = (before - dt.timedelta(minutes=2)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    retired = tmp_path / "retired_root.json"
    retired.write_text(json.dumps(doc))
    code, _, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, *FAST,
                       "--trusted-root", retired)
    assert code == 2 and "is not trusted for timestamps made at" in _one_error(err)
    # validFor times written without an offset are UTC (protobuf JSON), never a crash comparing them.
    for end, expected in (((before - dt.timedelta(minutes=2)), 2), ((before + dt.timedelta(days=1)), 0)):
        doc["timestampAuthorities"][0]["validFor"] = {"start": "2020-01-01T00:00:00",
                                                      "end": end.strftime("%Y-%m-%dT%H:%M:%S")}
        retired.write_text(json.dumps(doc))
        code, _, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, *FAST,
                           "--trusted-root", retired)
        assert code == expected, err
        assert "Traceback" not in err
    code, _, err = run("sign", "key", small_model, "--private-key", priv, "--signature", sig, "--overwrite",
                       "--timestamp-authority", inst.tsa_url, "--timeout", 0)
    assert code == 1 and "--timeout 0: give a positive number of seconds" in _one_error(err)


# --- timestamps that do not verify: exit 2, named -----------------------------------------------------


@pytest.fixture(scope="module")
def stamped(inst: LocalSigstore, other: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A certificate bundle timestamped by ``inst``, a second one (another signature), one by ``other``."""
    import model_signing as ms

    base = tmp_path_factory.mktemp("stamped")
    model = base / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x07" * 1000)
    pki = _pki.Pki(base / "pki")
    out: dict[str, Any] = {"model": model, "pki": pki, "chain": _chain_pem(inst, base / "tsa.pem")}
    for name, url in (("a", inst.tsa_url), ("b", inst.tsa_url), ("foreign", other.tsa_url)):
        signer = ms.CertificateSigner(pki.key_pem, pki.leaf_pem, [pki.chain_pem], timestamp_authorities=[url])
        out[name] = ms.sign(model, signer, signature_path=base / f"{name}.sig",
                            hashing=ms.HashingConfig(max_workers=1, progress=False)).signature_path
    return out


def _verify_stamped(run: Run, stamped: dict[str, Any], sig: Path) -> tuple[int, str, str]:
    return _verify_cert(run, stamped["model"], stamped["pki"], sig, "--timestamp-certificate-chain", stamped["chain"])


def test_the_stamped_bundles_verify(run: Run, stamped: dict[str, Any]) -> None:
    code, out, err = _verify_stamped(run, stamped, Path(stamped["a"]))
    assert (code, err) == (0, "") and "signed at" in out
    _validate(Path(stamped["a"]).read_bytes())


def test_a_timestamp_from_another_tsa(run: Run, stamped: dict[str, Any], other: LocalSigstore) -> None:
    code, _, err = _verify_stamped(run, stamped, Path(stamped["foreign"]))
    assert code == 2
    line = _one_error(err)
    serial = f"{_tsa_chain(other)[0].serial_number:x}"
    assert f"the RFC 3161 timestamp in {stamped['foreign']} was signed by {TSA_SUBJECT} (serial {serial})" in line
    assert "not one of the trusted timestamp authorities" in line


def test_a_corrupted_token(run: Run, stamped: dict[str, Any], tmp_path: Path) -> None:
    [token] = _tokens(Path(stamped["a"]))
    # The last bytes are the TSA's ECDSA signature (the certificate comes before the SignerInfo).
    damaged = bytearray(token)
    damaged[-3] ^= 0x01
    sig = _set_tokens(Path(stamped["a"]), [bytes(damaged)], tmp_path / "damaged.sig")
    code, _, err = _verify_stamped(run, stamped, sig)
    assert code == 2
    line = _one_error(err)
    assert f"the RFC 3161 timestamp in {sig} does not verify" in line
    assert "the TSA's signature over the token does not verify" in line
    # Not DER at all.
    sig = _set_tokens(Path(stamped["a"]), [b"\x30\x03junk"], tmp_path / "junk.sig")
    code, _, err = _verify_stamped(run, stamped, sig)
    assert code == 2 and "is not a DER RFC 3161 timestamp response" in _one_error(err)


def test_a_timestamp_over_another_signature(run: Run, stamped: dict[str, Any], tmp_path: Path) -> None:
    a, b = Path(stamped["a"]), Path(stamped["b"])
    assert _dsse_signature(a) != _dsse_signature(b)  # ECDSA: two signatures of the same statement differ
    sig = _set_tokens(a, _tokens(b), tmp_path / "transplanted.sig")
    code, _, err = _verify_stamped(run, stamped, sig)
    assert code == 2
    assert f"the RFC 3161 timestamp in {sig} is not over this signature" in _one_error(err)
    # One good and one transplanted: the bad one is named by its position.
    sig = _set_tokens(a, [*_tokens(a), *_tokens(b)], tmp_path / "two.sig")
    code, _, err = _verify_stamped(run, stamped, sig)
    assert code == 2 and f"RFC 3161 timestamp 2 of 2 in {sig} is not over this signature" in _one_error(err)


def test_no_tsa_trust_material_fails_closed(run: Run, stamped: dict[str, Any]) -> None:
    code, _, err = _verify_cert(run, stamped["model"], stamped["pki"], Path(stamped["a"]))
    assert code == 2
    line = _one_error(err)
    assert "no timestamp authority is trusted" in line and "--timestamp-certificate-chain" in line


# --- keyless: a timestamp that is present must verify ---------------------------------------------


def test_keyless_bundle_with_a_corrupted_or_foreign_timestamp(
    run: Run, inst: LocalSigstore, other: LocalSigstore, small_model: Path, tmp_path: Path
) -> None:
    from model_signing.methods.timestamps import request_timestamp

    sig = tmp_path / "keyless.sig"
    code, _, err = run("sign", small_model, "--trust-config", inst.trust_config_path, "--identity-token",
                       inst.mint_token(EMAIL), "--signature", sig, *FAST)
    assert code == 0, err
    [token] = _tokens(sig)  # the instance's signing config lists its TSA: sigstore timestamps
    verify = ("verify", small_model, "--trust-config", inst.trust_config_path, "--identity", EMAIL,
              "--identity-provider", inst.oidc_issuer, *FAST)
    code, out, err = run(*verify, "--signature", sig)
    assert code == 0, err
    assert f"RFC 3161 timestamp by {TSA_SUBJECT}" in out
    damaged = bytearray(token)
    damaged[-3] ^= 0x01
    bad = _set_tokens(sig, [bytes(damaged)], tmp_path / "damaged.sig")
    # sigstore alone accepts it: it needs one verified time, and the log's integrated time is there.
    _sigstore_accepts(inst, bad)
    code, _, err = run(*verify, "--signature", bad)
    assert code == 2
    assert f"the RFC 3161 timestamp in {bad} does not verify" in _one_error(err)
    # A genuine timestamp over this very signature, from a TSA the instance does not trust.
    foreign = _set_tokens(sig, [request_timestamp(other.tsa_url, _dsse_signature(sig), timeout=10)],
                          tmp_path / "foreign.sig")
    _sigstore_accepts(inst, foreign)
    code, _, err = run(*verify, "--signature", foreign)
    assert code == 2 and "which is not one of the trusted timestamp authorities" in _one_error(err)


def _sigstore_accepts(inst: LocalSigstore, sig: Path) -> None:
    from sigstore.models import Bundle, ClientTrustConfig
    from sigstore.verify import Verifier, policy

    config = ClientTrustConfig.from_json(inst.trust_config_path.read_text())
    verifier = Verifier(trusted_root=config.trusted_root)
    verifier.verify_dsse(Bundle.from_json(sig.read_bytes()), policy.Identity(identity=EMAIL, issuer=inst.oidc_issuer))


# --- a TSA that fails: exit 1, nothing written ------------------------------------------------------


def test_failing_timestamp_authorities(
    run: Run, inst: LocalSigstore, small_model: Path, tmp_path: Path, ec_keypair: Any
) -> None:
    priv, _ = ec_keypair()
    sig = tmp_path / "model.sig"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        cases = [
            (f"http://127.0.0.1:{port}/tsa", "cannot reach the timestamp authority at"),
            (f"{inst.base_url}/no-such-tsa", "refused the request (HTTP 404"),
            (f"http://127.0.0.1:{silent.getsockname()[1]}/tsa", "did not answer within 1 s"),
        ]
        for url, message in cases:
            started = time.monotonic()
            code, out, err = run("sign", "key", small_model, "--private-key", priv, "--signature", sig, *FAST,
                                 "--timestamp-authority", url, "--timeout", 1)
            assert code == 1, (url, err)
            line = _one_error(err)
            assert message in line and url in line, line
            assert not sig.exists() and out == ""
            assert time.monotonic() - started < 30
    code, _, err = run("sign", "key", small_model, "--private-key", priv, "--signature", sig, *FAST,
                       "--timestamp-authority", "file:///etc/passwd")
    assert code == 1 and "--timestamp-authority: 'file:///etc/passwd' is not an http(s) URL" in _one_error(err)
    assert not sig.exists()


def test_a_trickling_timestamp_authority_is_given_up(
    run: Run, small_model: Path, tmp_path: Path, ec_keypair: Any
) -> None:
    """A TSA that sends a byte every half second never trips a per-read timeout: the overall bound stops it."""
    import threading

    priv, _ = ec_keypair()
    stop = threading.Event()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\n"
                         b"Content-Length: 100000\r\n\r\n")
            while not stop.wait(0.5):
                try:
                    conn.sendall(b"\x00")
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    sig = tmp_path / "model.sig"
    url = f"http://127.0.0.1:{server.getsockname()[1]}/tsa"
    started = time.monotonic()
    try:
        code, _, err = run("sign", "key", small_model, "--private-key", priv, "--signature", sig, *FAST,
                           "--timestamp-authority", url, "--timeout", 1)
    finally:
        stop.set()
        thread.join(5)
        server.close()
    elapsed = time.monotonic() - started
    assert code == 1 and f"the timestamp authority at {url} did not answer within 1 s" in _one_error(err)
    assert 13 <= elapsed < 25  # 3 x the timeout + 10 s, not forever
    assert not sig.exists()


# --- inspect, and the peer ------------------------------------------------------------------------


def test_inspect_shows_the_time_and_the_tsa(run: Run, stamped: dict[str, Any], inst: LocalSigstore) -> None:
    sig = Path(stamped["a"])
    [token] = _tokens(sig)
    info = decode_timestamp_response(token).tst_info
    code, out, _ = run("inspect", sig, "--json")
    assert code == 0
    [entry] = json.loads(out)["rfc3161_timestamps"]
    assert entry["tsa"] == TSA_SUBJECT and entry["tsa_serial"] == f"{_tsa_chain(inst)[0].serial_number:x}"
    assert entry["serial"] == f"{info.serial_number:x}"
    assert dt.datetime.fromisoformat(entry["time"]) == info.gen_time.replace(tzinfo=dt.UTC)
    code, out, _ = run("inspect", sig)
    assert code == 0 and f"(RFC 3161, by {TSA_SUBJECT}, TSA certificate serial {entry['tsa_serial']}" in out


def test_the_peer_verifies_our_timestamped_bundles(
    stamped: dict[str, Any], inst: LocalSigstore, tmp_path: Path, ec_keypair: Any
) -> None:
    import model_signing as ms

    peer = ensure_peer_venv()
    model, pki = stamped["model"], stamped["pki"]
    proc = subprocess.run(
        [*peer_cli(peer), "verify", "certificate", "--certificate_chain", str(pki.root_pem), "--signature",
         str(stamped["a"]), str(model)], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    priv, pub = ec_keypair()
    sig = tmp_path / "key.sig"
    ms.sign(model, ms.KeySigner(priv, timestamp_authorities=[inst.tsa_url]), signature_path=sig,
            hashing=ms.HashingConfig(max_workers=1, progress=False))
    assert len(_tokens(sig)) == 1
    proc = subprocess.run(
        [*peer_cli(peer), "verify", "key", "--public_key", str(pub), "--signature", str(sig), str(model)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


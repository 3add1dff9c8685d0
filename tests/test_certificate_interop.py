"""Certificates as real PKIs make them (issue 9.5), driven through the CLI as a user runs it.

* a signing certificate with basicConstraints CA:TRUE (openssl's default ``v3_ca``, the OMS reference
  implementations' test PKIs) and a self-signed signing certificate trusted as itself verify, here and
  with the peer ``model-signing==1.1.1``; ``--strict-x509`` refuses both (exit 2, one clear line);
* what matters is still checked for such leaves: digitalSignature usage and validity;
* ``sign certificate`` refuses a broken chain naming the missing issuer, warns when the anchor is
  legitimately unknown (naming the issuer verifiers must trust), and never writes what would not verify;
* a chain failure at verification names what is missing instead of "candidates exhausted";
* a key bundle whose ``publicKey`` is ``{}`` verifies with the right key and only with it.

Every PKI is built here (``tests/_pki.py``); the peer runs in its own venv (``benchmarks/peer.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.peer import ensure_peer_venv, peer_cli
from model_signing.keymaterial.keys import signature_hash
from model_signing.oms import bundle as _bundle
from tests import _pki
from tests._cli import Run

INTER = "O=Test,CN=Test Intermediate CA"  # RFC 4514 order: the last RDN first
ROOT = "O=Test,CN=Test Root CA"




def _error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _sign(run: Run, model: Path, key: Path, cert: Path, sig: Path, *chain: Path) -> tuple[int, str, str]:
    args: list[object] = ["sign", "certificate", model, "--private-key", key, "--signing-certificate", cert]
    for c in chain:
        args += ["--certificate-chain", c]
    return run(*args, "--signature", sig, "--max-workers", 1, "-q")


def _verify(run: Run, model: Path, sig: Path, *trusted: Path, strict: bool = False) -> tuple[int, str, str]:
    args: list[object] = ["verify", "certificate", model, "--signature", sig, "-q"]
    for c in trusted:
        args += ["--certificate-chain", c]
    return run(*args, *(["--strict-x509"] if strict else []))


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _forge(model: Path, sig: Path, key: ec.EllipticCurvePrivateKey, chain: list[x509.Certificate]) -> None:
    """A certificate bundle over ``model`` signed by ``key`` with any chain, bypassing the signer's checks."""
    import model_signing as ms
    from model_signing.oms.statement import statement_payload

    payload = statement_payload(ms.hash_model(model, ms.HashingConfig(max_workers=1, progress=False)))
    signature = key.sign(_bundle.pae(payload), ec.ECDSA(signature_hash(key)))
    sig.write_text(_bundle.bundle_json(_bundle.assemble(payload, signature, _bundle.certificate_material(chain))))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _peer_verify(cwd: Path, model: Path, sig: Path, trusted: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*peer_cli(ensure_peer_venv()), "verify", "certificate", "--certificate_chain", str(trusted),
         "--signature", str(sig), str(model)],
        cwd=cwd, capture_output=True, text=True, check=False, timeout=300,
    )


# --- CA:TRUE leaves and self-signed leaves ---------------------------------------------------------------


def test_ca_true_leaf_verifies_here_and_with_the_peer(run: Run, small_model: Path, pki: _pki.Pki,
                                                      tmp_path: Path) -> None:
    key, cert = pki.other_leaf("openssl-style", ca=True)
    assert _cert(cert).extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sig = tmp_path / "model.sig"
    code, _, err = _sign(run, small_model, key, cert, sig, pki.chain_pem, pki.root_pem)
    assert (code, err) == (0, "")
    code, out, err = _verify(run, small_model, sig, pki.root_pem)
    assert (code, err) == (0, ""), err
    assert "CN=openssl-style" in out
    peer = _peer_verify(tmp_path, small_model, sig, pki.root_pem)
    assert peer.returncode == 0, peer.stdout + peer.stderr
    # The RFC 5280 end-entity rule, on request.
    code, _, err = _verify(run, small_model, sig, pki.root_pem, strict=True)
    assert code == 2
    line = _error_line(err)
    assert "O=Test,CN=openssl-style has basicConstraints CA:TRUE" in line and "RFC 5280" in line


def test_we_verify_the_peers_bundle_with_a_ca_true_leaf(small_model: Path, pki: _pki.Pki, tmp_path: Path,
                                                        run: Run) -> None:
    key, cert = pki.other_leaf("peer-signer", ca=True)
    sig = tmp_path / "peer.sig"
    proc = subprocess.run(
        [*peer_cli(ensure_peer_venv()), "sign", "certificate", "--private_key", str(key), "--signing_certificate",
         str(cert), "--certificate_chain", str(pki.chain_pem), "--signature", str(sig), str(small_model)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    code, out, err = _verify(run, small_model, sig, pki.root_pem)
    assert (code, err) == (0, ""), err
    assert "CN=peer-signer" in out


@pytest.mark.parametrize(
    "kwargs",
    [{"ca": True, "authority_key_id": True}, {"ca": False, "authority_key_id": False}],
    ids=["openssl-req-x509", "plain"],
)
def test_self_signed_leaf_as_its_own_anchor(run: Run, small_model: Path, pki: _pki.Pki, tmp_path: Path,
                                            kwargs: dict[str, bool]) -> None:
    key, cert = pki.other_leaf("self-signer", issuer="self", **kwargs)
    assert _cert(cert).issuer == _cert(cert).subject
    sig = tmp_path / "model.sig"
    code, _, err = _sign(run, small_model, key, cert, sig)
    assert (code, err) == (0, "")  # complete chain: nothing to warn about
    code, _, err = _verify(run, small_model, sig, cert)
    assert (code, err) == (0, ""), err
    peer = _peer_verify(tmp_path, small_model, sig, cert)
    assert peer.returncode == 0, peer.stdout + peer.stderr
    # Trusting another root does not make it verify.
    code, _, err = _verify(run, small_model, sig, pki.root_pem)
    assert code == 2
    assert "it is self-signed and not among the trusted certificates" in _error_line(err)
    code, _, err = _verify(run, small_model, sig, cert, strict=True)
    assert code == 2
    line = _error_line(err)
    assert "O=Test,CN=self-signer" in line and "strict X.509" in line


@pytest.mark.parametrize("issuer", ["inter", "self"])
def test_ca_true_leaf_without_digital_signature_is_still_refused(run: Run, small_model: Path, pki: _pki.Pki,
                                                                 tmp_path: Path, issuer: str) -> None:
    key, cert = pki.other_leaf("no-ds", issuer=issuer, ca=True, digital_signature=False)
    sig = tmp_path / "model.sig"
    code, _, err = _sign(run, small_model, key, cert, sig)
    assert code == 1 and "digitalSignature" in _error_line(err)
    assert not sig.exists()
    chain = [_cert(cert)] + ([pki.inter] if issuer == "inter" else [])
    _forge(small_model, sig, _load_key(key), chain)
    code, _, err = _verify(run, small_model, sig, pki.root_pem if issuer == "inter" else cert)
    assert code == 2
    assert "may not sign: its KeyUsage does not allow digitalSignature" in _error_line(err)


@pytest.mark.parametrize("issuer", ["inter", "self"])
def test_expired_ca_true_leaf_is_still_refused(run: Run, small_model: Path, pki: _pki.Pki, tmp_path: Path,
                                               issuer: str) -> None:
    past = _pki.NOW - dt.timedelta(days=10)
    key, cert = pki.other_leaf("old", issuer=issuer, ca=True, not_before=past, not_after=past + dt.timedelta(days=1))
    sig = tmp_path / "model.sig"
    code, _, err = _sign(run, small_model, key, cert, sig)
    assert code == 1 and "expired" in _error_line(err)
    chain = [_cert(cert)] + ([pki.inter] if issuer == "inter" else [])
    _forge(small_model, sig, _load_key(key), chain)
    code, _, err = _verify(run, small_model, sig, pki.root_pem if issuer == "inter" else cert)
    assert code == 2
    assert "O=Test,CN=old is not valid now: it expired on" in _error_line(err)


# --- the chain at signing time -----------------------------------------------------------------------------


def test_sign_refuses_a_broken_chain_naming_the_missing_issuer(run: Run, small_model: Path, pki: _pki.Pki,
                                                               tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    # The chain given holds the root only: the leaf's issuer (the intermediate) is missing.
    code, out, err = _sign(run, small_model, pki.key_pem, pki.leaf_pem, sig, pki.root_pem)
    assert code == 1 and out == ""
    line = _error_line(err)
    assert f"the leaf's issuer {INTER} is not in the certificate chain given ({ROOT})" in line
    assert "--certificate-chain" in line
    assert not sig.exists()
    # An intermediate of the same name but another key (another PKI) did not issue the leaf.
    other = _pki.Pki(tmp_path / "other")
    code, _, err = _sign(run, small_model, pki.key_pem, pki.leaf_pem, sig, other.chain_pem)
    assert code == 1
    assert f"the certificate named {INTER} in the chain did not sign it" in _error_line(err)
    assert not sig.exists()
    # The same one level up: the right intermediate with another CA's root of the same name.
    code, _, err = _sign(run, small_model, pki.key_pem, pki.leaf_pem, sig, pki.chain_pem, other.root_pem)
    assert code == 1
    assert f"the certificate named {ROOT} in the chain did not sign the intermediate {INTER}" in _error_line(err)
    assert not sig.exists()


def test_sign_refuses_a_chain_with_an_expired_intermediate(run: Run, small_model: Path, pki: _pki.Pki,
                                                           tmp_path: Path) -> None:
    past = _pki.NOW - dt.timedelta(days=100)
    old = _pki.make_ca("Test Intermediate CA", pki.inter_key, (pki.root, pki.root_key), not_before=past,
                       not_after=past + dt.timedelta(days=1))
    chain = _pki.write_certs(tmp_path / "old-chain.pem", old, pki.root)
    sig = tmp_path / "model.sig"
    code, _, err = _sign(run, small_model, pki.key_pem, pki.leaf_pem, sig, chain)
    assert code == 1
    line = _error_line(err)
    assert "its chain would not verify" in line and f"the CA certificate {INTER} is not valid now: it expired" in line
    assert not sig.exists()


def test_sign_warns_when_the_anchor_is_left_to_the_verifier(run: Run, small_model: Path, pki: _pki.Pki,
                                                            tmp_path: Path) -> None:
    # Chain up to the intermediate: verifiers must trust the root, which is named.
    sig = tmp_path / "a.sig"
    code, _, err = _sign(run, small_model, pki.key_pem, pki.leaf_pem, sig, pki.chain_pem)
    assert code == 0
    assert err.strip().splitlines() == [
        f"warning: the certificate chain ends at {INTER}, whose issuer {ROOT} is not given: verifiers must trust "
        f"{ROOT} (or a certificate below it)"
    ]
    assert _verify(run, small_model, sig, pki.root_pem)[0] == 0
    # No chain at all: verifiers must trust the leaf's issuer.
    sig = tmp_path / "b.sig"
    code, _, err = _sign(run, small_model, pki.key_pem, pki.leaf_pem, sig)
    assert code == 0
    assert err.startswith(f"warning: the signature carries only the signing certificate: verifiers must trust its "
                          f"issuer {INTER}")
    assert _verify(run, small_model, sig, pki.chain_pem)[0] == 0
    # The complete chain up to the self-signed root: no warning.
    sig = tmp_path / "c.sig"
    code, _, err = _sign(run, small_model, pki.key_pem, pki.leaf_pem, sig, pki.chain_pem, pki.root_pem)
    assert (code, err) == (0, "")
    assert _verify(run, small_model, sig, pki.root_pem)[0] == 0


def test_sign_warns_about_certificates_off_the_path(run: Run, small_model: Path, pki: _pki.Pki,
                                                    tmp_path: Path) -> None:
    stray = _pki.make_ca("Unrelated CA", _pki.ec_key())
    chain = _pki.write_certs(tmp_path / "chain.pem", pki.inter, pki.root, stray)
    code, _, err = _sign(run, small_model, pki.key_pem, pki.leaf_pem, tmp_path / "model.sig", chain)
    assert code == 0
    assert err.strip().splitlines() == [
        "warning: certificate O=Test,CN=Unrelated CA in the chain is not on the signing certificate's path; "
        "it is included anyway"
    ]


# --- chain failures at verification say what is missing ----------------------------------------------------


def test_missing_intermediate_is_named(run: Run, small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    _forge(small_model, sig, pki.leaf_key, [pki.leaf])  # a bundle without the intermediate
    code, _, err = _verify(run, small_model, sig, pki.root_pem)
    assert code == 2
    line = _error_line(err)
    assert line.endswith(
        f"does not chain to the given certificate chain roots: the leaf's issuer {INTER} is not among the given "
        "certificates; pass the intermediate with --certificate-chain"
    ), line
    assert "candidates exhausted" not in line
    # Following the advice works.
    assert _verify(run, small_model, sig, pki.root_pem, pki.chain_pem)[0] == 0


def test_another_root_is_named(run: Run, small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    assert _sign(run, small_model, pki.key_pem, pki.leaf_pem, sig, pki.chain_pem)[0] == 0
    other = _pki.Pki(tmp_path / "other")  # same names, other keys
    code, _, err = _verify(run, small_model, sig, other.root_pem)
    assert code == 2
    line = _error_line(err)
    assert f"the intermediate {INTER} was not signed by the certificate named {ROOT}" in line
    assert "candidates exhausted" not in line
    # A root with another name: its issuer is simply not there.
    stray = _pki.write_certs(tmp_path / "stray.pem", _pki.make_ca("Unrelated CA", _pki.ec_key()))
    code, _, err = _verify(run, small_model, sig, stray)
    assert code == 2
    assert f"the issuer {ROOT} of the intermediate {INTER} is not among the given certificates" in _error_line(err)


# --- key bundles without a key hint --------------------------------------------------------------------------


def test_key_bundle_with_an_empty_public_key_verifies(run: Run, small_model: Path, tmp_path: Path) -> None:
    key = _pki.ec_key()
    priv = _pki.write_private_key(key, tmp_path / "k.pem")
    pub = _pki.write_public_key(key, tmp_path / "k.pub")
    sig = tmp_path / "model.sig"
    assert run("sign", "key", small_model, "--private-key", priv, "--signature", sig, "-q")[0] == 0
    doc = json.loads(sig.read_text())
    assert doc["verificationMaterial"]["publicKey"]["hint"]
    doc["verificationMaterial"]["publicKey"] = {}  # not covered by the DSSE signature
    sig.write_text(json.dumps(doc))
    code, out, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, "-q")
    assert (code, err) == (0, ""), err
    assert "verified" in out
    wrong = _pki.write_public_key(_pki.ec_key(), tmp_path / "wrong.pub")
    code, _, err = run("verify", "key", small_model, "--public-key", wrong, "--signature", sig, "-q")
    assert code == 2
    assert "does not verify with the given public key" in _error_line(err)

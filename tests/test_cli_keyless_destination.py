"""Keyless ``sign`` checks where it writes before it contacts Sigstore (issue 9, point 2), as a user runs it.

Against a local Sigstore instance served from this process, so every HTTP request it receives is seen here
(its request log) and its Rekor tree size can be read: a keyless sign whose signature cannot be written must
fail with one line before any request reaches Fulcio or Rekor (no certificate, no public log entry with the
signer's e-mail), and before the model is hashed.  The library's ``SigstoreSigner`` contacts nothing
until ``sign`` starts it, after the destination check.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import model_signing as ms
from model_signing.errors import InputError
from model_signing.sigstore_local import LocalSigstore
from tests.test_cli_keyless import EMAIL, FILES, cli, error_line, inst, ok, root_digest, write_model

__all__ = ["inst"]  # the module-scoped instance fixture, shared with test_cli_keyless's helpers


class _Requests(logging.Handler):
    """Collects the request lines the instance's HTTP server logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def requests_seen() -> Iterator[list[str]]:
    logger = logging.getLogger("model_signing.sigstore_local")
    handler, level = _Requests(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def tree_size(inst: LocalSigstore) -> int:
    with urllib.request.urlopen(f"{inst.base_url}/api/v1/log", timeout=10) as response:
        size: int = json.load(response)["treeSize"]
    return size


def unwritable_directory() -> Path:
    """A directory nobody may create files in, root included (sysfs refuses new files)."""
    sysfs = Path("/sys")
    try:
        fd, probe = tempfile.mkstemp(dir=sysfs)
    except OSError:
        return sysfs
    os.close(fd)
    os.unlink(probe)
    pytest.skip("/sys accepts new files here; no unwritable directory to test with")


def sign_args(inst: LocalSigstore, model: Path, *extra: object) -> list[object]:
    return ["sign", model, "--trust-config", inst.trust_config_path, "--identity-token", inst.mint_token(EMAIL), "-q",
            *extra]


def test_an_unwritable_destination_fails_before_any_sigstore_request(inst: LocalSigstore, tmp_path: Path) -> None:
    target = unwritable_directory() / "model.sig"
    model = write_model(tmp_path / "model")
    with_fifo = write_model(tmp_path / "fifo-model")
    os.mkfifo(with_fifo / "pipe")  # hashing refuses it with its own message: this one is never hashed
    size = tree_size(inst)
    with requests_seen() as seen:
        plain = cli(*sign_args(inst, model, "--signature", target))
        fifo = cli(*sign_args(inst, with_fifo, "--signature", target))
        into_a_file = cli(*sign_args(inst, model, "--signature", tmp_path / "model" / "config.json" / "model.sig"))
    for proc in (plain, fifo):
        assert error_line(proc, 1).startswith(f"error: cannot write signature {target} (Permission denied)")
    assert error_line(into_a_file, 1).endswith(f"{tmp_path / 'model' / 'config.json'} is not a directory")
    assert seen == []  # Fulcio, Rekor, the TSA: no request at all
    assert tree_size(inst) == size


def test_signature_dash_writes_the_keyless_bundle_to_stdout(inst: LocalSigstore, tmp_path: Path) -> None:
    model = write_model(tmp_path / "model")
    size = tree_size(inst)
    with requests_seen() as seen:
        proc = ok(cli(*sign_args(inst, model, "--signature", "-")))
    # What a sign does (and what the test above proves did not happen): a certificate, one Rekor entry.
    assert any("POST /api/v2/signingCert" in line for line in seen), seen
    assert any("POST /api/v1/log/entries" in line for line in seen), seen
    assert tree_size(inst) == size + 1
    bundle = json.loads(proc.stdout)
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["subject"] == [{"name": "model", "digest": {"sha256": root_digest(FILES)}}]
    assert "signature written to stdout" in proc.stderr and EMAIL in proc.stderr
    assert not (tmp_path / "model.sig").exists()
    saved = tmp_path / "saved.sig"
    saved.write_text(proc.stdout)
    ok(cli("verify", model, "--trust-config", inst.trust_config_path, "--identity", EMAIL,
           "--identity-provider", inst.oidc_issuer, "--signature", saved, "-q"))


def test_the_library_signer_requests_its_certificate_only_once_sign_starts_it(
    inst: LocalSigstore, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "model")
    target = unwritable_directory() / "model.sig"
    size = tree_size(inst)
    with requests_seen() as seen:
        signer = ms.SigstoreSigner(trust_config=inst.trust_config_path,
                                   token_source=ms.TokenSource(identity_token=inst.mint_token(EMAIL)))
        with pytest.raises(InputError, match=f"cannot write signature {target}"):
            ms.sign(model, signer, signature_path=target, hashing=ms.HashingConfig(progress=False))
        time.sleep(1.5)  # a request started by the constructor would reach the instance meanwhile
        assert seen == []
        ok_sig = tmp_path / "ok.sig"
        result = ms.sign(model, signer, signature_path=ok_sig, hashing=ms.HashingConfig(progress=False))
    assert result.signer.startswith(EMAIL) and ok_sig.is_file()
    assert sum("POST /api/v2/signingCert" in line for line in seen) == 1, seen
    assert tree_size(inst) == size + 1

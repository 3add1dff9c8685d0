"""Where ``sign`` writes (issue 9, points 2 and 3), for the key and certificate methods, as a user runs it.

- The destination is checked before anything else is done: an unwritable location, ``--signature ""`` and
  ``--signature -`` with ``--json`` fail at once.  The models here contain a FIFO, which hashing refuses
  with its own message: getting the destination's message proves the model was never hashed.
- ``--signature -`` writes the bundle to stdout (the report to stderr); a failed stdout write names stdout.
- Sibling models and the default ``model.sig``: an existing signature in the way is described (the model it
  signs, read from its statement) with a free path to use instead; a verification against another model's
  signature says so first; a renamed model whose content matches still verifies.

Every command runs ``main.py`` in a subprocess (real stdout, real files) with real keys and certificates
(tests/_pki.py).  Expected digests are computed here with hashlib.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

import pytest

from tests import _pki

ROOT = Path(__file__).resolve().parent.parent
A_FILES = {"config.json": b'{"model": "a"}\n', "weights.bin": bytes(range(256)) * 4}
B_FILES = {"config.json": b'{"model": "b"}\n', "weights.bin": bytes(range(255, -1, -1)) * 4}


def cli(*args: object, cwd: Path, stdout: int | IO[bytes] = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *(str(a) for a in args)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )


def error_line(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def write_model(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def root_digest(files: dict[str, bytes]) -> str:
    """The OMS subject digest, files serialization: SHA-256 over the file digests in name order."""
    return hashlib.sha256(b"".join(hashlib.sha256(files[n]).digest() for n in sorted(files))).hexdigest()


def statement_of(bundle: dict[str, object]) -> dict[str, object]:
    envelope = bundle["dsseEnvelope"]
    assert isinstance(envelope, dict)
    decoded: dict[str, object] = json.loads(base64.b64decode(envelope["payload"]))
    return decoded


@pytest.fixture
def pki(tmp_path: Path) -> _pki.Pki:
    return _pki.Pki(tmp_path / "pki")


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[Path, Path]:
    key = _pki.ec_key("P-256")
    return _pki.write_private_key(key, tmp_path / "k.pem"), _pki.write_public_key(key, tmp_path / "k.pub")


def sign_args(method: str, pki: _pki.Pki, model: Path, *extra: object) -> list[object]:
    if method == "key":
        return ["sign", "key", model, "--private-key", pki.key_pem, "-q", *extra]
    return ["sign", "certificate", model, "--private-key", pki.key_pem, "--signing-certificate", pki.leaf_pem,
            "--certificate-chain", pki.chain_pem, "-q", *extra]


@pytest.fixture
def fifo_model(tmp_path: Path) -> Path:
    """A model that hashing refuses (a FIFO inside): any other error proves it was not hashed."""
    model = write_model(tmp_path / "fifo-model", A_FILES)
    os.mkfifo(model / "pipe")
    proc = cli("digest", model, "-q", cwd=tmp_path)
    assert "FIFO" in error_line(proc)  # the message hashing would give
    return model


# -- point 2: the destination first -----------------------------------------------------------------------


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


@pytest.mark.parametrize("method", ["key", "certificate"])
def test_an_unwritable_destination_fails_before_hashing(
    method: str, pki: _pki.Pki, fifo_model: Path, tmp_path: Path
) -> None:
    target = unwritable_directory() / "model.sig"
    line = error_line(cli(*sign_args(method, pki, fifo_model, "--signature", target), cwd=tmp_path))
    assert line.startswith(f"error: cannot write signature {target} (Permission denied)"), line
    # A parent that is a regular file (fails for root too).
    target = pki.key_pem / "model.sig"
    line = error_line(cli(*sign_args(method, pki, fifo_model, "--signature", target), cwd=tmp_path))
    assert line == f"error: cannot write signature {target}: {pki.key_pem} is not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo-model", "pki"]  # nothing left anywhere


@pytest.mark.parametrize("method", ["key", "certificate"])
def test_an_empty_signature_path_is_refused_at_once(
    method: str, pki: _pki.Pki, fifo_model: Path, tmp_path: Path
) -> None:
    line = error_line(cli(*sign_args(method, pki, fifo_model, "--signature", ""), cwd=tmp_path))
    assert line == "error: --signature is empty; give a file name, or - to write the signature to stdout"


def test_signature_dash_and_json_are_refused_at_once(pki: _pki.Pki, fifo_model: Path, tmp_path: Path) -> None:
    proc = cli(*sign_args("key", pki, fifo_model, "--signature", "-", "--json"), cwd=tmp_path)
    assert "--signature - writes the signature to stdout, which --json also uses" in error_line(proc)
    # With --json every error is also a JSON error document on stdout (and nothing else is).
    document = json.loads(proc.stdout)
    assert document["ok"] is False and document["exit_code"] == 1 and "--signature -" in document["error"]


@pytest.mark.parametrize("method", ["key", "certificate"])
def test_signature_dash_writes_the_bundle_to_stdout(method: str, pki: _pki.Pki, tmp_path: Path) -> None:
    model = write_model(tmp_path / "a", A_FILES)
    proc = cli(*sign_args(method, pki, model, "--signature", "-"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    bundle = json.loads(proc.stdout)  # stdout holds the bundle and nothing else
    assert statement_of(bundle)["subject"] == [{"name": "a", "digest": {"sha256": root_digest(A_FILES)}}]
    # The human report went to stderr (after the certificate chain's warning, for the certificate method).
    report = [line for line in proc.stderr.splitlines() if not line.startswith("warning: ")]
    assert report[0] == f"signed {model}: 2 resources, root digest sha256:{root_digest(A_FILES)}"
    assert report[1].startswith("signature written to stdout (")
    assert not (tmp_path / "-").exists() and not (tmp_path / "model.sig").exists()
    saved = tmp_path / "saved.sig"
    saved.write_text(proc.stdout)
    if method == "key":
        pub = _pki.write_public_key(pki.leaf_key, tmp_path / "leaf.pub")
        verify = cli("verify", "key", model, "--public-key", pub, "--signature", saved, "-q", cwd=tmp_path)
    else:
        verify = cli("verify", "certificate", model, "--certificate-chain", pki.root_pem, "--signature", saved, "-q",
                     cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr


def test_a_failed_stdout_write_names_stdout(pki: _pki.Pki, tmp_path: Path) -> None:
    model = write_model(tmp_path / "a", A_FILES)
    with open("/dev/full", "wb") as full:
        proc = cli(*sign_args("key", pki, model, "--signature", "-"), cwd=tmp_path, stdout=full)
    assert error_line(proc) == "error: cannot write signature to stdout: No space left on device"
    # No stdout at all (descriptor 1 closed): refused before hashing (this model would fail it).
    os.mkfifo(model / "pipe")
    closed = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *map(str, sign_args("key", pki, model, "--signature", "-"))],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, timeout=120, check=False, preexec_fn=lambda: os.close(1),
    )
    assert error_line(closed) == "error: cannot write signature to stdout: Bad file descriptor"
    assert not (tmp_path / "-").exists()


def test_a_signature_inside_the_model_is_not_hashed_with_its_temporary_file(pki: _pki.Pki, tmp_path: Path) -> None:
    # The temporary file is created in the signature's directory before hashing: inside the model here.
    model = write_model(tmp_path / "a", A_FILES)
    sig = model / "model.sig"
    assert cli(*sign_args("key", pki, model, "--signature", sig), cwd=tmp_path).returncode == 0
    statement = statement_of(json.loads(sig.read_text()))
    predicate = statement["predicate"]
    assert isinstance(predicate, dict)
    assert sorted(r["name"] for r in predicate["resources"]) == sorted(A_FILES)
    assert "model.sig" in predicate["serialization"]["ignore_paths"]
    assert not any(".tmp" in p for p in predicate["serialization"]["ignore_paths"])
    assert sorted(p.name for p in model.iterdir()) == sorted([*A_FILES, "model.sig"])
    pub = _pki.write_public_key(pki.leaf_key, tmp_path / "leaf.pub")
    assert cli("verify", "key", model, "--public-key", pub, "--signature", sig, "-q", cwd=tmp_path).returncode == 0


# -- point 3: sibling models and the default model.sig -----------------------------------------------------


@pytest.mark.parametrize("method", ["key", "certificate"])
def test_an_existing_signature_in_the_way_says_which_model_it_signs(
    method: str, pki: _pki.Pki, tmp_path: Path
) -> None:
    a, b = write_model(tmp_path / "a", A_FILES), write_model(tmp_path / "b", B_FILES)
    default = tmp_path / "model.sig"
    assert cli(*sign_args(method, pki, a), cwd=tmp_path).returncode == 0  # writes ./model.sig beside a
    signed_a = default.read_bytes()

    # b would write the same model.sig: the error names a's signature, and a free path for b's.
    line = error_line(cli(*sign_args(method, pki, b), cwd=tmp_path))
    assert line == (
        f"error: signature {default} already exists: it signs model 'a', root digest sha256:{root_digest(A_FILES)}; "
        f"use --signature {tmp_path / 'b.sig'} instead, or pass --overwrite if you mean to replace it"
    )
    assert default.read_bytes() == signed_a
    assert cli(*sign_args(method, pki, b, "--signature", tmp_path / "b.sig"), cwd=tmp_path).returncode == 0

    # Re-signing a itself: replacing is then the likely intent; a.sig is the alternative.
    line = error_line(cli(*sign_args(method, pki, a), cwd=tmp_path))
    assert line.endswith(f"it signs model 'a', root digest sha256:{root_digest(A_FILES)}; pass --overwrite to "
                         f"replace it, or use --signature {tmp_path / 'a.sig'}")
    assert cli(*sign_args(method, pki, a, "--overwrite"), cwd=tmp_path).returncode == 0

    # Not a bundle: said so, and the free path skips names already taken.
    (tmp_path / "b.sig").write_bytes(b"notes, not a signature")
    line = error_line(cli(*sign_args(method, pki, b, "--signature", tmp_path / "b.sig"), cwd=tmp_path))
    assert line == (
        f"error: signature {tmp_path / 'b.sig'} already exists: it is not a readable signature bundle; use "
        f"--signature {tmp_path / 'b-2.sig'} instead, or pass --overwrite if you mean to replace it"
    )
    assert (tmp_path / "b.sig").read_bytes() == b"notes, not a signature"


def test_verifying_against_another_models_signature_says_so_first(key_pair: tuple[Path, Path], tmp_path: Path) -> None:
    priv, pub = key_pair
    a, b = write_model(tmp_path / "a", A_FILES), write_model(tmp_path / "b", B_FILES)
    sig = tmp_path / "model.sig"
    assert cli("sign", "key", b, "--private-key", priv, "-q", cwd=tmp_path).returncode == 0  # model.sig is b's

    proc = cli("verify", "key", a, "--public-key", pub, "-q", cwd=tmp_path)
    assert proc.returncode == 3 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == "error: the signature is for model 'b', not 'a'; the model does not match its signature: " \
                       "2 differences"
    digest = {name: hashlib.sha256(data).hexdigest() for name, data in A_FILES.items()}
    expected = {name: hashlib.sha256(data).hexdigest() for name, data in B_FILES.items()}
    assert lines[1:] == [f"  modified: {n} expected {expected[n]} actual {digest[n]}" for n in sorted(A_FILES)]
    result = json.loads(cli("verify", "key", a, "--public-key", pub, "-q", "--json", cwd=tmp_path).stdout)
    assert result["exit_code"] == 3 and result["error"].startswith("the signature is for model 'b', not 'a';")

    # The same content under another name verifies: the subject name is informational, not checked.
    renamed = tmp_path / "b-renamed"
    shutil.copytree(b, renamed)
    proc = cli("verify", "key", renamed, "--public-key", pub, "--signature", sig, "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # A mismatch with the model's own signature keeps the usual first line.
    (b / "config.json").write_bytes(b"changed")
    proc = cli("verify", "key", b, "--public-key", pub, "-q", cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[0] == "error: the model does not match its signature: 1 difference"

"""``verify --quarantine DIR`` / ``verify(quarantine=...)``: a failed or unsafe model is moved aside, never deleted.

Real files, a real second file system (/dev/shm, tmpfs) for the copy path; expected digests from hashlib.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import model_signing as ms
from model_signing import quarantine as q
from model_signing import scan as scanning
from model_signing.errors import ModelMismatchError, UnsafeModelError, VerificationError
from tests import _pki
from tests import _scan_samples as samples
from tests._cli import Run

Keypair = Callable[..., tuple[Path, Path]]
FILES = {"config.json": b'{"layers": 2}\n', "weights/w.bin": bytes(range(256)) * 40}
SHM = Path("/dev/shm")


def _signed(make_model: Callable[..., Path], ec_keypair: Keypair, tmp_path: Path,
            files: dict[str, bytes] = FILES) -> tuple[Path, Path, Path, Path]:
    model = make_model(files)
    priv, pub = ec_keypair()
    sig = tmp_path / "model.sig"
    ms.sign(model, ms.KeySigner(priv), signature_path=sig, hashing=ms.HashingConfig(max_workers=1))
    return model, priv, pub, sig


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _incident(qdir: Path) -> tuple[Path, dict[str, Any]]:
    (incident_dir,) = list(qdir.iterdir())
    assert re.fullmatch(r"model-\d{8}T\d{6}Z", incident_dir.name)
    return incident_dir, json.loads((incident_dir / "incident.json").read_text())


def test_mismatch_moves_the_model_with_an_incident_record(make_model: Callable[..., Path], ec_keypair: Keypair,
                                                          tmp_path: Path, run: Run) -> None:
    model, _, pub, sig = _signed(make_model, ec_keypair, tmp_path)
    tampered = {**FILES, "weights/w.bin": b"\x00" * 100}
    (model / "weights" / "w.bin").write_bytes(tampered["weights/w.bin"])
    qdir = tmp_path / "quarantine"
    code, _, err = run("verify", "key", model, "--public-key", pub, "--signature", sig, "--quarantine", qdir)
    assert code == 3
    incident_dir, record = _incident(qdir)
    assert not model.exists()  # moved, not copied
    assert _tree(incident_dir / "model") == tampered  # every byte kept
    assert f"quarantined: {model} was moved to {incident_dir / 'model'}" in err
    assert (record["exit_code"], record["error_type"], record["moved_by"], record["completed"]) == (
        3, "ModelMismatchError", "rename", True)
    assert record["reason"].startswith("the model does not match its signature")
    (diff,) = record["differences"]
    assert (diff["name"], diff["kind"]) == ("weights/w.bin", "modified")
    assert diff["expected"] == hashlib.sha256(FILES["weights/w.bin"]).hexdigest()
    assert diff["actual"] == hashlib.sha256(tampered["weights/w.bin"]).hexdigest()
    assert record["signer"].startswith("P-256 key sha256:") and record["signer_identity"]["method"] == "key"
    assert record["host"] == socket.gethostname()
    assert record["time"].endswith("Z") and record["model_path"] == str(model)
    assert (incident_dir / "model.sig").read_bytes() == sig.read_bytes()  # the signature kept as evidence
    assert sig.exists()  # and left where it was


def test_bad_signature_is_quarantined_without_a_signer(make_model: Callable[..., Path], ec_keypair: Keypair,
                                                       tmp_path: Path) -> None:
    model, _, _, sig = _signed(make_model, ec_keypair, tmp_path)
    _, other = ec_keypair(name="other")
    qdir = tmp_path / "q"
    with pytest.raises(VerificationError) as err:
        ms.verify(model, ms.KeyVerifier(other), signature_path=sig, quarantine=qdir)
    assert err.value.incident is not None and err.value.incident["completed"]
    _, record = _incident(qdir)
    assert (record["exit_code"], record["signer"], record["expected_root_digest"]) == (2, None, None)
    assert not model.exists()


def test_unsafe_model_across_file_systems_is_copied_checked_and_removed(
        make_model: Callable[..., Path], ec_keypair: Keypair, tmp_path: Path, run: Run) -> None:
    assert os.stat(SHM).st_dev != os.stat(tmp_path).st_dev, "the test needs /dev/shm on another file system"
    files = {**FILES, "evil.pkl": samples.p_reduce(samples.Asm(2), f"touch {tmp_path / 'canary'}")}
    model, _, pub, sig = _signed(make_model, ec_keypair, tmp_path, files)
    qdir = SHM / f"modelseal-test-{os.getpid()}-{tmp_path.name}"
    try:
        code, out, err = run("verify", "key", model, "--public-key", pub, "--signature", sig, "--scan",
                             "--quarantine", qdir, "--json")
        assert code == 4, err
        incident_dir, record = _incident(qdir)
        assert (record["moved_by"], record["completed"], record["exit_code"]) == ("copy", True, 4)
        assert [f["file"] for f in record["findings"] if f["severity"] == "critical"] == ["evil.pkl"]
        assert record["expected_root_digest"] is not None  # the signature verified: the digests are known
        assert _tree(incident_dir / "model") == files and not model.exists()
        doc = json.loads(out)
        assert doc["quarantine"]["quarantined_to"] == str(incident_dir / "model")
        assert doc["scan"]["unsafe"] is True
    finally:
        import shutil

        shutil.rmtree(qdir, ignore_errors=True)
    assert not (tmp_path / "canary").exists()


def test_a_copy_that_does_not_match_leaves_the_model_in_place(make_model: Callable[..., Path],
                                                              ec_keypair: Keypair, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, run: Run) -> None:
    model, _, pub, sig = _signed(make_model, ec_keypair, tmp_path)
    (model / "config.json").write_bytes(b"{}")  # a mismatch, to be quarantined
    qdir = SHM / f"modelseal-test-{os.getpid()}-{tmp_path.name}-b"

    def change_original(original: str, copy: str) -> None:  # a writer still at work on the model
        with open(os.path.join(original, "config.json"), "ab") as f:
            f.write(b" ")

    monkeypatch.setattr(q, "_after_copy_hook", change_original)
    try:
        code, _, err = run("verify", "key", model, "--public-key", pub, "--signature", sig, "--quarantine", qdir)
        assert code == 3  # the verification's verdict stays the one reported
        assert f"the model was left at {model}" in err and "does not match" in err
        assert _tree(model)["config.json"] == b"{} "  # in place, untouched by the quarantine
        incident_dir, record = _incident(qdir)
        assert not (incident_dir / "model").exists()  # our partial copy is gone; nothing of the model is
        assert record["completed"] is False and "does not match" in record["error"]
    finally:
        import shutil

        shutil.rmtree(qdir, ignore_errors=True)


def test_a_writer_after_the_check_loses_nothing(make_model: Callable[..., Path], ec_keypair: Keypair,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Run) -> None:
    # Across file systems the original is removed only after the copy is checked; a writer that still
    # holds a file open (or creates one) between the check and the removal must not lose its bytes.
    model, _, pub, sig = _signed(make_model, ec_keypair, tmp_path)
    (model / "config.json").write_bytes(b"{}")  # a mismatch, to be quarantined
    checked = _tree(model)
    qdir = SHM / f"modelseal-test-{os.getpid()}-{tmp_path.name}-c"
    seen: list[str] = []

    def late_writer(original: str, copy: str) -> None:
        seen.append(original)
        assert not model.exists()  # set aside before the check: nothing can add to it by its path
        with open(os.path.join(original, "weights", "w.bin"), "ab") as f:
            f.write(b"late")
        Path(original, "new.txt").write_bytes(b"written after the check")

    monkeypatch.setattr(q, "_after_check_hook", late_writer)
    try:
        code, _, err = run("verify", "key", model, "--public-key", pub, "--signature", sig, "--quarantine", qdir)
        assert code == 3, err  # the verification's verdict stays the one reported
        incident_dir, record = _incident(qdir)
        assert _tree(incident_dir / "model") == checked  # the checked copy
        (staged,) = seen
        assert record["completed"] is False and record["copy_verified"] is True
        assert record["left_behind"]["path"] == staged
        assert sorted(record["left_behind"]["entries"]) == ["new.txt", "weights/w.bin"]
        # Kept, with the late bytes; what was checked and copied (config.json) is gone from there.
        assert _tree(Path(staged)) == {"new.txt": b"written after the check",
                                       "weights/w.bin": FILES["weights/w.bin"] + b"late"}
        assert "quarantine incomplete" in err and staged in err
    finally:
        import shutil

        shutil.rmtree(qdir, ignore_errors=True)


def test_nothing_moves_when_the_model_verifies_or_without_quarantine(make_model: Callable[..., Path],
                                                                    ec_keypair: Keypair, tmp_path: Path) -> None:
    model, _, pub, sig = _signed(make_model, ec_keypair, tmp_path)
    qdir = tmp_path / "q"
    ms.verify(model, ms.KeyVerifier(pub), signature_path=sig, quarantine=qdir)
    assert list(qdir.iterdir()) == [] and _tree(model) == FILES
    (model / "config.json").write_bytes(b"{}")
    with pytest.raises(ModelMismatchError) as err:
        ms.verify(model, ms.KeyVerifier(pub), signature_path=sig)  # off by default
    assert err.value.incident is None and model.exists()


def test_wrong_method_and_bad_quarantine_paths_never_move_anything(make_model: Callable[..., Path],
                                                                  ec_keypair: Keypair, tmp_path: Path,
                                                                  run: Run, pki: _pki.Pki) -> None:
    model, _, pub, sig = _signed(make_model, ec_keypair, tmp_path)
    (model / "config.json").write_bytes(b"{}")
    code, _, err = run("verify", "certificate", model, "--certificate-chain", pki.root_pem, "--signature", sig,
                       "--quarantine", tmp_path / "q")
    assert code == 2 and "verify key" in err and model.exists()
    assert not any((tmp_path / "q").iterdir())
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    for bad, words in ((not_a_dir, "cannot create quarantine directory"), (model / "q", "inside the model")):
        code, _, err = run("verify", "key", model, "--public-key", pub, "--signature", sig, "--quarantine", bad)
        assert code == 1 and words in err and "--quarantine" in err, err
        assert model.exists()


def test_unsafe_error_carries_the_incident_and_result(make_model: Callable[..., Path], ec_keypair: Keypair,
                                                      tmp_path: Path) -> None:
    files = {**FILES, "x.pkl": samples.p_unknown_global(samples.Asm(4), "x")}
    model, _, pub, sig = _signed(make_model, ec_keypair, tmp_path, files)
    with pytest.raises(UnsafeModelError) as err:
        ms.verify(model, ms.KeyVerifier(pub), signature_path=sig, scan=scanning.make_config(),
                  quarantine=tmp_path / "q")
    assert err.value.result is not None and err.value.result.quarantine == err.value.incident
    assert err.value.incident is not None
    assert Path(err.value.incident["quarantined_to"]).is_dir()

"""Reports a script and a person can act on (issue 9 point 6): symlinked signed files, ignore paths that
match nothing or name signed files, shards reported per file, accepted unsigned files, I/O errors that
name the file and the operation, and one ``--json`` schema for digest, sign and verify.

The CLI runs in-process through :func:`model_signing.cli.main` (the real entry point, errors mapped
there) with real keys and certificates; the I/O error cases run ``main.py`` in a subprocess.  Expected
digests are computed here with hashlib.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests import _pki
from tests._cli import Run

ROOT = Path(__file__).resolve().parent.parent

SCHEMA_KEYS = {
    "ok", "exit_code", "command", "error", "verified", "model_path", "model_name", "signature_path", "method",
    "signer", "signer_identity", "root_digest", "predicate_type", "serialization", "resources", "resource_count",
    "differences", "unsigned_files", "unmatched_ignore_paths", "legacy_encoding", "timestamps", "scan", "quarantine",
}
IDENTITY_KEYS = {
    "method", "identity", "issuer", "key_id", "key_algorithm", "certificate_subject", "certificate_issuer",
    "certificate_serial", "identities", "description",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




@pytest.fixture
def keys(ec_keypair: Callable[..., tuple[Path, Path]]) -> tuple[Path, Path]:
    return ec_keypair("P-256")


def sign(run: Run, model: Path, priv: Path, sig: Path, *extra: object) -> tuple[int, str, str]:
    return run("sign", "key", model, "--private-key", priv, "--signature", sig, "--max-workers", 1, "-q", *extra)


def verify(run: Run, model: Path, pub: Path, sig: Path, *extra: object) -> tuple[int, str, str]:
    return run("verify", "key", model, "--public-key", pub, "--signature", sig, "--max-workers", 1, "-q", *extra)


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return err.strip().splitlines()


# -- a signed file swapped for a symlink ---------------------------------------------------------------


def test_signed_file_replaced_by_a_symlink_is_tampering(
    run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    assert sign(run, small_model, priv, sig)[0] == 0
    # The link points at identical bytes: content alone would match, but a link is not what was signed.
    outside = tmp_path / "outside.json"
    shutil.copy(small_model / "config.json", outside)
    (small_model / "config.json").unlink()
    (small_model / "config.json").symlink_to(outside)
    code, out, err = verify(run, small_model, pub, sig)
    assert (code, out) == (3, "")
    lines = error_lines(err)
    assert lines == [
        "error: the model does not match its signature: 1 difference",
        "  modified: config.json (now a symlink)",
    ]
    assert "--allow-symlinks" not in err
    code, out, _ = verify(run, small_model, pub, sig, "--json")
    doc = json.loads(out)
    assert (code, doc["ok"], doc["exit_code"], doc["verified"]) == (3, False, 3, False)
    assert [(d["kind"], d["name"], d["expected"], d["actual"], d["detail"]) for d in doc["differences"]] == [
        ("modified", "config.json", sha(b'{"layers": 2}\n'), None, "now a symlink")
    ]


def test_a_single_file_model_replaced_by_a_symlink_is_tampering(
    run: Run, make_model: Callable[..., Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    model = make_model({"weights.bin": b"w" * 10, "copy.bin": b"w" * 10})
    sig = tmp_path / "w.sig"
    assert sign(run, model / "weights.bin", priv, sig)[0] == 0
    (model / "weights.bin").unlink()
    (model / "weights.bin").symlink_to("copy.bin")
    code, _, err = verify(run, model / "weights.bin", pub, sig)
    assert code == 3
    assert error_lines(err)[1:] == ["  modified: weights.bin (now a symlink)"]


def test_an_unsigned_symlink_is_an_extra_file(
    run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    assert sign(run, small_model, priv, sig)[0] == 0
    (small_model / "alias.bin").symlink_to(small_model / "weights" / "part-1.bin")
    code, _, err = verify(run, small_model, pub, sig)
    assert code == 3
    assert error_lines(err)[1:] == ["  extra: alias.bin (a symlink)"]
    # Like any unsigned file, --ignore-unsigned-files accepts it (never following it), and says so.
    code, out, err = verify(run, small_model, pub, sig, "--ignore-unsigned-files")
    assert (code, err) == (0, "")
    assert out.splitlines()[2:] == ["unsigned files accepted (--ignore-unsigned-files):", "  alias.bin"]


# -- --ignore-paths -------------------------------------------------------------------------------------


def test_ignore_paths_that_match_nothing_warn(
    run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, _ = keys
    sig = tmp_path / "model.sig"
    # "weights/part-0.bin" lies under the matching "weights": redundant, not a typo.
    code, out, err = sign(run, small_model, priv, sig, "--ignore-paths", "weights/*.bin", "--ignore-paths",
                          "confg.json", "--ignore-paths", "weights", "--ignore-paths", "weights/part-0.bin", "--json")
    assert code == 0
    warning, recorded = err.strip().splitlines()
    assert warning.startswith("warning: --ignore-paths matched no file in the model: 'weights/*.bin', 'confg.json'")
    assert "globs are not supported" in warning
    assert recorded == "warning: the unmatched --ignore-paths are recorded in the signature anyway"
    doc = json.loads(out)
    assert doc["unmatched_ignore_paths"] == ["weights/*.bin", "confg.json"]
    assert {"weights/*.bin", "confg.json", "weights"} <= set(doc["serialization"]["ignore_paths"])
    assert [r["name"] for r in doc["resources"]] == ["config.json", "empty.txt"]
    # digest warns the same way; ignore paths that all match stay silent.
    code, out, err = run("digest", small_model, "--ignore-paths", "nope", "-q")
    assert code == 0 and err.startswith("warning: --ignore-paths matched no file in the model: 'nope'")
    code, out, err = run("digest", small_model, "--ignore-paths", "weights", "--ignore-paths", "empty.txt", "-q")
    assert (code, err) == (0, "")
    assert out.strip() == hashlib.sha256(hashlib.sha256(b'{"layers": 2}\n').digest()).hexdigest()


def test_verify_ignore_paths_naming_a_signed_file_reports_it_excluded(
    run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    assert sign(run, small_model, priv, sig)[0] == 0
    code, out, err = verify(run, small_model, pub, sig, "--ignore-paths", "weights/part-1.bin")
    assert (code, out) == (3, "")
    assert error_lines(err)[1:] == [
        "  excluded: weights/part-1.bin (signed, but excluded by --ignore-paths, so not checked)"
    ]
    assert "missing" not in err
    # The same when the file is gone: the caller's exclusion is what is reported (and not as a typo).
    (small_model / "weights" / "part-1.bin").unlink()
    code, out, err = verify(run, small_model, pub, sig, "--ignore-paths", "weights/part-1.bin", "--json")
    assert code == 3 and "warning" not in err
    assert [(d["kind"], d["name"], d["expected"]) for d in json.loads(out)["differences"]] == [
        ("excluded", "weights/part-1.bin", sha(b"\x01" * 100))
    ]
    # An extra ignore path that names an unsigned file is fine; one that names nothing warns.
    (small_model / "weights" / "part-1.bin").write_bytes(b"\x01" * 100)
    (small_model / "notes.txt").write_text("unsigned")
    code, _, err = verify(run, small_model, pub, sig, "--ignore-paths", "notes.txt", "--ignore-paths", "notez.txt")
    assert code == 0
    assert err.startswith("warning: --ignore-paths matched no file in the model: 'notez.txt'")


# -- shards, reported per file --------------------------------------------------------------------------


def test_shards_report_one_changed_file_once(
    run: Run, make_model: Callable[..., Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    big = bytes(range(250)) + bytes(50)
    model = make_model({"config.json": b"12345678", "big.bin": big, "gone.bin": b"g" * 150})
    sig = tmp_path / "model.sig"
    assert sign(run, model, priv, sig, "--serialization", "shards", "--shard-size", 100)[0] == 0
    (model / "config.json").write_bytes(b"123456789")
    changed = big[:150] + b"\xff" + big[151:]
    (model / "big.bin").write_bytes(changed)
    (model / "gone.bin").unlink()
    (model / "new.bin").write_bytes(b"n" * 120)
    code, _, err = verify(run, model, pub, sig)
    assert code == 3
    assert error_lines(err) == [
        "error: the model does not match its signature: 4 differences",
        "  modified: big.bin",
        "  modified: config.json (size 8 -> 9)",
        "  missing: gone.bin (size 150)",
        "  extra: new.bin (size 120)",
    ]
    code, out, _ = verify(run, model, pub, sig, "--json")
    by_name = {d["name"]: d for d in json.loads(out)["differences"]}
    assert [(s["kind"], s["name"], s["expected"], s["actual"]) for s in by_name["big.bin"]["shards"]] == [
        ("modified", "big.bin:100:200", sha(big[100:200]), sha(changed[100:200]))
    ]
    assert (by_name["big.bin"]["expected_size"], by_name["big.bin"]["actual_size"]) == (300, 300)
    assert [(s["kind"], s["name"]) for s in by_name["config.json"]["shards"]] == [
        ("missing", "config.json:0:8"), ("extra", "config.json:0:9")
    ]
    assert [s["name"] for s in by_name["gone.bin"]["shards"]] == ["gone.bin:0:100", "gone.bin:100:150"]


# -- --ignore-unsigned-files names what it accepted -----------------------------------------------------


def test_text_report_names_the_accepted_unsigned_files(
    run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    assert sign(run, small_model, priv, sig)[0] == 0
    (small_model / "README.md").write_text("notes")
    (small_model / "weights" / "odd\nname").write_text("x")
    code, out, err = verify(run, small_model, pub, sig, "--ignore-unsigned-files")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].endswith("4 resources match; 2 unsigned files ignored")
    assert lines[2:] == ["unsigned files accepted (--ignore-unsigned-files):", "  README.md", "  weights/odd\\nname"]
    code, out, _ = verify(run, small_model, pub, sig, "--ignore-unsigned-files", "--json")
    assert json.loads(out)["unsigned_files"] == ["README.md", "weights/odd\nname"]


# -- I/O errors name the file and the operation ---------------------------------------------------------


def _entry(*args: object, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], stderr=subprocess.PIPE, text=True,
                          env=env, check=False, timeout=120, **kwargs)


def test_a_signature_that_cannot_be_written_names_it(small_model: Path, keys: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    priv, _ = keys
    sig = tmp_path / "x.sig"

    def small_files() -> None:  # a bundle is over 1 KB: writing it fails with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

    proc = _entry("sign", "key", small_model, "--private-key", priv, "--signature", sig, "-q", preexec_fn=small_files)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [f"error: cannot write signature {sig}: File too large"]
    assert not sig.exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".x.sig")]  # no temporary file left


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["digest", "{model}", "-q"], ["digest", "{model}", "-q", "--json"], ["--help"],
                                  ["sign", "key", "--help"]])
def test_a_failed_stdout_is_one_line(small_model: Path, args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        proc = _entry(*(a.format(model=small_model) for a in args), stdout=full)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == ["error: cannot write to stdout: No space left on device"]


def test_a_closed_stdout_pipe_is_one_line(small_model: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "digest", str(small_model), "--json", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader went away before anything was written
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert error_lines(err) == ["error: cannot write to stdout: Broken pipe"]


# -- one --json schema ----------------------------------------------------------------------------------


def _key_id(pub: Path) -> str:
    key = serialization.load_pem_public_key(pub.read_bytes())
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + sha(pem)


def test_json_is_one_schema_on_success(run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    digests = {
        "config.json": sha(b'{"layers": 2}\n'), "empty.txt": sha(b""), "weights/part-0.bin": sha(bytes(range(256)) * 3),
        "weights/part-1.bin": sha(b"\x01" * 100),
    }
    root = hashlib.sha256(b"".join(bytes.fromhex(d) for _, d in sorted(digests.items()))).hexdigest()
    docs = {}
    for name, (code, out, _) in {
        "digest": run("digest", small_model, "--json", "-q"),
        "sign": sign(run, small_model, priv, sig, "--json"),
        "verify": verify(run, small_model, pub, sig, "--json"),
    }.items():
        assert code == 0
        doc = docs[name] = json.loads(out)
        assert set(doc) == SCHEMA_KEYS, name
        assert (doc["ok"], doc["exit_code"], doc["command"], doc["error"]) == (True, 0, name, None)
        assert doc["root_digest"] == root and doc["model_name"] == "model"
        assert {r["name"]: r["digest"] for r in doc["resources"]} == digests and doc["resource_count"] == 4
        assert {r["algorithm"] for r in doc["resources"]} == {"sha256"}
    assert docs["digest"]["signer_identity"] is None and docs["digest"]["signature_path"] is None
    assert docs["verify"]["verified"] is True and docs["sign"]["verified"] is None
    for name in ("sign", "verify"):
        identity = docs[name]["signer_identity"]
        assert set(identity) == IDENTITY_KEYS
        assert identity["method"] == "key" and identity["key_id"] == identity["identity"] == _key_id(pub)
        assert identity["key_algorithm"] == "P-256" and identity["issuer"] is None
        assert docs[name]["signer"] == identity["description"] == f"P-256 key {_key_id(pub)}"
        assert docs[name]["signature_path"] == str(sig) and docs[name]["method"] == "key"


def test_json_certificate_signer_is_structured(run: Run, small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    code, out, _ = run("sign", "certificate", small_model, "--private-key", pki.key_pem, "--signing-certificate",
                       pki.leaf_pem, "--certificate-chain", pki.chain_pem, "--signature", sig, "-q", "--json")
    assert code == 0
    signed = json.loads(out)["signer_identity"]
    code, out, _ = run("verify", "certificate", small_model, "--certificate-chain", pki.root_pem, "--signature", sig,
                       "-q", "--json")
    assert code == 0
    verified = json.loads(out)["signer_identity"]
    assert signed == verified
    assert verified["method"] == "certificate"
    assert verified["identity"] == verified["certificate_subject"] == pki.leaf.subject.rfc4514_string()
    assert verified["issuer"] == verified["certificate_issuer"] == pki.inter.subject.rfc4514_string()
    assert verified["certificate_serial"] == f"{pki.leaf.serial_number:x}"
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = pki.leaf.public_key().public_bytes(*spki)
    assert verified["key_id"] == "sha256:" + sha(pem)


def test_json_errors_are_documents_too(
    run: Run, small_model: Path, keys: tuple[Path, Path], ec_keypair: Callable[..., tuple[Path, Path]],
    tmp_path: Path,
) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    assert sign(run, small_model, priv, sig)[0] == 0
    _, other_pub = ec_keypair("P-256", name="other")
    cases: list[tuple[str, tuple[object, ...], int, str]] = [
        ("verify", ("verify", "key", small_model, "--public-key", other_pub, "--signature", sig), 2,
         "signed with a different key"),
        ("sign", ("sign", "key", small_model, "--private-key", tmp_path / "nokey.pem", "--signature",
                  tmp_path / "new.sig"), 1, "nokey.pem"),
        ("digest", ("digest", tmp_path / "nomodel"), 1, "does not exist"),
        ("verify", ("verify", "key", small_model, "--public-key", pub, "--no-such-option"), 1, "No such option"),
    ]
    for command, args, exit_code, message in cases:
        code, out, err = run(*args, "--json", "-q")
        assert code == exit_code, args
        line = error_lines(err)[-1]
        assert line.startswith("error: ") and message in line
        doc = json.loads(out)
        assert set(doc) == SCHEMA_KEYS
        assert (doc["ok"], doc["exit_code"], doc["command"]) == (False, exit_code, command)
        assert doc["error"] == line.removeprefix("error: ")
        assert doc["verified"] is (False if command == "verify" else None)
    # Paths are named where the command got that far.
    code, out, _ = run("verify", "key", small_model, "--public-key", other_pub, "--signature", sig, "--json", "-q")
    doc = json.loads(out)
    assert (doc["model_path"], doc["signature_path"]) == (str(small_model), str(sig))
    # A mismatch is a failed verification result: the signer is known, the differences listed.
    (small_model / "config.json").write_bytes(b"{}")
    code, out, err = verify(run, small_model, pub, sig, "--json")
    doc = json.loads(out)
    assert set(doc) == SCHEMA_KEYS and (code, doc["ok"], doc["exit_code"]) == (3, False, 3)
    assert doc["signer_identity"]["key_id"] == _key_id(pub)
    assert doc["error"] == error_lines(err)[0].removeprefix("error: ")
    assert [(d["kind"], d["name"], d["actual"]) for d in doc["differences"]] == [
        ("modified", "config.json", sha(b"{}"))
    ]

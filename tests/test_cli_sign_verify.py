"""CLI ``sign``/``verify`` for the key and certificate methods: exit codes, messages, reports, --json.

Most tests run :func:`model_signing.cli.main` in-process (the real entry point, errors mapped there);
one runs ``main.py`` in a subprocess to check that nothing escapes as a traceback.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from model_signing.cli import _options
from tests import _pki
from tests._cli import Run

ROOT = Path(__file__).resolve().parent.parent




def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def keys(ec_keypair: Callable[..., tuple[Path, Path]]) -> tuple[Path, Path]:
    return ec_keypair("P-256", password=b"hunter2")


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_KEY_PASSWORD", "hunter2")


def _sign_key(run: Run, model: Path, priv: Path, sig: Path, *extra: object) -> tuple[int, str, str]:
    return run(
        "sign",
        "key",
        model,
        "--private-key",
        priv,
        "--password-env",
        "MODEL_KEY_PASSWORD",
        "--signature",
        sig,
        "--max-workers",
        1,
        "-q",
        *extra,
    )


def test_sign_and_verify_key(run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    code, out, err = _sign_key(run, small_model, priv, sig)
    assert (code, err) == (0, "")
    assert f"signature written to {sig}" in out
    code, out, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, "-q")
    assert (code, err) == (0, "")
    assert "4 resources match" in out and "P-256 key sha256:" in out


def test_hashing_options_are_signed(run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    code, out, _ = _sign_key(
        run,
        small_model,
        priv,
        sig,
        "--serialization",
        "shards",
        "--shard-size",
        100,
        "--hash",
        "blake2b",
        "--ignore-paths",
        "empty.txt",
        "--json",
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["serialization"]["method"] == "shards" and summary["serialization"]["shard_size"] == 100
    assert (
        summary["serialization"]["hash_type"] == "blake2b" and "empty.txt" in summary["serialization"]["ignore_paths"]
    )
    code, out, _ = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, "--json", "-q")
    result = json.loads(out)
    assert code == 0 and result["verified"] is True and result["differences"] == []
    assert result["serialization"] == summary["serialization"]


def test_default_signature_path(run: Run, small_model: Path, keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    code, _, _ = run("sign", "key", small_model, "--private-key", priv, "--password-env", "MODEL_KEY_PASSWORD", "-q")
    assert code == 0 and (small_model.parent / "model.sig").is_file()
    code, _, _ = run("verify", "key", small_model, "--public-key", pub, "-q")
    assert code == 0


def test_mismatch_report(run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    _sign_key(run, small_model, priv, sig)
    old = hashlib.sha256((small_model / "config.json").read_bytes()).hexdigest()
    (small_model / "config.json").write_bytes(b"tampered")
    (small_model / "weights" / "part-1.bin").unlink()
    (small_model / "odd\nname").write_bytes(b"x")
    code, out, err = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, "-q")
    assert code == 3 and out == ""
    lines = err.strip().splitlines()
    assert lines[0] == "error: the model does not match its signature: 3 differences"
    assert lines[1:] == [
        f"  modified: config.json expected {old} actual {hashlib.sha256(b'tampered').hexdigest()}",
        "  extra: odd\\nname expected - actual " + hashlib.sha256(b"x").hexdigest(),
        "  missing: weights/part-1.bin expected " + hashlib.sha256(b"\x01" * 100).hexdigest() + " actual -",
    ]
    assert "b'" not in err  # hex, never raw Python bytes
    code, out, _ = run("verify", "key", small_model, "--public-key", pub, "--signature", sig, "-q", "--json")
    result = json.loads(out)
    assert code == 3 and result["verified"] is False and result["exit_code"] == 3
    assert result["differences"][0] == {
        "kind": "modified",
        "name": "config.json",
        "expected": old,
        "actual": hashlib.sha256(b"tampered").hexdigest(),
        "expected_size": None,
        "actual_size": None,
        "detail": None,
        "shards": [],
    }
    assert [d["kind"] for d in result["differences"]] == ["modified", "extra", "missing"]


def test_verify_options(run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    priv, pub = keys
    sig = tmp_path / "model.sig"
    _sign_key(run, small_model, priv, sig)
    (small_model / "extra.txt").write_bytes(b"extra")
    base = ("verify", "key", small_model, "--public-key", pub, "--signature", sig, "-q")
    assert run(*base)[0] == 3
    assert run(*base, "--ignore-unsigned-files")[0] == 0
    assert run(*base, "--ignore-paths", "extra.txt")[0] == 0


def test_signature_invalid_exits_2(
    run: Run, small_model: Path, keys: tuple[Path, Path], ec_keypair: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    priv, _ = keys
    _, other_pub = ec_keypair(name="other")
    sig = tmp_path / "model.sig"
    _sign_key(run, small_model, priv, sig)
    code, _, err = run("verify", "key", small_model, "--public-key", other_pub, "--signature", sig)
    assert code == 2 and "different key" in _one_error_line(err)
    doc = json.loads(sig.read_text())
    doc["dsseEnvelope"]["payload"] = doc["dsseEnvelope"]["payload"][:-8] + "AAAAAAA="
    sig.write_text(json.dumps(doc))
    code, _, err = run("verify", "key", small_model, "--public-key", keys[1], "--signature", sig)
    assert code == 2 and "does not verify" in _one_error_line(err)


def test_certificate_commands(run: Run, small_model: Path, pki: _pki.Pki, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    code, out, err = run(
        "sign",
        "certificate",
        small_model,
        "--private-key",
        pki.key_pem,
        "--signing-certificate",
        pki.leaf_pem,
        "--certificate-chain",
        pki.chain_pem,
        "--signature",
        sig,
        "-q",
    )
    # The chain ends at the intermediate: verifiers must bring the root, which the warning names.
    assert code == 0 and "CN=signer" in out
    assert err.startswith("warning: the certificate chain ends at") and "CN=Test Root CA" in err
    code, out, _ = run(
        "verify", "certificate", small_model, "--certificate-chain", pki.root_pem, "--signature", sig, "-q"
    )
    assert code == 0 and "CN=signer" in out
    other = _pki.Pki(tmp_path / "other")
    code, _, err = run(
        "verify", "certificate", small_model, "--certificate-chain", other.root_pem, "--signature", sig
    )
    assert code == 2 and "does not chain" in _one_error_line(err)
    code, _, err = run(
        "verify", "key", small_model, "--public-key", tmp_path / "pki" / "leaf.key", "--signature", sig
    )
    assert code == 1 and "holds a private key" in _one_error_line(err)
    leaf_pub = _pki.write_public_key(pki.leaf_key, tmp_path / "leaf.pub")
    code, _, err = run("verify", "key", small_model, "--public-key", leaf_pub, "--signature", sig)
    assert code == 2 and "certificate signature" in _one_error_line(err)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing key", "private key .* does not exist"),
        ("wrong password", "wrong password"),
        ("unset password variable", "environment variable NO_SUCH_VAR is not set"),
        ("missing model", "does not exist"),
        (
            "existing signature",
            r"already exists: it is not a readable signature bundle; use --signature \S+/model-2.sig instead, or "
            "pass --overwrite",
        ),
        ("missing option", "Missing option '--private-key'"),
        ("shard size without shards", "--shard-size only applies"),
    ],
)
def test_sign_bad_input_exits_1(
    *,
    run: Run,
    small_model: Path,
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    message: str,
) -> None:
    priv, _ = keys
    sig = tmp_path / "model.sig"
    args: list[object] = [
        "sign",
        "key",
        small_model,
        "--private-key",
        priv,
        "--password-env",
        "MODEL_KEY_PASSWORD",
        "--signature",
        sig,
    ]
    if case == "missing key":
        args[4] = tmp_path / "nope.pem"
    elif case == "wrong password":
        monkeypatch.setenv("MODEL_KEY_PASSWORD", "wrong")
    elif case == "unset password variable":
        args[6] = "NO_SUCH_VAR"
    elif case == "missing model":
        args[2] = tmp_path / "no-model"
    elif case == "existing signature":
        sig.write_text("keep me")
    elif case == "missing option":
        args = ["sign", "key", small_model]
    elif case == "shard size without shards":
        args += ["--shard-size", "10"]
    code, out, err = run(*args)
    assert code == 1 and out == ""
    import re

    assert re.search(message, _one_error_line(err))
    assert sig.read_text() == "keep me" if case == "existing signature" else not sig.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"{garbage", "not valid JSON"),
        (b'{"mediaType": "application/json"}', "not a Sigstore bundle media type"),
        (b"\x00\xff\x00", "not UTF-8"),
    ],
)
def test_malformed_signature_exits_1(
    *, run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path, content: bytes, message: str
) -> None:
    sig = tmp_path / "bad.sig"
    sig.write_bytes(content)
    code, _, err = run("verify", "key", small_model, "--public-key", keys[1], "--signature", sig)
    assert code == 1 and message in _one_error_line(err)


def test_verify_bad_input_exits_1(run: Run, small_model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    code, _, err = run(
        "verify", "key", small_model, "--public-key", tmp_path / "missing.pub", "--signature", tmp_path / "x"
    )
    assert code == 1 and "public key" in _one_error_line(err)
    code, _, err = run("verify", "key", tmp_path / "nope", "--public-key", keys[1], "--signature", tmp_path / "x")
    assert code == 1 and "does not exist" in _one_error_line(err)
    code, _, err = run("verify", "key", small_model, "--public-key", keys[1], "--signature", tmp_path / "missing.sig")
    assert code == 1 and "missing.sig does not exist" in _one_error_line(err)
    code, _, err = run("verify", "certificate", small_model, "--signature", tmp_path / "x")
    assert code == 1 and "--certificate-chain" in _one_error_line(err)


def test_sign_group_lists_methods(run: Run) -> None:
    code, out, _ = run("sign", "--help")
    assert code == 0 and "key" in out and "certificate" in out


def test_default_group_falls_back_to_the_default_subcommand() -> None:
    """``sign MODEL`` / ``sign --path MODEL`` reach the default subcommand once it is registered."""
    seen: list[tuple[str, ...]] = []
    group = typer.Typer(cls=_options.DefaultGroup)

    @group.command("sigstore")
    def sigstore(path: str = typer.Argument(""), path_opt: str = typer.Option("", "--path")) -> None:
        seen.append(("sigstore", path or path_opt))

    @group.command("key")
    def key(path: str) -> None:
        seen.append(("key", path))

    command = typer.main.get_command(group)
    for args in (["m1"], ["--path", "m2"], ["sigstore", "m3"], ["key", "m4"]):
        command.main(args=args, standalone_mode=False)
    assert seen == [("sigstore", "m1"), ("sigstore", "m2"), ("sigstore", "m3"), ("key", "m4")]
    assert command.main(args=["--help"], standalone_mode=False) == 0
    assert len(seen) == 4  # --help shows the group's help, it does not run the default


def test_no_traceback_from_the_real_entry_point(small_model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    sig = tmp_path / "bad.sig"
    sig.write_text('{"mediaType": 3}')
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "verify",
            "key",
            str(small_model),
            "--public-key",
            str(keys[1]),
            "--signature",
            str(sig),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and _one_error_line(proc.stderr)

"""Library messages speak API terms; the CLI adds the flag names (architecture rule 4)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import model_signing as ms
from model_signing.cli._terms import TERM, TERMS, to_cli
from model_signing.errors import InputError, ModelPathError
from tests._cli import Run

PACKAGE = Path(ms.__file__).parent
#: Not part of the library's API surface: the CLI names flags by design; sigstore_local is a separate tool.
#: loading (``model_signing.load``) is API-only: no command runs it, so its terms have no flag to become.
SKIPPED = ("cli", "sigstore_local", "loading")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")
#: (module, flag) -> why a library string may name it.
ALLOWED = {
    # The advice names the command of the separate local-instance tool that writes such a file.
    ("methods/sigstore/_trust.py", "--trust-config-out"): "a flag of the sigstore-local tool, not of this API",
}


def _library_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] not in SKIPPED]


def _documentation(tree: ast.AST) -> set[int]:
    """ids of the string constants that are documentation (docstrings and attribute docstrings)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string a message can be built from: constants, and f-strings with each field as a sample value."""
    docs = _documentation(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            parts = [
                v.value if isinstance(v, ast.Constant) else ("'x'" if v.conversion == ord("r") else "x")
                for v in node.values
                if isinstance(v, ast.Constant | ast.FormattedValue)
            ]
            found.append((node.lineno, "".join(str(p) for p in parts)))
    return found


def test_no_library_string_names_a_flag() -> None:
    offending = []
    for path in _library_modules():
        rel = path.relative_to(PACKAGE).as_posix()
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            offending += [f"{rel}:{line}: {flag}" for flag in FLAG.findall(text) if (rel, flag) not in ALLOWED]
    assert not offending, "library strings name CLI flags (use the API term; the CLI adds the flag):\n" + "\n".join(
        offending
    )
    assert len(_library_modules()) > 30  # the scan saw the package


def test_every_api_term_in_a_library_message_has_a_cli_spelling() -> None:
    terms = {
        match.group(0)
        for path in _library_modules()
        for _, text in _strings(ast.parse(path.read_text(encoding="utf-8")))
        for match in TERM.finditer(text)
    }
    untranslated = sorted(t for t in terms if "`" in to_cli(t))
    assert not untranslated, f"API terms without a CLI spelling in model_signing/cli/_terms.py: {untranslated}"
    assert {"`ignore_paths`", "`allow_symlinks=True`", "`trust_config`", "`issuer`"} <= terms


def test_terms_become_flags_and_other_text_is_kept() -> None:
    assert to_cli("pass `allow_symlinks=True` or `ignore_paths=[\"a b/it's\"]` to skip it") == (
        "pass --allow-symlinks or --ignore-paths a b/it's to skip it"
    )
    assert to_cli("use `method='files'`") == "use --serialization files"
    assert to_cli("(`trusted_root='/r/root.json'`)") == "(--trusted-root /r/root.json)"
    # Ordinary words and unknown terms are left alone.
    assert to_cli("the issuer identity and password of `nothing`") == "the issuer identity and password of `nothing`"
    assert set(TERMS.values()) >= {"--identity-provider", "--strict-x509", "--oidc-disable-ambient-providers"}


def test_symlink_message_api_vs_cli(tmp_path: Path, run: Run) -> None:
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "w.bin").write_bytes(b"w")
    (model / "sub" / "link").symlink_to("../w.bin")
    with pytest.raises(ModelPathError) as info:
        ms.hash_model(model)
    api = str(info.value)
    assert "pass `allow_symlinks=True` to follow symlinks or `ignore_paths=['sub/link']` to skip it" in api
    assert "--" not in api
    code, out, err = run("digest", model, "--json")
    assert code == 1
    line = "pass --allow-symlinks to follow symlinks or --ignore-paths sub/link to skip it"
    assert line in err and "`" not in err
    assert line in json.loads(out)["error"]


def test_identity_policy_message_api_vs_cli(tmp_path: Path, run: Run) -> None:
    with pytest.raises(InputError, match=r"^`issuer` is required: the OIDC issuer URL the signer used$"):
        ms.IdentityPolicy(issuer="", identity="a@example.com")
    with pytest.raises(InputError, match=r"^pass exactly one of `identity` and `identity_regexp`$"):
        ms.IdentityPolicy(issuer="https://issuer.example")
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    code, _, err = run("verify", "sigstore", model, "--identity", "a@example.com")
    assert code == 1 and "error: --identity-provider is required: the OIDC issuer URL the signer used" in err


def test_exclusive_trust_options_api_vs_cli(tmp_path: Path, run: Run) -> None:
    config = tmp_path / "tc.json"
    config.write_text("{}")
    with pytest.raises(InputError, match=r"^`staging=True` and `trust_config` are exclusive; pass only one$"):
        ms.SigstoreSigner(trust_config=config, staging=True)
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    code, _, err = run("sign", "sigstore", model, "--staging", "--trust-config", config,
                       "--identity-token", "x.y.z")
    assert code == 1 and "error: --staging and --trust-config are exclusive; pass only one" in err

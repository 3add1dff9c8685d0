"""CLI conventions a user (or a model-signing user switching over) expects, driven as they run the CLI.

``--version``, ``-h``, model-signing 1.1.1's option spellings (checked against the peer's own ``--help``),
bare groups printing their help, ``--help`` marking required options and saying PATH, plural forms, models
named like a subcommand, Ctrl-C, and ``sigstore-local serve`` restarted with the README's command.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from benchmarks.peer import ensure_peer_venv, peer_cli
from model_signing.sigstore_local import LocalSigstore
from tests import _pki

ROOT = Path(__file__).resolve().parent.parent
MAIN = [sys.executable, str(ROOT / "main.py")]
EMAIL = "alice@example.com"
# Wide enough that no option name or metavar of the rich help is cut ("--identity-prov…").
WIDE = {"COLUMNS": "250", "TERMINAL_WIDTH": "250"}


def run(*args: object, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MAIN, *(str(a) for a in args)], cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120, check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def error_line(proc: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def write_model(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


COMMANDS = [
    (), ("digest",), ("sign",), ("sign", "key"), ("sign", "certificate"), ("sign", "sigstore"),
    ("verify",), ("verify", "key"), ("verify", "certificate"), ("verify", "sigstore"),
    ("sigstore-local",), ("sigstore-local", "serve"), ("sigstore-local", "token"),
    ("hub",), ("hub", "upload"), ("hub", "verify"),
    ("verify", "registry"), ("registry",), ("registry", "add"), ("registry", "list"), ("lock",), ("lock", "create"),
    ("verify-all",), ("audit",), ("audit", "show"), ("sign-all",), ("sign-all", "key"),
]


# -- --version, -h, bare groups ----------------------------------------------------------------------


def test_version_prints_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    proc = ok(run("--version"))
    assert proc.stdout == f"modelseal {version}\n"
    assert proc.stderr == ""


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "modelseal")
def test_dash_h_is_help_everywhere(command: tuple[str, ...]) -> None:
    short = ok(run(*command, "-h"))
    assert "Usage: modelseal" in short.stdout
    assert short.stdout == ok(run(*command, "--help")).stdout


@pytest.mark.parametrize("command", [(), ("sign",), ("verify",), ("sigstore-local",), ("hub",), ("registry",),
                                     ("lock",), ("audit",), ("sign-all",)],
                         ids=lambda c: " ".join(c) or "modelseal")
def test_bare_groups_print_their_help_and_exit_0(command: tuple[str, ...]) -> None:
    proc = ok(run(*command))
    assert proc.stdout == ok(run(*command, "--help")).stdout
    assert proc.stderr == ""


# -- model-signing 1.1.1's spellings -----------------------------------------------------------------

PEER_COMMANDS = [(group, method) for group in ("sign", "verify") for method in ("key", "certificate", "sigstore")]
# `--opt METAVAR`, `--opt`, or a pair `--opt / --no-opt` at the start of an option row of click's help.
_OPTION_ROW = re.compile(r"^  (-\w, )?(--[\w-]+)(?: / (--[\w-]+))?(?: ([A-Z_]+))?")


def peer_options(*command: str) -> list[tuple[str, bool]]:
    """Every ``(--option, takes_a_value)`` the peer's own ``--help`` lists for ``command``."""
    proc = subprocess.run(
        [*peer_cli(ensure_peer_venv()), *command, "--help"], env={**os.environ, **WIDE},
        capture_output=True, text=True, timeout=120, check=True,
    )
    options: list[tuple[str, bool]] = []
    for line in proc.stdout.split("Options:", 1)[1].splitlines():
        match = _OPTION_ROW.match(line)
        if match:
            _, name, negation, metavar = match.groups()
            options.append((name, metavar is not None))
            if negation:
                options.append((negation, False))
    return options


@pytest.mark.parametrize("command", [(), *PEER_COMMANDS], ids=lambda c: " ".join(c) or "modelseal")
def test_every_option_of_the_peers_help_is_accepted(command: tuple[str, ...]) -> None:
    options = peer_options(*command)
    assert len(options) >= (3 if not command else 6), options  # the parse found the peer's rows
    for name, takes_value in options:
        # Parsed before --help acts (--help first: it wins over --version): an unknown option fails with
        # "No such option" instead of printing the help.
        args = [*command, "--help", name, *(["x"] if takes_value else [])]
        proc = run(*args)
        assert proc.returncode == 0 and "Usage: modelseal" in proc.stdout, (args, proc.stderr)


def test_peer_spellings_sign_and_verify_with_a_key(tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", {"a.bin": b"alpha", "b/c.bin": b"charlie"})
    key = _pki.ec_key()
    priv = _pki.write_private_key(key, tmp_path / "k.pem", b"pw")
    pub = _pki.write_public_key(key, tmp_path / "k.pub")
    sig = tmp_path / "m.sig"
    # A model-signing command line, as its users wrote it (the password as an argument: warned about).
    signed = ok(run("sign", "key", model, "--private_key", priv, "--password", "pw", "--signature", sig,
                    "--allow_symlinks", "--ignore-git-paths", "--ignore-paths", model / "b"))
    assert signed.stderr.startswith("warning: --password is visible to other users")
    ok(run("verify", "key", model, "--public_key", pub, "--signature", sig, "--allow_symlinks",
           "--ignore-git-paths", "--no-ignore-git-paths"))
    (model / "new.bin").write_bytes(b"unsigned")
    ok(run("verify", "key", model, "--public_key", pub, "--signature", sig, "--ignore_unsigned_files"))
    # The last of --ignore_unsigned_files / --no-ignore_unsigned_files wins, as in model-signing.
    assert run("verify", "key", model, "--public_key", pub, "--signature", sig, "--ignore_unsigned_files",
               "--no-ignore_unsigned_files").returncode == 3
    ok(run("verify", "key", model, "--public_key", pub, "--signature", sig, "--no-ignore_unsigned_files",
           "--ignore-unsigned-files"))
    # What model-signing does and this CLI cannot: said so in one line, exit 1.
    assert "--no-ignore-git-paths is not supported" in error_line(
        run("sign", "key", model, "--private_key", priv, "--password", "pw", "--signature", tmp_path / "x.sig",
            "--no-ignore-git-paths"))
    assert not (tmp_path / "x.sig").exists()


def test_peer_spellings_with_certificates_and_log_fingerprints(tmp_path: Path) -> None:
    pki = _pki.Pki(tmp_path / "pki")
    model = write_model(tmp_path / "model", {"w.bin": b"weights"})
    sig = tmp_path / "m.sig"
    ok(run("sign", "certificate", model, "--private_key", pki.key_pem, "--signing_certificate", pki.leaf_pem,
           "--certificate_chain", pki.chain_pem, "--signature", sig))
    proc = ok(run("verify", "certificate", model, "--certificate_chain", pki.root_pem, "--signature", sig,
                  "--log_fingerprints"))

    def fingerprint(cert: x509.Certificate) -> str:
        return hashlib.sha256(cert.public_bytes(Encoding.DER)).digest().hex(":").upper()

    printed = re.findall(r"^\[(\w+)\] SHA-256 fingerprint ([0-9A-F:]+) ", proc.stderr, re.M)
    assert printed == [("trusted", fingerprint(pki.root)), ("bundle", fingerprint(pki.leaf)),
                       ("bundle", fingerprint(pki.inter))]


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


def keyless_env() -> dict[str, str]:
    # Nothing ambient: only the token given on the command line may sign.
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("GITHUB_", "ACTIONS_", "SIGSTORE_", "GITLAB_", "CI_", "BUILDKITE")) and k != "CI"}


def keyless(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MAIN, *(str(a) for a in args)], cwd=cwd, env=keyless_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, check=False)


def test_peer_spellings_keyless(inst: LocalSigstore, tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", {"w.bin": b"keyless"})
    sig = tmp_path / "m.sig"
    ok(keyless("sign", "sigstore", model, "--trust_config", inst.trust_config_path, "--use_ambient_credentials",
               "--identity_token", inst.mint_token(EMAIL), "--signature", sig, "--client_id", "sigstore",
               "--oauth_force_oob"))
    ok(keyless("verify", "sigstore", model, "--trust_config", inst.trust_config_path, "--identity", EMAIL,
               "--identity_provider", inst.oidc_issuer, "--signature", sig))
    # --use_staging means --staging: it conflicts with a private instance's trust config the same way.
    both = keyless("verify", model, "--trust_config", inst.trust_config_path, "--use_staging", "--identity", EMAIL,
                   "--identity_provider", inst.oidc_issuer, "--signature", sig)
    assert both.stderr == keyless("verify", model, "--trust-config", inst.trust_config_path, "--staging",
                                  "--identity", EMAIL, "--identity-provider", inst.oidc_issuer,
                                  "--signature", sig).stderr
    assert both.returncode == 1


# -- models named like a subcommand ------------------------------------------------------------------


def test_models_named_like_subcommands(inst: LocalSigstore, tmp_path: Path) -> None:
    pki = _pki.Pki(tmp_path / "pki")
    key = _pki.ec_key()
    priv = _pki.write_private_key(key, tmp_path / "k.pem")
    pub = _pki.write_public_key(key, tmp_path / "k.pub")
    for name in ("key", "certificate", "sigstore"):
        write_model(tmp_path / name, {"w.bin": name.encode()})
        ok(run("sign", "key", "--path", name, "--private-key", priv, "--signature", f"{name}.key.sig", cwd=tmp_path))
        ok(run("verify", "key", "--path", name, "--public-key", pub, "--signature", f"{name}.key.sig", cwd=tmp_path))
        ok(run("sign", "certificate", "--path", name, "--private-key", pki.key_pem, "--signing-certificate",
               pki.leaf_pem, "--certificate-chain", pki.chain_pem, "--signature", f"{name}.cert.sig", cwd=tmp_path))
        ok(run("verify", "certificate", "--path", name, "--certificate-chain", pki.root_pem,
               "--signature", f"{name}.cert.sig", cwd=tmp_path))
        # The default method, without naming it: `sign --path key` is the model `key`, not the subcommand.
        signed = ok(keyless("sign", "--path", name, "--trust-config", inst.trust_config_path,
                            "--identity-token", inst.mint_token(EMAIL), "--signature", f"{name}.sig", cwd=tmp_path))
        assert f"signed {name}:" in signed.stdout
        ok(keyless("verify", "--path", name, "--trust-config", inst.trust_config_path, "--identity", EMAIL,
                   "--identity-provider", inst.oidc_issuer, "--signature", f"{name}.sig", cwd=tmp_path))
        # ... and so is `./key`.
        ok(run("verify", "key", f"./{name}", "--public-key", pub, "--signature", f"{name}.key.sig", cwd=tmp_path))
    assert "give the model once" in error_line(
        run("verify", "key", "key", "--path", "sigstore", "--public-key", pub, cwd=tmp_path))


# -- --help: required options, PATH metavars, --identity-regexp ---------------------------------------

# Every option or argument that names a file or directory, per command.
PATH_OPTIONS = {
    ("digest",): ["path", "--ignore-paths"],
    ("sign", "key"): ["path", "--path", "--private-key", "--signature", "--ignore-paths"],
    ("sign", "certificate"): ["path", "--path", "--private-key", "--signing-certificate", "--certificate-chain",
                              "--signature", "--ignore-paths"],
    ("sign", "sigstore"): ["path", "--path", "--trust-config", "--signature", "--ignore-paths"],
    ("verify", "key"): ["path", "--path", "--public-key", "--signature", "--ignore-paths"],
    ("verify", "certificate"): ["path", "--path", "--certificate-chain", "--signature", "--ignore-paths"],
    ("verify", "sigstore"): ["path", "--path", "--trust-config", "--trusted-root", "--signature", "--ignore-paths"],
    ("sigstore-local", "serve"): ["--trust-config-out", "--state-dir"],
    ("sigstore-local", "token"): ["--state-dir"],
    ("hub", "upload"): ["--private-key", "--signing-certificate", "--certificate-chain", "--trust-config",
                        "--ignore-paths"],
    ("hub", "verify"): ["--local-dir", "--public-key", "--certificate-chain", "--trust-config", "--trusted-root",
                        "--ignore-paths"],
}


def help_rows(*command: str) -> dict[str, str]:
    """``{option or argument name: its row}`` of the (plain, click-formatted) help.

    A row is an entry of the ``Arguments:`` or ``Options:`` section with its wrapped continuation lines
    joined; an argument is keyed by its metavar in lower case (``[PATH]`` -> ``path``), an option by each
    of its spellings.
    """
    rows: dict[str, str] = {}
    section, keys = "", list[str]()
    for line in ok(run(*command, "--help", env=WIDE)).stdout.splitlines():
        if line and not line.startswith(" "):
            section, keys = line.rstrip(":"), []
        elif re.match(r"^  \S", line) and section in ("Arguments", "Options"):
            head = line.split("  ")[1] if section == "Options" else line.split()[0]
            if section == "Arguments":
                keys = [head.strip("[]").lower()]
            else:
                keys = [part.split()[0] for part in head.split(", ")]
            for key in keys:
                rows[key] = line
        elif line.startswith("   ") and keys:
            for key in keys:  # click wraps after a hyphen too ("--identity-" / "regexp")
                rows[key] += ("" if rows[key].endswith("-") else " ") + line.strip()
    return rows


@pytest.mark.parametrize("command", list(PATH_OPTIONS), ids=" ".join)
def test_help_says_path_for_paths(command: tuple[str, ...]) -> None:
    rows = help_rows(*command)
    for name in PATH_OPTIONS[command]:
        assert "PATH" in rows[name] and "TEXT" not in rows[name], rows[name]


def test_help_marks_required_options() -> None:
    assert "[required]" in help_rows("sign", "key")["--private-key"]
    certificate = help_rows("sign", "certificate")
    assert "[required]" in certificate["--private-key"]
    # Required unless a pkcs11: key's token holds the certificate: the help says when, in words.
    assert "Required, except with a pkcs11: --private-key" in certificate["--signing-certificate"]
    assert "[required]" in help_rows("verify", "key")["--public-key"]
    assert "[required]" in help_rows("verify", "certificate")["--certificate-chain"]
    keyless_rows = help_rows("verify", "sigstore")
    assert "(required)" in keyless_rows["--identity-provider"]
    assert "required: this or --identity-regexp" in keyless_rows["--identity"]
    assert "[required]" not in help_rows("sign", "sigstore").get("--identity-token", "")


def test_help_says_identity_regexp_is_a_full_match() -> None:
    assert "full match, unlike cosign's search" in help_rows("verify", "sigstore")["--identity-regexp"]


# -- plural forms ------------------------------------------------------------------------------------


def test_counts_are_in_the_right_number(tmp_path: Path) -> None:
    key = _pki.ec_key()
    priv = _pki.write_private_key(key, tmp_path / "k.pem")
    pub = _pki.write_public_key(key, tmp_path / "k.pub")
    one = write_model(tmp_path / "one", {"a.bin": b"a"})
    two = write_model(tmp_path / "two", {"a.bin": b"a", "b.bin": b"b"})
    assert ": 1 resource, root digest" in ok(run("sign", "key", one, "--private-key", priv, "--signature",
                                               tmp_path / "one.sig")).stdout
    assert ": 2 resources, root digest" in ok(run("sign", "key", two, "--private-key", priv, "--signature",
                                                tmp_path / "two.sig")).stdout
    assert ": 1 resource matches\n" in ok(run("verify", "key", one, "--public-key", pub, "--signature",
                                            tmp_path / "one.sig")).stdout
    assert ": 2 resources match\n" in ok(run("verify", "key", two, "--public-key", pub, "--signature",
                                           tmp_path / "two.sig")).stdout
    (one / "extra.bin").write_bytes(b"x")
    assert "; 1 unsigned file ignored\n" in ok(run("verify", "key", one, "--public-key", pub, "--signature",
                                                 tmp_path / "one.sig", "--ignore-unsigned-files")).stdout
    mismatch = run("verify", "key", one, "--public-key", pub, "--signature", tmp_path / "one.sig")
    assert mismatch.returncode == 3
    assert mismatch.stderr.splitlines()[0] == "error: the model does not match its signature: 1 difference"
    (two / "extra.bin").write_bytes(b"x")
    (two / "a.bin").write_bytes(b"changed")
    mismatch = run("verify", "key", two, "--public-key", pub, "--signature", tmp_path / "two.sig")
    assert mismatch.stderr.splitlines()[0] == "error: the model does not match its signature: 2 differences"


# -- Ctrl-C --------------------------------------------------------------------------------------------


def interrupt(args: list[object], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI, send it SIGINT (what Ctrl-C does) while it hashes, and collect the result."""
    # A shell without job control starts background jobs (this test run, maybe) with SIGINT ignored, which
    # the child would inherit; a handled signal is reset to the default by exec, so the CLI gets Ctrl-C.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [*MAIN, *(str(a) for a in args)], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    time.sleep(2.5)  # start-up is well under a second; hashing the sparse model takes far longer
    assert proc.poll() is None, "the command ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_prints_interrupted(tmp_path: Path) -> None:
    model = tmp_path / "big"
    model.mkdir()
    with (model / "weights.bin").open("wb") as f:
        f.truncate(64 << 30)  # sparse: 64 GiB to hash, no disk used
    priv = _pki.write_private_key(_pki.ec_key(), tmp_path / "k.pem")
    for args in (["digest", model], ["sign", "key", model, "--private-key", priv, "-q"]):
        result = interrupt(args, tmp_path)
        assert result.returncode == 130, result.stderr
        assert result.stderr == "error: interrupted\n"
        assert result.stdout == ""
    assert not (tmp_path / "model.sig").exists()


# -- sigstore-local serve restarted --------------------------------------------------------------------


def serve(*args: object, cwd: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``serve`` until its banner is out, then stop it with SIGINT; the result and the banner."""
    proc = subprocess.Popen([*MAIN, "sigstore-local", "serve", *(str(a) for a in args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    banner: list[str] = []
    while not banner or banner[-1] != "Press Ctrl-C to stop.":
        line = proc.stdout.readline()
        if not line:
            break
        banner.append(line.rstrip("\n"))
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "\n".join(banner) + out, err), banner


def _served_url(banner: list[str]) -> str:
    return banner[0].rsplit(" ", 1)[1]


@pytest.mark.parametrize("port", [[], ["--port", "0"]], ids=["same-port", "port-0"])
def test_serve_restarts_with_the_readme_command(tmp_path: Path, port: list[str]) -> None:
    # The README's command, twice.
    command = ["--state-dir", "./sigstore-state", "--trust-config-out", "tc.json", "-q", *port]
    first, banner1 = serve(*command, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second, banner2 = serve(*command, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    trust = json.loads((tmp_path / "tc.json").read_text())
    # Rewritten by the second start: it names the second start's address.
    assert trust["signingConfig"]["caUrls"][0]["url"] == _served_url(banner2)
    assert (tmp_path / "tc.json").read_text() == (tmp_path / "sigstore-state" / "trust_config.json").read_text()
    if not port:
        assert _served_url(banner1) == _served_url(banner2)
    # Another state directory's trust config is still not replaced without --overwrite.
    other = run("sigstore-local", "serve", "--state-dir", "other-state", "--trust-config-out", "tc.json", cwd=tmp_path)
    assert error_line(other) == ("error: --trust-config-out tc.json: already exists and is not the trust config "
                                 "of --state-dir other-state; pass --overwrite to replace it")
    assert not (tmp_path / "other-state").exists()
    assert json.loads((tmp_path / "tc.json").read_text()) == trust


def test_failed_start_leaves_no_state_directory(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("sigstore-local", "serve", "--port", port, "--state-dir", tmp_path / "new" / "state",
                     "--trust-config-out", tmp_path / "tc.json")
        assert "cannot serve on" in error_line(result)
        assert sorted(tmp_path.iterdir()) == []  # neither the state dir nor its parent, nor the trust config
        # An existing state directory survives a failed start intact.
        started, _ = serve("--state-dir", tmp_path / "kept", "-q", cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        before = {p: p.read_bytes() for p in (tmp_path / "kept").rglob("*") if p.is_file()}
        assert "cannot serve on" in error_line(
            run("sigstore-local", "serve", "--port", port, "--state-dir", tmp_path / "kept"))
        assert {p: p.read_bytes() for p in (tmp_path / "kept").rglob("*") if p.is_file()} == before

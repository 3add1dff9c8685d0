"""The CI products for users: actions/sign, actions/verify, .github/workflows/sign-model.yml, the GitLab template.

Two kinds of check:

* static: actionlint (with shellcheck) on the reusable workflow and on a small workflow that uses both actions
  (actionlint reads a local action's metadata, so wrong inputs or outputs are caught), shellcheck on every
  ``run:``/``script:`` body, the official JSON schemas that check-jsonschema ships (offline: every Python
  process it starts has an audit hook that refuses sockets), third-party actions pinned by full commit SHA,
  least permissions, and actions/requirements.txt in step with install/;
* end to end without GitHub or GitLab: the actions' own ``run:`` steps, read from action.yml (never re-typed),
  with their ``${{ }}`` expressions evaluated by the small evaluator below, run by bash in an environment like
  a runner's (``ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN`` pointed at the local Sigstore instance's GitHub-style
  token endpoint, ``GITHUB_*``, ``RUNNER_TEMP``, ``GITHUB_OUTPUT``...), the toolkit already installed
  (``install-from: preinstalled`` with a ``modelseal`` on PATH that runs this checkout); the GitLab jobs'
  ``before_script`` + ``script`` the same way under ``sh`` with a ``SIGSTORE_ID_TOKEN`` of GitLab's shape.
  The unmodified sigstore client talks to the local instance (its trust config passed as an input).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from ruamel.yaml import YAML

from model_signing.sigstore_local import LocalSigstore, gitlab_claims, gitlab_pipeline_identity
from scripts import action_requirements

ROOT = Path(__file__).resolve().parent.parent
SIGN_ACTION = ROOT / "actions" / "sign" / "action.yml"
VERIFY_ACTION = ROOT / "actions" / "verify" / "action.yml"
WORKFLOW = ROOT / ".github" / "workflows" / "sign-model.yml"
GITLAB = ROOT / "ci" / "gitlab" / "model-signing.gitlab-ci.yml"
BIN = Path(sys.executable).parent
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")

REPOSITORY = "octo-org/models"
REF = "refs/tags/v1.0"
WORKFLOW_FILE = ".github/workflows/release.yml"
WORKFLOW_NAME = "release model"
FILES = {"config.json": b'{"layers": 2}\n', "weights/w.bin": bytes(range(256)) * 5, "README.md": b"# m\n"}


def tool(name: str) -> str:
    """A lint tool from the venv (install/requirements-dev.txt); missing is a failure under CI (conftest)."""
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install --require-hashes -r install/requirements-dev.txt)")
    return path


def load(path: Path) -> Any:
    """YAML 1.2 (``on:`` stays a string key, unlike YAML 1.1 loaders)."""
    return YAML(typ="safe", pure=True).load(path.read_text())


def root_digest(files: Mapping[str, bytes]) -> str:
    """OMS files serialization: SHA-256 over the raw per-file SHA-256 digests in name order."""
    return hashlib.sha256(b"".join(hashlib.sha256(files[n]).digest() for n in sorted(files))).hexdigest()


# -- static checks ----------------------------------------------------------------------------------------


def test_actionlint_the_reusable_workflow() -> None:
    proc = subprocess.run([tool("actionlint"), "-oneline", "-shellcheck", tool("shellcheck"), str(WORKFLOW)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_actionlint_a_workflow_using_both_actions(tmp_path: Path) -> None:
    """actionlint checks a local action's inputs/outputs from its action.yml: every input used, both actions."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "actions", repo / "actions")
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".git").mkdir()  # actionlint resolves ./actions/... from the project root it finds by .git
    sign_inputs = {name: "x" for name in load(SIGN_ACTION)["inputs"]}
    verify_inputs = {name: "x" for name in load(VERIFY_ACTION)["inputs"]}
    outputs = " ".join(f"${{{{ steps.sign.outputs.{name} }}}}" for name in load(SIGN_ACTION)["outputs"])
    workflow = {
        "name": "use the actions",
        "on": "push",
        "permissions": {},
        "jobs": {"sign": {
            "runs-on": "ubuntu-latest",
            "permissions": {"id-token": "write", "contents": "read"},
            "steps": [
                {"id": "sign", "uses": "./actions/sign", "with": sign_inputs},
                {"name": "outputs", "env": {"OUT": outputs}, "run": 'echo "$OUT"'},
                {"uses": "./actions/verify", "with": verify_inputs},
            ],
        }},
    }
    path = repo / ".github" / "workflows" / "use.yml"
    path.write_text(json.dumps(workflow, indent=2))  # JSON is YAML
    cmd = [tool("actionlint"), "-oneline", "-shellcheck", tool("shellcheck"), str(path)]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # And it does look into the actions: an unknown input is an error.
    workflow["jobs"]["sign"]["steps"][0]["with"] = {**sign_inputs, "no-such-input": "x"}  # type: ignore[index]
    path.write_text(json.dumps(workflow, indent=2))
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1 and 'input "no-such-input" is not defined' in proc.stdout, proc.stdout


def _action_scripts() -> Iterator[tuple[str, str]]:
    for path in (SIGN_ACTION, VERIFY_ACTION):
        for step in load(path)["runs"]["steps"]:
            if "run" in step:
                yield f"{path.parent.name}: {step['name']}", step["run"]
    for job_name, job in load(WORKFLOW)["jobs"].items():
        for step in job["steps"]:
            if "run" in step:
                yield f"workflow {job_name}: {step['name']}", step["run"]


def test_action_scripts_take_inputs_only_from_the_environment_and_pass_shellcheck(tmp_path: Path) -> None:
    # actionlint shellchecks workflow run: steps, not those of composite actions: shellcheck them here.
    scripts = list(_action_scripts())
    assert len(scripts) >= 5
    for name, script in scripts:
        # No ${{ }} inside a script: an input substituted into shell text is a script injection.
        assert "${{" not in script, name
        path = tmp_path / "script.sh"
        path.write_text(script)
        proc = subprocess.run([tool("shellcheck"), "-s", "bash", "-S", "style", str(path)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"{name}:\n{proc.stdout}"


def test_gitlab_scripts_pass_shellcheck_as_posix_sh(tmp_path: Path) -> None:
    for job in ("modelseal-sign", "modelseal-verify"):
        path = tmp_path / f"{job}.sh"
        path.write_text(gitlab_job_script(job))
        proc = subprocess.run([tool("shellcheck"), "-s", "sh", "-S", "style", str(path)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"{job}:\n{proc.stdout}"


# Refuses every socket and name lookup in any Python process started with it on PYTHONPATH: check-jsonschema
# must validate from the schemas it ships.
NO_NETWORK = """import os, sys
def refuse(event, args):
    if event in ("socket.connect", "socket.getaddrinfo"):
        raise RuntimeError(f"network access attempted: {event} {args!r}")
sys.addaudithook(refuse)
with open(os.environ["NO_NETWORK_LOG"], "a") as log:
    log.write(f"{os.getpid()}\\n")
"""


@pytest.mark.parametrize(("schema", "files"), [
    ("vendor.github-workflows", [WORKFLOW]),
    ("vendor.github-actions", [SIGN_ACTION, VERIFY_ACTION]),
    ("vendor.gitlab-ci", [GITLAB]),
])
def test_official_schemas_offline(schema: str, files: list[Path], tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(NO_NETWORK)
    armed = tmp_path / "armed"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NO_NETWORK_LOG": str(armed)}
    proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validation done" in proc.stdout
    assert armed.read_text().split(), "the no-network hook was not loaded"
    # The schema does reject a broken file (so "ok" means something), still offline.
    broken = tmp_path / files[0].name
    doc = load(files[0])
    doc["no-such-top-level-key"] = {"x": 1}
    if schema == "vendor.gitlab-ci":
        doc["modelseal-sign"]["stage"] = {"not": "a string"}
    broken.write_text(json.dumps(doc))
    proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", schema, str(broken)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "network access attempted" not in proc.stdout + proc.stderr


def _uses_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]


def test_third_party_actions_are_pinned_by_full_commit_sha_with_a_version_comment() -> None:
    seen = set()
    for path in (WORKFLOW, SIGN_ACTION, VERIFY_ACTION):
        for line in _uses_lines(path):
            m = re.match(r"^(?:-\s+)?uses:\s*(\S+)\s*(#\s*(\S+))?$", line)
            assert m, line
            ref = m.group(1)
            if ref.startswith("./"):
                continue  # a local action: the same commit as the workflow
            assert SHA_PIN.match(ref), f"{path.name}: {ref} is not pinned by a full commit SHA"
            assert m.group(3) and re.match(r"^v\d+\.\d+\.\d+$", m.group(3)), f"{path.name}: {line}: no # vX.Y.Z"
            seen.add(ref)
    assert seen == {
        "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
        "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02",
        "actions/download-artifact@d3f86a106a0bac45b974a628896c90dbdf5c8093",
    }
    # The parsed YAML agrees with the line scan (no `uses:` hidden in a flow mapping).
    parsed = [s["uses"] for job in load(WORKFLOW)["jobs"].values() for s in job["steps"] if "uses" in s]
    parsed += [s["uses"] for p in (SIGN_ACTION, VERIFY_ACTION) for s in load(p)["runs"]["steps"] if "uses" in s]
    assert len(parsed) == sum(len(_uses_lines(p)) for p in (WORKFLOW, SIGN_ACTION, VERIFY_ACTION))


def test_reusable_workflow_permissions_are_least() -> None:
    doc = load(WORKFLOW)
    assert list(doc["on"]) == ["workflow_call"]
    assert doc["permissions"] == {}
    jobs = doc["jobs"]
    assert jobs["sign"]["permissions"] == {"id-token": "write", "contents": "read"}
    assert jobs["verify"]["permissions"] == {"contents": "read"}
    with_token = [name for name, job in jobs.items() if (job.get("permissions") or {}).get("id-token")]
    assert with_token == ["sign"]
    # Every checkout leaves no credentials behind in .git/config.
    for job in jobs.values():
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_both_actions_install_the_same_way() -> None:
    sign = load(SIGN_ACTION)["runs"]["steps"][0]
    verify = load(VERIFY_ACTION)["runs"]["steps"][0]
    assert sign["id"] == verify["id"] == "install"
    assert sign == verify  # one install procedure, copied: a change to one must be made to both
    for path in (SIGN_ACTION, VERIFY_ACTION):
        assert set(load(path)["inputs"]) >= {"install-from", "python", "model-path", "trust-config", "staging"}


def test_action_requirements_are_generated_from_install() -> None:
    text = (ROOT / "actions" / "requirements.txt").read_text()
    assert text == action_requirements.render(), "stale: run python scripts/action_requirements.py"
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+) \\$", text, re.M))
    runtime = dict(re.findall(r"^([a-z0-9-]+)==(\S+) \\$", (ROOT / "install" / "requirements.txt").read_text(), re.M))
    assert pins == {**runtime, "setuptools": pins["setuptools"]} and "modelseal" not in pins
    # Every pin carries at least one hash (pip --require-hashes).
    for block in re.split(r"\n(?=[a-z])", text.split("\n", 3)[3]):
        assert "--hash=sha256:" in block, block[:60]


def test_gitlab_template_shape() -> None:
    doc = load(GITLAB)
    assert doc[".modelseal-sign"]["id_tokens"] == {"SIGSTORE_ID_TOKEN": {"aud": "sigstore"}}
    assert "id_tokens" not in doc[".modelseal-verify"]  # verifying needs no token
    assert doc["modelseal-sign"]["extends"] == ".modelseal-sign"
    assert doc["modelseal-verify"]["extends"] == ".modelseal-verify"
    for job in ("modelseal-sign", "modelseal-verify"):
        assert doc[job]["rules"] == [{"if": "$MODELSEAL_MODEL_PATH"}]
        # No job-level defaults: they would override the variables a user sets globally.
        assert "variables" not in gitlab_job(doc, job)


# -- a tiny GitHub Actions expression evaluator -------------------------------------------------------------


_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_TOKEN = re.compile(r"\s*(==|!=|&&|\|\||!|'(?:[^']|'')*'|[A-Za-z_][\w.-]*)")


@dataclass
class Context:
    """What expressions can read: ``inputs``, ``github``, ``env``, ``runner``, ``steps.<id>.outputs``."""

    inputs: dict[str, str]
    github: dict[str, str]
    env: dict[str, str]
    runner: dict[str, str]
    steps: dict[str, dict[str, str]] = field(default_factory=dict)

    def value(self, name: str) -> str:
        head, _, rest = name.partition(".")
        if head == "steps":
            step, _, output = rest.partition(".outputs.")
            return self.steps.get(step, {}).get(output, "")
        table = {"inputs": self.inputs, "github": self.github, "env": self.env, "runner": self.runner}.get(head)
        if table is None:
            raise AssertionError(f"the test's evaluator does not know the context {head!r} ({name})")
        return table.get(rest, "")

    def evaluate(self, expr: str) -> str | bool:
        """``a``, ``'lit'``, ``a == b``, ``a != b``, ``!a``, joined by ``&&``/``||`` (left to right)."""
        tokens: list[str] = _TOKEN.findall(expr)
        assert "".join(tokens).replace(" ", "") == expr.replace(" ", ""), f"cannot evaluate {expr!r}"
        pos = 0

        def atom() -> str | bool:
            nonlocal pos
            tok = tokens[pos]
            pos += 1
            if tok == "!":
                return not truthy(atom())
            if tok.startswith("'"):
                return tok[1:-1].replace("''", "'")
            if tok in ("true", "false"):
                return tok == "true"
            return self.value(tok)

        def comparison() -> str | bool:
            nonlocal pos
            left = atom()
            if pos < len(tokens) and tokens[pos] in ("==", "!="):
                op = tokens[pos]
                pos += 1
                right = atom()
                return (str(left).lower() == str(right).lower()) == (op == "==")  # case-insensitive, like GitHub
            return left

        result = comparison()
        while pos < len(tokens):
            op = tokens[pos]
            pos += 1
            right = comparison()
            result = (right if truthy(result) else result) if op == "&&" else (result if truthy(result) else right)
        return result

    def substitute(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            value = self.evaluate(m.group(1))
            return str(value).lower() if isinstance(value, bool) else value

        return _EXPR.sub(one, text)


def truthy(value: str | bool) -> bool:
    return bool(value) and value != "false"


@dataclass
class StepResult:
    name: str
    ran: bool
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    uses: str = ""
    with_: dict[str, str] = field(default_factory=dict)


@dataclass
class ActionRun:
    steps: list[StepResult]
    outputs: dict[str, str]

    @property
    def returncode(self) -> int:
        return next((s.returncode for s in self.steps if s.returncode), 0)

    @property
    def log(self) -> str:
        return "\n".join(f"[{s.name}] rc={s.returncode}\n{s.stdout}{s.stderr}" for s in self.steps)


def read_outputs(path: Path) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIM`` blocks, as the runner reads ``$GITHUB_OUTPUT``."""
    outputs: dict[str, str] = {}
    lines = iter(path.read_text().splitlines()) if path.exists() else iter(())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            outputs[name] = "\n".join(iter(lambda: next(lines), delim))
        elif "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


def run_action(action: Path, inputs: Mapping[str, str], env: Mapping[str, str], workspace: Path) -> ActionRun:
    """Run a composite action's steps as the runner does: ``if:``, ``env:``, bash, ``$GITHUB_OUTPUT``."""
    doc = load(action)
    assert doc["runs"]["using"] == "composite"
    given = dict(inputs)
    unknown = set(given) - set(doc["inputs"])
    assert not unknown, f"inputs {unknown} are not declared by {action}"
    values = {name: given.get(name, str(spec.get("default", ""))) for name, spec in doc["inputs"].items()}
    for name, spec in doc["inputs"].items():
        assert values[name] or not spec.get("required"), f"required input {name} missing"
    github = {
        "action_path": str(action.parent), "workspace": str(workspace),
        **{k[len("GITHUB_"):].lower(): v for k, v in env.items() if k.startswith("GITHUB_")},
    }
    ctx = Context(values, github, dict(env), {"temp": env["RUNNER_TEMP"], "os": "Linux"})
    results: list[StepResult] = []
    for index, step in enumerate(doc["runs"]["steps"]):
        name = step.get("name", f"step {index}")
        condition = step.get("if")
        if condition is not None and not truthy(ctx.evaluate(_EXPR.sub(r"\1", str(condition)))):
            results.append(StepResult(name, ran=False))
            continue
        if "uses" in step:  # another action (upload-artifact): record what it would be given
            with_ = {k: ctx.substitute(str(v)) for k, v in (step.get("with") or {}).items()}
            results.append(StepResult(name, ran=False, uses=step["uses"], with_=with_))
            continue
        assert step["shell"] == "bash"
        output_file = Path(env["RUNNER_TEMP"]) / f"output-{index}"
        output_file.write_text("")
        step_env = {**env, "GITHUB_OUTPUT": str(output_file), "GITHUB_ACTION_PATH": str(action.parent)}
        step_env.update({k: ctx.substitute(str(v)) for k, v in (step.get("env") or {}).items()})
        script = Path(env["RUNNER_TEMP"]) / f"step-{index}.sh"
        script.write_text(ctx.substitute(step["run"]))
        # GitHub's `shell: bash` is `bash --noprofile --norc -eo pipefail {0}`.
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workspace,
                              env=step_env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=180, check=False)
        results.append(StepResult(name, ran=True, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr))
        if step.get("id"):
            ctx.steps[step["id"]] = read_outputs(output_file)
        if proc.returncode:
            break
    outputs = {name: ctx.substitute(str(spec["value"])) for name, spec in (doc.get("outputs") or {}).items()}
    return ActionRun(results, outputs)


# -- the runner's world -------------------------------------------------------------------------------------


_AMBIENT = ("GITHUB_", "ACTIONS_", "SIGSTORE_", "GITLAB_", "CI_", "BUILDKITE", "CIRCLECI", "GOOGLE_", "MODELSEAL_")


@pytest.fixture(scope="module")
def inst() -> Iterator[LocalSigstore]:
    with LocalSigstore() as instance:
        yield instance


@pytest.fixture(scope="module")
def shim() -> Iterator[Path]:
    """A directory with a ``modelseal`` that runs this checkout: what a runner gets from the install step."""
    path = Path(tempfile.mkdtemp(prefix="modelseal-shim-"))
    exe = path / "modelseal"
    exe.write_text(f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))} exec {shlex.quote(sys.executable)} '
                   '-m model_signing "$@"\n')
    exe.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def base_env(shim: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT) and k not in ("CI", "PYTHONPATH")}
    env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@dataclass
class Runner:
    workspace: Path
    env: dict[str, str]


def github_runner(inst: LocalSigstore, shim: Path, tmp_path: Path, *, token: bool = True,
                  **claims: str) -> Runner:
    workspace = tmp_path / "workspace"
    temp = tmp_path / "runner-temp"
    workspace.mkdir(exist_ok=True)
    temp.mkdir(exist_ok=True)
    options = {"ref": REF, "workflow": WORKFLOW_FILE, "workflow_name": WORKFLOW_NAME, **claims}
    # (mypy cannot tell that no option is named `lifetime`, the one int parameter)
    ambient = (inst.github_actions_env(REPOSITORY, **options) if token  # type: ignore[arg-type]
               else {"GITHUB_ACTIONS": "true"})
    sha = hashlib.sha1(b"the commit").hexdigest()
    env = base_env(
        shim, **ambient,
        CI="true", GITHUB_REPOSITORY=REPOSITORY, GITHUB_REPOSITORY_OWNER="octo-org", GITHUB_REF=REF,
        GITHUB_SHA=sha, GITHUB_WORKFLOW=WORKFLOW_NAME, GITHUB_WORKFLOW_REF=f"{REPOSITORY}/{WORKFLOW_FILE}@{REF}",
        GITHUB_EVENT_NAME="push", GITHUB_SERVER_URL="https://github.com", GITHUB_WORKSPACE=str(workspace),
        GITHUB_STEP_SUMMARY=str(temp / "summary.md"), GITHUB_ENV=str(temp / "env"), GITHUB_PATH=str(temp / "path"),
        GITHUB_RUN_ID="7", RUNNER_TEMP=str(temp), RUNNER_OS="Linux",
    )
    return Runner(workspace, env)


def write_model(root: Path, files: Mapping[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def sign_inputs(inst: LocalSigstore, **extra: str) -> dict[str, str]:
    return {"model-path": "model", "trust-config": str(inst.trust_config_path), "install-from": "preinstalled",
            "python": sys.executable, **extra}


@dataclass(frozen=True)
class Signed:
    runner: Runner
    run: ActionRun


@pytest.fixture(scope="module")
def signed(inst: LocalSigstore, shim: Path, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    """The model signed by the sign action's own steps, in a GitHub-runner-like environment."""
    runner = github_runner(inst, shim, tmp_path_factory.mktemp("gh"))
    write_model(runner.workspace / "model", {**FILES, "notes/draft.txt": b"not signed\n"})
    run = run_action(SIGN_ACTION, sign_inputs(inst, **{"upload-artifact": "true", "ignore-paths": "notes\n"}),
                     runner.env, runner.workspace)
    return Signed(runner, run)


def verify_inputs(inst: LocalSigstore, signature: str, **extra: str) -> dict[str, str]:
    return {"model-path": "model", "signature-path": signature, "identity-provider": inst.oidc_issuer,
            "trust-config": str(inst.trust_config_path), "install-from": "preinstalled", **extra}


# -- GitHub Actions end to end ------------------------------------------------------------------------------


def test_sign_action_signs_with_the_workflow_identity(inst: LocalSigstore, signed: Signed) -> None:
    run = signed.run
    assert run.returncode == 0, run.log
    assert [s.name for s in run.steps if s.ran] == [
        "Install modelseal", "Sign the model (keyless, this workflow's identity)"]
    identity = f"https://github.com/{REPOSITORY}/{WORKFLOW_FILE}@{REF}"
    assert run.outputs["identity"] == identity
    assert run.outputs["issuer"] == inst.oidc_issuer
    assert run.outputs["root-digest"] == root_digest(FILES)  # notes/ left out
    signature = signed.runner.workspace / run.outputs["signature-path"]
    assert signature == signed.runner.workspace / "model.sig" and signature.is_file()
    # The upload step would get exactly the signature, under the artifact name.
    upload = run.steps[-1]
    assert upload.uses.startswith("actions/upload-artifact@")
    assert upload.with_ == {"name": "model-signature", "path": run.outputs["signature-path"],
                            "if-no-files-found": "error"}
    # The printed command pins the certificate's repository, ref and workflow name.
    command = shlex.split(run.outputs["verify-command"])
    assert command[:4] == ["modelseal", "verify", "sigstore", "model"]
    pairs = dict(zip(command[4::2], command[5::2], strict=True))
    assert pairs == {"--signature": run.outputs["signature-path"], "--identity": identity,
                     "--identity-provider": inst.oidc_issuer, "--repository": REPOSITORY, "--ref": REF,
                     "--workflow": WORKFLOW_NAME, "--trust-config": str(inst.trust_config_path)}
    assert run.outputs["verify-command"] in run.steps[1].stdout
    assert run.outputs["verify-command"] in Path(signed.runner.env["GITHUB_STEP_SUMMARY"]).read_text()


def test_the_printed_verify_command_verifies(signed: Signed) -> None:
    proc = subprocess.run(shlex.split(signed.run.outputs["verify-command"]), cwd=signed.runner.workspace,
                          env={**signed.runner.env, "PATH": signed.runner.env["PATH"]}, capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified" in proc.stdout


def test_verify_action_accepts_the_repository_workflow_and_ref(inst: LocalSigstore, signed: Signed) -> None:
    sig = signed.run.outputs["signature-path"]
    run = run_action(VERIFY_ACTION, verify_inputs(inst, sig, repository=REPOSITORY, workflow=WORKFLOW_NAME, ref=REF),
                     signed.runner.env, signed.runner.workspace)
    assert run.returncode == 0, run.log
    assert f"signed by https://github.com/{REPOSITORY}/{WORKFLOW_FILE}@{REF}" in run.steps[-1].stdout
    # An exact identity instead of the repository works too.
    run = run_action(VERIFY_ACTION, verify_inputs(inst, sig, identity=signed.run.outputs["identity"]),
                     signed.runner.env, signed.runner.workspace)
    assert run.returncode == 0, run.log


@pytest.mark.parametrize("wrong", [{"repository": "octo-org/other"}, {"ref": "refs/heads/main"},
                                   {"repository": REPOSITORY, "workflow": "another workflow"},
                                   {"identity": f"https://github.com/octo-org/other/{WORKFLOW_FILE}@{REF}"}])
def test_verify_action_refuses_another_signer(inst: LocalSigstore, signed: Signed, wrong: dict[str, str]) -> None:
    given = {"repository": REPOSITORY, **wrong} if "repository" not in wrong and "identity" not in wrong else wrong
    run = run_action(VERIFY_ACTION, verify_inputs(inst, signed.run.outputs["signature-path"], **given),
                     signed.runner.env, signed.runner.workspace)
    assert run.returncode == 2, run.log  # signature/identity not accepted
    assert "error:" in run.steps[-1].stderr


def test_verify_action_catches_a_tampered_model(inst: LocalSigstore, signed: Signed, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    shutil.copytree(signed.runner.workspace, workspace)
    (workspace / "model" / "config.json").write_bytes(b'{"layers": 3}\n')
    run = run_action(VERIFY_ACTION, verify_inputs(inst, "model.sig", repository=REPOSITORY, ref=REF),
                     signed.runner.env, workspace)
    assert run.returncode == 3, run.log
    assert "modified: config.json" in run.steps[-1].stderr


def test_verify_action_needs_to_be_told_who_signed(inst: LocalSigstore, signed: Signed) -> None:
    run = run_action(VERIFY_ACTION, verify_inputs(inst, "model.sig"), signed.runner.env, signed.runner.workspace)
    assert run.returncode == 1 and "::error::say who must have signed" in run.steps[-1].stdout


def test_sign_action_without_the_id_token_permission(inst: LocalSigstore, shim: Path, tmp_path: Path) -> None:
    runner = github_runner(inst, shim, tmp_path, token=False)
    write_model(runner.workspace / "model")
    run = run_action(SIGN_ACTION, sign_inputs(inst), runner.env, runner.workspace)
    assert run.returncode == 1
    assert "::error::no GitHub OIDC token" in run.steps[-1].stdout and "id-token: write" in run.steps[-1].stdout
    assert not (runner.workspace / "model.sig").exists()


def test_install_from_preinstalled_without_modelseal(inst: LocalSigstore, shim: Path, tmp_path: Path) -> None:
    runner = github_runner(inst, shim, tmp_path)
    runner.env["PATH"] = os.pathsep.join(p for p in runner.env["PATH"].split(os.pathsep) if p != str(shim))
    if shutil.which("modelseal", path=runner.env["PATH"]):
        runner.env["PATH"] = "/usr/bin:/bin"
    run = run_action(SIGN_ACTION, sign_inputs(inst), runner.env, runner.workspace)
    assert run.returncode == 1 and "no modelseal is on PATH" in run.steps[0].stdout


def test_reusable_workflow_finds_its_own_commit_and_its_signature_verifies_by_repository(
    inst: LocalSigstore, shim: Path, tmp_path: Path
) -> None:
    """In a reusable workflow the SAN is the called workflow; repository and ref are the caller's."""
    called = "octo-org/modelseal/.github/workflows/sign-model.yml@refs/tags/v0.2.0"
    runner = github_runner(inst, shim, tmp_path, job_workflow_ref=called)
    # The workflow's first step, read from the workflow, run as the runner would.
    step = load(WORKFLOW)["jobs"]["sign"]["steps"][0]
    assert step["id"] == "self" and "${{" not in step["run"]
    output = tmp_path / "self-output"
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                          env={**runner.env, "GITHUB_OUTPUT": str(output)}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_outputs(output) == {"repository": "octo-org/modelseal",
                                    "sha": hashlib.sha1(called.encode()).hexdigest()}
    write_model(runner.workspace / "model")
    run = run_action(SIGN_ACTION, sign_inputs(inst), runner.env, runner.workspace)
    assert run.returncode == 0, run.log
    assert run.outputs["identity"] == f"https://github.com/{called}"
    pairs = shlex.split(run.outputs["verify-command"])
    assert pairs[pairs.index("--repository") + 1] == REPOSITORY and pairs[pairs.index("--ref") + 1] == REF
    # The caller verifies by its own repository and ref, never naming modelseal's workflow file.
    run = run_action(VERIFY_ACTION, verify_inputs(inst, "model.sig", repository=REPOSITORY, ref=REF),
                     runner.env, runner.workspace)
    assert run.returncode == 0, run.log
    run = run_action(VERIFY_ACTION, verify_inputs(inst, "model.sig", repository="octo-org/modelseal", ref=REF),
                     runner.env, runner.workspace)
    assert run.returncode == 2, run.log


# -- GitLab CI end to end -----------------------------------------------------------------------------------


def gitlab_job(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A job with its ``extends`` chain merged (GitLab's deep merge, enough for this template)."""
    job = dict(doc[name])
    parent = job.pop("extends", None)
    if parent is None:
        return job
    merged = gitlab_job(doc, parent)
    merged.update(job)
    return merged


def gitlab_job_script(name: str) -> str:
    """``before_script`` then ``script``, one shell session, as GitLab's runner runs them."""
    job = gitlab_job(load(GITLAB), name)
    return "\n".join([*job.get("before_script", []), *job["script"]]) + "\n"


PROJECT = "ml-group/models"
GITLAB_HOST = "gitlab.example.com"


def gitlab_env(inst: LocalSigstore, shim: Path, workdir: Path, *, token: bool, **extra: str) -> dict[str, str]:
    env = base_env(
        shim, CI="true", GITLAB_CI="true", CI_SERVER_URL=f"https://{GITLAB_HOST}", CI_SERVER_HOST=GITLAB_HOST,
        CI_PROJECT_PATH=PROJECT, CI_PROJECT_DIR=str(workdir), CI_BUILDS_DIR=str(workdir.parent),
        CI_COMMIT_REF_NAME="main", CI_COMMIT_BRANCH="main", CI_CONFIG_PATH=".gitlab-ci.yml", CI_JOB_ID="42",
        MODELSEAL_INSTALL_FROM="preinstalled", MODELSEAL_MODEL_PATH="model",
        MODELSEAL_TRUST_CONFIG=str(inst.trust_config_path), MODELSEAL_IDENTITY_PROVIDER=inst.oidc_issuer,
    )
    if token:
        env["SIGSTORE_ID_TOKEN"] = inst.mint_gitlab_token(PROJECT, server_host=GITLAB_HOST)
    env.update(extra)
    return env


def run_gitlab(job: str, env: Mapping[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", gitlab_job_script(job)], cwd=workdir, env=dict(env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def gitlab_signed(inst: LocalSigstore, shim: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    workdir = tmp_path_factory.mktemp("gl") / "project"
    write_model(workdir / "model")
    return workdir, run_gitlab("modelseal-sign", gitlab_env(inst, shim, workdir, token=True), workdir)


def test_gitlab_sign_job(inst: LocalSigstore, shim: Path,
                         gitlab_signed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    workdir, proc = gitlab_signed
    assert proc.returncode == 0, proc.stdout + proc.stderr
    identity = f"https://{GITLAB_HOST}/{PROJECT}//.gitlab-ci.yml@refs/heads/main"
    assert identity == gitlab_pipeline_identity(gitlab_claims(PROJECT, server_host=GITLAB_HOST))
    assert f"identity:  {identity} via {inst.oidc_issuer}" in proc.stdout
    result = json.loads((workdir / "modelseal-sign.json").read_text())
    assert result["root_digest"] == root_digest(FILES)
    # The certificate carries the URI SAN and source repository Fulcio gives a GitLab job.
    bundle = json.loads((workdir / "model.sig").read_text())
    cert = x509.load_der_x509_certificate(base64.b64decode(bundle["verificationMaterial"]["certificate"]["rawBytes"]))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [identity]
    source = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.12")).value
    assert isinstance(source, x509.UnrecognizedExtension)
    assert source.value.endswith(f"https://{GITLAB_HOST}/{PROJECT}".encode())
    # The artifact paths name the signature the job wrote.
    assert "model.sig" in gitlab_job(load(GITLAB), "modelseal-sign")["artifacts"]["paths"]
    # The printed verify command works as printed.
    command = proc.stdout.split("verify with:\n", 1)[1].strip()
    verify = subprocess.run(shlex.split(command), cwd=workdir, env=gitlab_env(inst, shim, workdir, token=False),
                            capture_output=True, text=True, timeout=180, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("config_ref_uri", [False, True])
def test_gitlab_verify_job_against_this_pipeline(inst: LocalSigstore, shim: Path, config_ref_uri: bool,
                                                 gitlab_signed: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    workdir, signed_proc = gitlab_signed
    assert signed_proc.returncode == 0, signed_proc.stderr
    extra = {"CI_CONFIG_REF_URI": f"{GITLAB_HOST}/{PROJECT}//.gitlab-ci.yml@refs/heads/main"} if config_ref_uri else {}
    proc = run_gitlab("modelseal-verify", gitlab_env(inst, shim, workdir, token=False, **extra), workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"signed by https://{GITLAB_HOST}/{PROJECT}//.gitlab-ci.yml@refs/heads/main" in proc.stdout


@pytest.mark.parametrize("wrong", [{"CI_PROJECT_PATH": "ml-group/other"}, {"CI_COMMIT_REF_NAME": "feature"},
                                   {"CI_COMMIT_TAG": "main"}])
def test_gitlab_verify_job_refuses_another_project_or_ref(
    inst: LocalSigstore, shim: Path, wrong: dict[str, str],
    gitlab_signed: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    workdir, _ = gitlab_signed
    proc = run_gitlab("modelseal-verify", gitlab_env(inst, shim, workdir, token=False, **wrong), workdir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error:" in proc.stderr


def test_gitlab_sign_job_without_id_tokens(inst: LocalSigstore, shim: Path, tmp_path: Path) -> None:
    write_model(tmp_path / "model")
    proc = run_gitlab("modelseal-sign", gitlab_env(inst, shim, tmp_path, token=False), tmp_path)
    assert proc.returncode == 1
    assert "no SIGSTORE_ID_TOKEN" in proc.stderr and "id_tokens" in proc.stderr
    assert not (tmp_path / "model.sig").exists()


def test_sign_action_installs_the_toolkit_from_its_own_checkout_by_hash(tmp_path: Path) -> None:
    """The default install (no install-from): dependencies from PyPI by hash, modelseal from the action's repo.

    The job then stops at the signing step for want of a token; what is checked is the virtual environment
    the install step made: `pip check` passed in it and its `modelseal` is this checkout's version.
    """
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    (tmp_path / "ws").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT) and k not in ("CI", "PYTHONPATH")}
    env["RUNNER_TEMP"] = str(temp)
    run = run_action(SIGN_ACTION, {"model-path": "model", "python": sys.executable}, env, tmp_path / "ws")
    assert run.steps[0].ran and run.steps[0].returncode == 0, run.log
    venv = temp / "modelseal-sign"
    proc = subprocess.run([str(venv / "bin" / "modelseal"), "--version"], capture_output=True, text=True,
                          timeout=60, check=False)
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and proc.stdout.strip() == f"modelseal {version.group(1)}", proc.stdout + proc.stderr
    # Installed from the checkout (not an editable link to it), with exactly the pinned dependency versions.
    freeze = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--all",
                             "--disable-pip-version-check"], capture_output=True, text=True, timeout=60,
                            check=True).stdout
    pins = dict(re.findall(r"^([a-z0-9-]+)==(\S+) \\$", (ROOT / "actions" / "requirements.txt").read_text(), re.M))
    installed = {re.sub(r"[-_.]+", "-", n).lower(): v for n, v in re.findall(r"^([^=\s]+)==(\S+)$", freeze, re.M)}
    installed.pop("pip")  # the venv's own
    # pip freezes a checkout as `modelseal==V` or, where it sees a VCS or a direct URL, `modelseal @ URL`;
    # its version was checked above
    installed.pop("modelseal", None)
    assert re.search(r"^modelseal(==| @ )", freeze, re.M), freeze
    assert installed == pins
    # And the signing step that followed refused for the missing token, as a workflow without id-token would.
    assert "::error::no GitHub OIDC token" in run.steps[1].stdout


def _readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Sign in CI\n", 1)[1].split("\n## ", 1)[0]
    # The placeholders a user fills in, made concrete so the linters see a real pin.
    section = section.replace("<full commit sha>", "0123456789abcdef0123456789abcdef01234567")
    section = section.replace("<sha256 of that archive>", "0" * 64)
    return re.findall(r"```yaml\n(.*?)```", section, re.S)


def test_readme_workflow_a_user_copies_lints_clean(tmp_path: Path) -> None:
    blocks = _readme_blocks()
    workflow = next(b for b in blocks if b.startswith("name:"))
    assert len(workflow.strip().splitlines()) <= 20  # short enough to copy
    doc = YAML(typ="safe", pure=True).load(workflow)
    assert doc["permissions"] == {}
    assert doc["jobs"]["sign"]["permissions"] == {"id-token": "write", "contents": "read"}
    assert doc["jobs"]["sign"]["uses"].startswith("OWNER/modelseal/.github/workflows/sign-model.yml@")
    # The inputs it passes are the reusable workflow's.
    assert set(doc["jobs"]["sign"]["with"]) <= set(load(WORKFLOW)["on"]["workflow_call"]["inputs"])
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".git").mkdir()
    path = repo / ".github" / "workflows" / "release-model.yml"
    path.write_text(workflow)
    proc = subprocess.run([tool("actionlint"), "-oneline", "-shellcheck", tool("shellcheck"), str(path)],
                          cwd=repo, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_gitlab_include_is_valid(tmp_path: Path) -> None:
    block = next(b for b in _readme_blocks() if b.startswith("include:"))
    doc = YAML(typ="safe", pure=True).load(block)
    assert doc["include"][0]["remote"].endswith("/ci/gitlab/model-signing.gitlab-ci.yml")
    # Every variable it sets is one the template reads.
    template = GITLAB.read_text()
    assert all(f"${{{name}" in template or f"${name}" in template for name in doc["variables"])
    path = tmp_path / ".gitlab-ci.yml"
    path.write_text(block)
    proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sign_action_hashing_options_reach_the_signature(inst: LocalSigstore, shim: Path, tmp_path: Path) -> None:
    runner = github_runner(inst, shim, tmp_path)
    write_model(runner.workspace / "model")
    (runner.workspace / "out").mkdir()
    inputs = sign_inputs(inst, serialization="shards", **{"shard-size": "500", "hash": "blake2b",
                                                          "signature-path": "out/my model.sig"})
    run = run_action(SIGN_ACTION, inputs, runner.env, runner.workspace)
    assert run.returncode == 0, run.log
    assert run.outputs["signature-path"] == "out/my model.sig"
    upload = run.steps[-1]  # upload-artifact not asked for: the step is skipped
    assert upload.name == "Upload the signature" and not upload.ran and upload.uses == ""
    # The path with a space survives the printed command (shell-quoted).
    assert "'out/my model.sig'" in run.outputs["verify-command"]
    inspected = json.loads(subprocess.run(["modelseal", "inspect", "--json", "--files", "out/my model.sig"],
                                          cwd=runner.workspace, env=runner.env, capture_output=True, text=True,
                                          timeout=60, check=True).stdout)
    serialization = inspected["serialization"]
    assert (serialization["method"], serialization["hash_type"], serialization["shard_size"]) == (
        "shards", "blake2b", 500)
    # weights/w.bin is 1280 bytes: shards 0-500, 500-1000, 1000-1280; each small file one shard.
    names = sorted(r["name"] for r in inspected["resources"])
    assert names == sorted(["README.md:0:4", "config.json:0:14", "weights/w.bin:0:500", "weights/w.bin:500:1000",
                            "weights/w.bin:1000:1280"])
    proc = subprocess.run(shlex.split(run.outputs["verify-command"]), cwd=runner.workspace, env=runner.env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("install_from", "message"), [
    ("/no/such/dir", "/no/such/dir is not a modelseal source tree"),
    ("https://example.invalid/modelseal.tar.gz", "set MODELSEAL_INSTALL_SHA256"),
    ("", "set MODELSEAL_INSTALL_FROM"),
])
def test_gitlab_install_refusals(inst: LocalSigstore, shim: Path, tmp_path: Path, install_from: str,
                                 message: str) -> None:
    env = gitlab_env(inst, shim, tmp_path, token=True, MODELSEAL_INSTALL_FROM=install_from)
    proc = run_gitlab("modelseal-sign", env, tmp_path)
    assert proc.returncode == 1 and message in proc.stderr, proc.stdout + proc.stderr


def test_gitlab_installs_from_a_source_directory(inst: LocalSigstore, shim: Path, tmp_path: Path) -> None:
    """MODELSEAL_INSTALL_FROM=DIR (a submodule, say): pinned dependencies by hash, modelseal from DIR."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    env = gitlab_env(inst, shim, workdir, token=False, MODELSEAL_INSTALL_FROM=str(ROOT), PATH=os.environ["PATH"])
    proc = run_gitlab("modelseal-sign", env, workdir)
    # before_script installed; the script then stopped for want of the id_tokens token.
    assert proc.returncode == 1 and "no SIGSTORE_ID_TOKEN" in proc.stderr, proc.stdout + proc.stderr
    version = subprocess.run([str(tmp_path / "modelseal-venv" / "bin" / "modelseal"), "--version"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0 and version.stdout.startswith("modelseal "), version.stderr

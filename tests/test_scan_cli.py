"""``modelseal scan``: exit codes 0 / 4 / 1, the --json document, --fail-on, --allow-global, --config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import _scan_samples as S
from tests._cli import Run

REPO = Path(__file__).resolve().parents[1]


def _model(tmp_path: Path, payload: bytes | None = None) -> Path:
    model = tmp_path / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "config.json").write_text('{"hidden_size": 4}')
    (model / "weights.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    if payload is not None:
        (model / "sub").mkdir(exist_ok=True)
        (model / "sub" / "pytorch_model.bin").write_bytes(S.torch_zip(payload))
    return model


def test_clean_model_exits_0(run: Run, tmp_path: Path) -> None:
    code, out, err = run("scan", _model(tmp_path))
    assert code == 0, err
    assert "2 files, 0 findings" in out
    assert err == ""


def test_unsafe_model_exits_4_and_names_the_finding(run: Run, tmp_path: Path) -> None:
    model = _model(tmp_path, S.p_reduce(S.Asm(2), "id"))
    code, out, err = run("scan", model)
    assert code == 4
    assert "critical sub/pytorch_model.bin!archive/data.pkl @2: dangerous-global" in out
    assert "os.system" in out
    assert err.startswith("error: unsafe model content: 1 finding at or above medium")
    assert len(err.strip().splitlines()) == 1


def test_json_document(run: Run, tmp_path: Path) -> None:
    model = _model(tmp_path, S.p_unknown_global(S.Asm(4), "x"))
    code, out, _ = run("scan", model, "--json")
    assert code == 4
    doc = json.loads(out)
    assert set(doc) == {"files_scanned", "findings", "unsafe"}
    assert doc["files_scanned"] == 3 and doc["unsafe"] is True
    assert doc["findings"] == [{
        "file": "sub/pytorch_model.bin!archive/data.pkl",
        "severity": "medium",
        "kind": "unknown-global",
        "detail": "STACK_GLOBAL imports somepackage.helpers.make_thing: not in the table of globals known safe for "
                  "model weights",
        # PROTO 4, two SHORT_BINUNICODE (opcode, length, text), then the STACK_GLOBAL
        "offset": 2 + (2 + len("somepackage.helpers")) + (2 + len("make_thing")),
    }]
    code, out, _ = run("scan", _model(tmp_path / "clean"), "--json")
    assert code == 0 and json.loads(out) == {"files_scanned": 2, "findings": [], "unsafe": False}


def test_fail_on_threshold(run: Run, tmp_path: Path) -> None:
    model = _model(tmp_path, S.p_unknown_global(S.Asm(2), "x"))
    assert run("scan", model, "--fail-on", "high")[0] == 0
    assert run("scan", model, "--fail-on", "medium")[0] == 4
    assert run("scan", model, "--fail-on", "low")[0] == 4
    code, out, _ = run("scan", model, "--fail-on", "critical", "--json")
    assert code == 0 and json.loads(out)["unsafe"] is False and len(json.loads(out)["findings"]) == 1
    code, _, err = run("scan", model, "--fail-on", "severe")
    assert code == 1 and "--fail-on" in err


def test_allow_global_and_config_file(run: Run, tmp_path: Path) -> None:
    model = _model(tmp_path, S.p_unknown_global(S.Asm(2), "x"))
    assert run("scan", model, "--allow-global", "somepackage.helpers.make_thing")[0] == 0
    assert run("scan", model, "--allow-global", "somepackage.*")[0] == 0
    assert run("scan", model, "--allow-global", "other.thing")[0] == 4
    code, _, err = run("scan", model, "--allow-global", "nodots")
    assert code == 1 and "--allow-global" in err and "nodots" in err
    config = tmp_path / "scan.toml"
    config.write_text('[scan]\nallow_globals = ["somepackage.helpers.make_thing"]\n')
    assert run("scan", model, "--config", config)[0] == 0
    config.write_text('[scan]\nfail_on = "critical"\n')
    assert run("scan", model, "--config", config)[0] == 0
    assert run("scan", model, "--config", config, "--fail-on", "medium")[0] == 4  # the flag wins
    config.write_text("[scan]\nallow = 1\n")
    code, _, err = run("scan", model, "--config", config)
    assert code == 1 and str(config) in err and "allow" in err
    code, _, err = run("scan", model, "--config", tmp_path / "missing.toml")
    assert code == 1 and "missing.toml" in err


def test_gadgets_cannot_be_allowed(run: Run, tmp_path: Path) -> None:
    model = _model(tmp_path, S.p_reduce(S.Asm(0), "id"))
    assert run("scan", model, "--allow-global", "os.system", "--allow-global", "os.*")[0] == 4


def test_bad_input_exits_1(run: Run, tmp_path: Path) -> None:
    code, out, err = run("scan", tmp_path / "nope")
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "nope" in err and len(err.strip().splitlines()) == 1
    model = _model(tmp_path)
    os.symlink(model / "config.json", model / "link.json")
    code, _, err = run("scan", model)
    assert code == 1 and "link.json" in err and "symlink" in err
    assert run("scan", model, "--allow-symlinks")[0] == 0
    os.unlink(model / "link.json")
    os.mkfifo(model / "pipe")
    code, _, err = run("scan", model)
    assert code == 1 and "pipe" in err


def test_unreadable_file_exits_1(run: Run, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root reads anything: make the read itself fail with a directory standing in for a file
        model = _model(tmp_path)
        target = model / "weights.safetensors"
        code = subprocess.run(
            [sys.executable, "-c", "import os, sys\n"
             "from model_signing.cli import main\n"
             "real = os.open\n"
             "def deny(p, *a, **k):\n"
             "    if str(p).endswith('weights.safetensors'): raise PermissionError(13, 'Permission denied', p)\n"
             "    return real(p, *a, **k)\n"
             "os.open = deny\n"
             "main(['scan', sys.argv[1]])", str(model)],
            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
            check=False)
        assert code.returncode == 1
        assert f"error: cannot read {target}: Permission denied" in code.stderr
        assert "Traceback" not in code.stderr
        return
    model = _model(tmp_path)
    (model / "weights.safetensors").chmod(0)
    code_, _, err = run("scan", model)
    assert code_ == 1 and "weights.safetensors" in err


def test_scan_does_not_modify_the_model(run: Run, tmp_path: Path) -> None:
    model = _model(tmp_path, S.p_pip(S.Asm(4), "x"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in model.rglob("*") if p.is_file()}
    assert run("scan", model)[0] == 4
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in model.rglob("*") if p.is_file()}
    assert before == after

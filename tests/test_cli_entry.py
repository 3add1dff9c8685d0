"""The CLI's entry points and start-up: `python main.py`, the `modelseal` console script and
`python -m model_signing` are the same CLI, and `--help` does not import sigstore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_console_script_main_py_and_module_give_the_same_cli() -> None:
    # `make test` installs the project (pip install -e .), which puts the console script beside python.
    script = Path(sys.executable).with_name("modelseal")
    assert script.exists(), f"{script} is missing: install the project (pip install -e .) as `make test` does"
    outputs: list[tuple[tuple[str, ...], str]] = []
    for cmd in ([str(script)], [sys.executable, "main.py"], [sys.executable, "-m", "model_signing"]):
        for args in (("--help",), ("sign", "--help"), ("verify", "sigstore", "--help")):
            proc = _run(*cmd, *args)
            assert proc.returncode == 0, proc.stderr
            outputs.append((args, proc.stdout))
    by_args: dict[tuple[str, ...], set[str]] = {}
    for key, out in outputs:
        by_args.setdefault(key, set()).add(out)
    for key, variants in by_args.items():
        assert len(variants) == 1, f"{key}: the three entry points print different help"
    assert "digest" in by_args[("--help",)].pop()


def test_help_does_not_import_sigstore() -> None:
    code = (
        "import sys\n"
        "from model_signing.cli import main\n"
        "try:\n"
        "    main(['sign', 'sigstore', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sigstore', 'sigstore_models', 'requests'))\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = _run(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "HEAVY="

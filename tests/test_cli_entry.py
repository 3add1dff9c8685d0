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


def test_the_quick_exit_keeps_exit_codes_output_and_exit_handlers(tmp_path: Path) -> None:
    # The entry points end with os._exit after running the exit handlers and flushing: every byte printed
    # must still arrive, each exit code be the command's, and an atexit handler still run.
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w" * 5000)
    proc = _run(sys.executable, "main.py", "digest", str(model), "--no-digest-cache", "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith("}") and '"root_digest"' in proc.stdout
    proc = _run(sys.executable, "main.py", "verify", "key", str(model), "--public-key", str(tmp_path / "none.pem"))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "none.pem" in proc.stderr
    marker = tmp_path / "atexit-ran"
    code = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
        "sys.argv = ['modelseal', 'digest', sys.argv[1], '--no-digest-cache', '--quiet']\n"
        "from model_signing.cli import run\n"
        "run()\n"
    )
    proc = _run(sys.executable, "-c", code, str(model))
    assert proc.returncode == 0 and len(proc.stdout.split()) >= 1, proc.stderr
    assert marker.read_text() == "yes"
    # Thousands of lines on a pipe are not cut short by the exit.
    big = tmp_path / "big"
    big.mkdir()
    for i in range(3000):
        (big / f"f{i:04d}.txt").write_bytes(b"%d" % i)
    proc = _run(sys.executable, "main.py", "digest", str(big), "--no-digest-cache", "--quiet", "--json")
    assert proc.returncode == 0 and proc.stdout.count('"name"') == 3000, proc.stderr[-300:]

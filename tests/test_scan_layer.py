"""The scanner is layer L3: its modules import the standard library, model_signing.errors and each other only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SCAN = Path(__file__).resolve().parents[1] / "model_signing" / "scan"
ALLOWED_PROJECT = ("model_signing.errors", "model_signing.scan")


def test_scan_imports_only_stdlib_and_errors() -> None:
    bad = []
    for path in sorted(SCAN.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top == "model_signing":
                    if not name.startswith(ALLOWED_PROJECT):
                        bad.append(f"{path.name}: {name}")
                elif top not in sys.stdlib_module_names and top != "__future__":
                    bad.append(f"{path.name}: {name}")
    assert not bad


def test_importing_the_scanner_loads_no_heavy_module() -> None:
    code = ("import sys, model_signing.scan\n"
            "heavy = [m for m in ('torch', 'numpy', 'sigstore', 'model_signing.signing', 'model_signing.verifying',"
            " 'model_signing.hashing', 'typer') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=SCAN.parents[1], timeout=60).stdout
    assert out.strip() == "[]"

"""Shared fixtures (additive: each helper adds its own, nothing is redefined)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from model_signing.cli import main
from tests import _pki
from tests._cli import Run

ModelFactory = Callable[..., Path]


@pytest.fixture
def make_model(tmp_path: Path) -> ModelFactory:
    """Create a model directory from ``{relative name: bytes}`` under ``tmp_path/<name>``."""

    def make(files: dict[str, bytes], name: str = "model") -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return root

    return make


@pytest.fixture
def small_model(make_model: ModelFactory) -> Path:
    """A model with nested files, an empty file and a file larger than the test shard size."""
    return make_model(
        {
            "config.json": b'{"layers": 2}\n',
            "weights/part-0.bin": bytes(range(256)) * 3,
            "weights/part-1.bin": b"\x01" * 100,
            "empty.txt": b"",
        }
    )


@pytest.fixture
def ec_keypair(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """Write an EC key pair: ``(private PEM, public PEM)``, the private one encrypted if a password is given."""

    def make(curve: str = "P-256", password: bytes | None = None, name: str = "key") -> tuple[Path, Path]:
        key = _pki.ec_key(curve)
        priv = _pki.write_private_key(key, tmp_path / f"{name}.pem", password)
        pub = _pki.write_public_key(key, tmp_path / f"{name}.pub")
        return priv, pub

    return make


@pytest.fixture
def pki(tmp_path: Path) -> _pki.Pki:
    """root CA -> intermediate CA -> code-signing leaf, written as PEM files."""
    return _pki.Pki(tmp_path / "pki")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run the CLI in this process: ``run(*args) -> (exit code, stdout, stderr)``; never a traceback."""

    def invoke(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        code = exc.value.code if isinstance(exc.value.code, int) else 1
        assert "Traceback" not in err
        return code, out, err

    return invoke


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI (``CI=true``), a skipped test is a failed one: CI must install what every test needs.

    ``pytest.importorskip`` or a missing tool would otherwise pass CI silently.
    """
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under CI (a skipped test fails CI: install what it needs): {reason}"

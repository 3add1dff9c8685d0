"""Keyless ``sign --scan`` against a local Sigstore instance: unsafe content is refused before any Rekor entry."""

from __future__ import annotations

from pathlib import Path

from model_signing.sigstore_local import LocalSigstore
from tests import _scan_samples as samples
from tests.test_cli_keyless import FILES, cli, inst, write_model
from tests.test_cli_keyless_destination import sign_args, tree_size

__all__ = ["inst"]  # the module-scoped instance fixture of test_cli_keyless


def test_keyless_sign_scan_refuses_unsafe_content_before_the_log(inst: LocalSigstore, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    evil = samples.torch_zip(samples.p_reduce(samples.Asm(4), f"touch {canary}"))
    model = write_model(tmp_path / "model", {**FILES, "pytorch_model.bin": evil})
    size = tree_size(inst)
    proc = cli(*sign_args(inst, model, "--scan"))
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: unsafe model content: 1 finding at or above medium")
    assert any("pytorch_model.bin!archive/data.pkl" in line and "critical" in line for line in lines[1:])
    assert "Traceback" not in proc.stderr
    assert tree_size(inst) == size  # no transparency-log entry
    assert not (tmp_path / "model.sig").exists() and not canary.exists()
    # The same model without the unsafe file signs, scan included, and logs one entry.
    (model / "pytorch_model.bin").unlink()
    proc = cli(*sign_args(inst, model, "--scan"))
    assert proc.returncode == 0, proc.stderr
    assert "scanned in the same pass" in proc.stdout
    assert tree_size(inst) == size + 1

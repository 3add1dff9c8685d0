"""Files named on the command line (keys, certificates, trust configs, signatures) are read safely:
a FIFO or a device fails at once with a one-line error instead of blocking or filling memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_signing._internal.files import read_small_file
from model_signing.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def test_regular_file_is_read(tmp_path: Path) -> None:
    f = tmp_path / "k.pem"
    f.write_bytes(b"pem bytes")
    assert read_small_file(f, "private key", limit=1 << 10) == b"pem bytes"


def test_size_bound(tmp_path: Path) -> None:
    f = tmp_path / "big"
    f.write_bytes(b"x" * (2 << 20))
    with pytest.raises(InputError, match=r"trust config .*big is 2 MiB, more than the 1 MiB limit for a trust config"):
        read_small_file(f, "trust config", limit=1 << 20)


def test_fifo_or_device_as_key_certificate_or_trust_config_fails_at_once(tmp_path: Path, small_model: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # In a subprocess with a timeout: a regression blocks forever on open() (FIFO) or reads /dev/zero until
    # memory runs out, which must fail the test, not hang or starve the test machine.
    cases = [
        (["sign", "key", str(small_model), "--private-key", str(fifo)], str(fifo)),
        (["verify", "key", str(small_model), "--public-key", "/dev/zero"], "/dev/zero"),
        (["verify", "certificate", str(small_model), "--certificate-chain", str(fifo)], str(fifo)),
        (["verify", "sigstore", str(small_model), "--trusted-root", str(fifo), "--offline",
          "--identity", "a@example.com", "--identity-provider", "https://issuer.example"], str(fifo)),
    ]
    for args, culprit in cases:
        proc = subprocess.run(
            [sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL, check=False,
        )
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        assert f"{culprit} is not a regular file" in lines[0]

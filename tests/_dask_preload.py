"""Loaded into the test's ``dask worker`` processes (``--preload``): sets the hash pool's test seam.

``MODELSEAL_TEST_WORKER`` (in the worker's environment) says what the worker does each time it has opened
and checked a file, before reading it: ``slow`` (sleep 0.2 s), ``die`` (sleep 0.3 s, then SIGKILL itself:
a worker lost mid-run), ``die-on:NAME`` (the same, only for files named NAME) or ``grow:NAME`` (append a
byte to files named NAME: a file changed while hashed).
"""

from __future__ import annotations

import os
import signal
import time

from model_signing.hashing import _pool


def _hook(path: str) -> None:
    mode = os.environ.get("MODELSEAL_TEST_WORKER", "")
    if mode == "slow":
        time.sleep(0.2)
    elif mode == "die" or (mode.startswith("die-on:") and os.path.basename(path) == mode[7:]):
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode.startswith("grow:") and os.path.basename(path) == mode[5:]:
        with open(path, "ab") as f:
            f.write(b"!")


def dask_setup(worker: object) -> None:
    """Called by ``dask worker --preload`` in the worker process."""
    _pool._after_open_hook = _hook

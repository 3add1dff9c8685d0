"""The in-process CLI runner the CLI tests share (the ``run`` fixture in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

#: ``run(*args) -> (exit code, stdout, stderr)``: the CLI's ``main`` run in this process.
Run = Callable[..., tuple[int, str, str]]

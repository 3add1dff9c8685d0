"""Types shared by the public API (one definition each)."""

from __future__ import annotations

import os
from typing import TypeAlias

#: What every API function takes for a file or directory: a ``str`` or an ``os.PathLike`` of one.
PathLike: TypeAlias = str | os.PathLike[str]

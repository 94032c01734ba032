"""Where nbs2i keeps what it learnt on this machine: the user's cache directory
($XDG_CACHE_HOME, else ~/.cache), under nbs2i/."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """nbs2i's cache directory, or a path under it (not created here)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root, "nbs2i", *parts)

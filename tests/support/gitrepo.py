"""Git repositories made by the tests: fixed authors and dates, so commits and
labels are known in advance."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

AUTHOR = "Teacher <teacher@example.org>"
DATE = "2024-03-01T10:00:00Z"


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "Teacher",
        "GIT_AUTHOR_EMAIL": "teacher@example.org",
        "GIT_COMMITTER_NAME": "Teacher",
        "GIT_COMMITTER_EMAIL": "teacher@example.org",
        "GIT_AUTHOR_DATE": DATE,
        "GIT_COMMITTER_DATE": DATE,
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "core.symlinks=true", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def one_notebook(tmp_path: Path, name: str = "src") -> Path:
    """A source directory holding one empty notebook, a.ipynb."""
    src = tmp_path / name
    src.mkdir()
    (src / "a.ipynb").write_text("{}")
    return src


def make_repo(path: Path, content: Path, subdir: str = "") -> str:
    """A Git repo at path holding a copy of content (under subdir); returns the commit."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(content, path / subdir if subdir else path, dirs_exist_ok=True)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Lecture notebooks")
    return git(path, "rev-parse", "HEAD")

"""nbs2i.source's git layer: GitPython runs the clone, and a commit is described
exactly as `git log` describes it (real git, real repositories; no network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from git import Git

from nbs2i.errors import SourceError
from nbs2i.source import git as source_git
from nbs2i.source import open_source
from nbs2i.source.commit import Commit
from tests.support.gitrepo import git, make_repo, one_notebook

# What labels showed while nbs2i ran `git log` itself: the commit id, the
# author, the author date, the commit time and the subject cut at 80 columns.
LOG_FORMAT = "%H%x00%an <%ae>%x00%ad%x00%ct%x00%<(80,trunc)%s"

MESSAGES = {
    "short": "Lecture 1",
    "first-paragraph": "first line\nsecond line\n\nthe body",
    "leading-blank-lines": "\n\n  \nafter blank lines\n",
    "trailing-space": "trailing   \t\nnext",
    "exactly-80": "a" * 80,
    "81": "a" * 81,
    "wide-at-the-cut": "a" * 77 + "中" + "bbb",
    "wide": "中" * 41,
    "emoji": "😀" * 45,
    "combining": "e\u0301" * 85,
    "colour": "\x1b[31m" + "r" * 79 + "\x1b[0m" + "x" * 5,
    "controls": "ctl\x01\x02" + "y" * 80,
    "zero-width": "zw\u200b" + "w" * 80,
    "soft-hyphen": "soft\u00ad" + "s" * 80,
    "hangul-jamo": "한" * 30 + "\u1161" * 30 + "x" * 40,
    "crlf": "line\r\nnext\r\n",
    "empty": "",
}

DATES = {
    "east": "1700000000 +0100",
    "west": "1700000000 -0530",
    "far-zone": "1700000000 +9959",
    "year-5138": "99999999999 +0000",
    "year-10000": "253402300799 +0100",
    "out-of-range": "999999999999999999999 +0000",
}


def commit(repo: Path, message: str, date: str = DATES["east"]) -> str:
    """A commit written byte for byte (any message, any date), made HEAD."""
    tree = git(repo, "write-tree")
    raw = (
        f"tree {tree}\nauthor Ada Lovelace <ada@example.org> {date}\n"
        f"committer Ada Lovelace <ada@example.org> {date}\n\n{message}"
    ).encode()
    sha = (
        subprocess.run(
            ["git", "-C", str(repo), "hash-object", "-t", "commit", "-w", "--stdin", "--literally"],
            input=raw,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    git(repo, "update-ref", "HEAD", sha)
    return sha


def logged(repo: Path) -> Commit:
    out = subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--date=default", f"--format={LOG_FORMAT}"],
        capture_output=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout.decode("utf-8", "replace")
    sha, author, date, epoch, subject = out.rstrip("\n").split("\0")
    return Commit(sha, author, date, subject.rstrip(), int(epoch))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    return path


@pytest.mark.parametrize("message", list(MESSAGES.values()), ids=list(MESSAGES))
def test_the_subject_is_what_git_log_gives(repo: Path, message: str) -> None:
    commit(repo, message)
    assert source_git.describe(repo) == logged(repo)


@pytest.mark.parametrize("date", list(DATES.values()), ids=list(DATES))
def test_the_date_is_what_git_log_gives(repo: Path, date: str) -> None:
    commit(repo, "dated", date)
    assert source_git.describe(repo) == logged(repo)


def test_a_clone_runs_through_gitpython_in_a_session_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = make_repo(tmp_path / "origin", one_notebook(tmp_path))
    seen: list[tuple[list[str], dict[str, object]]] = []
    real = Git.execute

    def spy(self: Git, command: list[str], *args: object, **kwargs: object) -> object:
        seen.append((list(command), kwargs))
        return real(self, command, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Git, "execute", spy)
    with open_source(f"file://{tmp_path / 'origin'}") as src:
        assert src.commit == sha
    clones = [kwargs for command, kwargs in seen if command[1:2] == ["clone"]]
    assert clones, [command for command, _kwargs in seen]
    assert clones[0]["as_process"] is True
    assert clones[0]["start_new_session"] is True
    assert clones[0]["umask"] == 0o022


def test_a_directory_in_no_checkout_is_described_without_gitpython(tmp_path: Path) -> None:
    plain = one_notebook(tmp_path)
    probe = (
        "import sys\nfrom nbs2i.source import open_source\n"
        f"with open_source({str(plain)!r}) as src:\n"
        "    print(src.commit == '', 'git' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["True", "False"]


# GitPython refuses to load without git unless told to be quiet about it.
@pytest.mark.parametrize("refresh", ["", "quiet"], ids=["gitpython-refuses", "gitpython-quiet"])
def test_without_git_a_checkout_is_a_plain_directory_and_a_clone_says_so(
    tmp_path: Path, refresh: str
) -> None:
    make_repo(tmp_path / "checkout", one_notebook(tmp_path))
    probe = (
        "import sys\nfrom nbs2i.errors import SourceError\n"
        "from nbs2i.source import open_source\n"
        "with open_source(sys.argv[1]) as src:\n"
        "    print(repr(src.commit))\n"
        "try:\n"
        "    with open_source('file://' + sys.argv[1]):\n"
        "        pass\n"
        "except SourceError as exc:\n"
        "    print(exc)\n"
    )
    bare_path = tmp_path / "no-git"
    bare_path.mkdir()
    env = {**os.environ, "PATH": str(bare_path)}
    env.pop("GIT_PYTHON_GIT_EXECUTABLE", None)
    env.pop("GIT_PYTHON_REFRESH", None)
    if refresh:
        env["GIT_PYTHON_REFRESH"] = refresh
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "checkout")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "''",
        "git is not installed or not on PATH: install git (e.g. apt-get install git)",
    ]
    assert done.stderr == ""


def test_a_ref_that_names_no_commit_is_refused(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    make_repo(origin, one_notebook(tmp_path))
    git(origin, "tag", "-a", "-m", "annotated", "v2")
    tree = git(origin, "rev-parse", "HEAD^{tree}")
    with open_source(f"file://{origin}", ref="refs/tags/v2") as src:
        assert src.commit == git(origin, "rev-parse", "HEAD")
    with (
        pytest.raises(SourceError, match="does not exist"),
        open_source(f"file://{origin}", ref=tree),
    ):
        pytest.fail("a tree is not a commit")

"""nbs2i.source against real Git repositories that the tests create (file:// only, no network)."""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbs2i.errors import SourceError
from nbs2i.source import (
    clean_context_dir,
    git_environment,
    is_git_url,
    open_source,
    redact,
    summarize_git_error,
    urls,
)
from nbs2i.source import git as source_git
from tests.support.archives import source_files

COMMIT_TIME = 1_700_000_000


def run_git(cwd: Path, *args: str, when: int = COMMIT_TIME) -> str:
    env = {
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.org",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.org",
        "GIT_AUTHOR_DATE": f"@{when} +0100",
        "GIT_COMMITTER_DATE": f"@{when} +0100",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    done = subprocess.run(
        ["git", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def commit_all(repo: Path, message: str, when: int) -> str:
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", message, when=when)
    return run_git(repo, "rev-parse", "HEAD")


class Repo:
    """A repository with three commits on main, a tag, a branch, and a context dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        run_git(path, "init", "-q", "-b", "main")
        (path / "notebooks").mkdir()
        (path / "notebooks" / "one.ipynb").write_text("{}")
        (path / "README.md").write_text("v1")
        self.first = commit_all(path, "first commit\n\nwith a body", COMMIT_TIME)
        run_git(path, "tag", "v1")
        (path / "notebooks" / "two.ipynb").write_text("{}")
        self.second = commit_all(path, "second commit", COMMIT_TIME + 100)
        run_git(path, "branch", "feature")
        (path / "README.md").write_text("v3")
        self.third = commit_all(path, "third commit", COMMIT_TIME + 200)
        self.url = f"file://{path}"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "origin")


@pytest.fixture(autouse=True)
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Clones go to a temp dir of their own, which must be empty after every test."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    assert list(tmp.iterdir()) == [], "a temp dir was left behind"


def names(root: Path) -> list[str]:
    return [p.as_posix() for p in source_files(root)]


def history_length(root: Path) -> int:
    done = subprocess.run(
        ["git", "-C", str(root), "rev-list", "--count", "--all"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


# -- Git URLs ----------------------------------------------------------------


def test_clone_default_branch_is_shallow_and_described(repo: Repo, temp_root: Path) -> None:
    with open_source(repo.url) as src:
        assert src.root.is_relative_to(temp_root)
        assert src.commit == repo.third
        assert src.author == "Ada Lovelace <ada@example.org>"
        assert src.message == "third commit"
        assert src.epoch == COMMIT_TIME + 200
        # As upstream s2i's label: the author date in git's default format.
        when = dt.datetime.strptime(src.date, "%a %b %d %H:%M:%S %Y %z")
        assert when.timestamp() == COMMIT_TIME + 200
        assert src.date.endswith(" +0100")
        assert (src.location, src.ref, src.context_dir) == (repo.url, "", "")
        assert (src.root / "README.md").read_text() == "v3"
        assert history_length(src.root) == 1
        assert names(src.root) == [
            "README.md",
            "notebooks",
            "notebooks/one.ipynb",
            "notebooks/two.ipynb",
        ]
    assert not src.root.exists()


@pytest.mark.parametrize(
    ("ref", "commit", "readme", "shallow"),
    [
        ("feature", "second", "v1", True),  # branch
        ("v1", "first", "v1", True),  # tag
        ("refs/heads/feature", "second", "v1", True),  # full ref name
        ("FIRST", "first", "v1", True),  # full commit id: fetched by id
        ("FIRST8", "first", "v1", False),  # abbreviated id: needs history
    ],
)
def test_clone_with_ref(repo: Repo, ref: str, commit: str, readme: str, shallow: bool) -> None:
    sha = getattr(repo, commit)
    asked = {"FIRST": repo.first, "FIRST8": repo.first[:8]}.get(ref, ref)
    with open_source(repo.url, ref=asked) as src:
        assert src.commit == sha
        assert src.ref == asked
        assert (src.root / "README.md").read_text() == readme
        assert (history_length(src.root) == 1) is shallow
    if commit == "first":
        assert src.message == "first commit"  # first line only


def test_clone_with_context_dir(repo: Repo) -> None:
    with open_source(repo.url, ref="v1", context_dir="./notebooks/") as src:
        assert src.context_dir == "notebooks"
        assert src.root.name == "notebooks"
        assert names(src.root) == ["one.ipynb"]


def test_clone_with_submodules(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    run_git(sub, "init", "-q", "-b", "main")
    (sub / "data.csv").write_text("a,b\n")
    pinned = commit_all(sub, "data v1", COMMIT_TIME)
    (sub / "data.csv").write_text("a,b,c\n")
    commit_all(sub, "data v2", COMMIT_TIME + 10)

    nested = tmp_path / "nested"
    nested.mkdir()
    run_git(nested, "init", "-q", "-b", "main")
    (nested / "deep.txt").write_text("deep")
    commit_all(nested, "deep", COMMIT_TIME)
    run_git(sub, "submodule", "-q", "add", f"file://{nested}", "nested")
    commit_all(sub, "nested", COMMIT_TIME + 20)

    top = tmp_path / "top"
    top.mkdir()
    run_git(top, "init", "-q", "-b", "main")
    (top / "nb.ipynb").write_text("{}")
    run_git(top, "submodule", "-q", "add", f"file://{sub}", "data")
    run_git(top / "data", "checkout", "-q", "HEAD~0")  # tip: has the nested submodule
    commit_all(top, "with data", COMMIT_TIME + 30)
    (top / "tipless").mkdir()
    run_git(top, "submodule", "-q", "add", f"file://{sub}", "tipless/data")
    run_git(top / "tipless" / "data", "checkout", "-q", pinned)  # not a branch tip
    head = commit_all(top, "pinned old data", COMMIT_TIME + 40)

    for ref in ("", head):
        with open_source(f"file://{top}", ref=ref) as src:
            files = names(src.root)
            assert "data/data.csv" in files
            assert "data/nested/deep.txt" in files
            assert (src.root / "data" / "data.csv").read_text() == "a,b,c\n"
            assert (src.root / "tipless" / "data" / "data.csv").read_text() == "a,b\n"
            assert "data/.git" not in files  # gitlink file left out by the default exclude


# -- local directories -------------------------------------------------------


def test_local_checkout_is_used_as_on_disk(repo: Repo, temp_root: Path) -> None:
    (repo.path / "notebooks" / "one.ipynb").write_text('{"edited": true}')  # uncommitted edit
    (repo.path / "notebooks" / "new.ipynb").write_text("{}")  # untracked file
    (repo.path / "README.md").unlink()  # deleted but committed
    with open_source(str(repo.path)) as src:
        assert src.root == repo.path.resolve()
        assert src.location == str(repo.path.resolve())
        assert src.commit == repo.third  # HEAD describes it
        assert src.message == "third commit"
        assert src.epoch == COMMIT_TIME + 200
        assert (src.root / "notebooks" / "one.ipynb").read_text() == '{"edited": true}'
        assert names(src.root) == [
            "notebooks",
            "notebooks/new.ipynb",
            "notebooks/one.ipynb",
            "notebooks/two.ipynb",
        ]
    assert repo.path.exists()  # a local dir is never removed
    assert list(temp_root.iterdir()) == []  # and never copied


def test_local_subdirectory_of_a_checkout(repo: Repo) -> None:
    with open_source(str(repo.path / "notebooks")) as src:
        assert src.commit == repo.third
        assert names(src.root) == ["one.ipynb", "two.ipynb"]


def test_local_context_dir(repo: Repo) -> None:
    with open_source(str(repo.path), context_dir="notebooks") as src:
        assert src.root == (repo.path / "notebooks").resolve()
        assert src.context_dir == "notebooks"


def test_plain_directory_has_empty_description(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "nb.ipynb").write_text("{}")
    with open_source(str(plain)) as src:
        assert (src.commit, src.author, src.date, src.message, src.ref) == ("", "", "", "", "")
        assert src.epoch is None


def test_repository_without_commits_has_empty_description(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    run_git(fresh, "init", "-q")
    (fresh / "nb.ipynb").write_text("{}")
    with open_source(str(fresh)) as src:
        assert src.commit == "" and src.epoch is None
        assert names(src.root) == ["nb.ipynb"]


# -- errors: one line each, nothing left behind -------------------------------


def refused(location: str, **options: str) -> str:
    """open_source's error for this input, checked to be one line with a fix."""
    with pytest.raises(SourceError) as err, open_source(location, **options):
        pytest.fail("open_source accepted what it must refuse")
    text = str(err.value)
    assert "\n" not in text
    assert err.value.fix, "every error names the fix"
    return text


def test_missing_repository_url(tmp_path: Path) -> None:
    text = refused(f"file://{tmp_path}/missing.git")
    assert text.startswith(f"cannot clone file://{tmp_path}/missing.git: ")
    assert "does not appear to be a git repository" in text
    assert "check the URL" in text


def test_missing_repository_url_with_ref(tmp_path: Path) -> None:
    text = refused(f"file://{tmp_path}/missing.git", ref="main")
    assert text.startswith(f"cannot read file://{tmp_path}/missing.git: ")
    assert "does not appear to be a git repository" in text


def test_missing_local_directory(tmp_path: Path) -> None:
    text = refused(str(tmp_path / "nope"))
    assert text.startswith(f"source directory {tmp_path}/nope does not exist: give")


def test_local_file_is_not_a_source(tmp_path: Path) -> None:
    (tmp_path / "f.ipynb").write_text("{}")
    assert "is not a directory" in refused(str(tmp_path / "f.ipynb"))


@pytest.mark.parametrize("ref", ["no-such-branch", "deadbeef", "0" * 40])
def test_missing_ref(repo: Repo, ref: str) -> None:
    text = refused(repo.url, ref=ref)
    assert text.startswith(f"ref {ref} does not exist in {repo.url}: give a branch")


def test_ref_with_a_local_directory_points_to_file_url(repo: Repo) -> None:
    assert f"file://{repo.path}" in refused(str(repo.path), ref="v1")


@pytest.mark.parametrize("local", [False, True])
def test_missing_context_dir(repo: Repo, local: bool) -> None:
    where = str(repo.path) if local else repo.url
    text = refused(where, context_dir="lectures")
    assert text.startswith(f"context dir lectures does not exist in {where}: ")


def test_context_dir_that_is_a_file(repo: Repo) -> None:
    assert "context dir README.md does not exist" in refused(repo.url, context_dir="README.md")


@pytest.mark.parametrize("context", ["/etc", "../other", "notebooks/../../x", ".."])
def test_context_dir_escape_is_refused(repo: Repo, context: str) -> None:
    text = refused(str(repo.path), context_dir=context)
    assert text.startswith(f"context dir {context!r} ")


def test_context_dir_symlink_leaving_the_repo_is_refused(repo: Repo, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (repo.path / "link").symlink_to(tmp_path / "elsewhere")
    commit_all(repo.path, "link", COMMIT_TIME + 300)
    for where in (str(repo.path), repo.url):
        assert "context dir link leaves the repository" in refused(where, context_dir="link")


def test_option_like_location_and_bad_ref_are_refused(repo: Repo) -> None:
    assert "looks like an option" in refused("--upload-pack=touch /tmp/pwned")
    for bad in ("-x", "a..b", "a b", "a:b", "x^{}"):
        assert "is not a valid Git ref" in refused(repo.url, ref=bad)


def test_temp_dir_removed_on_error_and_interrupt_inside(repo: Repo, temp_root: Path) -> None:
    with pytest.raises(KeyboardInterrupt), open_source(repo.url) as src:
        assert src.root.exists()
        raise KeyboardInterrupt
    assert list(temp_root.iterdir()) == []
    with pytest.raises(RuntimeError), open_source(repo.url):
        raise RuntimeError("the build failed")
    assert list(temp_root.iterdir()) == []


def test_git_never_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)
    monkeypatch.delenv("GIT_SSH", raising=False)
    env = git_environment("https://example.org/private.git")
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes"
    monkeypatch.setenv("GIT_SSH_COMMAND", "ssh -i key")
    assert "GIT_SSH_COMMAND" not in git_environment("git@host:x.git")


def test_file_protocol_only_for_a_file_url() -> None:
    # A remote repository must not pull a repository of the build machine into the image
    # through a file:// submodule.
    assert "file" not in git_environment("https://example.org/r.git")["GIT_ALLOW_PROTOCOL"].split(
        ":"
    )
    assert "file" in git_environment("file:///srv/r.git")["GIT_ALLOW_PROTOCOL"].split(":")


def test_file_submodule_of_a_non_file_source_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git itself enforces the rule: the submodule step gets the environment that a
    non-file source gets (no network here to clone a real remote)."""
    sub = tmp_path / "sub"
    sub.mkdir()
    run_git(sub, "init", "-q", "-b", "main")
    (sub / "secret").write_text("of the build machine")
    commit_all(sub, "s", COMMIT_TIME)
    top = tmp_path / "top"
    top.mkdir()
    run_git(top, "init", "-q", "-b", "main")
    run_git(top, "submodule", "-q", "add", f"file://{sub}", "s")
    commit_all(top, "top", COMMIT_TIME)
    calls: list[str] = []
    original = source_git._update_submodules

    def without_file(repo, url, env):  # type: ignore[no-untyped-def]
        calls.append(url)
        return original(repo, url, git_environment("https://example.org/top.git"))

    monkeypatch.setattr(source_git, "_update_submodules", without_file)
    text = refused(f"file://{top}")
    assert calls
    assert text.startswith(f"cannot fetch the submodules of file://{top}: ")
    assert "transport 'file' not allowed" in text


# -- helpers -----------------------------------------------------------------


def test_summarize_git_error_is_one_line() -> None:
    stderr = "Cloning into 'x'...\nremote: hi\nfatal: repository 'https://t:s@h/x' not found\n"
    assert summarize_git_error(stderr) == "repository 'https://***@h/x' not found"
    assert summarize_git_error("") == "git failed"


def test_redact_masks_credentials() -> None:
    assert redact("https://user:pw@github.com/o/r.git") == "https://***@github.com/o/r.git"
    assert redact("https://github.com/o/r.git") == "https://github.com/o/r.git"


def test_is_git_url(tmp_path: Path) -> None:
    assert is_git_url("https://github.com/o/r")
    assert is_git_url("ssh://git@host/r.git")
    assert is_git_url("git@github.com:o/r.git")
    assert is_git_url("file:///srv/r")
    assert not is_git_url(str(tmp_path))
    assert not is_git_url("notebooks")


def test_clean_context_dir() -> None:
    assert clean_context_dir("") == ""
    assert clean_context_dir(" ./a/b/ ") == "a/b"
    assert clean_context_dir(".") == ""


def test_temp_dir_removed_on_interrupt_during_clone(
    repo: Repo, temp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(repo_dir: Path, url: str, env: dict[str, str]) -> None:
        assert any(temp_root.iterdir())  # the clone is on disk by now
        raise KeyboardInterrupt

    monkeypatch.setattr(source_git, "_update_submodules", interrupted)
    with pytest.raises(KeyboardInterrupt), open_source(repo.url):
        pytest.fail("must not get here")
    assert list(temp_root.iterdir()) == []


def test_credentials_never_reach_the_description_or_git(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[urls.Credentials] = []
    real_clone = source_git.clone

    def clone_from_disk(creds: urls.Credentials, ref: str, dest: Path) -> None:
        seen.append(creds)
        real_clone(urls.Credentials(repo.url), ref, dest)

    monkeypatch.setattr(source_git, "clone", clone_from_disk)
    with open_source("https://user:s3c@ret@example.org/o/r.git") as src:
        assert src.location == "https://example.org/o/r.git"
    # Git is given the URL without the password, which travels in the helper's environment.
    assert seen == [urls.Credentials("https://example.org/o/r.git", "user", "s3c@ret")]
    env = urls.credential_environment(seen[0])
    assert "s3c@ret" not in " ".join(v for k, v in env.items() if k != "NBS2I_GIT_PASSWORD")
    assert env["GIT_CONFIG_KEY_0"] == "credential.https://example.org.helper"


def test_redact_masks_a_password_holding_an_at_sign() -> None:
    from nbs2i.source import redact

    assert redact("https://user:p@ss@host/x.git") == "https://***@host/x.git"
    assert (
        redact("fatal: could not read https://u:p@h/x") == "fatal: could not read https://***@h/x"
    )


def _alive(pid: int) -> bool:
    """True while pid runs; a zombie waiting for its reaper is dead."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_git_command_that_runs_too_long_is_killed_with_its_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(source_git, "GIT_SECONDS", 1)
    pidfile = tmp_path / "pid"
    # git runs a shell that runs a sleep: a grandchild, as git-remote-http is.
    hang = f"alias.hang=!sh -c 'echo $$ > {pidfile}; exec sleep 60'"
    with pytest.raises(source_git.GitFailed, match="no answer within 1 s"):
        source_git.run_git(["-c", hang, "hang"], {}, tmp_path)
    pid = int(pidfile.read_text())
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid), "the grandchild of git outlived the time limit"


def test_a_clone_has_the_same_modes_whatever_the_umask(repo: Repo) -> None:
    import os

    previous = os.umask(0o077)
    try:
        with open_source(repo.url) as src:
            mode = (src.root / "README.md").stat().st_mode & 0o777
    finally:
        os.umask(previous)
    assert mode == 0o644, oct(mode)

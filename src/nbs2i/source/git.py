"""Fetching a Git URL, and describing a commit, through GitPython.

Every git command that may talk to the network or writes the checkout runs
through `run_git`: GitPython's `Git.execute` starts it in a session (so a
process group) of its own under a fixed umask and hands back its process,
and nbs2i kills that whole group on any way out (an error, Ctrl-C, SIGTERM,
SIGHUP, the time limit). GitPython's own clean-up stops git alone, not the
git-remote-http or ssh it started; hence the group. Commit metadata and refs
are read with `Repo`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from git import Git, Repo
from git.exc import GitCommandNotFound, GitError, ODBError

from nbs2i.errors import SourceError
from nbs2i.source.commit import Commit, cut_subject, git_date, subject
from nbs2i.source.urls import (
    Credentials,
    credential_environment,
    git_environment,
    git_missing,
    redact,
    summarize_git_error,
)

_HEX = re.compile(r"^[0-9a-fA-F]{4,40}$")
# A clone (or fetch) that takes longer than this is stopped.
GIT_SECONDS = 600
# The checkout's modes, and so the image's, must not depend on the umask of
# whoever builds: the same commit gives the same image.
CHECKOUT_UMASK = 0o022

CLONE_FIX = (
    "check the URL, and that you can read the repository (for a private one, "
    "set up a git credential helper or an ssh key)"
)


class GitFailed(Exception):
    """A git command exited non-zero; its stderr."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


def run_git(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    """One git command that may talk to the network or write files; its stdout.

    It runs in a process group of its own, which is killed on any way out of
    here (an error, Ctrl-C, SIGTERM, SIGHUP, the time limit): a clone stopped
    half-way leaves no git or git-remote-http behind.
    """
    runner = Git(cwd)
    try:
        # The handle must live until the end: dropping it terminates git.
        handle = runner.execute(
            [runner.GIT_PYTHON_GIT_EXECUTABLE, *args],
            as_process=True,
            env=env,
            start_new_session=True,
            umask=CHECKOUT_UMASK,
        )
    except GitCommandNotFound:
        raise git_missing() from None
    process = handle.proc
    assert process is not None, "GitPython hands back the process it started"
    try:
        out, err = process.communicate(timeout=GIT_SECONDS)
    except subprocess.TimeoutExpired:
        raise GitFailed(f"fatal: no answer within {GIT_SECONDS} s") from None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.returncode != 0:
        raise GitFailed(_text(err))
    return _text(out)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def describe(path: Path) -> Commit:
    """HEAD of the Git checkout that holds path; nothing for a plain directory,
    a repository without commits, or one git cannot read."""
    try:
        with Repo(path, search_parent_directories=True, expand_vars=False) as repo:
            head = repo.head.commit
            fields = (
                head.hexsha,
                head.author.name or "",
                head.author.email or "",
                head.authored_date,
                -int(head.author_tz_offset),
                head.message,
                head.committed_date,
            )
    except (GitError, ODBError, ValueError, LookupError, OSError):
        return Commit()
    sha, name, email, when, east, message, epoch = fields
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return Commit(
        sha=sha,
        author=f"{name} <{email}>",
        date=git_date(when, east),
        message=cut_subject(subject(message)),
        epoch=epoch,
    )


def clone(creds: Credentials, ref: str, dest: Path) -> None:
    """Fetch as little history as gives the asked commit, with submodules."""
    url = creds.url
    env = {**git_environment(url), **credential_environment(creds)}
    shallow = ["--depth", "1", "--single-branch", "--no-tags"]
    try:
        if not ref:
            run_git(["clone", *shallow, "--", url, str(dest)], env)
        else:
            kind, name = _resolve_ref(url, ref, env)
            if kind == "branch-or-tag":
                run_git(["clone", *shallow, "--branch", ref, "--", url, str(dest)], env)
            else:
                _fetch_commit(url, name, dest, env)
    except GitFailed as exc:
        raise SourceError(
            f"cannot clone {redact(url)}: {summarize_git_error(exc.stderr)}", CLONE_FIX
        ) from None
    _update_submodules(dest, url, env)


def _resolve_ref(url: str, ref: str, env: dict[str, str]) -> tuple[str, str]:
    """What `ref` is on the remote: ("branch-or-tag", ref), ("ref", ref) for a full
    ref name, or ("commit", sha)."""
    try:
        listing = run_git(["ls-remote", "--", url], env)
    except GitFailed as exc:
        raise SourceError(
            f"cannot read {redact(url)}: {summarize_git_error(exc.stderr)}", CLONE_FIX
        ) from None
    names = {line.split("\t", 1)[1] for line in listing.splitlines() if "\t" in line}
    if f"refs/heads/{ref}" in names or f"refs/tags/{ref}" in names:
        return "branch-or-tag", ref
    if ref in names:
        return "ref", ref
    if _HEX.match(ref):
        return "commit", ref.lower()
    raise SourceError(
        f"ref {ref} does not exist in {redact(url)}",
        f"give a branch, tag or commit id that the repository has (`git ls-remote {redact(url)}` "
        "lists branches and tags)",
    )


def _fetch_commit(url: str, ref: str, dest: Path, env: dict[str, str]) -> None:
    """Check out a commit id or a full ref name: shallow if the server allows, else full."""
    dest.mkdir()
    run_git(["init", "--quiet"], env, dest)
    run_git(["remote", "add", "origin", "--", url], env, dest)
    try:
        # Servers that allow fetching a commit by id (GitHub, GitLab, git >= 2.5
        # with uploadpack.allowReachableSHA1InWant, protocol v2) need one commit.
        run_git(["fetch", "--depth", "1", "origin", "--", ref], env, dest)
        target = "FETCH_HEAD"
    except GitFailed:
        # Abbreviated ids, or a server that refuses: fetch everything, look it up.
        run_git(
            ["fetch", "--tags", "origin", "--", "+refs/heads/*:refs/remotes/origin/*"], env, dest
        )
        target = ref
    sha = _commit_id(dest, target)
    if not sha:
        raise SourceError(
            f"ref {ref} does not exist in {redact(url)}",
            "give a branch, tag or commit id that the repository has",
        )
    run_git(["checkout", "--detach", "--quiet", sha], env, dest)


def _commit_id(repo_dir: Path, target: str) -> str:
    """The id of the commit `target` names in the repository, "" when it names
    none that is there."""
    with Repo(repo_dir, expand_vars=False) as repo:
        try:
            found = repo.rev_parse(f"{target}^{{commit}}")
            # Parsing alone does not read the object (the all-zero id parses).
            repo.odb.info(found.binsha)
        except (ODBError, ValueError):
            return ""
        return found.hexsha


def _update_submodules(repo: Path, url: str, env: dict[str, str]) -> None:
    if not (repo / ".gitmodules").exists():
        return
    try:
        run_git(["submodule", "update", "--init", "--recursive", "--depth", "1"], env, repo)
        return
    except GitFailed:
        pass  # a pinned commit that is not a branch tip: fetch full history below
    try:
        run_git(["submodule", "update", "--init", "--recursive"], env, repo)
    except GitFailed as exc:
        raise SourceError(
            f"cannot fetch the submodules of {redact(url)}: {summarize_git_error(exc.stderr)}",
            "check the submodule URLs in .gitmodules and that you can read them",
        ) from None

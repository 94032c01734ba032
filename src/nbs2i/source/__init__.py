"""Where the notebooks come from: a Git URL cloned into a temp dir, or a local dir as it is.

`open_source()` is a context manager that yields a `Source`: the directory whose
contents get built (context dir applied) and a description of it (commit, author,
date, message) that becomes image labels. A clone lives in a temp dir that is
removed on exit, on error and on Ctrl-C.

Choices that differ from upstream s2i, on purpose:

- A local directory is built exactly as it is on disk, uncommitted edits
  included. Upstream builds HEAD of a local checkout and silently drops edits
  (openshift/source-to-image #418, #904). To build a ref of a local repository,
  give it as a `file://` URL.
- Git's own multi-line stderr is boiled down to its first `fatal:`/`error:` line,
  and credentials in URLs are masked in every message.

The parts: `urls` (locations, checks, redaction, credentials, git's
environment), `git` (the fetch and the commit's description, through
GitPython), `commit` (a commit as labels write it), `files` (safe reads of the
files that steer the build). GitPython is loaded only when a clone or a
checkout needs it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nbs2i.errors import SourceError
from nbs2i.source.commit import Commit
from nbs2i.source.files import CONTROL_FILE_LIMIT, read_control_file, read_regular_file
from nbs2i.source.urls import (
    check_location,
    check_ref_syntax,
    clean_context_dir,
    git_environment,
    git_missing,
    is_git_url,
    redact,
    split_credentials,
    summarize_git_error,
)

__all__ = [
    "CLONE_PREFIX",
    "CONTROL_FILE_LIMIT",
    "Source",
    "check_location",
    "check_ref_syntax",
    "clean_context_dir",
    "git_environment",
    "is_git_url",
    "open_source",
    "read_control_file",
    "read_regular_file",
    "redact",
    "remove_tree",
    "source_date_epoch",
    "summarize_git_error",
]

# Temp directories of clones: the pid tells `nbs2i prune` whether their owner lives.
CLONE_PREFIX = "nbs2i-src-"


@dataclass(frozen=True)
class Source:
    location: str  # as the user gave it: URL, or absolute path of a local dir
    ref: str  # the ref asked for ("" when none)
    commit: str  # full commit sha ("" for a dir that is not a Git checkout)
    author: str  # "Name <email>" or ""
    date: str  # author date in git's default format, as upstream s2i labels it ("" when none)
    message: str  # first line of the commit message ("" when none)
    context_dir: str  # relative path inside the repo ("" for the root)
    root: Path  # directory whose CONTENTS are built (context dir applied)
    # Embedded times are clamped to this (the commit time, else $SOURCE_DATE_EPOCH);
    # None for a plain directory without SOURCE_DATE_EPOCH.
    epoch: int | None


@contextmanager
def open_source(location: str, *, ref: str = "", context_dir: str = "") -> Iterator[Source]:
    """Clone a Git URL into a temp dir (removed on exit, also on error/Ctrl-C), or take a
    local dir as is.

    Raises SourceError with a one-line message for: repo that does not exist, ref that
    does not exist, missing context dir.
    """
    context = clean_context_dir(context_dir)
    if ref:
        check_ref_syntax(ref)
    if location.startswith("-"):
        raise SourceError(
            f"source {location!r} looks like an option",
            "give a directory or a Git URL (https://, ssh://, git@host:path, file://)",
        )
    if is_git_url(location):
        with _cloned(location, ref, context) as source:
            yield source
        return
    yield _local_source(location, ref, context)


def source_date_epoch() -> int | None:
    """$SOURCE_DATE_EPOCH (reproducible-builds.org), when set to a number."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise SourceError(
            f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
            "set it to a Unix time, e.g. $(git log -1 --format=%ct), or unset it",
        )
    return int(value)


def _source(
    location: str, ref: str, commit: Commit, context: str, root: Path, epoch: int | None
) -> Source:
    return Source(
        location=location,
        ref=ref,
        commit=commit.sha,
        author=commit.author,
        date=commit.date,
        message=commit.message,
        context_dir=context,
        root=root,
        epoch=epoch,
    )


# -- local directory ---------------------------------------------------------


def _local_source(location: str, ref: str, context: str) -> Source:
    path = Path(location).expanduser()
    if not path.exists():
        raise SourceError(
            f"source directory {location} does not exist",
            "give an existing directory or a Git URL (https://, ssh://, git@host:path, file://)",
        )
    if not path.is_dir():
        raise SourceError(
            f"source {location} is not a directory",
            "give the directory that holds the notebooks, or a Git URL",
        )
    # Resolved once, here (a directory given through a link is the user's
    # choice): from now on the root is opened without following a link.
    path = path.resolve()
    if ref:
        raise SourceError(
            f"--ref {ref} cannot be used with a local directory (it is built as it is on disk)",
            f"give the repository as a URL to build a ref: file://{path}",
        )
    commit = _describe_local(path)
    root = _apply_context(path, context, str(path))
    epoch = commit.epoch if commit.epoch is not None else source_date_epoch()
    return _source(str(path), "", commit, context, root, epoch)


def _describe_local(path: Path) -> Commit:
    """HEAD of the checkout that holds path. A directory in no checkout is
    described without loading GitPython, and so is any when git is missing."""
    if not any(os.path.lexists(folder / ".git") for folder in (path, *path.parents)):
        return Commit()
    try:
        from nbs2i.source import git
    except ModuleNotFoundError:
        raise
    except ImportError:
        return Commit()  # GitPython found no git on this machine: a plain directory to us
    return git.describe(path)


def _apply_context(repo_root: Path, context: str, location: str) -> Path:
    if not context:
        return repo_root
    root = (repo_root / context).resolve()
    if not root.is_relative_to(repo_root.resolve()):
        raise SourceError(
            f"context dir {context} leaves the repository (it is a symlink to {root})",
            "give a real directory inside the repository",
        )
    if not root.is_dir():
        raise SourceError(
            f"context dir {context} does not exist in {redact(location)}",
            "give a directory that exists in the repository, relative to its root "
            "(or leave --context-dir out)",
        )
    return root


# -- Git URL -----------------------------------------------------------------


@contextmanager
def _cloned(url: str, ref: str, context: str) -> Iterator[Source]:
    try:
        from nbs2i.source import git
    except ModuleNotFoundError:
        raise
    except ImportError:
        raise git_missing() from None
    creds = split_credentials(url)
    # Resolved once, here: the source's root is opened later without following
    # a link on its path (a TMPDIR reached through a link is the user's choice).
    tmp = Path(tempfile.mkdtemp(prefix=f"{CLONE_PREFIX}{os.getpid()}-")).resolve()
    try:
        # A subdirectory, so the source root has normal permissions (mkdtemp makes 0700).
        repo_dir = tmp / "repo"
        git.clone(creds, ref, repo_dir)
        commit = git.describe(repo_dir)
        root = _apply_context(repo_dir, context, creds.url)
        # No credentials travel on into messages, image labels or files.
        yield _source(redact(creds.url), ref, commit, context, root, commit.epoch)
    finally:
        remove_tree(tmp)


def remove_tree(path: Path) -> None:
    """Remove a temp tree, retrying briefly: after Ctrl-C a dying git may still write."""
    for _attempt in range(10):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.2)

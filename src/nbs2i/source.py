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
- Git never prompts (GIT_TERMINAL_PROMPT=0, ssh BatchMode): a private repository
  fails with a message instead of hanging a CI job.
- Submodules may use the `file` transport only when the repository itself was
  given as a `file://` URL: a remote repository must not be able to pull a
  repository from the build machine's disk into the image (CVE-2022-39253).
- Git's own multi-line stderr is boiled down to its first `fatal:`/`error:` line,
  and credentials in URLs are masked in every message.
- A password in an http(s) URL never reaches Git's files: the clone is made
  from the URL without it, and Git asks a credential helper, scoped to that
  host, which reads it from the environment of the git process. So `.git/config`,
  the reflog and FETCH_HEAD hold no secret, whatever `--exclude` lets into the
  image.

The repository is untrusted input. `read_control_file()` is how nbs2i reads
every file whose content steers the build (ignore rules, environment, scripts,
dependency files): never through a link that leaves the source, never a
special file (a FIFO would hang the build, /dev/zero would never end), never
more than a bounded number of bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbs2i.errors import SourceError

# `user@host:path`, Git's scp-like syntax for ssh.
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+:")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HEX = re.compile(r"^[0-9a-fA-F]{4,40}$")
# Characters Git forbids in ref names (git check-ref-format), plus whitespace.
_BAD_REF = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{|^-|^/|/$|\.lock$|^$")
# Everything between "://" and the LAST "@" of the authority: a password may
# itself hold a raw "@".
_CREDENTIALS = re.compile(r"(://)[^/\s]*@")
# Bytes nbs2i reads at most from a file that steers the build.
CONTROL_FILE_LIMIT = 1 << 20
# Environment variables the scoped credential helper reads.
_USER_VAR = "NBS2I_GIT_USERNAME"
_PASSWORD_VAR = "NBS2I_GIT_PASSWORD"
# Temp directories of clones: the pid tells `nbs2i prune` whether their owner lives.
CLONE_PREFIX = "nbs2i-src-"
# A clone (or fetch) that takes longer than this is stopped.
GIT_SECONDS = 600

# Protocols Git may use; `file` only for a file:// source (see module docstring).
_NETWORK_PROTOCOLS = "https:http:ssh:git"

CLONE_FIX = (
    "check the URL, and that you can read the repository (for a private one, "
    "set up a git credential helper or an ssh key)"
)


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


@dataclass(frozen=True)
class _Commit:
    sha: str = ""
    author: str = ""
    date: str = ""
    message: str = ""
    epoch: int | None = None


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


def is_git_url(location: str) -> bool:
    """True for what Git would fetch (URL or scp-like), false for an existing local path."""
    if _URL.match(location):
        return True
    return bool(_SCP_LIKE.match(location)) and not Path(location).exists()


def clean_context_dir(context_dir: str) -> str:
    """The context dir as a clean relative POSIX path ("" for the root); refuses escapes."""
    text = context_dir.strip()
    if not text:
        return ""
    path = PurePosixPath(text)
    if path.is_absolute():
        raise SourceError(
            f"context dir {context_dir!r} is an absolute path",
            "give a path relative to the repository root, e.g. notebooks",
        )
    if ".." in path.parts:
        raise SourceError(
            f"context dir {context_dir!r} leaves the repository (it contains '..')",
            "give a path inside the repository, relative to its root",
        )
    parts = [p for p in path.parts if p != "."]
    return "/".join(parts)


def redact(url: str) -> str:
    """A location fit for messages and labels: any user:password@ masked, whatever
    characters the password holds."""
    if _URL.match(url):
        userinfo, at, _host = urllib.parse.urlsplit(url).netloc.rpartition("@")
        if at:
            return url.replace(userinfo + "@", "***@", 1)
    return _CREDENTIALS.sub(r"\1***@", url)


def check_location(location: str) -> None:
    """Refuse, without echoing it, an http(s) URL whose password holds a raw '/',
    '?' or '#': a URL parser ends the host there, and the rest of the password
    would travel on as a path, into git's arguments and into messages."""
    scheme, sep, rest = location.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return
    netloc = urllib.parse.urlsplit(location).netloc
    before, at, _after = rest.rpartition("@")
    if at and "@" not in netloc and ":" in before:
        raise SourceError(
            "the source URL's password holds '/', '?' or '#' (or its path an '@')",
            "percent-encode them in the URL (%2F, %3F, %23, %40), or use a git credential helper",
        )


@dataclass(frozen=True)
class _Credentials:
    """A URL split into what Git may store and the secret it must not."""

    url: str  # without user:password@ for http(s); unchanged otherwise
    username: str = ""
    password: str = ""


def _split_credentials(url: str) -> _Credentials:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return _Credentials(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return _Credentials(clean, urllib.parse.unquote(user), urllib.parse.unquote(password))


def _credential_environment(creds: _Credentials) -> dict[str, str]:
    """A credential helper, for this URL's host only, that answers from the
    environment: the secret is never on a command line, in a config file or a log."""
    if not creds.username and not creds.password:
        return {}
    parts = urllib.parse.urlsplit(creds.url)
    helper = (
        '!f() { test "$1" = get || exit 0; '
        f'printf "username=%s\\npassword=%s\\n" "${_USER_VAR}" "${_PASSWORD_VAR}"; }}; f'
    )
    # Appended after any GIT_CONFIG_KEY_n the user already passes to Git.
    index = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    return {
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": f"credential.{parts.scheme}://{parts.netloc}.helper",
        f"GIT_CONFIG_VALUE_{index}": helper,
        _USER_VAR: creds.username,
        _PASSWORD_VAR: creds.password,
    }


def git_environment(url: str) -> dict[str, str]:
    """Environment for every git command: never prompt, limited protocols."""
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GCM_INTERACTIVE": "never",
        "GIT_ALLOW_PROTOCOL": _NETWORK_PROTOCOLS
        + (":file" if url.lower().startswith("file://") else ""),
        # Give up on a stalled transfer instead of hanging forever.
        "GIT_HTTP_LOW_SPEED_LIMIT": os.environ.get("GIT_HTTP_LOW_SPEED_LIMIT", "1000"),
        "GIT_HTTP_LOW_SPEED_TIME": os.environ.get("GIT_HTTP_LOW_SPEED_TIME", "60"),
    }
    if not os.environ.get("GIT_SSH_COMMAND") and not os.environ.get("GIT_SSH"):
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


def summarize_git_error(stderr: str) -> str:
    """One line from git's stderr: its first fatal/error line, else its last line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for prefix in ("fatal:", "error:"):
        for ln in lines:
            if ln.startswith(prefix):
                return redact(ln.removeprefix(prefix).strip())
    return redact(lines[-1]) if lines else "git failed"


class GitFailed(Exception):
    """A git command exited non-zero; its stderr."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr)
        self.stderr = stderr


def run_git(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    """One git command that may talk to the network; its stdout.

    It runs in a process group of its own, which is killed on any way out of
    here (an error, Ctrl-C, SIGTERM, SIGHUP, the time limit): a clone stopped
    half-way leaves no git or git-remote-http behind.
    """
    try:
        proc = subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            # The checkout's modes, and so the image's, must not depend on the
            # umask of whoever builds: the same commit gives the same image.
            umask=0o022,
        )
    except FileNotFoundError:
        raise SourceError(
            "git is not installed or not on PATH", "install git (e.g. apt-get install git)"
        ) from None
    try:
        out, err = proc.communicate(timeout=GIT_SECONDS)
    except subprocess.TimeoutExpired:
        raise GitFailed(f"fatal: no answer within {GIT_SECONDS} s") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        raise GitFailed(err)
    return out


def read_control_file(root: Path, rel: str, *, limit: int = CONTROL_FILE_LIMIT) -> bytes | None:
    """The bytes of a small regular file of the source; None when there is none.

    Refuses (SourceError naming the file) a path that resolves outside the
    source, anything but a regular file, and more than `limit` bytes. Opened
    non-blocking and without following a final link swapped in meanwhile.
    """
    path = Path(root) / rel
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise SourceError(
            f"{rel} links outside the source",
            f"replace the link with the file itself or remove {rel}",
        )
    return read_regular_file(real, rel, limit=limit)


def read_regular_file(
    path: str | Path, shown: str, *, limit: int = CONTROL_FILE_LIMIT
) -> bytes | None:
    """At most `limit` bytes of a regular file; None when it does not exist.
    Non-blocking open and a type check first: a FIFO or a device is refused,
    never read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(
            f"cannot read {shown}: {exc.strerror}", f"make {shown} a readable file"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError(
                f"{shown} is not a regular file", f"make {shown} a plain file or remove it"
            )
        data = b""
        while len(data) <= limit:
            block = os.read(fd, limit + 1 - len(data))
            if not block:
                break
            data += block
    finally:
        os.close(fd)
    if len(data) > limit:
        raise SourceError(
            f"{shown} is larger than {limit // 1024} KiB",
            f"keep {shown} small: nbs2i reads at most that",
        )
    return data


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


def check_ref_syntax(ref: str) -> None:
    if _BAD_REF.search(ref):
        raise SourceError(
            f"ref {ref!r} is not a valid Git ref",
            "give a branch, tag or commit id, e.g. --ref main",
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
    path = path.resolve()
    if ref:
        raise SourceError(
            f"--ref {ref} cannot be used with a local directory (it is built as it is on disk)",
            f"give the repository as a URL to build a ref: file://{path}",
        )
    commit = describe(path)
    return Source(
        location=str(path),
        ref="",
        commit=commit.sha,
        author=commit.author,
        date=commit.date,
        message=commit.message,
        context_dir=context,
        root=_apply_context(path, context, str(path)),
        epoch=commit.epoch if commit.epoch is not None else source_date_epoch(),
    )


# NUL-separated: %H, the author, the author date and the subject cut at 80
# characters as upstream s2i writes them into its labels, and the commit time
# that embedded times are clamped to.
_DESCRIBE_FORMAT = "%H%x00%an <%ae>%x00%ad%x00%ct%x00%<(80,trunc)%s"


def describe(path: Path) -> _Commit:
    """HEAD of the Git checkout that holds path; nothing for a plain directory or a
    repository without commits."""
    try:
        done = subprocess.run(
            ["git", "-C", str(path), "log", "-1", "--date=default", f"--format={_DESCRIBE_FORMAT}"],
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
            timeout=30,
            check=False,
        )
    except FileNotFoundError:
        return _Commit()  # no git on this machine: a plain directory to us
    fields = done.stdout.rstrip("\n").split("\0")
    if done.returncode != 0 or len(fields) != 5:
        return _Commit()
    sha, author, date, epoch, subject = fields
    return _Commit(sha, author, date, subject.rstrip(), int(epoch))


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
    creds = _split_credentials(url)
    tmp = Path(tempfile.mkdtemp(prefix=f"{CLONE_PREFIX}{os.getpid()}-"))
    try:
        # A subdirectory, so the source root has normal permissions (mkdtemp makes 0700).
        repo_dir = tmp / "repo"
        _clone(creds, ref, repo_dir)
        commit = describe(repo_dir)
        yield Source(
            # No credentials travel on into messages, image labels or files.
            location=redact(creds.url),
            ref=ref,
            commit=commit.sha,
            author=commit.author,
            date=commit.date,
            message=commit.message,
            context_dir=context,
            root=_apply_context(repo_dir, context, creds.url),
            epoch=commit.epoch,
        )
    finally:
        remove_tree(tmp)


def remove_tree(path: Path) -> None:
    """Remove a temp tree, retrying briefly: after Ctrl-C a dying git may still write."""
    for _attempt in range(10):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.2)


def _clone(creds: _Credentials, ref: str, dest: Path) -> None:
    """Fetch as little history as gives the asked commit, with submodules."""
    url = creds.url
    env = {**git_environment(url), **_credential_environment(creds)}
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
    try:
        sha = run_git(["rev-parse", "--verify", "--quiet", f"{target}^{{commit}}"], env, dest)
    except GitFailed:
        sha = ""
    if not sha.strip():
        raise SourceError(
            f"ref {ref} does not exist in {redact(url)}",
            "give a branch, tag or commit id that the repository has",
        )
    run_git(["checkout", "--detach", "--quiet", sha.strip()], env, dest)


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

"""Source locations: which are Git URLs, what is checked before anything slow,
what messages may show of them, and the environment git runs in.

- A password in an http(s) URL never reaches Git's files: the clone is made
  from the URL without it (`split_credentials`), and Git asks a credential
  helper, scoped to that host, which reads it from the environment of the git
  process (`credential_environment`). So `.git/config`, the reflog and
  FETCH_HEAD hold no secret, whatever `--exclude` lets into the image.
- Every message and label gets a location through `redact`: user:password@ is
  masked, whatever characters the password holds.
- Git never prompts (GIT_TERMINAL_PROMPT=0, ssh BatchMode): a private
  repository fails with a message instead of hanging a CI job.
- Submodules may use the `file` transport only when the repository itself was
  given as a `file://` URL: a remote repository must not be able to pull a
  repository from the build machine's disk into the image (CVE-2022-39253).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbs2i.errors import SourceError

# `user@host:path`, Git's scp-like syntax for ssh.
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+:")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Characters Git forbids in ref names (git check-ref-format), plus whitespace.
_BAD_REF = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{|^-|^/|/$|\.lock$|^$")
# Everything between "://" and the LAST "@" of the authority: a password may
# itself hold a raw "@".
_CREDENTIALS = re.compile(r"(://)[^/\s]*@")
# Environment variables the scoped credential helper reads.
_USER_VAR = "NBS2I_GIT_USERNAME"
_PASSWORD_VAR = "NBS2I_GIT_PASSWORD"
# Protocols Git may use; `file` only for a file:// source (see module docstring).
_NETWORK_PROTOCOLS = "https:http:ssh:git"


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


def check_ref_syntax(ref: str) -> None:
    if _BAD_REF.search(ref):
        raise SourceError(
            f"ref {ref!r} is not a valid Git ref",
            "give a branch, tag or commit id, e.g. --ref main",
        )


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
class Credentials:
    """A URL split into what Git may store and the secret it must not."""

    url: str  # without user:password@ for http(s); unchanged otherwise
    username: str = ""
    password: str = ""


def split_credentials(url: str) -> Credentials:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return Credentials(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return Credentials(clean, urllib.parse.unquote(user), urllib.parse.unquote(password))


def credential_environment(creds: Credentials) -> dict[str, str]:
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
        # An askpass program inherited from the caller (an IDE sets one) or
        # named in core.askPass would pop up a prompt: `true` answers nothing.
        "GIT_ASKPASS": "true",
        "GIT_ALLOW_PROTOCOL": _NETWORK_PROTOCOLS
        + (":file" if url.lower().startswith("file://") else ""),
        # Give up on a stalled transfer instead of hanging forever.
        "GIT_HTTP_LOW_SPEED_LIMIT": os.environ.get("GIT_HTTP_LOW_SPEED_LIMIT", "1000"),
        "GIT_HTTP_LOW_SPEED_TIME": os.environ.get("GIT_HTTP_LOW_SPEED_TIME", "60"),
    }
    if not os.environ.get("GIT_SSH_COMMAND") and not os.environ.get("GIT_SSH"):
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


def git_missing() -> SourceError:
    return SourceError(
        "git is not installed or not on PATH", "install git (e.g. apt-get install git)"
    )


def summarize_git_error(stderr: str) -> str:
    """One line from git's stderr: its first fatal/error line, else its last line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for prefix in ("fatal:", "error:"):
        for ln in lines:
            if ln.startswith(prefix):
                return redact(ln.removeprefix(prefix).strip())
    return redact(lines[-1]) if lines else "git failed"

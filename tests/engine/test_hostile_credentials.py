"""A password in a source URL is used to fetch and then shown and stored nowhere.

The repository is served by `git http-backend` behind basic auth on
127.0.0.1, so a build succeeds only when the password really reached the
server (the server keeps what it was sent). `--exclude` replaces the default
that leaves out .git, so the clone's .git (config, reflog, FETCH_HEAD,
packed-refs) is in the image: the password must be in none of it, nor in a
label, ENV, the history, a line of output (human or --json), an error line,
or an --as-dockerfile context. Passwords hold characters that URL parsers
disagree on, a raw '@' first.
"""

from __future__ import annotations

import secrets
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbs2i.engine import Docker
from tests.support.cli import Result
from tests.support.gitserver import HttpGitServer
from tests.support.hostile import notebook_tree, one_error_line, publish, secret_hits
from tests.support.layers import top_layer
from tests.support.sandbox import Sandbox
from tests.support.session import tag

USER = "student"
# Something that matches nothing: .git stays in the source, as a user who
# replaces the default exclude gets it.
KEEP_GIT = ("--exclude", "^no-such-file$")


@dataclass(frozen=True)
class Password:
    """A password whose every piece is a findable token: "<a><sep><b>"."""

    first: str
    sep: str
    second: str

    @property
    def text(self) -> str:
        return f"{self.first}{self.sep}{self.second}"

    @property
    def needles(self) -> tuple[bytes, ...]:
        pieces = {self.text, self.first, self.second, urllib.parse.quote(self.text, safe="")}
        return tuple(p.encode() for p in sorted(pieces) if p)


def password(sep: str) -> Password:
    return Password(f"pa{secrets.token_hex(6)}", sep, f"ss{secrets.token_hex(6)}")


def leaked(results: list[Result], pw: Password) -> list[str]:
    found = []
    for result in results:
        for needle in pw.needles:
            text = needle.decode()
            found += [
                f"{where}: {text}"
                for where, data in (("stdout", result.stdout), ("stderr", result.stderr))
                if text in data
            ]
    return found


def serve(tmp_path: Path, user: str, pw: str) -> HttpGitServer:
    base = tmp_path / "served"
    publish(notebook_tree(tmp_path / "tree"), base, "course.git")
    return HttpGitServer(base, user, pw)


def git_files(engine: Docker, image: str) -> list[str]:
    return [e.name for e in top_layer(engine, image) if "/.git/" in f"/{e.name}"]


# -- a clone that succeeds --------------------------------------------------------------


@pytest.mark.parametrize("by_commit", [False, True], ids=["default-branch", "ref-commit"])
def test_a_password_with_a_raw_at_sign_is_used_and_stored_nowhere(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path, by_commit: bool
) -> None:
    pw = password("@")
    with serve(tmp_path, USER, pw.text) as server:
        commit = _commit(tmp_path)
        url = server.url("course.git", f"{USER}:{pw.text}")
        ref = ("--ref", commit) if by_commit else ()
        image = box.image(tag("creds-at"))
        results = [
            box.nbs2i(*box.build_args(url, image, tiny_builder, *KEEP_GIT, *ref, *extra))
            for extra in ((), ("--json",))
        ]
        seen = server.seen
    for result in results:
        assert result.code == 0, result.stderr
    # The password reached the server, in the Authorization header only.
    assert any(r.authorized for r in seen), seen
    assert not [r.path for r in seen if pw.first in r.path or pw.second in r.path]
    assert not leaked(results, pw)
    files = git_files(engine, image)
    assert any(f.endswith("/.git/config") for f in files), files
    assert any(f.endswith("/.git/logs/HEAD") for f in files), files
    if by_commit:
        assert any(f.endswith("/.git/FETCH_HEAD") for f in files), files
    assert not secret_hits(image, pw.needles)
    labels = engine.inspect_image(image).config.labels
    assert f"127.0.0.1:{server.port}/course.git" in labels["org.opencontainers.image.source"]


def _commit(tmp_path: Path) -> str:
    from tests.support.gitrepo import git

    return git(tmp_path / "served" / "course.git", "rev-parse", "HEAD")


def test_a_token_as_user_name_is_used_and_stored_nowhere(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path
) -> None:
    token = f"ghp{secrets.token_hex(12)}"
    pw = Password(token, "", "")
    with serve(tmp_path, token, "") as server:
        image = box.image(tag("creds-token"))
        url = server.url("course.git", token)
        result = box.nbs2i(*box.build_args(url, image, tiny_builder, *KEEP_GIT, "--json"))
        assert any(r.authorized for r in server.seen)
    assert result.code == 0, result.stderr
    assert not leaked([result], pw)
    assert not secret_hits(image, pw.needles)


def test_as_dockerfile_writes_no_password(box: Sandbox, tiny_builder: str, tmp_path: Path) -> None:
    pw = password("@")
    out = tmp_path / "context"
    with serve(tmp_path, USER, pw.text) as server:
        url = server.url("course.git", f"{USER}:{pw.text}")
        args = box.build_args(url, tag("unused"), tiny_builder, *KEEP_GIT)
        result = box.nbs2i(*args, "--as-dockerfile", str(out))
    assert result.code == 0, result.stderr
    assert not leaked([result], pw)
    written = [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name == "config" and p.parent.name == ".git" for p in written), written
    assert not [p for p in written for n in pw.needles if n in p.read_bytes()]


# -- clones that fail: the error line ---------------------------------------------------


@pytest.mark.parametrize("what", ["wrong-password", "no-such-repository"], ids=["401", "404"])
def test_a_failed_clone_names_no_piece_of_the_password(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path, what: str
) -> None:
    pw = password("@")
    with serve(tmp_path, USER, "the-right-one" if what == "wrong-password" else pw.text) as srv:
        name = "missing.git" if what == "no-such-repository" else "course.git"
        url = srv.url(name, f"{USER}:{pw.text}")
        image = box.image(tag("creds-fail"))
        results = [
            box.nbs2i(*box.build_args(url, image, tiny_builder, *extra), timeout=60)
            for extra in ((), ("--json",))
        ]
    for result in results:
        assert result.code != 0
        one_error_line(result, f"127.0.0.1:{srv.port}")
    assert not leaked(results, pw)
    assert not engine.image_exists(image)


# Characters that split a URL elsewhere than at the last '@' when left raw:
# the build may fetch or refuse, but no piece of the password is shown or kept.
SEPARATORS = {
    "space": " ",
    "slash": "/",
    "hash": "#",
    "question": "?",
    "colon": ":",
    "percent-encoded-at": "%40",
    "two-at": "@@",
}


@pytest.mark.parametrize("sep", list(SEPARATORS.values()), ids=list(SEPARATORS))
def test_a_password_with_url_syntax_in_it_never_shows(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path, sep: str
) -> None:
    pw = password(sep)
    served_pw = urllib.parse.unquote(pw.text)
    with serve(tmp_path, USER, served_pw) as server:
        url = server.url("course.git", f"{USER}:{pw.text}")
        image = box.image(tag("creds-syntax"))
        results = [
            box.nbs2i(*box.build_args(url, image, tiny_builder, *KEEP_GIT, *extra), timeout=60)
            for extra in ((), ("--json",))
        ]
    assert not leaked(results, pw), [r.stderr for r in results]
    for result in results:
        if result.code != 0:
            result.error_line  # noqa: B018 - one line, checked by the property
    if engine.image_exists(image):
        assert not secret_hits(image, pw.needles)

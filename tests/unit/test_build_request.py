"""A build request is checked before anything slow: tags, options, injections."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbs2i.building.request import BuildRequest, Injection, check
from nbs2i.errors import Nbs2iError, UsageError
from nbs2i.reference import ImageRef, split


def test_split() -> None:
    assert split("course") == ("course", "latest")
    assert split("course:3") == ("course", "3")
    assert split("registry:5000/org/course") == ("registry:5000/org/course", "latest")
    assert split("registry:5000/org/course:v1") == ("registry:5000/org/course", "v1")


@pytest.mark.parametrize(
    "ref",
    [
        "a",
        "my/lectures:2026",
        "127.0.0.1:5000/x/y:1",
        "localhost:5000/a",
        "reg.example.org/c/w-1:v1.0",
    ],
)
def test_references_an_engine_accepts(ref: str) -> None:
    assert str(ImageRef.parse(ref)) == ref


@pytest.mark.parametrize(
    "ref", ["", "A/b", "Upper:1", "a:", "a b", "a@sha256:00", "a/b/c:-x", "a//b"]
)
def test_references_an_engine_refuses(ref: str) -> None:
    with pytest.raises(UsageError, match="not an image reference"):
        ImageRef.parse(ref)


def request(**changes: object) -> BuildRequest:
    return BuildRequest(**{"source": ".", "tag": "course:1", **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"tag": "Course:1"}, "not an image reference"),
        ({"tag": "course@sha256:" + "0" * 64}, "has a digest"),
        ({"builder": "no such"}, "not an image reference"),
        ({"pull_policy": "sometimes"}, "--pull-policy"),
        ({"allowed_uids": "1-a"}, "--allowed-uids"),
        ({"env": (("A B", "x"),)}, "not valid"),
        ({"env": (("LD_PRELOAD", "/x.so"),)}, "LD_PRELOAD"),
        ({"env": (("PATH", ""),)}, "PATH"),
        ({"env": (("PATH", "/opt/bin"),)}, "PATH"),
        ({"excludes": ("(",)}, "regular expression"),
        ({"context_dir": "../up"}, "leaves the repository"),
        ({"ref": "a..b"}, "not a valid Git ref"),
        ({"ca_bundle": Path("/nowhere/ca.pem")}, "--ca-bundle"),
        ({"scripts_url": "http://example.invalid/s2i"}, "scripts URL"),
        ({"scripts_url": "file:///nowhere/s2i"}, "does not exist"),
        ({"env_files": (Path("/nowhere/env"),)}, "does not exist"),
        ({"source": "https://u:p/w@host/r.git"}, "percent-encode"),
        ({"tag": "x" * 256}, "not an image reference"),
    ],
)
def test_bad_input_is_refused_with_one_line(changes: dict[str, object], words: str) -> None:
    with pytest.raises(Nbs2iError) as caught:
        check(request(**changes))
    assert words in str(caught.value)
    assert "\n" not in str(caught.value) and caught.value.fix


def test_a_good_request_passes() -> None:
    check(request(env=(("PATH", "/my/bin:/usr/bin/"),), excludes=(r"(^|/)data(/|$)",)))


def test_env_files_are_read_and_checked_with_the_env_options(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("A=1\nLD_PRELOAD=/x.so\n")
    with pytest.raises(Nbs2iError, match="LD_PRELOAD"):
        check(request(env_files=(env_file,)))
    env_file.write_text("PATH=/opt/bin\n")
    # A later -e PATH fixes what the file got wrong, as it would in the build.
    check(request(env_files=(env_file,), env=(("PATH", "/opt/bin:/usr/bin"),)))


def test_inject_parse(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("x")
    assert Injection.parse(f"{f}:/run/secrets/") == Injection(f, "/run/secrets")
    bad = [f"{f}", f"{f}:relative", f"{f}:/", f"{f}:/a/../b", ":/x", f"{f}:/proc/x", f"{f}:/dev"]
    for text in bad:
        with pytest.raises(UsageError):
            Injection.parse(text)
    with pytest.raises(UsageError, match="does not exist"):
        Injection.parse(f"{tmp_path}/missing:/run/x")

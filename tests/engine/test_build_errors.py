"""Every way `nbs2i build` can fail ends with one line naming the problem and the fix,
a non-zero exit, no traceback, and nothing left in the engine: no container, no
volume, no untagged image, no image under the tag."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbs2i.engine import Engine
from tests.support.builds import SAMPLES
from tests.support.cli import fails
from tests.support.gitrepo import make_repo, one_notebook
from tests.support.images import derived
from tests.support.leftovers import assert_nothing_left
from tests.support.session import label_args, tag
from tests.support.tracker import Tracker

LABEL_ARGS = label_args("--container-label")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("errors") / "course"
    make_repo(path, SAMPLES)
    (path / "requirements.txt").unlink()  # no dependency layer: the errors come first
    return path


@pytest.fixture(scope="module")
def bad_builders(tiny_builder: str, engine: Engine) -> Iterator[dict[str, str]]:
    """Builders that must be refused, derived from the tiny one."""
    variants = {
        "root": "USER root",
        "named": "USER someone",
        "named-assemble": "LABEL io.openshift.s2i.assemble-user=jovyan",
        "no-label": 'LABEL io.openshift.s2i.scripts-url=""',
        "no-script": "USER 0\nRUN rm /usr/libexec/s2i/assemble\nUSER 1001",
    }
    built: dict[str, str] = {}
    try:
        for name, lines in variants.items():
            built[name] = derived(engine, tiny_builder, tag(f"bad-builder-{name}"), lines)
        yield built
    finally:
        for ref in built.values():
            engine.remove_image(ref, force=True)


def fail(*args: str, env: dict[str, str] | None = None) -> str:
    """Run `nbs2i build`, expect one error line last; all of stderr."""
    return fails("build", *args, *LABEL_ARGS, env=env).stderr


def out(name: str) -> str:
    return tag(f"err-{name}")


def check_clean(engine: Engine, name: str) -> None:
    assert not engine.image_exists(out(name))
    assert_nothing_left(engine)


def test_repository_that_does_not_exist(engine: Engine, tiny_builder: str, tmp_path: Path) -> None:
    err = fail(f"file://{tmp_path}/nowhere.git", out("repo"), "--builder", tiny_builder)
    assert "nowhere.git" in err.splitlines()[-1]
    check_clean(engine, "repo")


def test_ref_that_does_not_exist(engine: Engine, tiny_builder: str, repo: Path) -> None:
    err = fail(f"file://{repo}", out("ref"), "--ref", "no-such-branch", "--builder", tiny_builder)
    assert "no-such-branch" in err.splitlines()[-1]
    check_clean(engine, "ref")


def test_missing_context_dir(engine: Engine, tiny_builder: str, repo: Path) -> None:
    err = fail(str(repo), out("ctx"), "--context-dir", "lectures", "--builder", tiny_builder)
    assert "lectures" in err.splitlines()[-1]
    check_clean(engine, "ctx")


def test_builder_missing_under_pull_policy_never(engine: Engine, repo: Path) -> None:
    absent = tag("absent-builder")
    err = fail(str(repo), out("never"), "--builder", absent, "--pull-policy", "never")
    last = err.splitlines()[-1]
    assert absent in last and "nbs2i builder build" in last
    check_clean(engine, "never")


@pytest.mark.parametrize("variant", ["root", "named", "named-assemble"])
def test_builder_user_root_or_name_is_refused(
    engine: Engine, bad_builders: dict[str, str], repo: Path, variant: str
) -> None:
    err = fail(str(repo), out(variant), "--builder", bad_builders[variant])
    last = err.splitlines()[-1]
    assert "image must specify a user that is numeric and within the range of allowed users" in last
    assert "USER 1001" in last
    check_clean(engine, variant)


def test_assemble_user_option_is_checked_too(engine: Engine, tiny_builder: str, repo: Path) -> None:
    err = fail(str(repo), out("au"), "--builder", tiny_builder, "--assemble-user", "0")
    assert "numeric and within the range" in err.splitlines()[-1]
    # The builder's USER (1001) is allowed, the assemble user is not.
    err = fail(
        str(repo),
        out("au"),
        "--builder",
        tiny_builder,
        "--allowed-uids",
        "1001,2000-3000",
        "--assemble-user",
        "1500",
    )
    last = err.splitlines()[-1]
    assert "assemble user 1500 refused" in last and "(1001,2000-3000)" in last
    check_clean(engine, "au")


@pytest.mark.parametrize("variant", ["no-label", "no-script"])
def test_builder_without_assemble(
    engine: Engine, bad_builders: dict[str, str], repo: Path, variant: str
) -> None:
    err = fail(str(repo), out(variant), "--builder", bad_builders[variant])
    last = err.splitlines()[-1]
    assert "assemble" in last and bad_builders[variant] in last
    check_clean(engine, variant)


def test_assemble_exiting_non_zero_shows_its_last_20_lines(
    engine: Engine, tiny_builder: str, repo: Path, track: Tracker
) -> None:
    err = fail(str(repo), out("fail"), "--builder", tiny_builder, "-e", "TINY_FAIL=1", "--quiet")
    lines = err.strip().splitlines()
    assert lines[-1].startswith("nbs2i: error: assemble failed with exit code 3")
    assert lines[-21:-1] == [f"failing line {i}" for i in range(11, 31)]
    check_clean(engine, "fail")


def test_inject_source_that_does_not_exist(
    engine: Engine, tiny_builder: str, repo: Path, tmp_path: Path
) -> None:
    err = fail(
        str(repo),
        out("inject"),
        "--builder",
        tiny_builder,
        "--inject",
        f"{tmp_path}/missing.pem:/run/secrets",
    )
    assert "missing.pem" in err.splitlines()[-1]
    check_clean(engine, "inject")


def test_unreachable_engine(engine: Engine, tiny_builder: str, repo: Path) -> None:
    err = fail(
        str(repo),
        out("engine"),
        "--builder",
        tiny_builder,
        env={"DOCKER_HOST": "tcp://127.0.0.1:1"},
    )
    assert "127.0.0.1:1" in err.splitlines()[-1]
    check_clean(engine, "engine")


def test_symlink_leaving_the_source_is_refused_before_any_container(
    engine: Engine, tiny_builder: str, tmp_path: Path
) -> None:
    src = one_notebook(tmp_path)
    (src / "passwd").symlink_to("/etc/passwd")
    err = fail(str(src), out("link"), "--builder", tiny_builder)
    assert "symlink" in err.splitlines()[-1]
    check_clean(engine, "link")

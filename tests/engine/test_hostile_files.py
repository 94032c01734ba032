"""A repository's links and special files must not open the build machine's files.

Every repository here is served by a real `git daemon` on 127.0.0.1 (links
committed as links, as an attacker would push them), or, for what Git cannot
carry (FIFOs, devices), is a directory on disk. Each file nbs2i reads to steer
a build (.s2iignore, .s2i/environment, .s2i/bin/*, requirement files and their
includes, the other dependency files, submodules, the context dir) is made a
link to a secret of the build machine, ignored by .s2iignore or not. The
build must refuse with one line naming the file, and the secret's bytes must
be in no output line (human and --json), no image, no --as-dockerfile file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbs2i.engine import Docker
from tests.support.cli import Result
from tests.support.gitserver import GitDaemon
from tests.support.hostile import (
    Sentinel,
    char_device,
    fifo,
    link,
    notebook_tree,
    one_error_line,
    output_hits,
    publish,
    secret_hits,
    sentinel,
    write,
)
from tests.support.sandbox import Sandbox
from tests.support.session import tag
from tests.support.tracker import Tracker

# A refused source is refused before any container: seconds, not minutes.
FAIL_FAST = 30


@pytest.fixture
def secret(tmp_path: Path) -> Sentinel:
    return sentinel(tmp_path / "build-host")


def deep_relative(path: Path) -> str:
    """A relative target that reaches `path` from any depth: up past / and down."""
    return "../" * 40 + str(path).lstrip("/")


def refused(box: Sandbox, source: str, image: str, builder: str, *more: str) -> list[Result]:
    """The build, human and --json, each failing fast; both results."""
    results = []
    for extra in ((), ("--json",)):
        started = time.monotonic()
        args = box.build_args(source, box.image(image), builder, *more, *extra)
        result = box.nbs2i(*args, timeout=FAIL_FAST)
        took = time.monotonic() - started
        assert result.code != 0, f"built a hostile source: {result.stderr}"
        assert took < FAIL_FAST, f"took {took:.1f} s to refuse"
        results.append(result)
    return results


def assert_json_error(result: Result) -> None:
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert events and events[-1]["event"] == "error", result.stdout


def assert_no_secret(engine: Docker, results: list[Result], secret: Sentinel, image: str) -> None:
    for result in results:
        assert not output_hits(result, secret.needles), (result.stdout, result.stderr)
    if engine.image_exists(image):
        assert not secret_hits(image, secret.needles)


def assert_refused_without_secret(
    engine: Docker, results: list[Result], secret: Sentinel, image: str, named: str
) -> None:
    """Each refusal is one line naming `named`; the secret is in no output or image."""
    for result in results:
        one_error_line(result, named)
    assert_no_secret(engine, results, secret, image)


# -- links out of the source, over git:// ----------------------------------------------


@dataclass(frozen=True)
class LinkCase:
    """A link at `rel` to the secret; `files` complete the tree; `named` is what
    the error line must name."""

    id: str
    rel: str
    files: tuple[tuple[str, str], ...] = ()
    named: str = ""
    target: str = "absolute"  # "absolute", "relative", or "dir" (a link to the secret's dir)


LINK_CASES = [
    LinkCase("usage", ".s2i/bin/usage"),
    LinkCase("assemble", ".s2i/bin/assemble"),
    LinkCase("run", ".s2i/bin/run", target="relative"),
    LinkCase("environment", ".s2i/environment"),
    LinkCase("environment-relative", ".s2i/environment", target="relative"),
    LinkCase("s2i-dir", ".s2i", target="dir", named=".s2i"),
    LinkCase("s2iignore", ".s2iignore"),
    LinkCase("requirements", "requirements.txt"),
    LinkCase("requirements-relative", "requirements.txt", target="relative"),
    LinkCase("include-r", "extra.txt", (("requirements.txt", "-r extra.txt\n"),)),
    LinkCase("include-c", "pins.txt", (("requirements.txt", "numpy\n-c pins.txt\n"),)),
    LinkCase(
        "include-through-dir",
        "lib",
        (("requirements.txt", "--requirement=lib/secret.txt\n"),),
        target="dir",
    ),
    LinkCase("binder-requirements", "binder/requirements.txt", (("binder/README", "x"),)),
    LinkCase("apt", "apt.txt"),
    LinkCase("install-r", "install.R"),
    LinkCase("kernel-dir", ".s2i/kernels/py", target="dir", named=".s2i/kernels/py"),
    LinkCase("unsupported-file", "environment.yml"),
]


def link_tree(root: Path, case: LinkCase, secret: Sentinel, ignored: bool) -> None:
    notebook_tree(root)
    for rel, text in case.files:
        write(root, rel, text)
    if case.target == "dir":
        # The secret's directory, holding what the reader looks for by name.
        for name in ("environment", "requirements.txt", "bin/assemble", "bin/run"):
            write(secret.path.parent, name, secret.path.read_bytes())
        link(root, case.rel, secret.path.parent)
    elif case.target == "relative":
        link(root, case.rel, deep_relative(secret.path))
    else:
        link(root, case.rel, secret.path)
    if ignored and case.rel != ".s2iignore":
        write(root, ".s2iignore", f"# hide it from the walk\n{case.rel.split('/')[0]}\n")


@pytest.mark.parametrize("ignored", [False, True], ids=["listed", "s2iignored"])
@pytest.mark.parametrize("case", LINK_CASES, ids=[c.id for c in LINK_CASES])
def test_a_link_out_of_a_served_repository_is_refused_naming_it(
    box: Sandbox,
    daemon: GitDaemon,
    tiny_builder: str,
    engine: Docker,
    secret: Sentinel,
    tmp_path: Path,
    case: LinkCase,
    ignored: bool,
) -> None:
    name = f"{case.id}-{'ignored' if ignored else 'listed'}.git"
    link_tree(tmp_path / "tree", case, secret, ignored)
    publish(tmp_path / "tree", daemon.base, name)
    image = tag(f"hostile-{case.id}")
    results = refused(box, daemon.url(name), image, tiny_builder)
    assert_refused_without_secret(engine, results, secret, image, case.named or case.rel)
    assert_json_error(results[1])
    assert not engine.image_exists(image)


def test_an_include_that_leaves_the_source_by_its_path_is_refused(
    box: Sandbox,
    daemon: GitDaemon,
    tiny_builder: str,
    engine: Docker,
    secret: Sentinel,
    tmp_path: Path,
) -> None:
    tree = notebook_tree(tmp_path / "tree")
    write(tree, "requirements.txt", f"-r {deep_relative(secret.path)}\n-c {secret.path}\n")
    publish(tree, daemon.base, "include-path.git")
    image = tag("hostile-include-path")
    results = refused(box, daemon.url("include-path.git"), image, tiny_builder)
    assert_refused_without_secret(engine, results, secret, image, "requirements.txt")


def test_usage_linked_out_is_not_written_by_as_dockerfile(
    box: Sandbox, daemon: GitDaemon, tiny_builder: str, secret: Sentinel, tmp_path: Path
) -> None:
    tree = notebook_tree(tmp_path / "tree")
    link(tree, ".s2i/bin/usage", secret.path)
    publish(tree, daemon.base, "dockerfile-usage.git")
    out = tmp_path / "context"
    result = box.nbs2i(
        *box.build_args(
            daemon.url("dockerfile-usage.git"),
            tag("unused"),
            tiny_builder,
            "--as-dockerfile",
            str(out),
        )
    )
    assert result.code != 0, result.stderr
    one_error_line(result, ".s2i/bin/usage")
    assert not output_hits(result, secret.needles)
    files = [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not [p for p in files if secret.token in p.read_bytes()]


def test_context_dir_linked_out_is_refused(
    box: Sandbox,
    daemon: GitDaemon,
    tiny_builder: str,
    engine: Docker,
    secret: Sentinel,
    tmp_path: Path,
) -> None:
    tree = notebook_tree(tmp_path / "tree")
    write(secret.path.parent, "week1/notes.ipynb", secret.path.read_bytes())
    link(tree, "week1", secret.path.parent / "week1")
    publish(tree, daemon.base, "context-link.git")
    image = tag("hostile-context")
    results = refused(
        box, daemon.url("context-link.git"), image, tiny_builder, "--context-dir", "week1"
    )
    assert_refused_without_secret(engine, results, secret, image, "week1")


def test_a_submodule_on_the_build_machine_is_not_fetched(
    box: Sandbox,
    daemon: GitDaemon,
    tiny_builder: str,
    engine: Docker,
    track: Tracker,
    secret: Sentinel,
    tmp_path: Path,
) -> None:
    # A repository of the build machine that holds the secret, named by path in
    # the served repository's .gitmodules: Git's file transport, from a remote.
    private = notebook_tree(tmp_path / "private")
    write(private, "secret.txt", secret.path.read_bytes())
    publish(private, secret.path.parent, "private.git")
    tree = notebook_tree(tmp_path / "tree")
    from tests.support.gitrepo import git

    git(tree, "init", "-q")
    git(
        tree,
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        str(secret.path.parent / "private.git"),
        "lib",
    )
    git(tree, "commit", "-q", "-m", "with a submodule")
    daemon.base.mkdir(parents=True, exist_ok=True)
    git(daemon.base, "clone", "-q", "--bare", str(tree), "submodule.git")
    image = track.image(tag("hostile-submodule"))
    result = box.nbs2i(*box.build_args(daemon.url("submodule.git"), image, tiny_builder))
    assert not output_hits(result, secret.needles), result.stderr
    if result.code == 0:
        assert not secret_hits(image, secret.needles)
    # Git's file transport is refused for a remote's submodules: one line.
    assert result.code != 0, result.stderr
    one_error_line(result, "submodule")


# -- links that stay out of the image --------------------------------------------------


def test_an_ignored_link_out_that_nbs2i_never_reads_builds_without_the_secret(
    box: Sandbox,
    daemon: GitDaemon,
    tiny_builder: str,
    engine: Docker,
    track: Tracker,
    secret: Sentinel,
    tmp_path: Path,
) -> None:
    tree = notebook_tree(tmp_path / "tree")
    link(tree, "notes/host.txt", secret.path)
    link(tree, "data/passwd", deep_relative(secret.path))
    write(tree, ".s2iignore", "notes\ndata/passwd\n")
    publish(tree, daemon.base, "ignored-link.git")
    image = track.image(tag("hostile-ignored-link"))
    result = box.nbs2i(*box.build_args(daemon.url("ignored-link.git"), image, tiny_builder))
    assert result.code == 0, result.stderr
    assert not output_hits(result, secret.needles)
    assert not secret_hits(image, secret.needles)


def test_a_listed_link_out_is_refused_naming_it(
    box: Sandbox,
    daemon: GitDaemon,
    tiny_builder: str,
    engine: Docker,
    secret: Sentinel,
    tmp_path: Path,
) -> None:
    tree = notebook_tree(tmp_path / "tree")
    link(tree, "notes/host.txt", secret.path)
    publish(tree, daemon.base, "listed-link.git")
    image = tag("hostile-listed-link")
    results = refused(box, daemon.url("listed-link.git"), image, tiny_builder)
    assert_refused_without_secret(engine, results, secret, image, "notes/host.txt")


# -- special files and devices (a directory source: Git cannot hold them) --------------

SPECIAL_PLACES = [
    ".s2iignore",
    ".s2i/environment",
    ".s2i/bin/assemble",
    "requirements.txt",
    "apt.txt",
]


@pytest.mark.parametrize("rel", SPECIAL_PLACES)
def test_a_fifo_control_file_fails_fast_naming_it(
    box: Sandbox, tiny_builder: str, engine: Docker, tmp_path: Path, rel: str
) -> None:
    src = notebook_tree(tmp_path / "src")
    fifo(src, rel)
    image = tag("hostile-fifo")
    for result in refused(box, str(src), image, tiny_builder):
        one_error_line(result, rel)
    assert not engine.image_exists(image)


def test_a_fifo_included_by_requirements_fails_fast(
    box: Sandbox, tiny_builder: str, tmp_path: Path
) -> None:
    src = notebook_tree(tmp_path / "src")
    write(src, "requirements.txt", "-r more.txt\n")
    fifo(src, "more.txt")
    for result in refused(box, str(src), tag("hostile-fifo-include"), tiny_builder):
        one_error_line(result, "more.txt")


@pytest.mark.parametrize("rel", [".s2iignore", ".s2i/environment", "requirements.txt"])
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_control_file_linked_to_an_endless_device_fails_fast(
    box: Sandbox, daemon: GitDaemon, tiny_builder: str, tmp_path: Path, rel: str, device: str
) -> None:
    tree = notebook_tree(tmp_path / "tree")
    link(tree, rel, device)
    name = f"device-{Path(device).name}-{rel.replace('/', '-')}.git"
    publish(tree, daemon.base, name)
    for result in refused(box, daemon.url(name), tag("hostile-device"), tiny_builder):
        one_error_line(result, rel)


def test_a_device_node_named_s2iignore_fails_fast(
    box: Sandbox, tiny_builder: str, tmp_path: Path
) -> None:
    src = notebook_tree(tmp_path / "src")
    try:
        char_device(src, ".s2iignore")
    except OSError as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    for result in refused(box, str(src), tag("hostile-chardev"), tiny_builder):
        one_error_line(result, ".s2iignore")


def test_fifos_among_the_notebooks_are_left_out_and_never_opened(
    box: Sandbox, tiny_builder: str, engine: Docker, track: Tracker, tmp_path: Path
) -> None:
    src = notebook_tree(tmp_path / "src")
    fifo(src, "data.csv")
    fifo(src, "week1/pipe")
    image = track.image(tag("hostile-fifo-data"))
    started = time.monotonic()
    result = box.nbs2i(*box.build_args(str(src), image, tiny_builder), timeout=FAIL_FAST * 2)
    assert result.code == 0, result.stderr
    assert time.monotonic() - started < FAIL_FAST
    names = [n for n in _top_names(engine, image) if "/opt/app-root/src/" in f"/{n}"]
    assert any(n.endswith("lecture.ipynb") for n in names), names
    assert not any(n.endswith(("data.csv", "pipe")) for n in names), names


def _top_names(engine: Docker, image: str) -> list[str]:
    from tests.support.layers import top_layer

    return [entry.name for entry in top_layer(engine, image)]


def test_the_secret_is_readable_so_the_checks_can_fail(secret: Sentinel) -> None:
    # If the test user could not read the secret, a leak could not show.
    assert secret.token in secret.path.read_bytes()
    assert os.access(secret.path, os.R_OK)

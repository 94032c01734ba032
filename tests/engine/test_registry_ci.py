"""CI on runners that start empty, against a real registry: Debian's
docker-registry on 127.0.0.1, once plain and once with TLS (a CA the test
makes) and htpasswd authentication.

One course, one builder pushed to the registry once. A first job builds it
cold and fills the cache; a fresh runner (everything the first job left in the
engine removed: the cache images, the builder pulled from the registry, the
image) reuses the dependency layer without pip; a runner with no engine at all
(DOCKER_HOST at a socket nobody listens on) pushes the same commit as the same
image (config digest) and a notebook change straight into the registry; the
image pulled back passes `nbs2i verify`. Refusals: a missing cache entry, a
bad password, an unreachable registry, TLS without the CA: one line each, a
non-zero exit, nothing pushed. A push killed midway leaves the tag where it was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbs2i import labels
from nbs2i.engine import Engine
from tests.support import ci, registry
from tests.support.cli import command, environment, fails, nbs2i
from tests.support.gitrepo import git
from tests.support.session import SESSION_ID, label_args
from tests.support.tracker import Tracker

KILL_SECONDS = 120.0


@pytest.fixture(scope="module", params=["plain", "tls-auth"])
def setting(
    request: pytest.FixtureRequest,
    engine: Engine,
    builder_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ci.Setting]:
    with registry.running(secure=request.param == "tls-auth") as reg:
        workdir = tmp_path_factory.mktemp(f"ci-{request.param}")
        with ci.setting(engine, builder_image, reg, workdir) as made:
            try:
                yield made
            finally:  # pulled or made by whichever build of the module needed them
                for image in engine.images(labels=[f"{labels.BUILD_IMAGE}={made.builder}"]):
                    engine.remove_image(image.id, force=True)
                engine.remove_image(made.builder)


@pytest.fixture(scope="module")
def course(setting: ci.Setting, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course with a dependency file of its own (a key no other run or
    registry shares) and a notebook, committed."""
    root = tmp_path_factory.mktemp("course") / "course"
    root.mkdir()
    mark = f"{SESSION_ID} {setting.registry.port}"
    (root / "requirements.txt").write_text(f"# nbs2i registry test {mark}\n")
    (root / "intro.ipynb").write_text('{"cells": [], "metadata": {}}\n')
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first lecture")
    return root


def events(result: Any) -> list[dict[str, Any]]:
    assert result.code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def done(found: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in found if e["event"] == "done")


def cache_actions(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["action"], e["layer"]) for e in found if e["event"] == "cache"]


def commit(course: Path, name: str, text: str) -> None:
    (course / name).write_text(text)
    git(course, "add", "-A")
    git(course, "commit", "-q", "-m", f"edit {name}")


def fresh_runner(engine: Engine, *refs: str) -> None:
    """The engine as a new runner has it: none of these images."""
    for ref in refs:
        engine.remove_image(ref, force=True)
        assert not engine.image_exists(ref)


def build(setting: ci.Setting, course: Path, tag: str, *extra: str, env: dict[str, str]) -> Any:
    source = f"file://{course}"
    return nbs2i(*setting.args(source, tag, *extra, *label_args("--container-label")), env=env)


def test_a_fresh_runner_reuses_the_cache_and_a_runner_with_no_engine_pushes(
    setting: ci.Setting, course: Path, engine: Engine, track: Tracker
) -> None:
    first = events(build(setting, course, "c1", env=setting.env))
    result = done(first)
    deps_local = track.image(result["deps_image"])
    track.image(setting.image("c1"))
    assert ("miss", "deps") in cache_actions(first)
    assert ("push", "deps") in cache_actions(first)
    assert any("Pulling" in e["message"] for e in first if e["event"] == "step")

    # A fresh runner: nothing of the first job is left in the engine. A push
    # is built in the registry on the cached layer: nothing is pulled.
    fresh_runner(engine, setting.image("c1"), deps_local, setting.builder)
    again = events(build(setting, course, "c1", env=setting.env))
    track.image(setting.builder)
    assert cache_actions(again) == [("hit", "deps")]
    assert not any("Installing" in e["message"] for e in again), "pip ran again"
    assert done(again)["image"] == result["image"]
    assert not engine.image_exists(deps_local)
    steps = [e["message"] for e in again if e["event"] == "step"]
    assert any("is in its registry only" in s for s in steps), steps

    # A build the engine must hold (no push here) pulls the layer instead.
    fresh_runner(engine, setting.image("c1"), deps_local, setting.builder)
    args = [a for a in setting.args(f"file://{course}", "c1") if a != "--push"]
    here = events(nbs2i(*args, *label_args("--container-label"), env=setting.env))
    assert cache_actions(here)[:2] == [("hit", "deps"), ("pull", "deps")]
    assert not any("Installing" in e["message"] for e in here), "pip ran again"
    assert done(here)["image"] == result["image"]
    steps = [e["message"] for e in here if e["event"] == "step"]
    assert any(f"{deps_local}: pulled from {setting.cache}:deps-" in s for s in steps), steps

    # No engine at all: the same commit is the same image (config digest)...
    direct = events(build(setting, course, "c1", env=setting.no_engine))
    assert done(direct)["image"] == result["image"]
    assert done(direct)["method"] == "layer"
    # ...and a notebook change goes straight into the registry.
    commit(course, "second.ipynb", '{"cells": [], "metadata": {"lecture": 2}}\n')
    pinned = done(events(build(setting, course, "c2", env=setting.no_engine)))["pushed"]
    digest = pinned.rpartition("@")[2]
    assert setting.registry.manifest_digest("course/lectures", "c2") == digest

    with ci.environment(setting.env), Engine.connect() as puller:
        puller.pull(track.image(pinned))
    checked = nbs2i("verify", pinned, *label_args(), timeout=600)
    assert checked.code == 0, checked.stdout + checked.stderr


def test_what_needs_an_engine_is_refused_in_one_line(
    setting: ci.Setting, course: Path, tmp_path: Path
) -> None:
    changed = tmp_path / "changed"
    subprocess.run(["cp", "-a", str(course), str(changed)], check=True)
    commit(changed, "requirements.txt", f"# changed {SESSION_ID}\n")
    missing = fails(*setting.args(f"file://{changed}", "missing"), env=setting.no_engine)
    assert "is not in the cache" in missing.error_line
    assert "--as-dockerfile" in missing.error_line
    assert not setting.registry.has_tag("course/lectures", "missing")

    assemble = fails(
        *setting.args(f"file://{course}", "missing", "--always-assemble"), env=setting.no_engine
    )
    assert "--always-assemble" in assemble.error_line
    assert not setting.registry.has_tag("course/lectures", "missing")


def test_unreachable_registry_bad_password_and_tls_without_the_ca(
    setting: ci.Setting, course: Path, tmp_path: Path
) -> None:
    nobody = registry.free_port()
    args = setting.args(f"file://{course}", "x")
    unreachable = fails(*args, "--cache-to", f"127.0.0.1:{nobody}/cache", env=setting.env)
    assert f"cannot reach the registry 127.0.0.1:{nobody}" in unreachable.error_line
    if not setting.registry.secure:
        return
    wrong = setting.registry.docker_config(tmp_path / "wrong", password="not the password")
    refused = fails(*args, env={**setting.no_engine, "DOCKER_CONFIG": str(wrong)})
    assert "HTTP 401" in refused.error_line and "docker login" in refused.error_line
    assert "not the password" not in refused.stderr + refused.stdout
    no_ca = [a for a in args if a not in ("--registry-ca", str(setting.registry.ca))]
    tls = fails(*no_ca, env=setting.no_engine)
    assert (
        "TLS with the registry" in tls.error_line and "certificate verify failed" in tls.error_line
    )


def test_a_push_killed_midway_leaves_the_tag_where_it_was(
    setting: ci.Setting, course: Path
) -> None:
    before = setting.registry.manifest_digest("course/lectures", "c1")
    (course / "data.bin").write_bytes(os.urandom(96 << 20))
    git(course, "add", "-A")
    git(course, "commit", "-q", "-m", "a large data file")
    args = setting.args(f"file://{course}", "c1")
    # A SIGKILL leaves nbs2i's temporary layer behind (`nbs2i prune` finds
    # it): it goes into a directory of the test's, removed with it.
    with tempfile.TemporaryDirectory(prefix="nbs2i-test-kill-") as tmp:
        process = subprocess.Popen(
            command(*args),
            env=environment({**setting.no_engine, "TMPDIR": tmp}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert _wait_for_upload(setting.registry.root, process), "no upload started"
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=30)
    assert setting.registry.manifest_digest("course/lectures", "c1") == before


def _wait_for_upload(root: Path, process: subprocess.Popen[bytes]) -> bool:
    """Whether a blob upload of more than 1 MiB got under way while `process` ran."""
    deadline = time.monotonic() + KILL_SECONDS
    repository = root / "data/docker/registry/v2/repositories/course/lectures/_uploads"
    while time.monotonic() < deadline and process.poll() is None:
        for data in repository.glob("*/data"):
            if data.stat().st_size > 1 << 20:
                return True
        time.sleep(0.01)
    return False

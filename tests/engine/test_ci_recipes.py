"""The CI recipes in examples/ci/ work: each job's commands, read from the YAML,
run in a fresh runner container against a real registry on loopback (TLS with
a CA the test makes, htpasswd users), as that CI service would run them.

GitHub Actions (a runner with an engine): the builder job builds and pushes
the builder; the image job builds the course, fills the registry cache and
pushes the commit SHA and `latest`; the next push, a notebook change, takes
the dependency layer from the registry. GitLab CI (no engine at all): a
dependency change runs the buildah job, then the image job pushes straight
into the registry; a notebook-only change runs the image job alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbs2i import labels
from nbs2i.engine import Engine
from tests.support import recipes, registry
from tests.support.ci import push_builder
from tests.support.gitrepo import git
from tests.support.session import SESSION_ID, tag
from tests.support.tracker import Tracker

REPOSITORY = "course/notebooks"


@pytest.fixture(scope="module")
def runner(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[recipes.Runner]:
    ref = tag("ci-runner")
    try:
        yield recipes.build_runner(engine, ref, tmp_path_factory.mktemp("runner"))
    finally:
        engine.remove_image(ref, force=True)


@pytest.fixture
def secure_registry() -> Iterator[registry.Registry]:
    with registry.running(secure=True) as reg:
        yield reg


def course(root: Path, requirements: str) -> str:
    """A course repository with one notebook; its commit."""
    root.mkdir()
    (root / "requirements.txt").write_text(requirements)
    (root / "intro.ipynb").write_text('{"cells": [], "metadata": {}}\n')
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first lecture")
    return git(root, "rev-parse", "HEAD")


def edit(root: Path) -> str:
    (root / "intro.ipynb").write_text('{"cells": [], "metadata": {"edited": true}}\n')
    git(root, "commit", "-q", "-am", "a notebook edited")
    return git(root, "rev-parse", "HEAD")


def ca_mounts(reg: registry.Registry) -> list[tuple[str, str]]:
    """The registry's CA where nbs2i (Docker's place) and buildah look for it, as
    a runner's administrator installs it."""
    return [
        (str(reg.ca), f"/etc/docker/certs.d/{reg.host}/ca.crt"),
        (str(reg.ca), f"/etc/containers/certs.d/{reg.host}/ca.crt"),
    ]


def succeeded(done: Any) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return str(done.stdout + done.stderr)


def test_github_actions_recipe(
    engine: Engine,
    runner: recipes.Runner,
    secure_registry: registry.Registry,
    tmp_path: Path,
    track: Tracker,
) -> None:
    reg = secure_registry
    workflow = recipes.load("github-actions.yml", reg.host)
    context = {
        "github.repository": REPOSITORY,
        "github.actor": registry.USER,
        "secrets.GITHUB_TOKEN": registry.PASSWORD,
        "env.REGISTRY": reg.host,
    }
    workspace = tmp_path / "course"
    sha = course(workspace, f"# github recipe {SESSION_ID}\n")
    env = {"NBS2I_PACKAGE": f"{recipes.WHEELS}/{runner.wheel}", "GITHUB_SHA": sha}
    image = f"{reg.host}/{REPOSITORY}/lectures"
    builder = f"{reg.host}/{REPOSITORY}/nbs2i-builder:0.2.0"
    with _engine_leftovers(engine, track, builder, image):
        for job in ("builder", "image"):
            script = recipes.github_job(workflow, job, context, env)
            succeeded(
                recipes.run_job(runner, script, workspace, engine=True, mounts=ca_mounts(reg))
            )
        assert reg.manifest_digest(f"{REPOSITORY}/lectures", sha)
        assert reg.manifest_digest(f"{REPOSITORY}/lectures", "latest")

        engine.remove_image(builder, force=True)  # the next runner starts empty
        changed = edit(workspace)
        script = recipes.github_job(workflow, "image", context, {**env, "GITHUB_SHA": changed})
        log = succeeded(
            recipes.run_job(runner, script, workspace, engine=True, mounts=ca_mounts(reg))
        )
        assert "pulled from" in log or "reused from the engine" in log, log[-3000:]
        pinned = reg.manifest_digest(f"{REPOSITORY}/lectures", changed)
        assert reg.manifest_digest(f"{REPOSITORY}/lectures", "latest") == pinned


def test_gitlab_ci_recipe_with_no_engine(
    engine: Engine,
    builder_image: str,
    runner: recipes.Runner,
    secure_registry: registry.Registry,
    tmp_path: Path,
) -> None:
    reg = secure_registry
    pushed = push_builder(engine, builder_image, reg, reg.docker_config(tmp_path / "docker"))
    pipeline = recipes.load("gitlab-ci.yml")
    workspace = tmp_path / "course"
    sha = course(workspace, f"# gitlab recipe {SESSION_ID}\n")
    project = f"{reg.host}/{REPOSITORY}"
    predefined = {
        "CI_REGISTRY": reg.host,
        "CI_REGISTRY_IMAGE": project,
        "CI_REGISTRY_USER": registry.USER,
        "CI_REGISTRY_PASSWORD": registry.PASSWORD,
        "CI_PROJECT_DIR": recipes.WORKSPACE,
    }
    env = {"NBS2I_PACKAGE": f"{recipes.WHEELS}/{runner.wheel}", "BUILDER": pushed}

    def job(name: str, commit: str, storage: Path | None = None) -> str:
        """A job; with `storage`, buildah's: allowed to mount, with a volume."""
        script = recipes.gitlab_job(pipeline, name, {**predefined, "CI_COMMIT_SHA": commit}, env)
        mounts = ca_mounts(reg)
        if storage is not None:
            mounts.append((str(storage), "/var/lib/containers"))
        done = recipes.run_job(
            runner,
            script,
            workspace,
            engine=False,
            builds_images=storage is not None,
            mounts=mounts,
        )
        return succeeded(done)

    storage = tmp_path / "containers"  # the runner's volume for buildah's overlay storage
    storage.mkdir()
    job("dependencies", sha, storage=storage)
    log = job("image", sha)
    assert "building straight into the registry" in log, log[-3000:]
    assert reg.manifest_digest(f"{REPOSITORY}/lectures", sha)
    changed = edit(workspace)
    job("image", changed)
    latest = reg.manifest_digest(f"{REPOSITORY}/lectures", "latest")
    assert latest == reg.manifest_digest(f"{REPOSITORY}/lectures", changed)


@contextlib.contextmanager
def _engine_leftovers(engine: Engine, track: Tracker, builder: str, image: str) -> Iterator[None]:
    """Remove what the GitHub jobs left in the engine: the tags they made and the
    dependency layers built on their builder (whose name holds this registry's
    port: no other run's)."""
    try:
        yield
    finally:
        for found in engine.images(labels=[f"{labels.BUILD_IMAGE}={builder}"]):
            track.image(found.id)
        for found in engine.images():
            for name in found.tags:
                if name.startswith((builder, image)):
                    track.image(name)

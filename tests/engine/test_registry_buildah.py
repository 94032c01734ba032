"""No daemon anywhere: a dependency change taken by a runner with no engine.

`nbs2i build --as-dockerfile` (with no engine: the builder is read from its
registry) writes a `deps` stage and names its cache tag; Debian's buildah
(as root, its own storage in a temporary directory) builds that stage and
pushes it as the cache entry; `nbs2i build --push` with no engine then builds
the notebooks on it, and so does a runner with an engine, instead of running
pip. The engine is used only to push the builder once, as a CI
setup job would, and for the last check.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbs2i.engine import Engine
from tests.support import ci, registry
from tests.support.cli import nbs2i
from tests.support.gitrepo import git
from tests.support.session import SESSION_ID, label_args
from tests.support.tracker import Tracker

BUILDAH_SECONDS = 600


@pytest.fixture
def buildah(tmp_path: Path) -> Iterator[list[str]]:
    """buildah with a storage of its own, removed afterwards."""
    if shutil.which("buildah") is None:
        pytest.fail("Debian's buildah is not installed: run `make registry`", pytrace=False)
    root = tmp_path / "buildah"
    command = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run")]
    yield command
    subprocess.run([*command, "rmi", "--all", "--force"], capture_output=True, timeout=120)
    subprocess.run(["umount", "-R", str(root / "root" / "overlay")], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_a_dependency_change_with_buildah_and_no_engine(
    engine: Engine, builder_image: str, buildah: list[str], tmp_path: Path, track: Tracker
) -> None:
    with registry.running() as reg, ci.setting(engine, builder_image, reg, tmp_path) as setting:
        course = tmp_path / "course"
        course.mkdir()
        (course / "requirements.txt").write_text(f"# buildah {SESSION_ID}\n")
        (course / "intro.ipynb").write_text('{"cells": [], "metadata": {}}\n')
        git(course, "init", "-q")
        git(course, "add", "-A")
        git(course, "commit", "-q", "-m", "a dependency change")
        source, image = f"file://{course}", setting.image("deps-change")

        out = tmp_path / "context"
        written = nbs2i(
            "build", "--as-dockerfile", str(out), source, image, "--builder", setting.builder,
            env=setting.no_engine,
        )  # fmt: skip
        assert written.code == 0, written.stderr
        cache_tag = (out / "deps-cache-tag").read_text().strip()
        entry = f"{setting.cache}:{cache_tag}"
        for step in (
            ["bud", "--tls-verify=false", "--isolation", "chroot", "--target", "deps",
             "-t", entry, str(out)],
            ["push", "--tls-verify=false", entry],
        ):  # fmt: skip
            done = subprocess.run(
                [*buildah, *step], capture_output=True, text=True, timeout=BUILDAH_SECONDS
            )
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

        labelled = setting.args(source, "deps-change", *label_args("--container-label"))
        direct = nbs2i(*labelled, env=setting.no_engine)
        assert direct.code == 0, direct.stderr
        steps = [json.loads(line)["message"] for line in direct.stdout.splitlines()]
        assert any(f"used from {entry}" in step for step in steps), steps

        with_engine = nbs2i(*labelled, env=setting.env)
        assert with_engine.code == 0, with_engine.stderr
        found = [json.loads(line) for line in with_engine.stdout.splitlines()]
        track.image(setting.builder)
        track.image(image)
        done_event = next(e for e in found if e["event"] == "done")
        if done_event.get("deps_image"):
            track.image(done_event["deps_image"])
        # With --push, the engine's job is built on buildah's entry in the
        # registry, as the engine-less one was: the same image, no pip.
        assert ("hit", "deps") in [
            (e["action"], e["layer"]) for e in found if e["event"] == "cache"
        ]
        assert not any("Installing" in e["message"] for e in found)
        direct_done = next(
            json.loads(line)
            for line in direct.stdout.splitlines()
            if json.loads(line)["event"] == "done"
        )
        assert done_event["image"] == direct_done["image"]

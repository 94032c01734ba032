"""The notebook layer nbs2i writes, on the engine this run is on (the host's, or
another one: tests/support/engines.py): loaded as written, with no container;
the same image from the same commit whatever the clone path and umask; a
`docker save` of it complete, and a push of it too (to a registry on
loopback), pulled back by digest; and, on another engine, the same config
digest as the host's engine gives for the same commit."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from nbs2i.building import build
from nbs2i.engine import Engine
from nbs2i.reference import ImageRef
from tests.support import docker_api, engines, registry
from tests.support.builds import SAMPLES, Events
from tests.support.builds import request as build_request
from tests.support.cli import nbs2i
from tests.support.gitrepo import make_repo
from tests.support.inside import run_in_image
from tests.support.leftovers import assert_nothing_left
from tests.support.session import SESSION_ID, label_args, tag
from tests.support.tracker import Tracker

pytestmark = pytest.mark.matrix

DEST = "/opt/app-root/src"


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A Git repository of the lectures without their requirements: a notebook-only build."""
    lectures = tmp_path / "lectures"
    shutil.copytree(SAMPLES, lectures, ignore=shutil.ignore_patterns("requirements.txt"))
    repo = tmp_path / "course"
    make_repo(repo, lectures)
    return repo


def test_the_written_layer_loads_repeats_and_saves_whole(
    engine: Engine,
    builder_image: str,
    track: Tracker,
    course: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A cache of its own: the first build learns what the engine keeps of the base.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = track.image(tag("written"))
    events = Events()
    first = build(engine, build_request(f"file://{course}", out, builder_image), events)
    assert first.method == "layer", events.warnings
    assert events.outputs == [], "assemble ran"
    assert engine.inspect_image(out).id == first.image_id
    engine.remove_image(out)
    previous = os.umask(0o077)
    try:
        again = build(engine, build_request(f"file://{course}", out, builder_image))
    finally:
        os.umask(previous)
    assert (again.method, again.image_id) == ("layer", first.image_id)
    code, listing = run_in_image(engine, out, ["ls", DEST])
    assert code == 0 and "01-python-basics.ipynb" in listing.split(), listing
    whole = engines.saved(docker_api.save(out))
    assert whole.missing == (), f"docker save left out {whole.missing}"
    # The engine's id is the config's digest, or on the containerd store the manifest's.
    if engines.current() != engines.CONTAINERD_STORE:
        assert whole.config_digest == first.image_id
    assert_nothing_left(engine)


@pytest.mark.skipif(engines.is_default_run(), reason="compares another engine with the host's")
def test_the_same_commit_gives_the_host_engines_config_digest(
    engine: Engine, builder_image: str, track: Tracker, course: Path
) -> None:
    out = track.image(tag("across"))
    here = build(engine, build_request(f"file://{course}", out, builder_image))
    assert here.method == "layer"
    try:
        # The same tag, since the image names itself after it (labels).
        done = nbs2i(
            *("build", f"file://{course}", out, "--builder", builder_image, "--json"),
            *label_args("--container-label"),
            env={"DOCKER_HOST": engines.HOST_ENGINE},
        )
        assert done.code == 0, done.stderr
        host = json.loads(done.stdout.splitlines()[-1])
    finally:
        engines.remove_on_host(out)
    assert host["method"] == "layer"
    assert engines.saved(docker_api.save(out)).config_digest == host["image"]
    assert_nothing_left(engine)


def test_a_written_image_pushes_whole_and_comes_back_by_digest(
    engine: Engine, builder_image: str, track: Tracker, course: Path
) -> None:
    """On the containerd store a push, like a save, misses lower layers named
    otherwise than its own manifest of the base names them."""
    with registry.running() as reg:
        repository = f"nbs2i-test/pushed-{SESSION_ID}"
        out = track.image(f"{reg.host}/{repository}:1")
        done = build(engine, build_request(f"file://{course}", out, builder_image, push=True))
        assert done.method == "layer"
        pinned = track.image(done.pushed)
        assert ImageRef.parse(pinned).digest == reg.manifest_digest(repository, "1")
        engine.remove_image(out, force=True)
        assert not engine.image_exists(done.image_id)
        engine.pull(pinned)
        assert engine.inspect_image(pinned).id == done.image_id
        engine.remove_image(pinned, force=True)  # pulled by digest alone: untagged
    assert_nothing_left(engine)

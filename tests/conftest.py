"""Shared fixtures: the real engine, and clean-up of everything tests create.

Every container, image and volume a test creates carries TEST_LABELS, with a
per-run session id so that two test runs on one engine never judge each
other's leftovers. At the end the run fails if any labelled container of this
session is still in the engine, and removes it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nbs2i.engine import Engine
from nbs2i.errors import Nbs2iError

SESSION_ID = uuid.uuid4().hex[:10]
TEST_LABELS = {"nbs2i.test": "1", "nbs2i.test.session": SESSION_ID}
SESSION_FILTER = f"nbs2i.test.session={SESSION_ID}"


class Tracker:
    """Remembers what a test created, and removes it (even after a failure)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._containers: list[str] = []
        self._images: list[str] = []
        self._volumes: list[str] = []

    def container(self, cid: str) -> str:
        self._containers.append(cid)
        return cid

    def image(self, ref: str) -> str:
        self._images.append(ref)
        return ref

    def volume(self, name: str) -> str:
        self._volumes.append(name)
        return name

    def cleanup(self) -> None:
        for cid in reversed(self._containers):
            self.engine.remove_container(cid)
        for ref in reversed(self._images):
            self.engine.remove_image(ref, force=True)
        for name in reversed(self._volumes):
            self.engine.remove_volume(name)
        self._containers.clear()
        self._images.clear()
        self._volumes.clear()


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    try:
        eng = Engine.connect()
    except Nbs2iError as exc:
        pytest.fail(f"engine tests need a Docker engine: {exc}", pytrace=False)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def session_tracker(engine: Engine) -> Iterator[Tracker]:
    tracker = Tracker(engine)
    yield tracker
    tracker.cleanup()


@pytest.fixture
def track(engine: Engine) -> Iterator[Tracker]:
    tracker = Tracker(engine)
    yield tracker
    tracker.cleanup()


@pytest.fixture(scope="session")
def tiny_builder(engine: Engine, session_tracker: Tracker) -> str:
    """A tiny S2I builder (debian:bookworm-slim + sh scripts) for fast build-flow tests;
    see tests/tiny_builder.py. Removed at the end of the session."""
    from tests.tiny_builder import build_tiny_builder

    tag = session_tracker.image(f"nbs2i-test/tiny-builder:{SESSION_ID}")
    return build_tiny_builder(engine, tag, TEST_LABELS)


@pytest.fixture(scope="session")
def builder_image(engine: Engine, session_tracker: Tracker) -> Iterator[str]:
    """The builder image built from the current s2i/ through nbs2i.builder,
    tagged nbs2i-test/builder:<SESSION_ID> and untagged at the end.
    NBS2I_TEST_BUILDER=<image> reuses an existing image instead (fast iteration).
    A build-stage image (the engine's cache of the pip step) that this session
    made is removed at the end too; one that was there before stays."""
    import os

    from nbs2i import builder

    reuse = os.environ.get("NBS2I_TEST_BUILDER", "")
    if reuse:
        if not engine.image_exists(reuse):
            pytest.fail(f"NBS2I_TEST_BUILDER={reuse} is not in the engine", pytrace=False)
        yield reuse
        return
    stage_label = ["io.nbs2i.build-stage"]
    stages_before = {i["Id"] for i in engine.images(labels=stage_label)}
    tag = f"nbs2i-test/builder:{SESSION_ID}"
    request = builder.BuilderRequest(tags=(tag,), ca_bundle=builder.default_ca_bundle())
    try:
        builder.build_builder(engine, request)
    except Nbs2iError as exc:
        pytest.fail(f"the builder image did not build: {exc}\n{exc.details}", pytrace=False)
    yield session_tracker.image(tag)
    for image in engine.images(labels=stage_label):
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        if image["Id"] not in stages_before and not tags:
            with contextlib.suppress(Nbs2iError):
                engine.remove_image(image["Id"])


@pytest.fixture(scope="session")
def sample_build(engine: Engine, session_tracker: Tracker, builder_image: str) -> Any:
    """sample-notebooks/ built once with `builder_image` (nbs2i.build.BuildResult:
    .tag, .image_id, .deps_image); tagged nbs2i-test/sample:<SESSION_ID>, removed at
    the end with the dependency layer it made."""
    from pathlib import Path

    from nbs2i.build import BuildRequest, build, default_ca_bundle

    samples = Path(__file__).resolve().parents[1] / "sample-notebooks"
    tag = session_tracker.image(f"nbs2i-test/sample:{SESSION_ID}")
    request = BuildRequest(
        source=str(samples),
        tag=tag,
        builder=builder_image,
        ca_bundle=default_ca_bundle(),
        container_labels=tuple(TEST_LABELS.items()),
    )
    try:
        result = build(engine, request)
    except Nbs2iError as exc:
        pytest.fail(f"sample-notebooks did not build: {exc}\n{exc.details}", pytrace=False)
    # A dependency layer this session did not make is a cache someone else owns
    # (the same builder and requirements make the same key): it stays.
    if result.deps_image and not result.deps_reused:
        session_tracker.image(result.deps_image)
    return result


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests under tests/engine need the engine; mark them so `-m "not engine"`
    # runs the unit tests alone on a machine without one.
    for item in items:
        if "tests/engine/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.engine)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        eng = Engine.connect()
    except Nbs2iError:
        return  # no engine: nothing can have been left in it
    with eng:
        left = eng.containers(labels=[SESSION_FILTER])
        for c in left:
            eng.remove_container(c["Id"])
        for v in eng.volumes(labels=[SESSION_FILTER]):
            eng.remove_volume(v["Name"])
    if left:
        names = ", ".join(c["Id"][:12] for c in left)
        session.config.get_terminal_writer().line(
            f"FAILED: {len(left)} test container(s) left in the engine: {names}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

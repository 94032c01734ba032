"""Fixtures: the real engine, the images a session shares, and clean-up.

Every container, image, volume and network a test creates carries the
session's labels (tests/support/session.py), so that two test runs on one
engine never judge each other's leftovers. At the end the run fails if any
labelled container of this session is still in the engine, and removes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from nbs2i import defaults
from nbs2i.engine import Engine
from nbs2i.errors import Nbs2iError
from tests.support import docker_api, engines
from tests.support.session import LABEL_PAIRS, SESSION_FILTER, tag
from tests.support.tracker import Tracker

SAMPLES = Path(__file__).resolve().parents[1] / "sample-notebooks"
# The JupyterHub major the default builder is not for.
OTHER_HUB = next(m for m in defaults.JUPYTERHUB_MAJORS if m != defaults.JUPYTERHUB_MAJOR)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    try:
        eng = Engine.connect()
    except Nbs2iError as exc:
        pytest.fail(f"engine tests need a Docker engine: {exc}", pytrace=False)
    problem = engines.setup_problem()
    if problem:
        eng.close()
        pytest.fail(problem, pytrace=False)
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
    """A tiny S2I builder (debian:bookworm-slim + sh scripts) for fast build-flow
    tests; see tests/support/tiny_builder.py. Removed at the end of the session."""
    from tests.support.tiny_builder import build_tiny_builder

    return build_tiny_builder(engine, session_tracker.image(tag("tiny-builder")))


def _build_builder(engine: Engine, ref: str, **options: str) -> None:
    """nbs2i.builder's build of the builder from the current s2i/ (a variant, a
    JupyterHub major); the test fails with the build's last lines."""
    from nbs2i import builder
    from nbs2i.ca import default_ca_bundle

    request = builder.BuilderRequest(tags=(ref,), ca_bundle=default_ca_bundle(), **options)
    try:
        builder.build_builder(engine, request)
    except Nbs2iError as exc:
        pytest.fail(f"the builder image did not build: {exc}\n{exc.details}", pytrace=False)


def _remove_new_build_stages(engine: Engine, before: set[str]) -> None:
    """The engine keeps a builder's build stage as an untagged image (a cache):
    the ones this session made are removed, the ones that were there stay."""
    from nbs2i import labels

    for image in engine.images(labels=[labels.BUILD_STAGE]):
        if image.id not in before and not image.tags:
            with contextlib.suppress(Nbs2iError):
                engine.remove_image(image.id)


def _build_stages(engine: Engine) -> set[str]:
    from nbs2i import labels

    return {i.id for i in engine.images(labels=[labels.BUILD_STAGE])}


# The fixtures that need a builder variant, and what builds it (the env
# variable that names an existing one instead, its tag, its build options).
VARIANTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "r_builder": ("NBS2I_TEST_BUILDER_R", "builder-r", {"variant": "r"}),
    "other_hub_lectures": (
        "NBS2I_TEST_BUILDER_OTHER_HUB",
        f"builder-jupyterhub{OTHER_HUB}",
        {"jupyterhub_major": OTHER_HUB},
    ),
}


def _variant(session_tracker: Tracker, env: str, name: str, options: dict[str, str]) -> str:
    """One builder variant: the image env names, or one built now (on an engine
    connection of its own: this runs beside the tests)."""
    reuse = os.environ.get(env, "")
    with Engine.connect() as engine:
        if reuse:
            if not engine.image_exists(reuse):
                pytest.fail(f"{env}={reuse} is not in the engine", pytrace=False)
            return reuse
        ref = session_tracker.image(tag(name))
        _build_builder(engine, ref, **options)
        return ref


# The variants' builds under way, started by `builder_image` (see there).
_VARIANT_BUILDS: dict[str, Future[str]] = {}


def _variant_build(name: str) -> str:
    found = _VARIANT_BUILDS.get(name)
    if found is None:
        pytest.fail(f"no build of the builder variant for {name} was started", pytrace=False)
    return found.result()


@pytest.fixture(scope="session")
def r_builder(builder_image: str) -> str:
    """The R variant of the builder (R and the IR kernel from Debian).
    NBS2I_TEST_BUILDER_R=<image> reuses an existing one instead."""
    return _variant_build("r_builder")


@pytest.fixture(scope="session")
def builder_image(
    request: pytest.FixtureRequest, engine: Engine, session_tracker: Tracker
) -> Iterator[str]:
    """The builder image built from the current s2i/ through nbs2i.builder,
    tagged nbs2i-test/builder:<session> and untagged at the end.
    NBS2I_TEST_BUILDER=<image> reuses an existing image instead (fast iteration).

    Once it is there, the variants the session's tests use (the R one, the
    other JupyterHub major's) are built in the background: their builds reuse
    its cached stages and mostly download, so tests run meanwhile and those
    that need a variant wait only for what is left. A build-stage image (the
    engine's cache of the pip step) that this session made is removed at the
    end too; one that was there before stays."""
    before = _build_stages(engine)
    ref = os.environ.get("NBS2I_TEST_BUILDER", "")
    if ref and not engine.image_exists(ref):
        pytest.fail(f"NBS2I_TEST_BUILDER={ref} is not in the engine", pytrace=False)
    if not ref:
        ref = session_tracker.image(tag("builder"))
        _build_builder(engine, ref)
    used = {n for item in request.session.items for n in VARIANTS if n in item.fixturenames}
    with ThreadPoolExecutor(len(VARIANTS)) as pool:
        for name in sorted(used):
            _VARIANT_BUILDS[name] = pool.submit(_variant, session_tracker, *VARIANTS[name])
        yield ref
    _remove_new_build_stages(engine, before)


@pytest.fixture(scope="session")
def sample_build(engine: Engine, session_tracker: Tracker, builder_image: str) -> Any:
    """sample-notebooks/ built once with `builder_image` (a BuildResult: .tag,
    .image_id, .deps_image); removed at the end with the dependency layer it made."""
    from nbs2i.building import BuildRequest, build
    from nbs2i.ca import default_ca_bundle

    ref = session_tracker.image(tag("sample"))
    request = BuildRequest(
        source=str(SAMPLES),
        tag=ref,
        builder=builder_image,
        ca_bundle=default_ca_bundle(),
        container_labels=LABEL_PAIRS,
    )
    try:
        result = build(engine, request)
    except Nbs2iError as exc:
        pytest.fail(f"sample-notebooks did not build: {exc}\n{exc.details}", pytrace=False)
    # A dependency layer this session did not make is a cache someone else owns
    # (the same builder and requirements make the same key): it stays.
    for ref in result.caches_made:
        session_tracker.image(ref)
    return result


@pytest.fixture(scope="session")
def lecture_image(sample_build: Any) -> str:
    """The tag of sample-notebooks/ built with the session's builder."""
    return str(sample_build.tag)


@pytest.fixture(scope="session")
def other_hub_lectures(engine: Engine, session_tracker: Tracker, builder_image: str) -> str:
    """The lectures (without their dependencies) on a builder for the JupyterHub
    major the default builder is not for. NBS2I_TEST_BUILDER_OTHER_HUB=<image>
    reuses such a builder."""
    from tests.support.images import build_notebooks

    ref = _variant_build("other_hub_lectures")
    with tempfile.TemporaryDirectory(prefix="lectures-") as tmp:
        source = Path(tmp) / "lectures"
        shutil.copytree(SAMPLES, source, ignore=shutil.ignore_patterns("requirements.txt"))
        made = build_notebooks(engine, source, tag(f"lectures-jupyterhub{OTHER_HUB}"), ref)
    for image in made:
        session_tracker.image(image)
    return made[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests under tests/engine need the engine; mark them so `-m "not engine"`
    # runs the unit tests alone on a machine without one.
    for item in items:
        if "tests/engine/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.engine)
    # On another engine than the host's, only what must pass on every engine
    # runs (tests/support/engines.py); the rest ran in the default run.
    if not engines.is_default_run():
        left = [item for item in items if item.get_closest_marker("matrix") is None]
        if left:
            config.hook.pytest_deselected(items=left)
            items[:] = [item for item in items if item.get_closest_marker("matrix")]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    try:
        eng = Engine.connect()
    except Nbs2iError:
        return  # no engine: nothing can have been left in it
    with eng:
        left = eng.containers(labels=[SESSION_FILTER])
        for c in left:
            eng.remove_container(c.id)
        for v in eng.volumes(labels=[SESSION_FILTER]):
            eng.remove_volume(v.name)
        for name in docker_api.networks(labels=[SESSION_FILTER]):
            docker_api.remove_network(name)
    if left:
        names = ", ".join(c.id[:12] for c in left)
        session.config.get_terminal_writer().line(
            f"FAILED: {len(left)} test container(s) left in the engine: {names}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

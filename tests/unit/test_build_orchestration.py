"""The order of a build's steps, and its clean-up at every failure point, against a
fake engine (the real one cannot be made to fail on demand)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbs2i import labels
from nbs2i.building import build
from nbs2i.building.assemble import GUARD_SCRIPT
from nbs2i.building.request import Injection
from nbs2i.errors import BuildError, EngineError
from tests.support.builds import Events
from tests.support.fake_builds import BUILDER, BUILDER_CONFIG, request
from tests.support.fake_engine import FakeEngine

CONFIG = BUILDER_CONFIG


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.add_image(BUILDER, CONFIG, ("sha256:base1", "sha256:base2"))
    return fake


@pytest.fixture
def course(tmp_path: Path) -> Path:
    src = tmp_path / "course"
    src.mkdir()
    (src / "a.ipynb").write_text("{}")
    return src


def test_notebooks_only_write_a_layer_and_create_no_container(
    engine: FakeEngine, course: Path
) -> None:
    result = build(engine, request(course))
    assert result.method == "layer"
    assert "create_container" not in engine.calls and "commit" not in engine.calls
    assert engine.calls.index("history") < engine.calls.index("load_image")
    image = engine.store["class/w1:1"]
    assert image.id == result.image_id
    assert image.layers[:2] == ("sha256:base1", "sha256:base2") and len(image.layers) == 3
    assert image.config.labels[labels.OCI_TITLE] == "w1"


def test_the_same_source_gives_the_same_image(engine: FakeEngine, course: Path) -> None:
    first = build(engine, request(course))
    engine.remove_image("class/w1:1")
    assert build(engine, request(course)).image_id == first.image_id


def test_assemble_runs_in_a_container_in_order(engine: FakeEngine, course: Path) -> None:
    events = Events()
    result = build(engine, request(course, always_assemble=True), events)
    assert result.method == "assemble"
    steps = [
        c
        for c in engine.calls
        if c
        in (
            "create_container",
            "put_archive",
            "attach",
            "start",
            "wait",
            "commit",
            "remove_container",
        )
    ]
    assert steps == [
        "create_container",
        "put_archive",
        "attach",
        "start",
        "wait",
        "commit",
        "remove_container",
    ]
    assert engine.live == ([], [])
    assert "working" in events.outputs


def test_dependencies_first_then_the_notebooks(engine: FakeEngine, course: Path) -> None:
    (course / "requirements.txt").write_text("numpy\n")
    result = build(engine, request(course))
    assert result.deps_image.startswith("nbs2i-cache/deps:") and not result.deps_reused
    assert result.method == "layer"
    first_commit = engine.calls.index("commit")
    assert first_commit < engine.calls.index("load_image")
    deps_container = next(iter(engine.archives))
    assert "/tmp/src/requirements.txt" in engine.archives[deps_container]
    assert "/tmp/src/a.ipynb" not in engine.archives[deps_container], "notebooks in the deps layer"
    assert engine.live == ([], [])
    again = build(engine, request(course))
    assert again.deps_reused and again.deps_image == result.deps_image


@pytest.mark.parametrize(
    "fail_at",
    [
        "create_volume",
        "put_archive#1",
        "put_archive#2",
        "create_container#2",
        "start",
        "wait",
        "commit",
    ],
)
def test_every_failure_point_leaves_nothing(
    engine: FakeEngine, course: Path, tmp_path: Path, fail_at: str
) -> None:
    secret = tmp_path / "token"
    secret.write_text("x")
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    engine.fail_at = fail_at
    req = request(
        course,
        always_assemble=True,
        injections=(Injection(secret, "/run/secrets/x"),),
        ca_bundle=ca,
    )
    with pytest.raises(EngineError, match="injected failure"):
        build(engine, req)
    assert engine.live == ([], []), f"left behind after a failure in {fail_at}"
    assert "class/w1:1" not in engine.store


def test_a_failing_assemble_leaves_nothing(engine: FakeEngine, course: Path) -> None:
    engine.exit_code = 3
    with pytest.raises(BuildError, match="assemble failed with exit code 3"):
        build(engine, request(course, always_assemble=True))
    assert engine.live == ([], [])


def test_an_engine_that_refuses_the_written_image_gets_assemble(
    engine: FakeEngine, course: Path
) -> None:
    engine.fail_at = "load_image"
    events = Events()
    result = build(engine, request(course), events)
    assert result.method == "assemble"
    assert any("refused the image nbs2i wrote" in w for w in events.warnings)
    assert engine.live == ([], [])


def test_a_rebuild_removes_the_image_it_replaced(engine: FakeEngine, course: Path) -> None:
    first = build(engine, request(course, always_assemble=True))
    (course / "b.ipynb").write_text("{}")
    second = build(engine, request(course, always_assemble=True))
    assert second.image_id != first.image_id
    assert first.image_id not in engine.store


def test_push_after_the_build(engine: FakeEngine, course: Path) -> None:
    result = build(engine, request(course, push=True))
    assert engine.calls[-1] == "push" and result.pushed.startswith("class/w1@sha256:")


@pytest.mark.parametrize(("kind", "words"), [("file", "a file"), ("link", "a link")])
def test_an_inject_destination_that_is_not_a_directory_is_refused_first(
    engine: FakeEngine, course: Path, tmp_path: Path, kind: str, words: str
) -> None:
    secret = tmp_path / "token"
    secret.write_text("x")
    engine.paths = {"/etc/passwd": kind}
    req = request(course, injections=(Injection(secret, "/etc/passwd"),))
    with pytest.raises(BuildError, match=f"--inject destination /etc/passwd is {words}"):
        build(engine, req)
    assert "create_volume" not in engine.calls
    assert engine.live == ([], [])


def test_an_inject_into_a_directory_of_the_builder_is_linked_in(
    engine: FakeEngine, course: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "pip.conf"
    secret.write_text("[global]\n")
    engine.paths = {"/run/new": ""}
    injections = (Injection(secret, "/opt/app-root/venv"), Injection(secret, "/run/new"))
    build(engine, request(course, injections=injections))
    assemble = engine.created[-1]
    targets = {m.target for m in assemble.mounts}
    assert targets == {"/run/nbs2i/inject/0", "/run/new"}
    assert assemble.command is not None and assemble.stdin
    assert assemble.command[:3] == ("/bin/sh", "-c", GUARD_SCRIPT)
    assert "links add /run/nbs2i/inject/0 /opt/app-root/venv" in assemble.command[5]


def test_a_build_waits_for_another_that_holds_the_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from nbs2i.building.tagging import tag_lock

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    seen: list[str] = []
    told = threading.Event()

    def second() -> None:
        with tag_lock("nbs2i-cache/deps:k", told.set):
            seen.append("held")

    with tag_lock("nbs2i-cache/deps:k"):
        waiter = threading.Thread(target=second)
        waiter.start()
        assert told.wait(10), "the second holder was not told it waits"
        assert seen == []
    waiter.join(10)
    assert seen == ["held"]


def test_builds_of_one_tag_never_overlap_and_leave_no_lock_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each holder removes its lock file; those that waited on a removed file
    lock the path's new one, and still only one holds the tag at a time."""
    import threading
    import time

    from nbs2i.building.tagging import tag_lock

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    holding: list[int] = []
    most = 0
    guard = threading.Lock()

    def hold(i: int) -> None:
        nonlocal most
        for _ in range(5):
            with tag_lock("course:1"):
                with guard:
                    holding.append(i)
                    most = max(most, len(holding))
                time.sleep(0.002)
                with guard:
                    holding.remove(i)

    workers = [threading.Thread(target=hold, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not any(worker.is_alive() for worker in workers)
    assert most == 1 and holding == []
    assert list((tmp_path / "nbs2i" / "locks").iterdir()) == []

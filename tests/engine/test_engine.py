"""The engine seam against the real engine: what goes in and comes out is typed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from nbs2i.engine import ContainerSpec, Engine, Mount, PortBinding
from nbs2i.engine_socket import SocketApi, socket_path
from nbs2i.errors import EngineError, NotFound
from tests.support.session import LABELS, SESSION_FILTER
from tests.support.tracker import Tracker

pytestmark = pytest.mark.matrix


def test_connects_and_negotiates(engine: Engine) -> None:
    server = engine.server_version()
    server_api = tuple(int(p) for p in server.api_version.split("."))
    ours = tuple(int(p) for p in engine.api_version.split("."))
    assert ours <= server_api


def test_missing_image_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound, match="nbs2i-test/absent:never is not in the engine"):
        engine.inspect_image("nbs2i-test/absent:never")


def test_container_round_trip(engine: Engine, track: Tracker) -> None:
    volume = track.volume(engine.create_volume(labels=LABELS))
    spec = ContainerSpec(
        "debian:bookworm-slim",
        command=("sh", "-c", "echo hello; exit 3"),
        entrypoint=(),
        user="1000680000:0",
        env={"GREETING": "hi there"},
        labels=LABELS,
        mounts=(Mount(volume, "/data"),),
        tmpfs={"/tmp": "rw,nosuid,nodev,mode=1777"},
        read_only=True,
        cap_drop=("ALL",),
        security_opt=("no-new-privileges:true",),
        ports=(PortBinding(8888, "127.0.0.1"),),
    )
    cid = track.container(engine.create_container(spec))
    info = engine.inspect_container(cid)
    assert info.labels["nbs2i.test.session"] == LABELS["nbs2i.test.session"]
    assert info.user == "1000680000:0" and info.env["GREETING"] == "hi there"
    engine.start(cid)
    assert engine.wait(cid, timeout=60) == 3
    assert engine.logs(cid) == "hello\n"
    done = engine.inspect_container(cid)
    assert not done.running and done.exit_code == 3
    assert [(m.kind, m.name, m.destination) for m in done.mounts if m.kind == "volume"] == [
        ("volume", volume, "/data")
    ]


@pytest.fixture
def both(engine: Engine) -> Iterator[tuple[SocketApi, Any]]:
    """engine_socket's client and docker-py's, on the same local engine."""
    import docker

    path = socket_path(os.environ.get("DOCKER_HOST", ""))
    if path is None:
        pytest.skip("the engine is not a local socket: engine_socket is not used")
    theirs = docker.APIClient(version=engine.api_version, **docker.utils.kwargs_from_env())
    yield SocketApi(path, 30, engine.api_version), theirs
    theirs.close()


def test_socket_requests_answer_as_docker_py_does(
    both: tuple[SocketApi, Any], engine: Engine, track: Tracker
) -> None:
    ours, theirs = both
    base = "debian:bookworm-slim"
    assert ours.inspect_image(base) == theirs.inspect_image(base)
    assert ours.history(base) == theirs.history(base)
    assert ours.version(api_version=False) == theirs.version(api_version=False)
    spec = ContainerSpec(base, command=("true",), labels=LABELS)
    cid = track.container(engine.create_container(spec))
    volume = track.volume(engine.create_volume(labels=LABELS))
    found = {}
    for name, selector in (
        ("session", {"label": [SESSION_FILTER]}),
        ("nothing", {"label": ["nbs2i.test.none=1"]}),
        ("all", None),
    ):
        containers = ours.containers(all=True, filters=selector)
        assert containers == theirs.containers(all=True, filters=selector)
        volumes = ours.volumes(filters=selector)
        assert volumes == theirs.volumes(filters=selector)
        found[name] = ({c["Id"] for c in containers}, {v["Name"] for v in volumes["Volumes"] or ()})
    assert found["session"] == ({cid}, {volume}) and found["nothing"] == (set(), set())
    assert cid in found["all"][0] and volume in found["all"][1]


def test_socket_errors_read_as_docker_py_errors(engine: Engine) -> None:
    """The same refusal through either client is the same nbs2i error."""
    import docker

    def client() -> docker.DockerClient:
        return docker.DockerClient(version=engine.api_version, **docker.utils.kwargs_from_env())

    docker_py_only = Engine(engine.where, client, engine.api_version)
    for ask in (engine, docker_py_only):
        with pytest.raises(NotFound, match="absent:never is not in the engine"):
            ask.inspect_image("nbs2i-test/absent:never")
        ask.remove_image("nbs2i-test/absent:never")  # already gone: quietly nothing
    errors = []
    for ask in (engine, docker_py_only):
        with pytest.raises(EngineError) as info:
            ask.load_image(chunk for chunk in [b"not a tar archive"])
        errors.append(str(info.value))
    docker_py_only.close()
    assert errors[0] == errors[1]

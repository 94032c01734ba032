"""The engine seam against the real engine: what goes in and comes out is typed."""

from __future__ import annotations

import re

import pytest

from nbs2i.engine import ContainerSpec, Engine, Mount, PortBinding, Tmpfs
from nbs2i.errors import EngineError, NotFound
from tests.support.session import LABELS
from tests.support.tracker import Tracker

pytestmark = pytest.mark.matrix


def test_connects_negotiates_and_describes_the_engine(engine: Engine) -> None:
    import docker

    info = engine.describe()
    server_api = tuple(int(p) for p in info.api_version.split("."))
    ours = tuple(int(p) for p in engine.api_version.split("."))
    assert ours <= server_api
    theirs = docker.APIClient(version=engine.api_version, **docker.utils.kwargs_from_env())
    try:
        version, system = theirs.version(), theirs.info()
    finally:
        theirs.close()
    assert (info.version, info.api_version) == (version["Version"], version["ApiVersion"])
    assert (info.os, info.arch) == (version["Os"], version["Arch"])
    assert info.kind in ("docker", "podman") and info.image_store
    assert info.image_store in ("containerd", system["Driver"])


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
        tmpfs=(Tmpfs("/tmp", 0o1777),),
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


def test_refusals_read_as_nbs2i_errors(engine: Engine) -> None:
    with pytest.raises(NotFound, match="absent:never is not in the engine"):
        engine.inspect_image("nbs2i-test/absent:never")
    engine.remove_image("nbs2i-test/absent:never")  # already gone: quietly nothing
    with pytest.raises(EngineError) as info:
        engine.load_image(chunk for chunk in [b"not a tar archive"])
    assert "\n" not in str(info.value)
    # A pull the engine fails in its stream (no registry answers there) is said too.
    with pytest.raises(NotFound, match=re.escape("cannot pull 127.0.0.1:9/nbs2i-test/absent")):
        engine.pull("127.0.0.1:9/nbs2i-test/absent:never")

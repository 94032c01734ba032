"""The engine seam against the real engine: what goes in and comes out is typed."""

from __future__ import annotations

import pytest

from nbs2i.engine import ContainerSpec, Engine, Mount, PortBinding
from nbs2i.errors import NotFound
from tests.support.session import LABELS
from tests.support.tracker import Tracker


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

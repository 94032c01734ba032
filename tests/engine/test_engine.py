"""The engine seam against the real engine."""

from __future__ import annotations

import pytest

from nbs2i.engine import Engine
from nbs2i.errors import NotFound

from ..conftest import TEST_LABELS, Tracker


def test_connects_and_negotiates(engine: Engine) -> None:
    server = engine.server_version()
    server_api = tuple(int(p) for p in server["ApiVersion"].split("."))
    ours = tuple(int(p) for p in engine.api_version.split("."))
    assert ours <= server_api


def test_missing_image_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound, match="nbs2i-test/absent:never is not in the engine"):
        engine.inspect_image("nbs2i-test/absent:never")


def test_container_round_trip(engine: Engine, track: Tracker) -> None:
    cid = track.container(
        engine.create_container(
            "debian:bookworm-slim",
            command=["sh", "-c", "echo hello; exit 3"],
            labels=TEST_LABELS,
        )
    )
    engine.start(cid)
    assert engine.wait(cid, timeout=60) == 3
    assert engine.logs(cid) == b"hello\n"

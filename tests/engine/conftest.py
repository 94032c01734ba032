"""Fixtures the hostile-input tests share: a sandbox for each test's nbs2i
runs, a git daemon per module that serves the repositories a test writes, and
a server that accepts connections and never answers (a check that must come
before the fetch is proven by it seeing no connection)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nbs2i.engine import Docker
from tests.support.gitserver import GitDaemon, HangingServer
from tests.support.sandbox import Sandbox, sandbox


@pytest.fixture
def box(engine: Docker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with sandbox(engine, tmp_path, monkeypatch) as made:
        yield made


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitDaemon]:
    with GitDaemon(tmp_path_factory.mktemp("served")) as served:
        yield served


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    with HangingServer() as server:
        yield server

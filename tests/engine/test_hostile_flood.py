"""An assemble that floods its output (`exec yes`) cannot stall the builder.

A real `nbs2i build` on the real engine, with a repository whose assemble
script prints without end. While it floods: nbs2i shows a bounded part of it
and says once that the output was truncated, its memory stays flat, and the
engine keeps at most LOG_LIMIT bytes of the container's log. Ctrl-C (SIGINT),
SIGTERM and SIGHUP then return the engine to a clean state (no container, no
volume of the run) within 10 s, measured from the signal, and the last line
says what was removed. A SIGKILL, which nbs2i cannot act on, leaves nothing
writing: the container ends within 10 s, and `nbs2i prune` removes it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.utils
import pytest

from nbs2i import labels
from nbs2i.engine import LOG_LIMIT, Docker
from tests.support import cli
from tests.support.hostile import notebook_tree, write
from tests.support.leftovers import prune_only
from tests.support.sandbox import Sandbox
from tests.support.session import SESSION_FILTER, tag

FLOOD = "#!/bin/sh\necho flooding\nexec yes\n"
STOP_BUDGET = 10  # seconds from the signal to a clean engine
FLOOD_SECONDS = 5  # how long it floods before the signal, sampled each second
# nbs2i's resident memory may move this much while it reads the flood.
RSS_DRIFT = 8 << 20
# json-file checks the size before each write: one write may go past it.
LOG_SLACK = 64 << 10
STOPS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}


@pytest.fixture
def raw() -> Iterator[Any]:
    """docker-py's own client, for what nbs2i's types do not show (LogPath)."""
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    yield client
    client.close()


def flooding(box: Sandbox, builder: str, tmp_path: Path) -> cli.Running:
    """A build whose assemble floods, past the point where nbs2i truncates it."""
    src = notebook_tree(tmp_path / "src")
    write(src, ".s2i/bin/assemble", FLOOD, mode=0o755)
    run = box.running(*box.build_args(str(src), box.image(tag("flood")), builder))
    run.wait_for("output truncated", timeout=120)
    return run


def assemble_container(engine: Docker) -> str:
    role = f"{labels.ROLE}={labels.ROLE_ASSEMBLE}"
    found = engine.containers(labels=[SESSION_FILTER, role])
    assert len(found) == 1, found
    return found[0].id


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"no VmRSS for {pid}")


def log_size(raw: Any, cid: str) -> int | None:
    """The size of the engine's log file of the container; None when this test
    cannot read it (a rootless engine)."""
    path = raw.inspect_container(cid).get("LogPath") or ""
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def sample_while_flooding(run: cli.Running, raw: Any, cid: str) -> tuple[list[int], list[int]]:
    """nbs2i's memory and the engine's log size, once a second."""
    memory, sizes = [], []
    for _ in range(FLOOD_SECONDS):
        time.sleep(1)
        memory.append(rss(run.proc.pid))
        size = log_size(raw, cid)
        if size is not None:
            sizes.append(size)
    return memory, sizes


def assert_bounded(raw: Any, cid: str, memory: list[int], sizes: list[int]) -> None:
    config = raw.inspect_container(cid)["HostConfig"]["LogConfig"]
    assert config == {"Type": "json-file", "Config": {"max-size": str(LOG_LIMIT)}}, config
    assert all(size <= LOG_LIMIT + LOG_SLACK for size in sizes), sizes
    assert max(memory) - min(memory) < RSS_DRIFT, f"nbs2i's memory grew: {memory}"


def session_left(engine: Docker) -> tuple[list[str], list[str]]:
    return (
        [c.name for c in engine.containers(labels=[SESSION_FILTER])],
        [v.name for v in engine.volumes(labels=[SESSION_FILTER])],
    )


@pytest.mark.parametrize("signum", list(STOPS.values()), ids=list(STOPS))
def test_a_signal_under_a_flood_returns_a_clean_engine_within_10_s(
    box: Sandbox, engine: Docker, tiny_builder: str, raw: Any, tmp_path: Path, signum: int
) -> None:
    run = flooding(box, tiny_builder, tmp_path)
    try:
        cid = assemble_container(engine)
        memory, sizes = sample_while_flooding(run, raw, cid)
        assert_bounded(raw, cid, memory, sizes)
        run.signal(signum)
        sent = time.monotonic()
        run.proc.wait(timeout=STOP_BUDGET * 3)
        left = session_left(engine)
        took = time.monotonic() - sent
    finally:
        result = run.finish(timeout=30)
    assert took < STOP_BUDGET, f"{took:.1f} s from the signal to a clean engine"
    assert left == ([], []), f"left behind: {left}"
    assert result.code == 130, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert last.startswith(f"nbs2i: interrupted ({name}); everything this run started was removed")
    assert "Traceback" not in result.stderr and "engine" not in last
    assert sum(1 for line in result.stderr.splitlines() if "output truncated" in line) == 1
    box.check()


def test_a_killed_build_leaves_nothing_writing_and_prune_removes_it(
    box: Sandbox, engine: Docker, tiny_builder: str, raw: Any, tmp_path: Path
) -> None:
    run = flooding(box, tiny_builder, tmp_path)
    try:
        cid = assemble_container(engine)
        memory, sizes = sample_while_flooding(run, raw, cid)
        assert_bounded(raw, cid, memory, sizes)
        run.proc.kill()  # nothing of nbs2i runs after this
        killed = time.monotonic()
    finally:
        run.finish(timeout=30)
    while engine.inspect_container(cid).running and time.monotonic() - killed < STOP_BUDGET:
        time.sleep(0.2)
    took = time.monotonic() - killed
    assert not engine.inspect_container(cid).running, f"still running {took:.1f} s after SIGKILL"
    before = log_size(raw, cid)
    time.sleep(1)
    assert log_size(raw, cid) == before, "the container's log still grows"
    containers, volumes = session_left(engine)
    assert containers, "nothing left to prune: the test proves nothing"
    pruned = prune_only([*containers, *volumes], box.env)
    assert pruned.code == 0, pruned.stderr
    assert session_left(engine) == ([], []), pruned.stdout

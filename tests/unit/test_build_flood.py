"""A container that floods its output, and a signal in the middle of it, against
a fake engine: what nbs2i shows, what it keeps, in what order it cleans up,
and what its last line says. The real engine and real signals are in
tests/engine/test_hostile_flood.py."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from nbs2i import labels
from nbs2i.building import build
from nbs2i.building.assemble import GUARD_SCRIPT
from nbs2i.building.request import BuildRequest, Injection
from nbs2i.engine import LOG_LIMIT
from nbs2i.errors import BuildError, EngineUnavailable
from nbs2i.interrupts import Interrupted
from nbs2i.progress import SHOWN_LINES
from tests.support.builds import Events
from tests.support.fake_engine import FakeEngine
from tests.unit.test_build_orchestration import BUILDER, CONFIG

FLOOD_CHUNKS = 2_000  # of 64 KiB: 125 MiB, made as it is read
CHUNK = b"y\n" * (32 << 10)


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.add_image(BUILDER, CONFIG)
    return fake


@pytest.fixture
def course(tmp_path: Path) -> Path:
    src = tmp_path / "course"
    src.mkdir()
    (src / "a.ipynb").write_text("{}")
    return src


def request(src: Path, tmp_path: Path, **changes: object) -> BuildRequest:
    ca = tmp_path / "ca.pem"  # a volume to remove
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    base = BuildRequest(
        source=str(src), tag="class/w1:1", builder=BUILDER, always_assemble=True, ca_bundle=ca
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def flood(then: bytes = b"", interrupt_after: int | None = None) -> Iterator[bytes]:
    for number in range(FLOOD_CHUNKS):
        if number == interrupt_after:
            raise KeyboardInterrupt("SIGINT")  # what the signal handler raises
        yield CHUNK
    yield then


def test_every_container_that_runs_code_is_guarded_and_log_limited(
    engine: FakeEngine, course: Path, tmp_path: Path
) -> None:
    (course / "requirements.txt").write_text("numpy\n")
    (course / "apt.txt").write_text("graphviz\n")
    secret = tmp_path / "token"
    secret.write_text("x")
    build(engine, request(course, tmp_path, injections=(Injection(secret, "/run/s"),)))
    # The inject role's containers only hold volumes for put_archive: never started.
    started = [s for s in engine.created if s.labels[labels.ROLE] != labels.ROLE_INJECT]
    roles = sorted(s.labels[labels.ROLE] for s in started)
    assert roles == [labels.ROLE_ASSEMBLE, labels.ROLE_DEPS, labels.ROLE_DEPS]  # apt, pip
    for spec in started:
        assert spec.command is not None and spec.command[:3] == ("/bin/sh", "-c", GUARD_SCRIPT)
        assert spec.stdin
    assert all(spec.log_limit == LOG_LIMIT for spec in engine.created)
    assert engine.attached_open == 0


def test_a_flood_is_shown_up_to_the_budget_once_truncated_and_read_to_its_end(
    engine: FakeEngine, course: Path, tmp_path: Path
) -> None:
    ended: list[bool] = []

    def stream() -> Iterator[bytes]:
        yield from flood(b"y\nthe very last line\n")
        ended.append(True)

    engine.stream = stream
    engine.exit_code = 3
    events = Events()
    with pytest.raises(BuildError) as failed:
        build(engine, request(course, tmp_path), events)
    assert len(events.outputs) == SHOWN_LINES
    truncated = [w for w in events.warnings if "output truncated" in w]
    assert len(truncated) == 1, events.warnings
    assert ended == [True], "the rest of the output was not read: the container would block"
    assert failed.value.details.splitlines()[-1] == "the very last line"
    assert engine.live == ([], [])


def test_an_interrupt_in_a_flood_closes_the_stream_removes_all_and_says_so(
    engine: FakeEngine, course: Path, tmp_path: Path
) -> None:
    engine.stream = lambda: flood(interrupt_after=FLOOD_CHUNKS // 2)
    with pytest.raises(Interrupted) as stopped:
        build(engine, request(course, tmp_path))
    assert stopped.value.message == (
        "interrupted (SIGINT); everything this run started was removed (1 container and 1 volume)"
    )
    assert engine.live == ([], [])
    assert engine.attached_open == 0
    calls = engine.calls
    assert calls.index("attach closed") < len(calls) - 1 - calls[::-1].index("remove_container")


def test_a_clean_up_the_engine_cannot_finish_is_said_not_blamed_on_it(
    engine: FakeEngine, course: Path, tmp_path: Path
) -> None:
    engine.stream = lambda: flood(interrupt_after=10)
    # The first removal is of the container that filled the volume, before assemble.
    engine.fail_at, engine.fail_with = "remove_container#2", EngineUnavailable
    with pytest.raises(Interrupted) as stopped:
        build(engine, request(course, tmp_path))
    left = next(iter(engine.containers_))
    assert stopped.value.message == (
        f"interrupted (SIGINT); removed 1 volume, but could not remove container {left}: "
        "`nbs2i prune` removes what is left"
    )


def test_an_endless_line_is_cut_and_memory_stays_flat(
    engine: FakeEngine, course: Path, tmp_path: Path
) -> None:
    import tracemalloc

    engine.stream = lambda: itertools.islice(itertools.repeat(b"z" * (64 << 10)), 1_000)
    events = Events()
    tracemalloc.start()
    try:
        build(engine, request(course, tmp_path), events)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events.outputs and all(len(line) <= 4096 for line in events.outputs)
    assert peak < 8 << 20, f"peak {peak >> 20} MiB for 64 MiB of one line"

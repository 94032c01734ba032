"""SIGTERM and SIGHUP stop a build the way Ctrl-C does, and an interrupt tells the truth.

A process manager sends SIGTERM, a closed terminal or a dropped SSH session
SIGHUP; each must remove what the build made (assemble container, volumes,
the clone), exit 130 and say so in its last line. A signal that arrives while
the tag moves to the new image is held until the move is done, and the
message then says where the tag points. Signals here are real: sent to the
`nbs2i` process, or to this process from inside the step that moves the tag.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nbs2i import interrupts, labels
from nbs2i.building import tagging
from nbs2i.engine import Docker, Engine, ImageConfig, ImageInfo
from nbs2i.errors import NotFound
from tests.support import cli
from tests.support.gitserver import GitDaemon, HangingServer
from tests.support.hostile import notebook_tree, publish
from tests.support.sandbox import Sandbox
from tests.support.session import LABEL_PAIRS, SESSION_FILTER, tag

STOPS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}
# Seconds from the signal to the exit, clean-up included.
STOP_BUDGET = 30


def assemble_containers(engine: Docker) -> list[str]:
    return [
        c.name
        for c in engine.containers(labels=[SESSION_FILTER, f"{labels.ROLE}={labels.ROLE_ASSEMBLE}"])
    ]


def stopped(run: cli.Running, signum: int) -> tuple[cli.Result, float]:
    run.signal(signum)
    sent = time.monotonic()
    result = run.finish(timeout=STOP_BUDGET)
    return result, time.monotonic() - sent


def assert_interrupted(result: cli.Result) -> None:
    assert result.code == 130, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("nbs2i: interrupted"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", list(STOPS.values()), ids=list(STOPS))
def test_a_signal_during_assemble_removes_everything(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path, signum: int
) -> None:
    # A served repository (a clone to remove) and the CA bundle (a volume to remove).
    with GitDaemon(tmp_path / "served") as daemon:
        publish(notebook_tree(tmp_path / "tree"), daemon.base, "course.git")
        image = box.image(tag("signalled"))
        run = box.running(
            *box.build_args(daemon.url("course.git"), image, tiny_builder, "-e", "TINY_SLEEP=120")
        )
        try:
            run.wait_for("sleeping", timeout=60)
            assert assemble_containers(engine), "no assemble container to clean up"
            assert list(box.tmp.iterdir()), "no clone to clean up"
            result, took = stopped(run, signum)
        finally:
            run.finish(timeout=STOP_BUDGET)
    assert_interrupted(result)
    assert took < STOP_BUDGET
    assert not engine.image_exists(image)
    box.check()


def _git_processes(port: int) -> list[int]:
    """Processes of this machine whose command line names 127.0.0.1:port."""
    found = []
    needle = f"127.0.0.1:{port}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_during_the_fetch_stops_git_and_removes_the_clone(
    box: Sandbox, tiny_builder: str, signum: int
) -> None:
    with HangingServer() as hanging:
        run = box.running(*box.build_args(hanging.url(), box.image(tag("sig")), tiny_builder))
        try:
            run.wait_for("Fetching source", timeout=60)
            deadline = time.monotonic() + 20
            while hanging.connections == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert hanging.connections, "git never connected"
            result, took = stopped(run, signum)
        finally:
            run.finish(timeout=STOP_BUDGET)
        # Give an orphaned git a moment to show; then none may be left.
        deadline = time.monotonic() + 5
        while _git_processes(hanging.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _git_processes(hanging.port)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert_interrupted(result)
    assert took < STOP_BUDGET
    assert not left, f"git still running after nbs2i exited: {left}"


# -- the tag moves: a real signal from inside the step ---------------------------------


class Unhandled(Exception):
    """A stop signal reached this process's own handler: nbs2i did not take it."""


@pytest.fixture
def guarded() -> Iterator[None]:
    """Signals sent to this process end the test, not the test run, if nbs2i
    does not handle them (or lets a KeyboardInterrupt out where it must hold it)."""

    def fail(signum: int, _frame: object) -> None:
        raise Unhandled(f"signal {signal.Signals(signum).name} was not handled by nbs2i")

    old = {sig: signal.signal(sig, fail) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@dataclass
class TagEngine:
    """Just enough engine for tagging.replace: one tag, images by id."""

    tags: dict[str, str] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    removed: list[str] = field(default_factory=list)

    def inspect_image(self, ref: str) -> ImageInfo:
        image = self.tags.get(ref, ref if ref in self.images else "")
        if not image:
            raise NotFound(f"image {ref} is not in the engine")
        return ImageInfo(image, tuple(t for t, i in self.tags.items() if i == image), ImageConfig())

    def remove_image(self, ref: str, force: bool = False) -> None:
        self.images.discard(ref)
        self.removed.append(ref)


@contextlib.contextmanager
def held_until_done() -> Iterator[None]:
    """A KeyboardInterrupt here means the signal was acted on mid-step: a failure
    of this test, not an abort of the run."""
    try:
        yield
    except KeyboardInterrupt:
        pytest.fail("a stop signal was acted on while the tag moved", pytrace=False)


def signal_then(signum: int, then: Callable[[], str]) -> Callable[[], str]:
    def make() -> str:
        os.kill(os.getpid(), signum)
        time.sleep(0.05)  # the handler runs now, inside the step
        return then()

    return make


@pytest.mark.parametrize("signum", list(STOPS.values()), ids=list(STOPS))
def test_a_signal_while_the_tag_moves_is_held_and_the_message_is_true(
    guarded: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fake = TagEngine(tags={"course:1": "sha256:" + "a" * 64}, images={"sha256:" + "a" * 64})
    new = "sha256:" + "b" * 64

    def move() -> str:
        fake.images.add(new)
        fake.tags["course:1"] = new
        return new

    with (
        held_until_done(),
        interrupts.interrupting(),
        pytest.raises(tagging.BuildInterrupted) as caught,
    ):
        tagging.replace(fake, "course:1", signal_then(signum, move))  # type: ignore[arg-type]
    assert caught.value.exit_code == 130
    assert f"course:1 is now {new[7:19]}" in str(caught.value)
    # The old image lost its tag: removed, as after an uninterrupted build.
    assert fake.removed == ["sha256:" + "a" * 64]
    assert fake.tags["course:1"] == new


def test_a_held_signal_is_acted_on_once_the_step_is_done(guarded: None) -> None:
    # Held, not dropped: the interrupt comes as soon as the step has finished.
    finished = []
    with interrupts.interrupting(), pytest.raises(KeyboardInterrupt), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        finished.append(True)
    assert finished == [True]


class SignalOnCommit:
    """The real engine, but the process gets `signum` as the commit or load begins."""

    def __init__(self, engine: Engine, signum: int) -> None:
        self._engine = engine
        self._signum = signum

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def _signal(self) -> None:
        os.kill(os.getpid(), self._signum)
        time.sleep(0.05)

    def commit(self, *args: object, **kwargs: object) -> str:
        self._signal()
        return self._engine.commit(*args, **kwargs)  # type: ignore[arg-type]

    def load_image(self, *args: object, **kwargs: object) -> None:
        self._signal()
        self._engine.load_image(*args, **kwargs)  # type: ignore[arg-type]


def test_an_interrupted_commit_on_the_real_engine_says_where_the_tag_points(
    guarded: None, box: Sandbox, engine: Engine, tiny_builder: str, tmp_path: Path
) -> None:
    from nbs2i.building import BuildRequest, build

    src = notebook_tree(tmp_path / "src")
    image = box.image(tag("interrupted-commit"))
    request = BuildRequest(
        source=str(src), tag=image, builder=tiny_builder, container_labels=LABEL_PAIRS
    )
    before = build(engine, request).image_id
    (src / "more.ipynb").write_text("{}")
    wrapped = SignalOnCommit(engine, signal.SIGTERM)
    with (
        held_until_done(),
        interrupts.interrupting(),
        pytest.raises(tagging.BuildInterrupted) as caught,
    ):
        build(wrapped, request)  # type: ignore[arg-type]
    now = engine.inspect_image(image).id
    assert now != before
    assert f"{image} is now {now[7:19]}" in str(caught.value)
    assert not engine.image_exists(before), "the replaced image was left untagged"
    box.check()


def test_the_cli_reports_an_interrupted_commit_truthfully(
    box: Sandbox, engine: Engine, tiny_builder: str, tmp_path: Path
) -> None:
    # `nbs2i build` itself, with a SIGTERM arriving as the commit starts.
    src = notebook_tree(tmp_path / "src")
    image = box.image(tag("interrupted-cli"))
    wrapper = (
        "import os, signal, time, sys\n"
        "from nbs2i import engine, cli\n"
        "original = engine.Engine.commit\n"
        "def commit(self, *a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.05)\n"
        "    return original(self, *a, **k)\n"
        "engine.Engine.commit = commit\n"
        "sys.argv = ['nbs2i', *sys.argv[1:]]\n"
        "cli.main()\n"
    )
    args = box.build_args(str(src), image, tiny_builder)
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", wrapper, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **box.env},
        timeout=120,
        check=False,
    )
    assert done.returncode == 130, done.stderr
    now = engine.inspect_image(image).id
    last = done.stderr.strip().splitlines()[-1]
    assert f"{image} is now {now[7:19]}" in last, done.stderr
    assert "everything this run started was removed" not in done.stderr

"""A directory of a local source swapped for a symlink while nbs2i streams it.

A real `nbs2i build` of a directory that holds a big sparse file. This test
watches the build's open files (/proc/PID/fd) and, once the big file is open
(the build is streaming it), renames its directory, or a parent of it, and
puts a symlink to a directory of the build machine in its place, as a process
racing the build would. That directory (the test's own) holds a marker under
every name the source uses. The build must fail with one line and leave
nothing, or make an image holding what was in the source; the marker is in
no output line and no byte of the image. Each race runs three times, at
different moments of the stream, where nbs2i writes the layer, and once into
the assemble container (the same walk, the other path that streams it).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbs2i.engine import Docker
from tests.support.hostile import layer_builder, one_error_line, secret_hits
from tests.support.sandbox import Sandbox
from tests.support.session import tag
from tests.support.tracker import Tracker

BIG = 200 << 20  # sparse: nothing this big is written to the test's disk
# Seconds after the big file is seen open (the stream of it takes longer):
# one race each, at three moments of the stream.
DELAYS = (0.0, 0.05, 0.15)
BUILD_BUDGET = 120


@dataclass(frozen=True)
class Race:
    id: str
    big: str  # the file being streamed when the swap happens
    swapped: str  # the directory renamed and replaced by a symlink
    refused: bool  # the walk meets the symlink (refused) or is inside already (read as it was)

    @property
    def after(self) -> str:
        """A file the stream reaches after the swap, in the swapped directory."""
        return f"{self.swapped}/z-after.txt" if self.refused else self.big.replace("big", "z-after")


RACES = [
    Race("its-directory", "d/big.bin", "d", refused=False),
    Race("depth-2", "a/b/big.bin", "a/b", refused=False),
    Race("roots-child-above-it", "a/b/big.bin", "a", refused=False),
    Race("roots-child-not-yet-entered", "big.bin", "d", refused=True),
]


@pytest.fixture(scope="module")
def layered(engine: Docker, session_tracker: Tracker, tiny_builder: str) -> str:
    return layer_builder(engine, tiny_builder, session_tracker.image(tag("tiny-layer-swap")))


def make_source(root: Path, race: Race, own: bytes) -> None:
    (root / race.big).parent.mkdir(parents=True, exist_ok=True)
    with (root / race.big).open("wb") as handle:
        handle.truncate(BIG)
    (root / race.after).parent.mkdir(parents=True, exist_ok=True)
    (root / race.after).write_bytes(own)
    (root / "lecture.ipynb").write_text('{"cells": [], "nbformat": 4, "nbformat_minor": 5}')


def make_host(host: Path, race: Race, marker: bytes) -> Path:
    """The build machine's directory the symlink points at: the marker under
    every name the stream could look for below the swapped directory."""
    for rel in (race.after, race.big):
        if rel.startswith(f"{race.swapped}/"):
            path = host / Path(rel).relative_to(race.swapped)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(marker)
    return host


def is_open(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


class Swapper(threading.Thread):
    """Swaps `directory` for a link to `host` once `pid` has `big` open."""

    def __init__(self, pid: int, big: Path, directory: Path, host: Path, delay: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.big, self.directory, self.host, self.delay = pid, big, directory, host, delay
        self.swapped = self.during = False

    def run(self) -> None:
        deadline = time.monotonic() + BUILD_BUDGET
        while time.monotonic() < deadline and os.path.exists(f"/proc/{self.pid}"):
            if is_open(self.pid, self.big):
                time.sleep(self.delay)
                old = self.directory.with_name(self.directory.name + ".old")
                self.directory.rename(old)
                self.directory.symlink_to(self.host, target_is_directory=True)
                self.swapped = True
                inside = self.big.is_relative_to(self.directory)
                moved = old / self.big.relative_to(self.directory) if inside else self.big
                self.during = is_open(self.pid, moved)
                return
            time.sleep(0.002)


def race_once(
    box: Sandbox, engine: Docker, builder: str, root: Path, race: Race, delay: float, *more: str
) -> bool:
    """One build with the swap; whether the swap came while the big file streamed."""
    marker = f"HOST-MARKER-{secrets.token_hex(8)}".encode()
    own = f"SOURCE-OWN-{secrets.token_hex(8)}".encode()
    make_source(root, race, own)
    host = make_host(root.parent / "host", race, marker)
    image = box.image(tag(f"swap-{race.id}"))
    run = box.running(*box.build_args(str(root), image, builder, *more))
    swapper = Swapper(run.proc.pid, root / race.big, root / race.swapped, host, delay)
    swapper.start()
    result = run.finish(timeout=BUILD_BUDGET)
    swapper.join(timeout=10)
    assert swapper.swapped, f"the build never opened {race.big}: {result.stderr}"
    assert marker.decode() not in result.stdout + result.stderr
    if race.refused:
        assert result.code != 0, "a build through a swapped directory was not refused"
        one_error_line(result, race.swapped)
        assert not engine.image_exists(image)
    else:
        assert result.code == 0, result.stderr
        found = secret_hits(image, [marker, own])
        assert found == [own.decode()], f"the image holds {found}"
        engine.remove_image(image, force=True)
    shutil.rmtree(root.parent)
    return swapper.during


def run_races(
    box: Sandbox, engine: Docker, builder: str, race: Race, delays: tuple[float, ...], *more: str
) -> None:
    during = [
        race_once(box, engine, builder, box.tmp.parent / f"race-{n}" / "src", race, delay, *more)
        for n, delay in enumerate(delays)
    ]
    assert any(during), "no swap came while the big file streamed: the race was not run"
    box.check()


@pytest.mark.parametrize("race", RACES, ids=[r.id for r in RACES])
def test_a_swap_while_the_written_layer_streams_never_brings_a_host_file_in(
    box: Sandbox, engine: Docker, layered: str, race: Race
) -> None:
    run_races(box, engine, layered, race, DELAYS)


@pytest.mark.parametrize("race", RACES, ids=[r.id for r in RACES])
def test_a_swap_while_the_source_streams_into_assemble_never_brings_a_host_file_in(
    box: Sandbox, engine: Docker, tiny_builder: str, race: Race
) -> None:
    # The same walk as the written layer's: one race each, mid-stream.
    run_races(box, engine, tiny_builder, race, DELAYS[1:2], "-q")

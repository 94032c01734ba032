"""Parallel builds of one tag: each succeeds, says which image it made, and
nothing is left untagged.

CI runs builds of the same branch side by side, and a teacher presses the
button twice. Four `nbs2i build` processes of one tag start at once, on the
container path (--always-assemble, and the tiny builder's default), on the
path where nbs2i writes the notebook layer itself, and with a dependency
layer that all four want to make.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nbs2i import labels
from nbs2i.engine import Docker
from tests.support.gitrepo import git
from tests.support.hostile import layer_builder, notebook_tree, write
from tests.support.sandbox import Sandbox
from tests.support.session import SESSION_FILTER, tag
from tests.support.tracker import Tracker

PARALLEL = 4
BUDGET = 240
DEPS_ROUNDS = 3


@pytest.fixture(scope="module")
def layered(engine: Docker, session_tracker: Tracker, tiny_builder: str) -> str:
    return layer_builder(engine, tiny_builder, session_tracker.image(tag("tiny-layer")))


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str
    as_json: bool

    def image(self, ref: str) -> str:
        """The id of the image this build says it made (full with --json, else 12
        hex digits)."""
        if self.as_json:
            done = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
            events = [e for e in done if e["event"] == "done"]
            assert len(events) == 1, self.stdout
            return str(events[0]["image"])
        found = re.findall(rf"Built {re.escape(ref)} \(([0-9a-f]{{12}})\)", self.stderr)
        assert len(found) == 1, self.stderr
        return found[0]

    def method(self) -> str:
        assert self.as_json
        done = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
        return str(next(e for e in done if e["event"] == "done")["method"])


def run_parallel(box: Sandbox, args: list[str], tmp_path: Path) -> list[Finished]:
    env = {**os.environ, **box.env}
    env.pop("NBS2I_DEBUG", None)
    procs = []
    for i in range(PARALLEL):
        as_json = i % 2 == 1
        out = (tmp_path / f"out{i}").open("w+")
        err = (tmp_path / f"err{i}").open("w+")
        command = [sys.executable, "-m", "nbs2i", *args, *(["--json"] if as_json else [])]
        procs.append(
            (subprocess.Popen(command, stdout=out, stderr=err, env=env), out, err, as_json)
        )
    deadline = time.monotonic() + BUDGET
    finished = []
    for proc, out, err, as_json in procs:
        try:
            proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other, *_ in procs:
                other.kill()
                other.wait(timeout=10)
            pytest.fail(f"parallel builds still busy after {BUDGET} s", pytrace=False)
        out.seek(0)
        err.seek(0)
        finished.append(Finished(proc.returncode, out.read(), err.read(), as_json))
        out.close()
        err.close()
    return finished


def untagged_of_session(engine: Docker) -> list[str]:
    """Untagged images of this session, with what they were for (nbs2i.role)."""
    return [
        f"{i.id[:19]} ({i.labels.get(labels.ROLE, '?')})"
        for i in engine.images(labels=[SESSION_FILTER])
        if not i.tags
    ]


def assert_parallel_builds(engine: Docker, ref: str, finished: list[Finished]) -> list[str]:
    for result in finished:
        assert result.code == 0, result.stderr
    made = [result.image(ref) for result in finished]
    now = engine.inspect_image(ref).id
    assert any(now.startswith(m) or now[7:].startswith(m) for m in made), (now, made)
    assert not untagged_of_session(engine), untagged_of_session(engine)
    return made


@pytest.mark.parametrize(
    "options", [("--always-assemble",), ()], ids=["always-assemble", "tiny-default"]
)
def test_four_container_builds_of_one_tag(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path, options: tuple[str, ...]
) -> None:
    src = notebook_tree(tmp_path / "src")
    ref = box.image(tag("parallel"))
    args = box.build_args(str(src), ref, tiny_builder, *options)
    assert_parallel_builds(engine, ref, run_parallel(box, args, tmp_path))


def test_four_written_layer_builds_of_one_tag(
    box: Sandbox, engine: Docker, layered: str, tmp_path: Path
) -> None:
    # A checkout: the commit's time makes the build reproducible.
    src = notebook_tree(tmp_path / "src")
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "lecture")
    ref = box.image(tag("parallel-layer"))
    finished = run_parallel(box, box.build_args(str(src), ref, layered), tmp_path)
    made = assert_parallel_builds(engine, ref, finished)
    assert {f.method() for f in finished if f.as_json} == {"layer"}
    # The same commit makes the same image, whoever wins.
    assert len({m[:19] if m.startswith("sha256:") else f"sha256:{m}" for m in made}) == 1


# The dependency phase waits a little, so that all four builds are making the
# layer at once, as they would with a real `pip install`.
SLOW_DEPS = """#!/bin/sh
if [ "${NBS2I_ASSEMBLE_PHASE:-}" = deps ]; then sleep 3; fi
exec /usr/libexec/s2i/assemble
"""


def test_four_builds_that_all_make_the_dependency_layer(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path
) -> None:
    # Which loser's layer is left depends on who commits when: a few rounds, each
    # with a layer of its own to make, so that a leftover shows when there is one.
    for round_ in range(DEPS_ROUNDS):
        src = notebook_tree(tmp_path / f"src{round_}")
        write(src, "requirements.txt", f"# {tmp_path.name} {round_}\nnumpy\n")
        write(src, ".s2i/bin/assemble", SLOW_DEPS, mode=0o755)
        ref = box.image(tag(f"parallel-deps{round_}"))
        finished = run_parallel(box, box.build_args(str(src), ref, tiny_builder), tmp_path)
        assert_parallel_builds(engine, ref, finished)

"""What a killed build leaves is mentioned, listed and removed, and only that.

A build is SIGKILLed in the middle of assemble (nothing of nbs2i runs after
that): its assemble container (still running), the volume with the CA bundle
and its clone stay. The next build says so; `nbs2i prune --dry-run` lists
them and removes nothing; `nbs2i prune` removes them, and leaves alone what
belongs to a process that still lives (named by this test's own pid) and a
workspace volume.

`nbs2i prune` also removes caches that are no one's leftovers: dependency
layers no image uses and the builder's build stages, everyone's on a shared
engine. The removal step here runs the real command with that listing
switched off, so that the test never deletes another person's caches; the
dry run shows it all.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbs2i import labels
from nbs2i.engine import ContainerSpec, Docker
from nbs2i.errors import Nbs2iError
from nbs2i.prune import owned_name
from tests.support.cli import Result
from tests.support.gitserver import GitDaemon
from tests.support.hostile import notebook_tree, publish
from tests.support.sandbox import Sandbox
from tests.support.session import LABELS, SESSION_FILTER, tag

# `nbs2i prune` with the caches' listing off: what this test may remove is its own.
ORPHANS_ONLY = (
    "import sys\n"
    "from nbs2i import cli, prune\n"
    "orphans = prune.find_orphans  # renamed? fail here, never fall back to all\n"
    "prune.find = lambda engine, temp_root=None: orphans(engine, temp_root)\n"
    "remove = prune.remove  # and no image, whatever lists it\n"
    "prune.remove = lambda engine, items: remove(engine, [i for i in items if i.kind != 'image'])\n"
    "sys.argv = ['nbs2i', 'prune', *sys.argv[1:]]\n"
    "cli.main()\n"
)


def session_things(engine: Docker) -> tuple[set[str], set[str]]:
    containers = {c.name for c in engine.containers(labels=[SESSION_FILTER])}
    volumes = {v.name for v in engine.volumes(labels=[SESSION_FILTER])}
    return containers, volumes


def prune_orphans(box: Sandbox) -> Result:
    done = subprocess.run(
        [sys.executable, "-c", ORPHANS_ONLY],
        capture_output=True,
        text=True,
        env={**os.environ, **box.env},
        timeout=120,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.mark.matrix
def test_leftovers_of_a_killed_build_are_mentioned_listed_and_pruned(
    box: Sandbox, engine: Docker, tiny_builder: str, tmp_path: Path
) -> None:
    with GitDaemon(tmp_path / "served") as daemon:
        publish(notebook_tree(tmp_path / "tree"), daemon.base, "course.git")
        args = box.build_args(
            daemon.url("course.git"), box.image(tag("killed")), tiny_builder, "-e", "TINY_SLEEP=120"
        )
        run = box.running(*args)
        try:
            run.wait_for("sleeping", timeout=60)
            run.proc.kill()
        finally:
            run.finish(timeout=30)
    containers, volumes = session_things(engine)
    clones = {str(p) for p in box.tmp.iterdir()}
    assert containers and volumes and clones, (containers, volumes, clones)

    # What a live process owns, and a student's workspace: never leftovers.
    live = engine.create_container(
        ContainerSpec(
            tiny_builder,
            command=("true",),
            name=owned_name(labels.ROLE_ASSEMBLE),
            labels={**LABELS, labels.ROLE: labels.ROLE_ASSEMBLE},
        )
    )
    workspace = engine.create_volume(
        f"alice-{tmp_path.name}"[:60],
        labels={**LABELS, labels.ROLE: labels.ROLE_WORKSPACE},
    )
    live_dir = box.tmp / f"nbs2i-src-{os.getpid()}-live"
    live_dir.mkdir()
    try:
        later = box.nbs2i(
            *box.build_args(
                str(notebook_tree(tmp_path / "src")), box.image(tag("later")), tiny_builder
            )
        )
        assert later.code == 0, later.stderr
        mention = [line for line in later.stderr.splitlines() if "leftovers" in line]
        assert mention and "nbs2i prune" in mention[0], later.stderr

        listed = box.nbs2i("prune", "--dry-run")
        assert listed.code == 0, listed.stderr
        for name in containers:
            assert f"would remove container {name}:" in listed.stdout, listed.stdout
        for name in volumes:
            assert f"would remove volume {name}:" in listed.stdout, listed.stdout
        for path in clones:
            assert f"would remove directory {path}:" in listed.stdout, listed.stdout
        for kept in (engine.inspect_container(live).name, workspace, str(live_dir)):
            assert kept not in listed.stdout, listed.stdout
        assert session_things(engine)[0] >= containers, "the dry run removed something"

        pruned = prune_orphans(box)
        assert pruned.code == 0, pruned.stderr
        now_containers, now_volumes = session_things(engine)
        assert not containers & now_containers, now_containers
        assert not volumes & now_volumes, now_volumes
        assert not [p for p in clones if Path(p).exists()]
        assert engine.inspect_container(live).name in now_containers
        assert workspace in now_volumes
        assert live_dir.exists()
    finally:
        with contextlib.suppress(Nbs2iError):
            engine.remove_container(live)
        with contextlib.suppress(Nbs2iError):
            engine.remove_volume(workspace)
        live_dir.rmdir()

"""What a test run left in the engine and on disk.

`assert_nothing_left()` is the one check every clean-up test uses: no
container, volume or network of this session, no untagged image of it, no
temp directory that nbs2i makes (clones, contexts) beyond those that were
there before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nbs2i import labels
from nbs2i.engine import Docker
from tests.support import docker_api
from tests.support.cli import Result, Running, interrupt
from tests.support.poll import until
from tests.support.session import SESSION_FILTER

# Temp directories nbs2i creates (clones of sources, build contexts).
TEMP_PATTERNS = ("nbs2i-*",)


@dataclass(frozen=True)
class Leftovers:
    containers: tuple[str, ...]
    volumes: tuple[str, ...]
    networks: tuple[str, ...]
    untagged_images: tuple[str, ...]
    temp_dirs: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (
            self.containers
            or self.volumes
            or self.networks
            or self.untagged_images
            or self.temp_dirs
        )


def temp_dirs() -> set[str]:
    root = Path(tempfile.gettempdir())
    return {str(p) for pattern in TEMP_PATTERNS for p in root.glob(pattern)}


def find(
    engine: Docker, selector: str = SESSION_FILTER, temp_before: set[str] | None = None
) -> Leftovers:
    selector_list = [selector]
    return Leftovers(
        containers=tuple(c.id[:12] for c in engine.containers(labels=selector_list)),
        volumes=tuple(v.name for v in engine.volumes(labels=selector_list)),
        networks=tuple(docker_api.networks(labels=selector_list)),
        untagged_images=tuple(
            i.id[:19] for i in engine.images(labels=selector_list, dangling=True)
        ),
        temp_dirs=tuple(sorted(temp_dirs() - temp_before)) if temp_before is not None else (),
    )


def assert_nothing_left(
    engine: Docker, selector: str = SESSION_FILTER, temp_before: set[str] | None = None
) -> None:
    left = find(engine, selector, temp_before)
    assert left.empty, f"left behind: {left}"


def assert_a_signal_leaves_nothing(
    engine: Docker, args: list[str], selector: str, role: str, signum: int, timeout: float
) -> None:
    """`nbs2i ARGS... --label SELECTOR`, signalled once its container (labelled
    with `role`) runs: exit 130, one line saying so, nothing of it left."""
    running = Running(*args, "--label", selector)
    try:
        # Wait (bounded) until the container is up, then signal.
        started = until(
            lambda: [c for c in engine.containers(labels=[selector]) if c.running],
            timeout=timeout,
            what=f"{args[0]}'s container running",
        )
        assert all(c.labels.get(labels.ROLE) == role for c in started)
        result = interrupt(running, signum)
    finally:
        running.finish(timeout=30)
    assert result.code == 130, result.stderr
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr
    assert_nothing_left(engine, selector)


# `nbs2i prune` as a user runs it, removing only the containers and volumes
# named in NBS2I_TEST_PRUNE_ONLY and the temp directories of its TMPDIR (a
# shared engine holds other runs' leftovers, some left there on purpose by
# other tests), never a cache.
_PRUNE_ONLY = (
    "import os, sys\n"
    "from nbs2i import cli, prune\n"
    "names = set(os.environ['NBS2I_TEST_PRUNE_ONLY'].split('\\n'))\n"
    "orphans = prune.find_orphans  # renamed? fail here, never fall back to all\n"
    "prune.find = lambda engine, temp_root=None: [\n"
    "    i for i in orphans(engine, temp_root) if i.kind == 'directory' or i.name in names\n"
    "]\n"
    "sys.argv = ['nbs2i', 'prune', *sys.argv[1:]]\n"
    "cli.main()\n"
)


def prune_only(names: Iterable[str], env: Mapping[str, str]) -> Result:
    """`nbs2i prune` (in the environment `env`: its TMPDIR) limited to `names`."""
    done = subprocess.run(
        [sys.executable, "-c", _PRUNE_ONLY],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "NBS2I_TEST_PRUNE_ONLY": "\n".join(names)},
        timeout=120,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)

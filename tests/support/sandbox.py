"""One test's private corner of the machine, and the proof it is left clean.

nbs2i makes its temp directories (clones, layers) in $TMPDIR, where other
people's builds on this machine make theirs too; a test that judged the shared
temp directory would judge theirs. So each test gives nbs2i a TMPDIR of its own
(the `nbs2i` processes through the environment, the library through
`tempfile.tempdir`) and a cache directory of its own (tag locks). At the end,
`check()` asserts that nothing of this session is in the engine and that the
private temp directory is empty, after removing whatever was left, so that a
failing test does not leave its mess to the next one.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nbs2i.engine import Docker
from nbs2i.errors import Nbs2iError
from tests.support import cli, leftovers
from tests.support.session import SESSION_FILTER, label_args


@dataclass
class Sandbox:
    engine: Docker
    tmp: Path  # nbs2i's TMPDIR
    cache: Path  # nbs2i's XDG_CACHE_HOME
    env: dict[str, str] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)

    def image(self, ref: str) -> str:
        """An image this test may make; removed at the end whether it was made or not."""
        self.images.append(ref)
        return ref

    def nbs2i(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> cli.Result:
        """`nbs2i ARGS` in this sandbox. Still busy after `timeout` s: stopped as a
        user would stop it (SIGTERM, so it cleans up; SIGKILL 15 s later) and the
        test fails saying so."""
        run = cli.Running(*args, env={**self.env, **(env or {})})
        try:
            run.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            run.signal(signal.SIGTERM)
            run.finish(timeout=15)
            pytest.fail(f"nbs2i {' '.join(args[:1])} was still busy after {timeout} s", False)
        return run.finish(timeout=15)

    def running(self, *args: str, env: Mapping[str, str] | None = None) -> cli.Running:
        return cli.Running(*args, env={**self.env, **(env or {})})

    def build_args(self, source: str, tag: str, builder: str, *more: str) -> list[str]:
        """`build SOURCE TAG --builder B` with the session's labels on what it creates."""
        return ["build", source, tag, "--builder", builder, *label_args("--container-label"), *more]

    def left(self) -> leftovers.Leftovers:
        return leftovers.find(self.engine, temp_before=set())

    def check(self) -> None:
        _remove_images(self.engine, self.images)
        found = self.left()
        stray = sorted(p.name for p in self.tmp.iterdir())
        _remove(self.engine, found, self.tmp)
        assert found.empty, f"left behind: {found}"
        assert not stray, f"left in the temp directory: {stray}"


def _remove_images(engine: Docker, refs: list[str]) -> None:
    """The test's images, and the dependency layers its builds made: their key holds
    the session's own builder, so no one else can be using them."""
    caches = [
        tag
        for image in engine.images(labels=[SESSION_FILTER])
        for tag in image.tags
        if tag.startswith("nbs2i-cache/")
    ]
    for ref in [*reversed(refs), *caches]:
        with contextlib.suppress(Nbs2iError):
            engine.remove_image(ref, force=True)


def _remove(engine: Docker, found: leftovers.Leftovers, tmp: Path) -> None:
    for container in engine.containers(labels=[SESSION_FILTER]):
        with contextlib.suppress(Nbs2iError):
            engine.remove_container(container.id)
    for volume in engine.volumes(labels=[SESSION_FILTER]):
        with contextlib.suppress(Nbs2iError):
            engine.remove_volume(volume.name)
    for image in found.untagged_images:
        with contextlib.suppress(Nbs2iError):
            engine.remove_image(image, force=True)
    for path in tmp.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def sandbox(engine: Docker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    tmp = tmp_path / "nbs2i-tmp"
    cache = tmp_path / "nbs2i-cache"
    tmp.mkdir()
    cache.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    box = Sandbox(engine, tmp, cache, {"TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache)})
    yield box
    box.check()

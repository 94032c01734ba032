"""The upstream `s2i` CLI in the tests: found on PATH, run against this
machine's engine with a bounded timeout, and whatever it leaves removed.

s2i has no option to label what it creates, so its things are found by name:
it names every container it starts `s2i_<image>_<8 hex>` after the image the
container runs (pkg/docker/docker.go), and labels every image it commits
`io.openshift.s2i.build.image=<builder>`. The tests give it a builder
reference private to the session, so both name this run's things only.

s2i 1.3.8 asks the builder's *registry* for the builder's labels before
every build, even when the image is in the engine (it inspects
`docker://NAME`), and with `--incremental` the engine pulls a previous image
it does not have. A bare name means Docker Hub. Every reference the tests
hand to s2i is therefore under LOOPBACK_REGISTRY, a registry name on
127.0.0.1 where nothing listens: those attempts are refused at once on this
machine, s2i warns, and reads the labels from the engine instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nbs2i.engine import Docker
from nbs2i.errors import Nbs2iError
from tests.support.session import tag

# The API version s2i 1.3.8 must be told to speak to Debian's docker.io
# (20.10, API 1.41); every newer engine still speaks it.
API_VERSION = "1.41"
LOOPBACK_REGISTRY = "127.0.0.1:1"
# The label s2i puts on every image it commits (and copies into Dockerfiles).
BUILD_IMAGE_LABEL = "io.openshift.s2i.build.image"
# One s2i step (a build, a usage) on this 2-core machine takes seconds;
# minutes mean it hangs.
TIMEOUT = 300.0


def binary() -> str | None:
    return shutil.which("s2i")


def local_tag(name: str) -> str:
    """A reference private to this run that no registry outside this machine
    is ever asked about (see the module docstring)."""
    return f"{LOOPBACK_REGISTRY}/{tag(name)}"


def container_prefix(image: str) -> str:
    """The name prefix of the containers s2i starts from `image`."""
    return "s2i_" + re.sub(r"[^0-9A-Za-z]", "_", image) + "_"


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DOCKER_API_VERSION", API_VERSION)
    return env


@dataclass(frozen=True)
class Result:
    command: str
    code: int
    output: str  # stdout and stderr together: s2i logs (and prints usage) on stderr
    seconds: float
    containers_left: tuple[str, ...]  # s2i's own containers it did not remove
    temp_left: tuple[str, ...]  # what it left in its temporary directory

    def expect_ok(self) -> Result:
        """Fails unless s2i succeeded and cleaned up after itself. Its exit
        code alone says little: a refused option prints help and exits 0."""
        assert self.code == 0, f"{self.command} exited {self.code}:\n{self.output}"
        for sign in ("Build failed", "ERROR:", "Usage:"):
            assert sign not in self.output, f"{self.command}:\n{self.output}"
        assert not self.containers_left, f"s2i left containers {self.containers_left}"
        assert not self.temp_left, f"s2i left {self.temp_left} in its temp dir"
        return self


class S2i:
    """Runs s2i as a user would (a separate process, its exit code and log) and
    removes what it leaves: the containers it starts from `images` (give
    every image s2i will run: the builder, a previous image of --incremental)
    and its temporary directory."""

    def __init__(self, engine: Docker, path: str, images: Iterable[str]) -> None:
        self.engine = engine
        self.path = path
        self.prefixes = tuple(container_prefix(i) for i in images)

    def own(self, image: str) -> None:
        """s2i will also run containers from `image` (save-artifacts, rebuild)."""
        self.prefixes += (container_prefix(image),)

    def __call__(self, *args: str, cwd: Path | None = None, timeout: float = TIMEOUT) -> Result:
        return self._run([self.path, *args], " ".join(("s2i", *args)), cwd, timeout)

    def line(self, text: str, cwd: Path, timeout: float = TIMEOUT) -> Result:
        """A command line as a user would paste it into a shell in `cwd`."""
        return self._run(["/bin/sh", "-c", text], text, cwd, timeout)

    def _run(self, argv: list[str], shown: str, cwd: Path | None, timeout: float) -> Result:
        before = {c.id for c in self.engine.containers()}
        scratch = Path(tempfile.mkdtemp(prefix="nbs2i-test-s2i-"))
        env = {**environment(), "TMPDIR": str(scratch)}
        env["PATH"] = f"{Path(self.path).parent}{os.pathsep}{env.get('PATH', '')}"
        started = time.monotonic()
        try:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
            )
            code, output = done.returncode, done.stdout
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            code = -9
            output = out.decode() if isinstance(out, bytes) else out
            output += f"\n(killed after {timeout:g} s)"
        finally:
            seconds = time.monotonic() - started
            left = self._sweep(before)
            temp_left = tuple(sorted(p.name for p in scratch.iterdir()))
            shutil.rmtree(scratch, ignore_errors=True)
        return Result(shown, code, output, seconds, left, temp_left)

    def _sweep(self, before: set[str]) -> tuple[str, ...]:
        """Remove s2i's containers that appeared during the run; their names."""
        left = [
            c
            for c in self.engine.containers()
            if c.id not in before and c.name.startswith(self.prefixes)
        ]
        for container in left:
            with contextlib.suppress(Nbs2iError):
                self.engine.remove_container(container.id)
        return tuple(c.name for c in left)


def remove_images_built_from(engine: Docker, builder: str) -> list[str]:
    """Remove every image s2i (or a Dockerfile it wrote) built from `builder`,
    tagged or not: the images a build replaced under the same tag stay in the
    engine untagged (s2i removes them only with --rm). The ids removed."""
    removed = []
    for image in engine.images(labels=[f"{BUILD_IMAGE_LABEL}={builder}"]):
        with contextlib.suppress(Nbs2iError):
            engine.remove_image(image.id, force=True)
            removed.append(image.id)
    return removed


def usage_commands(text: str, command: str) -> list[str]:
    """The lines of a usage text that run `command` (e.g. "s2i build"), with
    continuation lines joined and trailing comments dropped (s2i strips the
    indentation of what `usage` prints)."""
    lines: list[str] = []
    joined = ""
    for raw in text.splitlines():
        line = raw.strip()
        if joined:
            joined += " " + line.removesuffix("\\").strip()
            if not line.endswith("\\"):
                lines.append(joined)
                joined = ""
        elif line.startswith(command + " "):
            if line.endswith("\\"):
                joined = line.removesuffix("\\").strip()
            else:
                lines.append(line)
    return [re.sub(r"\s+#.*$", "", line) for line in lines]

"""Hostile sources and the checks that nothing of the build machine got out.

A `Sentinel` is a file of the build machine, outside every source, holding a
random token: a repository that makes nbs2i read it shows the token somewhere
(a line of output, a layer, a label, ENV, the history). `secret_hits()` looks
for tokens in all of that at once: the raw `docker save` stream holds every
layer (uncompressed tars: names, link targets, contents) and the image's
config (labels, ENV, history).

Makers of trees write links, FIFOs and devices the way an attacker's
repository (or a careless directory) would have them, and `publish()` turns a
tree into a bare repository, symlinks committed as symlinks, for a real
transport to serve.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nbs2i.engine import Docker
from tests.support import docker_api
from tests.support.cli import Result
from tests.support.gitrepo import git


@dataclass(frozen=True)
class Sentinel:
    """A secret file of the build machine; its token must never leave it."""

    path: Path
    token: bytes

    @property
    def needles(self) -> tuple[bytes, ...]:
        return (self.token,)


def sentinel(directory: Path, name: str = "secret.txt") -> Sentinel:
    directory.mkdir(parents=True, exist_ok=True)
    token = f"SENTINEL-{secrets.token_hex(16)}".encode()
    path = directory / name
    # A line of its own, as /etc/passwd or a key file would have it, and one that
    # parses as KEY=VALUE and as a requirement: every reader would take it.
    path.write_bytes(token + b"\nLEAKED=" + token + b"\n")
    return Sentinel(path, token)


# -- trees ---------------------------------------------------------------------------


def write(root: Path, rel: str, data: bytes | str = b"", mode: int | None = None) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mode is not None:
        path.chmod(mode)
    return path


def link(root: Path, rel: str, target: str | Path) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def fifo(root: Path, rel: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def char_device(root: Path, rel: str, major: int = 1, minor: int = 5) -> Path:
    """A character device (1,5 is /dev/zero); OSError where mknod is not allowed."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(major, minor))
    return path


def notebook_tree(root: Path) -> Path:
    """A plain course: one notebook."""
    write(root, "lecture.ipynb", '{"cells": [], "nbformat": 4, "nbformat_minor": 5}')
    return root


def relative_to_outside(root: Path, rel: str, outside: Path) -> str:
    """A relative link target from `rel` in `root` to `outside` ("../../.../x")."""
    return os.path.relpath(outside, (root / rel).parent)


# apt reads its configuration from the file APT_CONFIG names; /proc/self/environ
# is the environment itself, which apt parses up to its first NUL. The shell
# that starts apt-get writes the environment in its own (hash) order, so the
# hook goes into the value of each name that could come first. Anything that
# runs apt as root with this environment runs the hook, offline.
_APT_HOOK = (
    ' "x"; APT::Update::Pre-Invoke {"echo HOOK-RAN-AS-$(id -u); chmod 666 /etc/passwd";}; //'
)
APT_HOOK_ENVIRONMENT = "APT_CONFIG=/proc/self/environ\n" + "".join(
    f"{name}={_APT_HOOK}\n" for name in ("A", "AA", "AB", "B", "N", "U", "Y1", "Z")
)
# What the hook prints when it runs (a log that echoes the ENV line holds the
# hook unexpanded, with no digit after the dash).
APT_HOOK_RAN = re.compile(r"HOOK-RAN-AS-\d")


# -- repositories ---------------------------------------------------------------------


def publish(tree: Path, served: Path, name: str) -> str:
    """Commit `tree` (links as links, everything added as it is) and make
    `served/name` a bare clone of it; the commit id."""
    git(tree, "init", "-q")
    git(tree, "add", "-A", "--force")
    git(tree, "commit", "-q", "-m", "Course material")
    served.mkdir(parents=True, exist_ok=True)
    git(served, "clone", "-q", "--bare", str(tree), name)
    commit = git(tree, "rev-parse", "HEAD")
    shutil.rmtree(tree / ".git")
    return commit


# -- where a secret may show -----------------------------------------------------------


def output_hits(result: Result, needles: Iterable[bytes]) -> list[str]:
    """Which of stdout / stderr hold a needle."""
    hits = []
    for needle in needles:
        text = needle.decode("utf-8", "replace")
        for where, data in (("stdout", result.stdout), ("stderr", result.stderr)):
            if text in data:
                hits.append(f"{where} holds {text!r}")
    return hits


def _scan_stream(chunks: Iterable[bytes], needles: Sequence[bytes]) -> set[bytes]:
    found: set[bytes] = set()
    keep = max(len(n) for n in needles) - 1
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        found.update(n for n in needles if n in window)
        tail = window[-keep:] if keep else b""
    return found


def secret_hits(image: str, needles: Sequence[bytes]) -> list[str]:
    """The needles found anywhere in `docker save IMAGE`: every layer (names, link
    targets, contents), the config (labels, ENV, CMD) and the history."""
    found = _scan_stream(docker_api.save(image), needles)
    return [n.decode("utf-8", "replace") for n in sorted(found)]


def one_error_line(result: Result, *names: str) -> str:
    """The failure's one line (checked by Result.error_line), naming each of `names`."""
    line = result.error_line
    for name in names:
        assert name in line, f"the error does not name {name}: {line}"
    return line


# -- builders ------------------------------------------------------------------------


def layer_builder(engine: Docker, tiny: str, tag: str) -> str:
    """The tiny builder, declaring what nbs2i's own builder declares (its assemble's
    digest, NOTEBOOK_DIR and the directories down to it), so that nbs2i writes
    the notebook layer itself instead of running a container: the default path
    of a real build, in seconds."""
    from nbs2i import labels
    from nbs2i.builder import shipped_assemble_digest
    from tests.support.images import derived

    dirs = "/opt 0:0 0755;/opt/app-root 1001:0 0775;/opt/app-root/src 1001:0 0775"
    lines = (
        f'LABEL {labels.ASSEMBLE_DIGEST}="{shipped_assemble_digest()}" '
        f'{labels.NOTEBOOK_DIRS}="{dirs}"\n'
        "ENV NOTEBOOK_DIR=/opt/app-root/src"
    )
    return derived(engine, tiny, tag, lines)

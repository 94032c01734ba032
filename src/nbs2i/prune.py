"""What nbs2i left behind, found and removed (`nbs2i prune`).

Every container and volume a build creates is named after its owner:
`nbs2i-<role>-<host>-<pid>-<random>` (a name, unlike a label, never passes
into a committed image). Temp directories carry the pid too. A build removes
all of it when it ends, also on Ctrl-C, SIGTERM and SIGHUP; after a SIGKILL,
a crash or a lost engine it stays, and its owner process is gone: that is
how a leftover is told from the work of a build still running.

Caches are listed as well: dependency layers (`nbs2i-cache/*`) that no other
image is built on, the builder's build stages (they hold the CA bundle given
to `nbs2i builder build` in their history), and images of nbs2i builds that
lost their tag. Students' workspace volumes are never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from nbs2i import labels
from nbs2i.engine import Docker, ImageInfo
from nbs2i.errors import EngineError, NotFound

CACHE_REPOSITORIES = ("nbs2i-cache/",)
# Temp directories nbs2i makes: "<prefix><pid>-<random>".
TEMP_PREFIXES = ("nbs2i-src-", "nbs2i-layer-")
_OWNED = re.compile(
    r"^nbs2i-(?P<role>[a-z-]+)--(?P<host>[A-Za-z0-9.-]+)--(?P<pid>\d+)-[0-9a-f]{8}$"
)
_TEMP = re.compile(r"^nbs2i-[a-z]+-(?P<pid>\d+)-")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:60] or "host"


def owned_name(role: str) -> str:
    """A name for a container or volume this process creates."""
    return f"nbs2i-{role}--{_host()}--{os.getpid()}-{secrets.token_hex(4)}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphaned(name: str, alive: Callable[[int], bool] = pid_alive) -> bool:
    """True for a name this machine's nbs2i gave to something whose owner is gone."""
    match = _OWNED.match(name)
    if match is None:
        return False
    return match["host"] == _host() and not alive(int(match["pid"]))


@dataclass(frozen=True)
class Leftover:
    kind: str  # "container", "volume", "directory" or "image"
    name: str
    why: str


def find(engine: Docker, temp_root: Path | None = None) -> list[Leftover]:
    """Everything `nbs2i prune` would remove."""
    return [
        *find_orphans(engine, temp_root),
        *_caches(engine),
    ]


def find_orphans(engine: Docker, temp_root: Path | None = None) -> list[Leftover]:
    """Containers, volumes and temp directories of nbs2i runs that died."""
    found = [
        Leftover("container", c.name, "its nbs2i process is gone")
        for c in engine.containers(labels=[labels.ROLE])
        if orphaned(c.name)
    ]
    found += [
        Leftover("volume", v.name, "its nbs2i process is gone")
        for v in engine.volumes(labels=[labels.ROLE])
        if orphaned(v.name)
    ]
    root = temp_root or Path(tempfile.gettempdir())
    for path in sorted(root.glob("nbs2i-*")):
        match = _TEMP.match(path.name)
        if match and path.name.startswith(TEMP_PREFIXES) and not pid_alive(int(match["pid"])):
            found.append(Leftover("directory", str(path), "its nbs2i process is gone"))
    return found


def _caches(engine: Docker) -> list[Leftover]:
    return [*_build_stages(engine), *_untagged_builds(engine), *_unused_layers(engine)]


def _build_stages(engine: Docker) -> list[Leftover]:
    return [
        Leftover("image", i.id, "a builder build stage (its history holds the build's CA bundle)")
        for i in engine.images(labels=[labels.BUILD_STAGE])
        if not i.tags
    ]


def _untagged_builds(engine: Docker) -> list[Leftover]:
    return [
        Leftover("image", i.id, "an nbs2i build that lost its tag")
        for i in engine.images(labels=[f"{labels.ROLE}={labels.ROLE_IMAGE}"], dangling=True)
    ]


def _unused_layers(engine: Docker) -> list[Leftover]:
    """Cache images (dependency and apt layers) that no other tagged image is built on."""
    everything = engine.images()
    caches = [i for i in everything if _is_cache(i.tags)]
    if not caches:
        return []
    others = [_inspect(engine, i.id).layers for i in everything if i.tags and not _is_cache(i.tags)]
    found = []
    for cache in caches:
        layers = _inspect(engine, cache.id).layers
        if not any(len(o) > len(layers) and o[: len(layers)] == layers for o in others):
            found += [
                Leftover("image", tag, "a dependency layer no image is built on")
                for tag in cache.tags
            ]
    return found


def _is_cache(tags: Iterable[str]) -> bool:
    return any(t.startswith(CACHE_REPOSITORIES) for t in tags)


def _inspect(engine: Docker, ref: str) -> ImageInfo:
    return engine.inspect_image(ref)


def remove(engine: Docker, items: Iterable[Leftover]) -> list[tuple[Leftover, str]]:
    """Remove each; the ones that could not be removed, with why."""
    failed: list[tuple[Leftover, str]] = []
    for item in items:
        try:
            _remove(engine, item)
        except (EngineError, OSError) as exc:
            failed.append((item, getattr(exc, "problem", None) or str(exc)))
    return failed


def _remove(engine: Docker, item: Leftover) -> None:
    if item.kind == "container":
        engine.remove_container(item.name)
    elif item.kind == "volume":
        engine.remove_volume(item.name)
    elif item.kind == "directory":
        shutil.rmtree(item.name)
    else:
        with contextlib.suppress(NotFound):
            engine.remove_image(item.name)

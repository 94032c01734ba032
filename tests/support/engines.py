"""Which engine this test run is on.

The default run uses the engine at DOCKER_HOST (the host's Docker) for every
test. A run on another engine that `scripts/engines` started says which in
NBS2I_TEST_ENGINE, with that engine's DOCKER_HOST (`eval "$(scripts/engines env
KIND)"`); only the tests marked `matrix` run there (`make test-engines`).
They are chosen test by test, for what must hold on every engine and differs
between them: the written layer (loaded with no container, the same image from
the same commit, saved and pushed whole, the same config digest as the host's
engine), the container path's commit and its config, uploads into
containers, the dependency layer, push and pull, `run`, `verify` and `prune`,
and the engine seam itself. The rest runs on the host's engine. The session checks that
the engine answering is of the kind asked for, and, for an engine whose
published ports live in a network namespace of its own, that the test process
runs inside it (`nsenter -t $NBS2I_ENGINE_NETNS_PID -n`): a test that probes
127.0.0.1 would otherwise knock on the host's ports.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nbs2i.archive import readable

HOST = "docker"
CONTAINERD_STORE = "docker-containerd"
PODMAN = "podman"
KINDS = (HOST, CONTAINERD_STORE, PODMAN)
KIND_VARIABLE = "NBS2I_TEST_ENGINE"
NETNS_VARIABLE = "NBS2I_ENGINE_NETNS_PID"
# How /info names the containerd image store among the storage driver's details.
_SNAPSHOTTER = ("driver-type", "io.containerd.snapshotter.v1")


def requested() -> str:
    """The engine kind this run was started for; "" in the default run, which
    runs everything on whatever engine answers."""
    return os.environ.get(KIND_VARIABLE, "")


def is_default_run() -> bool:
    return not requested()


@functools.cache
def current() -> str:
    """The kind of the engine at DOCKER_HOST."""
    return answering()[0]


def kind_of(version: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    """The kind of engine that answered /version and /info."""
    components = {str(c.get("Name")) for c in version.get("Components") or ()}
    if "Podman Engine" in components:
        return PODMAN
    status = {tuple(pair) for pair in info.get("DriverStatus") or ()}
    return CONTAINERD_STORE if _SNAPSHOTTER in status else HOST


def answering() -> tuple[str, str]:
    """(kind, version) of the engine at DOCKER_HOST."""
    import docker

    client = docker.from_env(version="auto", timeout=30)
    try:
        version = client.api.version()
        return kind_of(version, client.api.info()), str(version.get("Version") or "")
    finally:
        client.close()


def setup_problem() -> str:
    """ "" when the engine answering is the one this run is for, and ports it
    publishes on 127.0.0.1 reach this process; else what is wrong, in one line."""
    wanted = requested()
    if not wanted:
        return ""
    if wanted not in KINDS:
        return f"{KIND_VARIABLE}={wanted} is not one of {', '.join(KINDS)}"
    kind, version = answering()
    where = os.environ.get("DOCKER_HOST", "the default socket")
    if kind != wanted:
        return (
            f"{KIND_VARIABLE}={wanted}, but {where} answers {kind} {version}: "
            f'eval "$(scripts/engines env {wanted})"'
        )
    if wanted == CONTAINERD_STORE:
        return _netns_problem()
    return ""


def _netns_problem() -> str:
    pid = os.environ.get(NETNS_VARIABLE, "")
    if not pid.isdigit():
        return f'{NETNS_VARIABLE} is not set: eval "$(scripts/engines env {CONTAINERD_STORE})"'
    try:
        theirs = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return f"{NETNS_VARIABLE}={pid} names no running process: is the engine still up?"
    if os.readlink("/proc/self/ns/net") != theirs:
        return (
            f"the ports this engine publishes live in the network namespace of process {pid}: "
            f"run the tests under `nsenter -t {pid} -n`"
        )
    return ""


# The host's engine, which a run on another engine can still reach by its socket.
HOST_ENGINE = os.environ.get("NBS2I_TEST_HOST_ENGINE", "") or "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Saved:
    """What a `docker save` of an image holds."""

    config_digest: str  # the sha256 of the config file it holds
    missing: tuple[str, ...]  # files its manifest.json names but it lacks


def saved(stream: Iterator[bytes]) -> Saved:
    """Read a `docker save` stream through (any engine's layout: the classic
    store's, podman's, an OCI layout with a manifest.json)."""
    names: set[str] = set()
    small: dict[str, bytes] = {}
    with tarfile.open(fileobj=readable(stream), mode="r|") as archive:
        for member in archive:
            names.add(member.name)
            if member.isfile() and member.size <= 1 << 20:
                handle = archive.extractfile(member)
                assert handle is not None
                small[member.name] = handle.read()
    (entry,) = json.loads(small["manifest.json"])
    config = small.get(entry["Config"], b"")
    missing = tuple(p for p in (entry["Config"], *entry["Layers"]) if p not in names)
    return Saved("sha256:" + hashlib.sha256(config).hexdigest(), missing)


def remove_on_host(ref: str) -> None:
    """Remove an image from the host's engine (a test's own, built there too)."""
    import docker

    client = docker.APIClient(base_url=HOST_ENGINE, version="auto", timeout=60)
    try:
        client.remove_image(ref, force=True)
    except docker.errors.NotFound:
        pass
    finally:
        client.close()

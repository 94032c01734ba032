"""nbs2i's specs as docker-py's arguments, written once, for the engine that
answers: where engines read the same request differently, the difference is
made up here (podman fills a tmpfs with the image's files unless told not to;
Docker's runtime gives a tmpfs the mode of the image's directory).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nbs2i.engine.types import ContainerSpec, Tmpfs
from nbs2i.reference import is_loopback, registry_host

# podman's own tmpfs option: no copy of the image's files at that path. Docker
# refuses it (and never copies).
_NO_COPY_UP = "notmpcopyup"


def filters(labels: Iterable[str], dangling: bool | None = None) -> dict[str, Any] | None:
    """A listing's filters: the labels it must carry, dangling or not."""
    found: dict[str, Any] = {}
    if labels:
        found["label"] = list(labels)
    if dangling is not None:
        found["dangling"] = dangling
    return found or None


def host_config(spec: ContainerSpec, kind: str) -> dict[str, Any]:
    """docker-py's host config arguments for a spec (None: the engine's default)."""
    binds = {
        m.source: {
            "bind": m.target,
            "mode": ("ro" if m.read_only else "rw") + (",nocopy" if m.nocopy else ""),
        }
        for m in spec.mounts
    }
    bindings = {
        p.container_port: (p.host_ip, p.host_port) if p.host_port else (p.host_ip,)
        for p in spec.ports
    }
    volumes = [t for t in spec.tmpfs if t.volume and kind != "podman"]
    return {
        "binds": binds or None,
        "mounts": [tmpfs_volume(t, spec.labels) for t in volumes] or None,
        "tmpfs": {t.target: tmpfs_options(t, kind) for t in spec.tmpfs if t not in volumes} or None,
        "read_only": spec.read_only or None,
        "cap_drop": list(spec.cap_drop) or None,
        "security_opt": list(spec.security_opt) or None,
        "port_bindings": bindings or None,
        "network_mode": spec.network or None,
        "log_config": _log_config(spec.log_limit),
    }


def needs_no_tls(repository: str, kind: str) -> bool:
    """Whether podman must be told that the registry may speak plain HTTP: Docker
    takes a registry on loopback as such by itself, podman verifies TLS
    everywhere unless told (as nbs2i's own registry client, both then reach a
    registry on this machine alike)."""
    return kind == "podman" and is_loopback(registry_host(repository))


def push_params(repository: str, tag: str, kind: str) -> dict[str, str]:
    """A push's query."""
    params = {"tag": tag}
    if needs_no_tls(repository, kind):
        params["tlsVerify"] = "false"
    return params


def pull_params(repository: str, tag: str, kind: str) -> tuple[str, dict[str, str]]:
    """A pull's path and query. podman's Docker API has no way to be told
    `needs_no_tls`; its own API has."""
    if needs_no_tls(repository, kind):
        reference = f"{repository}@{tag}" if tag.startswith("sha256:") else f"{repository}:{tag}"
        return "/libpod/images/pull", {"reference": reference, "tlsVerify": "false"}
    return "/images/create", {"fromImage": repository, "tag": tag}


def tmpfs_options(tmpfs: Tmpfs, kind: str) -> str:
    """A tmpfs's options as this engine must be told them to mount it empty."""
    options = tmpfs.options()
    return f"{options},{_NO_COPY_UP}" if kind == "podman" else options


def tmpfs_volume(tmpfs: Tmpfs, labels: Mapping[str, str]) -> dict[str, Any]:
    """A fresh volume on Docker: anonymous (removed with its container, which
    nbs2i removes with its volumes), on tmpfs, never filled from the image,
    labelled as the container is, for `nbs2i prune`."""
    return {
        "Target": tmpfs.target,
        "Type": "volume",
        "VolumeOptions": {
            "NoCopy": True,
            "Labels": dict(labels),
            "DriverConfig": {
                "Name": "local",
                "Options": {"type": "tmpfs", "device": "tmpfs", "o": tmpfs.options()},
            },
        },
    }


def _log_config(limit: int) -> dict[str, Any] | None:
    """json-file with one file of at most `limit` bytes; Docker and Podman
    (k8s-file) both take max-size."""
    if not limit:
        return None
    return {"type": "json-file", "config": {"max-size": str(limit)}}


def create_args(spec: ContainerSpec) -> dict[str, Any]:
    """docker-py's create_container arguments for a spec (but the host config)."""
    command = None if spec.command is None else list(spec.command)
    # docker-py drops an empty list; [""] is how the API clears an ENTRYPOINT.
    entrypoint = None if spec.entrypoint is None else list(spec.entrypoint) or [""]
    return {
        "command": command,
        "entrypoint": entrypoint,
        "user": spec.user or None,
        "environment": [f"{k}={v}" for k, v in spec.env.items()] or None,
        "labels": dict(spec.labels),
        "name": spec.name or None,
        "working_dir": spec.working_dir or None,
        "ports": [p.container_port for p in spec.ports] or None,
        "network_disabled": spec.network == "none",
        # docker-py sets StdinOnce only for a container it does not detach.
        "stdin_open": spec.stdin,
        "detach": not spec.stdin,
    }

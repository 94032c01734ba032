"""A generated Kubernetes pod, rehearsed on one engine.

`settings(objects)` reads what the Deployment (and its Secret) tells a
kubelet: user and group, fsGroup, read-only root, the emptyDir on /tmp,
capabilities, privilege escalation, the port and the probe path. Whatever of
that the engine cannot reproduce is an error here, never quietly dropped.
`workspace(dir, fs_group)` makes a directory what the kubelet makes of a fresh
volume for an fsGroup; `start(...)` runs the image through
nbs2i.restricted.container_spec with those settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbs2i import restricted
from nbs2i.engine import Engine, Mount
from tests.support.tracker import Tracker

# What the kubelet gives a volume's root for an fsGroup: the group, setgid,
# group read/write/execute.
FS_GROUP_MODE = 0o2775


class CannotSimulate(AssertionError):
    """The pod asks for something the engine rehearsal does not reproduce."""


@dataclass(frozen=True)
class PodSettings:
    uid: int | None  # None: the platform's or the image's choice
    gid: int
    fs_group: int | None
    read_only: bool
    cap_drop: tuple[str, ...]
    no_new_privileges: bool
    home: str  # where the workspace claim is mounted
    tmp: str  # where the emptyDir is mounted
    port: int
    probe_path: str
    env: dict[str, str] = field(default_factory=dict)


def settings(objects: dict[str, dict[str, Any]]) -> PodSettings:
    """The settings of the one container of the Deployment among `objects`
    (by kind), with secret environment resolved from the Secret."""
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    pod_ctx = spec.get("securityContext") or {}
    ctx = {**pod_ctx, **(container.get("securityContext") or {})}
    caps = ctx.get("capabilities") or {}
    if caps.get("add"):
        raise CannotSimulate(f"capabilities added: {caps['add']}")
    volumes = {v["name"]: v for v in spec.get("volumes") or ()}
    home = tmp = ""
    for mount in container.get("volumeMounts") or ():
        volume = volumes[mount["name"]]
        if "persistentVolumeClaim" in volume:
            home = mount["mountPath"]
        elif "emptyDir" in volume:
            tmp = mount["mountPath"]
        else:
            raise CannotSimulate(f"volume {mount['name']} of an unknown kind")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports") or ()}
    probe = container["readinessProbe"]["httpGet"]
    port = probe["port"]
    return PodSettings(
        uid=ctx.get("runAsUser"),
        gid=ctx.get("runAsGroup", restricted.GID),
        fs_group=pod_ctx.get("fsGroup"),
        read_only=bool(ctx.get("readOnlyRootFilesystem")),
        cap_drop=tuple(caps.get("drop") or ()),
        no_new_privileges=ctx.get("allowPrivilegeEscalation") is False,
        home=home,
        tmp=tmp,
        port=ports[port] if isinstance(port, str) else int(port),
        probe_path=probe["path"],
        env=_env(container, objects.get("Secret")),
    )


def _env(container: dict[str, Any], secret: dict[str, Any] | None) -> dict[str, str]:
    env = {}
    for entry in container.get("env") or ():
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        if secret is None or secret["metadata"]["name"] != ref["name"]:
            raise CannotSimulate(f"secret {ref['name']} is not among the objects")
        env[entry["name"]] = secret["stringData"][ref["key"]]
    return env


def workspace(directory: Path, fs_group: int | None) -> Path:
    """A fresh volume as the kubelet hands it over for `fs_group`."""
    if fs_group is None:
        raise CannotSimulate("no fsGroup: who may write the volume is the platform's choice")
    directory.mkdir(parents=True)
    os.chown(directory, 0, fs_group)
    os.chmod(directory, FS_GROUP_MODE)
    return directory


def container_spec(
    image: str, pod: PodSettings, volume: Path, uid: int, labels: dict[str, str]
) -> Any:
    """restricted.container_spec for these settings; refuses what it would not match."""
    if pod.gid != restricted.GID:
        raise CannotSimulate(f"runAsGroup {pod.gid}: the rehearsal runs with GID {restricted.GID}")
    if pod.fs_group not in (None, restricted.GID):
        # The kubelet would add fsGroup as a supplementary group; the
        # engine seam has no group-add.
        raise CannotSimulate(f"fsGroup {pod.fs_group} other than GID {restricted.GID}")
    if pod.tmp != restricted.TMP or not pod.read_only:
        raise CannotSimulate("only a read-only root with an emptyDir on /tmp is rehearsed")
    spec = restricted.container_spec(
        image,
        uid=uid,
        container_port=pod.port,
        home=Mount(str(volume), pod.home),
        read_only=pod.read_only,
        env=pod.env,
        labels=labels,
    )
    if tuple(spec.cap_drop) != pod.cap_drop:
        raise CannotSimulate(f"capabilities dropped: {pod.cap_drop} vs {spec.cap_drop}")
    if pod.no_new_privileges != (restricted.NO_NEW_PRIVILEGES in spec.security_opt):
        raise CannotSimulate("allowPrivilegeEscalation differs from no-new-privileges")
    return spec


def start(engine: Engine, spec: Any, track: Tracker) -> tuple[str, int]:
    """Create (tracked before anything can fail) and start; the container id
    and the host port of the server."""
    container = track.container(engine.create_container(spec))
    engine.start(container)
    info = engine.inspect_container(container)
    port = restricted.published_port(info, spec.ports[0].container_port)
    if port is None:
        raise AssertionError("the engine published no port")
    return container, port

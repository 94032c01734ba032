"""The restricted platform, defined once.

How OpenShift's restricted-v2 SCC and Kubernetes' Pod Security "restricted"
profile start a container, and how nbs2i rehearses that on one machine: a
UID from OpenShift's range with GID 0, a read-only root with a tmpfs on /tmp,
every capability dropped, no privilege escalation, the server's port
published on loopback only, a readiness probe on an endpoint that needs no
credentials, SIGTERM then a bounded wait. `nbs2i run`, `nbs2i verify`, the
deployment manifests and the tests all take these values from here; nothing
else spells these flags.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbs2i.errors import SecurityError, UsageError

if TYPE_CHECKING:
    # The command line reads this module's values for its help; the engine's
    # types (and http.client) are loaded only when a container is made or probed.
    from nbs2i.engine import ContainerInfo, ContainerSpec, Docker, ImageConfig, Mount, Tmpfs

# OpenShift gives each namespace a block of 10,000 UIDs from this range
# (e.g. 1000680000-1000689999) and runs the pod as one of them, with GID 0.
UID_MIN = 1_000_000_000
UID_MAX = 1_999_999_999
GID = 0
# The largest UID Linux and the engines accept.
UID_LIMIT = 2**31 - 1
# What --uid says to get a random UID from the range, as OpenShift assigns one.
RANDOM_UID = "random"
# Where a platform mounts the student's persistent volume (zero-to-jupyterhub's
# default, and nbs2i run's --volume).
HOME = "/home/jovyan"
# The one writable place of a read-only root (an emptyDir in Kubernetes).
TMP = "/tmp"
TMP_MODE = 0o1777
# A fresh persistent volume as a platform mounts it on HOME (a PVC with
# fsGroup 0, an emptyDir): empty, root-owned, group 0 with group write. Kept
# in memory and bounded, since it only lives for one rehearsal.
EMPTY_HOME_MODE = 0o775
EMPTY_HOME_SIZE = 512 << 20
CAP_DROP = ("ALL",)
# The seccomp profile that both Pod Security "restricted" and restricted-v2 admit.
SECCOMP_PROFILE = "RuntimeDefault"
NO_NEW_PRIVILEGES = "no-new-privileges:true"
# Published ports are bound here only: a token in a URL is not a reason to
# expose code execution to the network.
LOOPBACK = "127.0.0.1"
# The notebook server's port when the image does not expose exactly one.
SERVER_PORT = 8888
# Answers without credentials once a Jupyter server is up: the readiness and
# liveness probe path.
READINESS_PATH = "/api"
# Platforms send KILL 30 s after TERM; a well-behaved image stops within 10.
STOP_GRACE = 10
KILL_AFTER = 30
HTTP_TIMEOUT = 3.0
POLL_SECONDS = 0.1


def random_uid(randbelow: Callable[[int], int] = secrets.randbelow) -> int:
    """A UID as OpenShift would assign one."""
    return UID_MIN + randbelow(UID_MAX - UID_MIN + 1)


def parse_uid(text: str) -> int | None:
    """A --uid value: None for RANDOM_UID, else the number (not yet checked)."""
    if text == RANDOM_UID:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(
            f"{text!r} is not {RANDOM_UID!r} or a number",
            f"give --uid {RANDOM_UID} or a UID from 1 to {UID_LIMIT}",
        ) from None


def check_uid(uid: int) -> int:
    """A UID a restricted platform could run a pod as: never root, within Linux's range."""
    if uid <= 0:
        raise SecurityError(
            f"refusing to run as UID {uid}",
            "a restricted platform never runs a notebook as root; leave --uid out for a "
            "random one, or give a UID above 0",
        )
    if uid > UID_LIMIT:
        raise UsageError(
            f"UID {uid} is out of range", f"give a UID from 1 to {UID_LIMIT}, or leave --uid out"
        )
    return uid


def container_spec(
    image: str,
    *,
    uid: int,
    container_port: int = SERVER_PORT,
    host_port: int = 0,
    home: Mount | None = None,
    empty_home: str = "",
    read_only: bool = True,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    name: str = "",
    network: str = "",
) -> ContainerSpec:
    """An image started the way a restricted platform starts it: with the
    student's volume `home`, or an empty one on the path `empty_home`."""
    from nbs2i.engine import ContainerSpec, PortBinding

    tmpfs = (scratch(),) if read_only else ()
    if empty_home:
        tmpfs = (*tmpfs, empty_volume(empty_home))
    return ContainerSpec(
        image=image,
        user=f"{uid}:{GID}",
        env=dict(env or {}),
        labels=dict(labels or {}),
        name=name,
        mounts=(home,) if home is not None else (),
        tmpfs=tmpfs,
        read_only=read_only,
        cap_drop=CAP_DROP,
        security_opt=(NO_NEW_PRIVILEGES,),
        ports=(PortBinding(container_port, LOOPBACK, host_port),),
        network=network,
    )


def scratch() -> Tmpfs:
    """The tmpfs on TMP."""
    from nbs2i.engine import Tmpfs

    return Tmpfs(TMP, TMP_MODE)


def empty_volume(target: str) -> Tmpfs:
    """A fresh volume on target, as EMPTY_HOME_* describe it: bounded, on
    tmpfs (podman refuses a size for a volume of its own), which a student's
    files may be run from, as from a volume."""
    from nbs2i.engine import Tmpfs

    return Tmpfs(target, EMPTY_HOME_MODE, EMPTY_HOME_SIZE, exec=True, volume=True)


def can_mount_home(home: str) -> bool:
    """Would a platform mount a volume there? Not on / nor inside the scratch space."""
    return home not in ("", "/") and not (home == TMP or home.startswith(TMP + "/"))


def server_port(config: ImageConfig) -> int:
    """The container port a platform's probe and route would use: SERVER_PORT
    when the image exposes it or no port at all, else its lowest TCP port."""
    tcp = sorted(
        int(number)
        for number, _, proto in (p.partition("/") for p in config.exposed_ports)
        if number.isdigit() and proto in ("", "tcp")
    )
    return SERVER_PORT if not tcp or SERVER_PORT in tcp else tcp[0]


def container_security_context(uid: int | None = None) -> dict[str, Any]:
    """The same rules for a Kubernetes container (Pod Security "restricted").

    `uid` None leaves the UID to the platform (OpenShift's SCC picks one from
    the namespace's range); the image's numeric USER satisfies runAsNonRoot.
    """
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": list(CAP_DROP)},
        "seccompProfile": {"type": SECCOMP_PROFILE},
    }
    if uid is not None:
        context["runAsUser"] = check_uid(uid)
        context["runAsGroup"] = GID
    return context


def pod_security_context(uid: int | None = None, fs_group: int | None = None) -> dict[str, Any]:
    """The pod-level half of the same rules.

    `uid` None leaves UID and GID to the platform, as above. `fs_group` None
    leaves the volumes' group to the platform too: restricted-v2 assigns one
    from the namespace's range and refuses any other. A number makes the
    kubelet hand the workspace volume to that group, group-writable, with
    setgid directories, so that every UID of the group can edit what another
    one wrote.
    """
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": SECCOMP_PROFILE},
    }
    if uid is not None:
        context["runAsUser"] = check_uid(uid)
        context["runAsGroup"] = GID
    if fs_group is not None:
        context["fsGroup"] = fs_group
    return context


def published_port(info: ContainerInfo, container_port: int) -> int | None:
    """The host port the engine published container_port on, if any."""
    return info.ports.get(container_port)


# -- probing the server, on loopback only ---------------------------------------------


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    location: str = ""
    body: bytes = b""


def http_request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> HttpAnswer:
    """One request to 127.0.0.1 (never a proxy, never another host), no redirects
    followed. Raises OSError or http.client.HTTPException when nothing answers."""
    import http.client

    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        data = response.read()
        return HttpAnswer(response.status, response.getheader("Location") or "", data)
    finally:
        conn.close()


def http_status(port: int, path: str, headers: Mapping[str, str] | None = None) -> int | None:
    """The status of a GET, or None when nothing answers (yet)."""
    import http.client

    try:
        return http_request(port, path, headers=headers).status
    except (OSError, http.client.HTTPException):
        return None


@dataclass(frozen=True)
class Readiness:
    """How a wait for the server ended."""

    ready: bool
    seconds: float
    status: int | None = None  # the last HTTP status seen
    exit_code: int | None = None  # set when the container exited first
    error: str = ""  # why the last request got no answer


def wait_ready(
    engine: Docker,
    container: str,
    port: int,
    *,
    timeout: float,
    path: str = READINESS_PATH,
    accept: Callable[[int], bool] = lambda status: status == 200,
) -> Readiness:
    """Poll path on the published port until `accept(status)`, the container
    exits, or the time is up; bounded in time and in count."""
    import http.client

    started = time.monotonic()
    status: int | None = None
    error = "no answer"
    for _ in range(int(timeout / POLL_SECONDS) + 10):
        info = engine.inspect_container(container)
        if not info.running:
            return Readiness(False, time.monotonic() - started, status, info.exit_code, error)
        try:
            status = http_request(port, path).status
        except (OSError, http.client.HTTPException) as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            if accept(status):
                return Readiness(True, time.monotonic() - started, status)
        if time.monotonic() - started >= timeout:
            break
        time.sleep(POLL_SECONDS)
    return Readiness(False, time.monotonic() - started, status, None, error)


def wait_stopped(engine: Docker, container: str, bound: float = STOP_GRACE) -> float | None:
    """Seconds until the container stopped, or None when it still runs after `bound`."""
    started = time.monotonic()
    for _ in range(int(bound / POLL_SECONDS) + 10):
        if not engine.inspect_container(container).running:
            return time.monotonic() - started
        if time.monotonic() - started >= bound:
            break
        time.sleep(POLL_SECONDS)
    return None

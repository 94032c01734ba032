"""Start an image the way a restricted platform would; wait until it answers; stop it.

`start()` is the strictest honest rehearsal of OpenShift's restricted-v2 SCC that
one machine can give: a random UID from 1000000000-1000999999 with GID 0, a
read-only root filesystem with a tmpfs on /tmp, every capability dropped,
no-new-privileges, and the port published on 127.0.0.1 only. It waits, bounded
in time, until the notebook server answers its API, and gives back a `Server`
with the URL (token included) to open.

The workspace: `--volume` mounts a named volume or a host directory at
/home/jovyan, the path zero-to-jupyterhub mounts its volume on. The image's run
script seeds it from /opt/app-root/src without overwriting (see s2i/bin/run), so
edits survive restarts, new UIDs and newer images. Without a volume nothing is
mounted on /home/jovyan: under a read-only root the run script falls back to a
HOME on the /tmp tmpfs, exactly what happens on a real cluster that gives the
pod no volume, so the rehearsal exercises the image's own code path instead of
papering over it with a mount the platform would not provide.

Every failure ends as one `RunError` line and leaves nothing running: the
container is removed, and a volume this call created is removed with it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbs2i.engine import Engine, Leftovers
from nbs2i.errors import EngineError, NotFound, RunError, SecurityError, UsageError
from nbs2i.progress import Event, Reporter, lines, silent

# OpenShift restricted-v2 gives each namespace a UID block like this one.
UID_MIN = 1_000_000_000
UID_MAX = 1_000_999_999
HOME = "/home/jovyan"
DEFAULT_PORT = 8888
CONTAINER_PORT = 8888
DEFAULT_TIMEOUT = 60.0
# Kubernetes waits 30 s after SIGTERM; tini forwards it at once, so 10 s is ample.
STOP_TIMEOUT = 10
LOG_TAIL = 20
POLL_SECONDS = 0.1
HTTP_TIMEOUT = 2.0

ROLE_LABEL = "nbs2i.role"
RUN_ROLE = "run"
WORKSPACE_ROLE = "workspace"
IMAGE_LABEL = "nbs2i.image"

# What a Docker volume name may be (moby's volume name rule).
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by nbs2i itself; through --env they would bypass the checks on --token/--password.
_RESERVED_ENV = frozenset({"JUPYTER_TOKEN", "JUPYTER_PASSWORD", "HOME"})
_PORT_TAKEN = ("port is already allocated", "address already in use")


@dataclass(frozen=True)
class RunRequest:
    """What to start and how. Defaults are OpenShift restricted-v2's."""

    image: str
    port: int = DEFAULT_PORT  # host port on 127.0.0.1; 0 lets the engine choose a free one
    uid: int | None = None  # None: random in UID_MIN..UID_MAX
    token: str | None = None  # None (and no password): nbs2i generates one
    password: str | None = None
    volume: str | None = None  # a volume name, or a directory (has "/", or starts "." or "~")
    read_only: bool = True
    name: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # extra labels on the container and a new volume
    timeout: float = DEFAULT_TIMEOUT  # seconds to wait for the server's API


@dataclass(frozen=True)
class Workspace:
    """What is mounted on /home/jovyan."""

    kind: str  # "volume" or "directory"
    source: str  # the volume name, or the absolute host path
    created: bool  # nbs2i created the volume in this call


@dataclass(frozen=True)
class Server:
    """A running, answering notebook server."""

    container_id: str
    name: str
    image: str
    port: int
    uid: int
    token: str | None
    workspace: Workspace | None
    ready_seconds: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        """JupyterLab's address, with the token when there is one."""
        lab = f"{self.base_url}lab"
        return f"{lab}?token={self.token}" if self.token else lab


@dataclass(frozen=True)
class Stopped:
    name: str
    workspace: str | None  # a named volume that stays for the next start


# -- pure helpers (unit-tested) ------------------------------------------------


def choose_uid(uid: int | None, token_source: Callable[[int], int] = secrets.randbelow) -> int:
    """The UID to run as: the one asked for, else a random one from OpenShift's range."""
    if uid is None:
        return UID_MIN + token_source(UID_MAX - UID_MIN + 1)
    if uid <= 0:
        raise SecurityError(
            f"refusing to run as UID {uid}",
            "a restricted platform never runs a notebook as root; use --uid random or a UID > 0",
        )
    return uid


def new_token() -> str:
    return secrets.token_hex(24)


def container_name(name: str | None) -> str:
    if name is None:
        return f"nbs2i-run-{secrets.token_hex(4)}"
    if not _CONTAINER_NAME.match(name):
        raise UsageError(
            f"bad container name {name!r}",
            "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return name


def is_directory_spec(spec: str) -> bool:
    """Docker's own rule: a path has a '/' or starts with '.' or '~'; else a volume name."""
    return "/" in spec or spec.startswith((".", "~"))


def writable_by(st: os.stat_result, uid: int, gid: int = 0) -> bool:
    """Can a process with this UID and GID (and no capabilities) create files in the dir?"""
    mode = st.st_mode
    if st.st_uid == uid:
        return bool(mode & stat.S_IWUSR and mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(mode & stat.S_IWGRP and mode & stat.S_IXGRP)
    return bool(mode & stat.S_IWOTH and mode & stat.S_IXOTH)


def check_env(env: tuple[tuple[str, str], ...]) -> None:
    for key, _value in env:
        if not _ENV_NAME.match(key):
            raise UsageError(f"bad environment variable name {key!r}", "use --env NAME=VALUE")
        if key in _RESERVED_ENV:
            hint = {
                "JUPYTER_TOKEN": "use --token",
                "JUPYTER_PASSWORD": "use --password",
                "HOME": "HOME is /home/jovyan; mount your files there with --volume",
            }[key]
            raise UsageError(f"--env {key} is set by nbs2i run", hint)


def check_auth(token: str | None, password: str | None) -> None:
    if token is not None and password is not None:
        raise UsageError("--token and --password both given", "choose one")
    if token is not None and not token.strip():
        raise SecurityError(
            "an empty token turns authentication off",
            "leave --token out and nbs2i generates one",
        )
    if password is not None and not password:
        raise UsageError("the password is empty", "type a password, or leave --password out")


def host_config(
    request: RunRequest, workspace: Workspace | None, container_port: int
) -> dict[str, Any]:
    """The engine settings that make this a restricted-v2 rehearsal."""
    config: dict[str, Any] = {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": request.read_only,
        # Only this machine can reach the server: a token in a URL is not a
        # reason to expose code execution to the network.
        "port_bindings": {
            container_port: ("127.0.0.1", request.port) if request.port else ("127.0.0.1",)
        },
    }
    if request.read_only:
        config["tmpfs"] = {"/tmp": "rw,nosuid,nodev,mode=1777"}
    if workspace is not None:
        config["binds"] = {workspace.source: {"bind": HOME, "mode": "rw"}}
    return config


def server_env(request: RunRequest, token: str | None) -> dict[str, str]:
    env = dict(request.env)
    if token is not None:
        env["JUPYTER_TOKEN"] = token
    if request.password is not None:
        # Hashed here: a container's own environment stays readable in
        # /proc/1/environ and `docker inspect`, so the plain password must
        # never be part of it.
        env["JUPYTER_PASSWORD_HASH"] = password_hash(request.password)
    return env


def password_hash(password: str) -> str:
    """A salted hash in the `algorithm:salt:hexdigest` form Jupyter checks."""
    salt = secrets.token_hex(16)
    digest = hashlib.sha512(password.encode("utf-8") + salt.encode("ascii")).hexdigest()
    return f"sha512:{salt}:{digest}"


def run_labels(request: RunRequest) -> dict[str, str]:
    return {**dict(request.labels), ROLE_LABEL: RUN_ROLE, IMAGE_LABEL: request.image}


def exposed_port(image_info: Mapping[str, Any]) -> int:
    """The image's one exposed TCP port, else Jupyter's 8888."""
    exposed = (image_info.get("Config") or {}).get("ExposedPorts") or {}
    tcp = [int(p.split("/")[0]) for p in exposed if p.endswith("/tcp")]
    return tcp[0] if len(tcp) == 1 else CONTAINER_PORT


def last_lines(text: str, count: int = LOG_TAIL) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-count:])


def is_port_taken_error(exc: EngineError) -> bool:
    return any(hint in exc.problem.lower() for hint in _PORT_TAKEN)


def port_taken(port: int) -> RunError:
    return RunError(
        f"port {port} on 127.0.0.1 is already taken",
        f"choose another with --port N (e.g. --port {port + 1}), or --port 0 for any free port",
    )


def check_port_free(port: int) -> None:
    """Fail early, before anything exists, when something already listens on the port."""
    if port == 0:
        return
    if not 0 < port < 65536:
        raise UsageError(f"bad port {port}", "use --port 1-65535, or 0 for any free port")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a closed connection in TIME_WAIT is not "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_taken(port) from exc
            if exc.errno != errno.EACCES:  # ports < 1024 as non-root: the engine may still bind
                raise


def check_directory(path: Path, uid: int) -> None:
    """A bind-mounted workspace must exist and be writable by UID with GID 0."""
    if not path.exists():
        raise RunError(
            f"workspace directory {path} does not exist",
            f"create it with `mkdir -p {path} && chgrp 0 {path} && chmod g+rwX {path}`",
        )
    if not path.is_dir():
        raise RunError(f"workspace {path} is not a directory", "give a directory or a volume name")
    if not writable_by(path.stat(), uid, 0):
        raise RunError(
            f"workspace directory {path} is not writable by UID {uid} with GID 0",
            f"run `chgrp 0 {path} && chmod g+rwX {path}` (group 0 is how OpenShift "
            "shares files between random UIDs), or pass --uid with the directory's owner",
        )


# -- the engine side -----------------------------------------------------------


def prepare_workspace(
    engine: Engine, request: RunRequest, uid: int, cleanup: Leftovers
) -> Workspace | None:
    spec = request.volume
    if spec is None:
        return None
    if is_directory_spec(spec):
        path = Path(spec).expanduser().resolve()
        check_directory(path, uid)
        return Workspace("directory", str(path), created=False)
    if not _VOLUME_NAME.match(spec):
        raise UsageError(
            f"bad volume name {spec!r}",
            "use letters, digits, '_', '.' and '-', or a directory path like ./work",
        )
    try:
        engine.inspect_volume(spec)
    except NotFound:
        labels = {**dict(request.labels), ROLE_LABEL: WORKSPACE_ROLE}
        engine.create_volume(spec, labels=labels)
        cleanup.volumes.append(spec)
        return Workspace("volume", spec, created=True)
    return Workspace("volume", spec, created=False)


def start(engine: Engine, request: RunRequest, report: Reporter = silent) -> Server:
    """Start the image restricted, wait until it answers, return the running server."""
    check_auth(request.token, request.password)
    check_env(request.env)
    name = container_name(request.name)
    uid = choose_uid(request.uid)
    if request.timeout <= 0:
        raise UsageError(f"bad timeout {request.timeout}", "use --timeout SECONDS, more than 0")
    try:
        info = engine.inspect_image(request.image)
    except NotFound as exc:
        raise NotFound(
            f"image {request.image} does not exist in the engine",
            "build it with `nbs2i build SOURCE IMAGE`, or check the name with `docker images`",
        ) from exc
    check_port_free(request.port)
    token = None if request.password is not None else (request.token or new_token())
    port_in = exposed_port(info)

    cleanup = Leftovers(engine)
    try:
        workspace = prepare_workspace(engine, request, uid, cleanup)
        report(Event("step", f"starting {request.image} as UID {uid}, GID 0", {"uid": uid}))
        began = time.monotonic()
        try:
            cid = engine.create_container(
                request.image,
                name=name,
                user=f"{uid}:0",
                environment=server_env(request, token),
                labels=run_labels(request),
                ports=[port_in],
                host_config=host_config(request, workspace, port_in),
                detach=True,
            )
        except EngineError as exc:
            if "already in use" in exc.problem:
                raise RunError(
                    f"a container named {name} already exists",
                    f"stop it with `nbs2i stop {name}`, or choose another --name",
                ) from exc
            raise
        cleanup.containers.append(cid)
        try:
            engine.start(cid)
        except EngineError as exc:
            if is_port_taken_error(exc):
                raise port_taken(request.port) from exc
            raise
        port = published_port(engine, cid, port_in) or request.port
        wait_until_ready(engine, cid, port, token, request.timeout)
        ready = time.monotonic() - began
    except BaseException:
        cleanup.remove_all()
        raise
    return Server(cid, name, request.image, port, uid, token, workspace, ready)


def published_port(engine: Engine, container: str, port_in: int) -> int | None:
    ports = (engine.inspect_container(container).get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{port_in}/tcp") or []:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def http_status(url: str, headers: Mapping[str, str] | None = None) -> int | None:
    """The HTTP status of a GET to a loopback URL, or None when nothing answers yet."""
    # No proxy: the server is on 127.0.0.1, and a configured HTTP(S)_PROXY
    # must never see the token.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with opener.open(req, timeout=HTTP_TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def wait_until_ready(
    engine: Engine,
    container: str,
    port: int,
    token: str | None,
    timeout: float,
    probe: Callable[..., int | None] = http_status,
) -> None:
    """Poll the server's API until it answers 200; bounded in time and count.

    Raises RunError with the last log lines when the container exits first,
    and when the time is up.
    """
    deadline = time.monotonic() + timeout
    max_polls = int(timeout / POLL_SECONDS) + 10
    base = f"http://127.0.0.1:{port}"
    for _ in range(max_polls):
        state = engine.inspect_container(container).get("State") or {}
        if not state.get("Running"):
            code = state.get("ExitCode")
            raise RunError(
                f"the server exited during start-up (exit code {code})",
                "its last log lines are above; check the image's run script and --env values",
                details=_log_tail(engine, container),
            )
        # /api answers without authentication once the server is up.
        if probe(f"{base}/api") == 200:
            if token is not None:
                status = probe(f"{base}/api/status", {"Authorization": f"token {token}"})
                if status != 200:
                    raise RunError(
                        f"the server answers but refuses the token nbs2i set (HTTP {status})",
                        "the image must honour JUPYTER_TOKEN (images built by nbs2i do)",
                        details=_log_tail(engine, container),
                    )
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    raise RunError(
        f"the server did not answer on 127.0.0.1:{port} within {timeout:g} s",
        "its last log lines are above; raise --timeout if the machine is slow",
        details=_log_tail(engine, container),
    )


def _log_tail(engine: Engine, container: str) -> str:
    try:
        raw = engine.logs(container, tail=LOG_TAIL)
    except EngineError:
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    return last_lines(text)


# -- foreground, stop ------------------------------------------------------------


def follow(engine: Engine, server: Server, report: Reporter = silent) -> int:
    """Stream the server's log until it exits or the user interrupts.

    Ctrl-C (KeyboardInterrupt) stops and removes the container, then re-raises.
    The container is removed in every case; returns its exit code.
    """
    try:
        stream = engine.logs(server.container_id, follow=True, tail="all")
        assert not isinstance(stream, bytes)
        for line in lines(stream):
            report(Event("output", line))
        code = engine.wait(server.container_id, timeout=STOP_TIMEOUT + 5)
    except BaseException:
        _stop_and_remove(engine, server.container_id)
        raise
    engine.remove_container(server.container_id)
    return code


def _stop_and_remove(engine: Engine, container: str) -> None:
    with contextlib.suppress(EngineError):
        engine.stop(container, timeout=STOP_TIMEOUT)
    engine.remove_container(container)


def stop(engine: Engine, name: str, timeout: int = STOP_TIMEOUT) -> Stopped:
    """Stop and remove a server that `nbs2i run` started; never anyone else's container."""
    try:
        info = engine.inspect_container(name)
    except NotFound as exc:
        raise NotFound(
            f"no container named {name}",
            "list what nbs2i started with `docker ps --filter label=nbs2i.role=run`",
        ) from exc
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get(ROLE_LABEL) != RUN_ROLE:
        raise RunError(
            f"container {name} was not started by nbs2i run",
            "nbs2i stop only stops its own servers; use `docker stop` for others",
        )
    with contextlib.suppress(EngineError):
        engine.stop(info["Id"], timeout=timeout)
    engine.remove_container(info["Id"])
    volume = None
    for mount in info.get("Mounts") or []:
        if mount.get("Destination") == HOME and mount.get("Type") == "volume":
            volume = mount.get("Name")
    return Stopped(name=info.get("Name", name).lstrip("/"), workspace=volume)

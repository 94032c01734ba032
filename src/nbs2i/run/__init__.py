"""Start an image the way a restricted platform would; wait until it answers; stop it.

`start()` is the strictest honest rehearsal of OpenShift's restricted-v2 SCC
that one machine can give, as `restricted.container_spec` defines it: a
random UID from OpenShift's range with GID 0, a read-only root with a tmpfs
on /tmp, every capability dropped, no-new-privileges, the port on 127.0.0.1
only. It waits, bounded in time, until the server answers its API and takes
the token, and gives back a `Server` with the URL to open.

The workspace: `--volume` mounts a named volume or a host directory on
/home/jovyan, where zero-to-jupyterhub mounts its volume. The image seeds it
and brings the course's updates without overwriting what the student changed,
so edits survive restarts, new UIDs and newer images.
Without a volume nothing is mounted there: under a read-only root the image
must cope on its own, exactly as on a cluster that gives the pod no volume.

Every failure ends as one error line and leaves nothing running: the
container is removed, with a volume this call created, also when the user
interrupts (clean-up runs under `interrupts.deferred`).

`stop()` acts only on containers that `start()` made: they carry a random
per-container mark (labels.RUN_NONCE) that no image label can supply.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nbs2i import interrupts, labels, restricted
from nbs2i.cleanup import Leftovers
from nbs2i.engine import ContainerInfo, ContainerSpec, Docker, ImageInfo, Mount
from nbs2i.errors import EngineError, Nbs2iError, NotFound, RunError
from nbs2i.progress import Event, Reporter, lines, silent
from nbs2i.run.request import (
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    LOG_TAIL,
    NONCE_BYTES,
    TOKEN_BYTES,
    RunRequest,
    Stat,
    check_auth,
    check_directory,
    check_env,
    check_name,
    check_names,
    check_port,
    check_port_free,
    check_request,
    check_volume_spec,
    container_name,
    is_directory_spec,
    is_system_directory,
    new_token,
    password_hash,
    port_taken,
    run_labels,
    server_env,
    started_by_run,
    writable_by,
)

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIMEOUT",
    "LOG_TAIL",
    "NONCE_BYTES",
    "TOKEN_BYTES",
    "RunRequest",
    "Server",
    "Stat",
    "StopOutcome",
    "Stopped",
    "Workspace",
    "await_server",
    "check_auth",
    "check_directory",
    "check_env",
    "check_name",
    "check_names",
    "check_port",
    "check_port_free",
    "check_request",
    "check_volume_spec",
    "container_name",
    "container_spec",
    "follow",
    "is_directory_spec",
    "is_system_directory",
    "log_tail",
    "new_token",
    "password_hash",
    "port_taken",
    "prepare_workspace",
    "run_labels",
    "server_env",
    "start",
    "started_by_run",
    "stop",
    "stop_all",
    "writable_by",
]


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
        return f"http://{restricted.LOOPBACK}:{self.port}/"

    @property
    def url(self) -> str:
        """JupyterLab's address, with the token when there is one."""
        lab = f"{self.base_url}lab"
        return f"{lab}?token={self.token}" if self.token else lab


@dataclass(frozen=True)
class Stopped:
    name: str
    workspace: str | None  # a named volume that stays for the next start


@dataclass(frozen=True)
class StopOutcome:
    """What `nbs2i stop` did with one name: stopped it, or why not."""

    name: str
    stopped: Stopped | None = None
    error: Nbs2iError | None = None


# What an engine says when the host port is taken.
_PORT_TAKEN = ("port is already allocated", "address already in use")


# -- the engine side -----------------------------------------------------------


def _image(engine: Docker, image: str) -> ImageInfo:
    try:
        return engine.inspect_image(image)
    except NotFound as exc:
        raise NotFound(
            f"image {image} does not exist in the engine",
            "build it with `nbs2i build SOURCE IMAGE`, or check the name with `docker images`",
        ) from exc


def prepare_workspace(
    engine: Docker, request: RunRequest, uid: int, leftovers: Leftovers
) -> Workspace | None:
    spec = request.volume
    if spec is None:
        return None
    if is_directory_spec(spec):
        path = Path(spec).expanduser().resolve()
        check_directory(path, uid)
        return Workspace("directory", str(path), created=False)
    try:
        engine.inspect_volume(spec)
    except NotFound:
        volume_labels = {**dict(request.labels), labels.ROLE: labels.ROLE_WORKSPACE}
        leftovers.volume(engine.create_volume(spec, labels=volume_labels))
        return Workspace("volume", spec, created=True)
    return Workspace("volume", spec, created=False)


def container_spec(
    request: RunRequest,
    *,
    uid: int,
    name: str,
    container_port: int,
    workspace: Workspace | None,
    token: str | None,
) -> ContainerSpec:
    """The restricted platform's container for this request."""
    return restricted.container_spec(
        request.image,
        uid=uid,
        container_port=container_port,
        host_port=request.port,
        home=Mount(workspace.source, restricted.HOME) if workspace else None,
        read_only=request.read_only,
        env=server_env(request, token),
        labels=run_labels(request, secrets.token_hex(NONCE_BYTES)),
        name=name,
    )


def _create(engine: Docker, spec: ContainerSpec) -> str:
    try:
        return engine.create_container(spec)
    except EngineError as exc:
        if "already in use" in exc.problem:
            raise RunError(
                f"a container named {spec.name} already exists",
                f"stop it with `nbs2i stop {spec.name}`, or choose another --name",
            ) from exc
        raise


def _start(engine: Docker, cid: str, port: int) -> None:
    try:
        engine.start(cid)
    except EngineError as exc:
        if any(hint in exc.problem.lower() for hint in _PORT_TAKEN):
            raise port_taken(port) from exc
        raise


def log_tail(engine: Docker, container: str, count: int = LOG_TAIL) -> str:
    try:
        text = engine.logs(container, tail=count)
    except EngineError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-count:])


def await_server(
    engine: Docker, container: str, port: int, token: str | None, timeout: float
) -> float:
    """Seconds until the server answered and took the token; RunError with
    its last log lines when it exits first, refuses the token or stays silent."""
    seen = restricted.wait_ready(engine, container, port, timeout=timeout)
    problem = fix = ""
    if seen.exit_code is not None:
        problem = f"the server exited during start-up (exit code {seen.exit_code})"
        fix = "its last log lines are above; check the image's run script and --env values"
    elif not seen.ready:
        problem = f"the server did not answer on {restricted.LOOPBACK}:{port} within {timeout:g} s"
        fix = "its last log lines are above; raise --timeout if the machine is slow"
    elif token is not None:
        auth = {"Authorization": f"token {token}"}
        status = restricted.http_status(port, "/api/status", auth)
        if status != 200:
            problem = f"the server answers but refuses the token nbs2i set (HTTP {status})"
            fix = "the image must honour JUPYTER_TOKEN (images built by nbs2i do)"
    if problem:
        raise RunError(problem, fix, details=log_tail(engine, container))
    return seen.seconds


def start(engine: Docker, request: RunRequest, report: Reporter = silent) -> Server:
    """Start the image restricted, wait until it answers, return the running server."""
    check_request(request)
    name = container_name(request.name)
    uid = request.uid if request.uid is not None else restricted.random_uid()
    info = _image(engine, request.image)
    check_port_free(request.port)
    token = None if request.password is not None else (request.token or new_token())
    port_in = restricted.server_port(info.config)
    leftovers = Leftovers(engine)
    try:
        workspace = prepare_workspace(engine, request, uid, leftovers)
        report(Event("step", f"starting {request.image} as UID {uid}, GID 0", {"uid": uid}))
        began = time.monotonic()
        spec = container_spec(
            request, uid=uid, name=name, container_port=port_in, workspace=workspace, token=token
        )
        cid = leftovers.container(_create(engine, spec))
        _start(engine, cid, request.port)
        port = restricted.published_port(engine.inspect_container(cid), port_in) or request.port
        await_server(engine, cid, port, token, request.timeout)
    except BaseException:
        with interrupts.deferred():
            leftovers.remove_all()
        raise
    ready = time.monotonic() - began
    return Server(cid, name, request.image, port, uid, token, workspace, ready)


# -- foreground, stop ------------------------------------------------------------


def follow(engine: Docker, server: Server, report: Reporter = silent) -> int:
    """Stream the server's log until it exits or the user interrupts.

    An interrupt (KeyboardInterrupt: Ctrl-C, SIGTERM, SIGHUP through the CLI)
    stops and removes the container, then goes on. The container is removed in
    every case; returns its exit code.
    """
    try:
        for line in lines(engine.follow_logs(server.container_id)):
            report(Event("output", line))
        code = engine.wait(server.container_id, timeout=restricted.STOP_GRACE + 5)
    except BaseException:
        with interrupts.deferred():
            _stop_and_remove(engine, server.container_id)
        raise
    engine.remove_container(server.container_id)
    return code


def _stop_and_remove(engine: Docker, container: str) -> None:
    with contextlib.suppress(EngineError):
        engine.stop(container, timeout=restricted.STOP_GRACE)
    engine.remove_container(container)


def _image_labels(engine: Docker, image_id: str) -> Mapping[str, str]:
    try:
        return engine.inspect_image(image_id).config.labels
    except NotFound:
        return {}  # the image was removed by force: no label of it to compare


def _home_volume(info: ContainerInfo) -> str | None:
    for mount in info.mounts:
        if mount.destination == restricted.HOME and mount.kind == "volume":
            return mount.name
    return None


def stop(engine: Docker, name: str) -> Stopped:
    """Stop and remove a server that `nbs2i run` started; never anyone else's container."""
    check_name(name)
    try:
        info = engine.inspect_container(name)
    except NotFound as exc:
        raise NotFound(
            f"no container named {name}",
            "list what nbs2i started with "
            f"`docker ps --filter label={labels.ROLE}={labels.ROLE_RUN}`",
        ) from exc
    if not started_by_run(info.labels, _image_labels(engine, info.image_id)):
        raise RunError(
            f"container {name} was not started by nbs2i run",
            "nbs2i stop only stops its own servers; use `docker stop` for others",
        )
    with interrupts.deferred():
        _stop_and_remove(engine, info.id)
    return Stopped(name=info.name or name, workspace=_home_volume(info))


def stop_all(engine: Docker, names: Iterable[str]) -> tuple[StopOutcome, ...]:
    """`stop` each name in turn; one that fails does not keep the others
    running. A malformed name stops nothing: it is refused before any."""
    outcomes = []
    names = check_names(names)
    for name in names:
        try:
            outcomes.append(StopOutcome(name, stopped=stop(engine, name)))
        except Nbs2iError as exc:
            outcomes.append(StopOutcome(name, error=exc))
    return tuple(outcomes)

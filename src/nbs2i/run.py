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
import errno
import hashlib
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nbs2i import defaults, interrupts, labels, restricted
from nbs2i.cleanup import Leftovers
from nbs2i.engine import ContainerInfo, ContainerSpec, Docker, ImageInfo, Mount
from nbs2i.errors import EngineError, Nbs2iError, NotFound, RunError, SecurityError, UsageError
from nbs2i.progress import Event, Reporter, lines, silent

# The host port on 127.0.0.1 (the server's own port, so URLs look familiar).
DEFAULT_PORT = defaults.RUN_PORT
# Seconds to wait for the server's API.
DEFAULT_TIMEOUT = defaults.RUN_TIMEOUT
LOG_TAIL = 20
TOKEN_BYTES = 24
NONCE_BYTES = 16

# What a Docker volume / container name may be (moby's rules).
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")
_CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Set by nbs2i itself; through --env they would bypass the checks on --token/--password.
_RESERVED_ENV = {
    "JUPYTER_TOKEN": "use --token",
    "JUPYTER_PASSWORD": "use --password",
    "HOME": f"HOME is {restricted.HOME}; mount your files there with --volume",
}
_PORT_TAKEN = ("port is already allocated", "address already in use")
# Never a workspace, whatever their modes: the system's trees, and the
# directories that hold everyone's files (but a directory inside one is fine).
_SYSTEM_TREES = (
    *("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32"),
    *("/proc", "/root", "/run", "/sbin", "/sys", "/usr", "/var"),
)
_SHARED_DIRS = ("/", "/home", "/media", "/mnt", "/opt", "/srv", "/tmp")


@dataclass(frozen=True)
class RunRequest:
    """What to start and how. Defaults are OpenShift restricted-v2's."""

    image: str
    port: int = DEFAULT_PORT  # host port on 127.0.0.1; 0 lets the engine choose a free one
    uid: int | None = None  # None: restricted.random_uid()
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


# -- checks before anything is asked of the engine ------------------------------


def new_token() -> str:
    return secrets.token_hex(TOKEN_BYTES)


def check_name(name: str) -> str:
    if not _CONTAINER_NAME.match(name):
        raise UsageError(
            f"bad container name {name!r}",
            "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return name


def check_names(names: Iterable[str]) -> list[str]:
    return [check_name(name) for name in names]


def container_name(name: str | None) -> str:
    return check_name(name) if name is not None else f"nbs2i-run-{secrets.token_hex(4)}"


def is_directory_spec(spec: str) -> bool:
    """Docker's own rule: a path has a '/' or starts with '.' or '~'; else a volume name."""
    return "/" in spec or spec.startswith((".", "~"))


def check_env(env: Iterable[tuple[str, str]]) -> None:
    for key, _value in env:
        if not _ENV_NAME.match(key):
            raise UsageError(f"bad environment variable name {key!r}", "use --env NAME=VALUE")
        if key in _RESERVED_ENV:
            raise UsageError(f"--env {key} is set by nbs2i run", _RESERVED_ENV[key])


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


def check_port(port: int) -> int:
    if not 0 <= port < 65536:
        raise UsageError(f"bad port {port}", "use --port 1-65535, or 0 for any free port")
    return port


def is_system_directory(path: Path) -> bool:
    """/, /home, /srv and the like, the user's own home, or anything inside the
    system's trees (/etc, /usr, ...): opening one up for group 0 would hand it
    to every container user. `path` is absolute and resolved."""
    text = str(path)
    if text in _SHARED_DIRS or path == Path.home():
        return True
    return any(text == tree or text.startswith(tree + "/") for tree in _SYSTEM_TREES)


def check_volume_spec(spec: str | None) -> None:
    if spec is None:
        return
    if is_directory_spec(spec):
        path = Path(spec).expanduser().resolve()
        if is_system_directory(path):
            raise UsageError(
                f"{path} is a system directory, not a workspace",
                "give a directory of your own (e.g. --volume ./work) or a volume name",
            )
    elif not _VOLUME_NAME.match(spec):
        raise UsageError(
            f"bad volume name {spec!r}",
            "use letters, digits, '_', '.' and '-', or a directory path like ./work",
        )


def check_request(request: RunRequest) -> None:
    """Every input that can be judged without the engine, before any slow work."""
    check_auth(request.token, request.password)
    check_env(request.env)
    if request.name is not None:
        check_name(request.name)
    if request.uid is not None:
        restricted.check_uid(request.uid)
    check_port(request.port)
    if request.timeout <= 0:
        raise UsageError(f"bad timeout {request.timeout}", "use --timeout SECONDS, more than 0")
    check_volume_spec(request.volume)


class Stat(Protocol):
    """The fields of os.stat_result that writable_by reads."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...


def writable_by(st: Stat, uid: int, gid: int = restricted.GID) -> bool:
    """Can a process with this UID and GID (and no capabilities) create files in the dir?"""
    mode = st.st_mode
    if st.st_uid == uid:
        return bool(mode & stat.S_IWUSR and mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(mode & stat.S_IWGRP and mode & stat.S_IXGRP)
    return bool(mode & stat.S_IWOTH and mode & stat.S_IXOTH)


def check_directory(path: Path, uid: int) -> None:
    """A bind-mounted workspace must exist and be writable by UID with GID 0."""
    if not path.exists():
        raise RunError(
            f"workspace directory {path} does not exist",
            f"create it with `mkdir -p {path} && chgrp 0 {path} && chmod g+rwX {path}`",
        )
    if not path.is_dir():
        raise RunError(f"workspace {path} is not a directory", "give a directory or a volume name")
    if not writable_by(path.stat(), uid):
        raise RunError(
            f"workspace directory {path} is not writable by UID {uid} with GID 0",
            f"run `chgrp 0 {path} && chmod g+rwX {path}` (group 0 is how OpenShift "
            "shares files between random UIDs), or pass --uid with the directory's owner",
        )


def check_port_free(port: int) -> None:
    """Fail early, before anything exists, when something already listens on the port."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a closed connection in TIME_WAIT is not "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((restricted.LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_taken(port) from exc
            if exc.errno != errno.EACCES:  # ports < 1024 as non-root: the engine may still bind
                raise


def port_taken(port: int) -> RunError:
    return RunError(
        f"port {port} on {restricted.LOOPBACK} is already taken",
        f"choose another with --port N (e.g. --port {port + 1}), or --port 0 for any free port",
    )


# -- what the container gets -------------------------------------------------------


def password_hash(password: str) -> str:
    """A salted hash in the `algorithm:salt:hexdigest` form Jupyter checks."""
    salt = secrets.token_hex(16)
    digest = hashlib.sha512(password.encode("utf-8") + salt.encode("ascii")).hexdigest()
    return f"sha512:{salt}:{digest}"


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


def run_labels(request: RunRequest, nonce: str) -> dict[str, str]:
    return {
        **dict(request.labels),
        labels.ROLE: labels.ROLE_RUN,
        labels.RUN_IMAGE: request.image,
        labels.RUN_NONCE: nonce,
    }


def started_by_run(container: Mapping[str, str], image: Mapping[str, str]) -> bool:
    """Did `nbs2i run` make this container? A container inherits its image's
    labels, so role=run proves nothing; the nonce it was created with does,
    unless the image itself carries that very value."""
    nonce = container.get(labels.RUN_NONCE, "")
    return (
        container.get(labels.ROLE) == labels.ROLE_RUN
        and len(nonce) >= 2 * NONCE_BYTES
        and image.get(labels.RUN_NONCE) != nonce
    )


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

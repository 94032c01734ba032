"""The only module that talks to Docker (with `engine_socket`, its transport for
a local engine).

Everything else asks a `Docker` (the Protocol below; `Engine` is the real one,
tests bring fakes) for what it needs, in nbs2i's own types: a `ContainerSpec`
in, an `ImageInfo` or `ContainerInfo` out, one return type per call. Raw
engine JSON and docker-py keyword arguments never leave this module.

The real engine:

- connects from the standard environment (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`,
  `DOCKER_CERT_PATH`) and negotiates the API version, so Debian's docker.io
  (API 1.41) and newer engines both work;
- turns "no engine" into one line that says where it looked and what to do;
- retries transient faults (connection reset, 5xx, timeouts) with tenacity,
  bounded in attempts and time, never a user error, never a streamed upload;
- translates docker-py's exceptions into `nbs2i.errors` types.

docker-py (and requests under it) is imported when a request needs it, not
when this module is: `nbs2i --help` and `--as-dockerfile` never pay for it, and
with a local engine neither does a notebook-only build, whose requests
`engine_socket` sends with the standard library.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from nbs2i.engine_socket import ApiError, ConnectionFailed, SocketApi, socket_path
from nbs2i.errors import EngineError, EngineUnavailable, Nbs2iError, NotFound
from nbs2i.reference import split

if TYPE_CHECKING:
    import docker

T = TypeVar("T")

# Retry budget for one engine call: at most this many attempts and seconds.
# The type bits of a Go os.FileMode, as the engine reports a path's mode.
_GO_TYPE_BITS = 1 << 31 | 1 << 27 | 1 << 26 | 1 << 25 | 1 << 24 | 1 << 21 | 1 << 19
_GO_FILE_KINDS = {0: "file", 1 << 31: "dir", 1 << 27: "link"}
RETRY_ATTEMPTS = 4
RETRY_SECONDS = 30.0
# Engine statuses that say "try again", not "you asked for something wrong".
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
# A 500 that is really the caller's mistake; retrying cannot help.
_PERMANENT_500_HINTS = ("no such", "not found", "invalid", "executable file", "conflict")
# The oldest API nbs2i speaks (Docker 1.12); Debian's docker.io speaks 1.41.
MINIMUM_API = "1.24"
# The newest: what the docker-py nbs2i depends on speaks.
NEWEST_API = "1.45"

ENGINE_HINT = (
    "start one with `scripts/ensure-engine` (root on Debian/Ubuntu), "
    "`sudo systemctl start docker`, or point DOCKER_HOST at a running engine"
)


# -- what goes in ------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A volume (by name) or a host directory (absolute path) mounted at `target`."""

    source: str
    target: str
    read_only: bool = False
    # A new volume normally gets a copy of what the image has at target
    # (owner, mode, files); nocopy mounts it as empty as a platform's would be.
    nocopy: bool = False

    @property
    def is_bind(self) -> bool:
        return self.source.startswith("/")


@dataclass(frozen=True)
class PortBinding:
    """A container TCP port published on host_ip:host_port (0: the engine picks)."""

    container_port: int
    host_ip: str
    host_port: int = 0


# What the engine keeps of a container's output, at most (see ContainerSpec).
LOG_LIMIT = 10 << 20


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a container is created with."""

    image: str
    command: tuple[str, ...] | None = None  # None: the image's CMD
    entrypoint: tuple[str, ...] | None = None  # None: the image's; (): cleared
    user: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    working_dir: str = ""
    mounts: tuple[Mount, ...] = ()
    tmpfs: Mapping[str, str] = field(default_factory=dict)  # path -> mount options
    read_only: bool = False
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    network: str = ""  # "" the engine's default; "none" no network at all
    # The most bytes of output the engine keeps for the container (json-file,
    # one file; 0: the engine's own default). nbs2i reads output through attach,
    # so a container that floods its output cannot fill the engine's disk.
    log_limit: int = LOG_LIMIT
    # Stdin open, and closed by the engine when the attach that holds it ends
    # (StdinOnce): the command can tell that nbs2i is gone, even killed.
    stdin: bool = False


@dataclass(frozen=True)
class BuildSpec:
    """A `docker build` of an in-memory context."""

    context: bytes  # a tar
    tag: str
    buildargs: Mapping[str, str] = field(default_factory=dict)
    target: str = ""
    nocache: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


# -- what comes out ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The runtime config of an image (what `docker inspect` shows as Config)."""

    user: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # in the image's order
    labels: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    exposed_ports: tuple[str, ...] = ()  # "8888/tcp"
    volumes: tuple[str, ...] = ()
    stop_signal: str = ""
    healthcheck: Mapping[str, Any] | None = None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any] | None) -> ImageConfig:
        raw = raw or {}
        return cls(
            user=_text(raw, "User"),
            entrypoint=_items(raw, "Entrypoint"),
            cmd=_items(raw, "Cmd"),
            env=_env(_items(raw, "Env")),
            labels=_mapping(raw, "Labels"),
            working_dir=_text(raw, "WorkingDir"),
            exposed_ports=tuple(sorted(_mapping(raw, "ExposedPorts"))),
            volumes=tuple(sorted(_mapping(raw, "Volumes"))),
            stop_signal=_text(raw, "StopSignal"),
            healthcheck=_none_if_empty(raw.get("Healthcheck")),
        )

    def to_api(self) -> dict[str, Any]:
        """The engine's JSON shape (commit config, image config files)."""
        raw: dict[str, Any] = {
            "User": self.user,
            "Entrypoint": list(self.entrypoint) or None,
            "Cmd": list(self.cmd) or None,
            "Env": [f"{k}={v}" for k, v in self.env.items()],
            "Labels": dict(self.labels),
            "WorkingDir": self.working_dir,
            "ExposedPorts": {port: {} for port in self.exposed_ports} or None,
            "Volumes": {path: {} for path in self.volumes} or None,
        }
        if self.stop_signal:
            raw["StopSignal"] = self.stop_signal
        if self.healthcheck:
            raw["Healthcheck"] = dict(self.healthcheck)
        return raw


@dataclass(frozen=True)
class ImageInfo:
    id: str  # sha256:...
    tags: tuple[str, ...]
    config: ImageConfig
    layers: tuple[str, ...] = ()  # the root filesystem's diff ids, lowest first
    created: str = ""
    architecture: str = ""
    os: str = ""
    size: int = 0

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> ImageInfo:
        return cls(
            id=str(raw.get("Id") or ""),
            tags=tuple(t for t in raw.get("RepoTags") or () if t != "<none>:<none>"),
            config=ImageConfig.from_api(raw.get("Config")),
            layers=tuple((raw.get("RootFS") or {}).get("Layers") or ()),
            created=str(raw.get("Created") or ""),
            architecture=str(raw.get("Architecture") or ""),
            os=str(raw.get("Os") or ""),
            size=int(raw.get("Size") or 0),
        )


@dataclass(frozen=True)
class ImageSummary:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    created: int  # epoch seconds
    size: int


@dataclass(frozen=True)
class HistoryEntry:
    """One line of `docker history`, newest first as the engine gives them."""

    created: int  # epoch seconds
    created_by: str
    comment: str
    size: int


@dataclass(frozen=True)
class MountInfo:
    kind: str  # "volume", "bind", "tmpfs"
    name: str  # the volume's name, or the host path
    destination: str


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image_id: str
    labels: Mapping[str, str]
    running: bool
    exit_code: int | None
    ports: Mapping[int, int]  # container TCP port -> published host port
    mounts: tuple[MountInfo, ...] = ()
    user: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    health: str = ""  # "starting", "healthy" or "unhealthy"; "" without a HEALTHCHECK

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> ContainerInfo:
        state = _mapping(raw, "State")
        config = ImageConfig.from_api(raw.get("Config"))
        running = bool(state.get("Running"))
        return cls(
            id=_text(raw, "Id"),
            name=_text(raw, "Name").lstrip("/"),
            image_id=_text(raw, "Image"),
            labels=config.labels,
            running=running,
            exit_code=None if running else state.get("ExitCode"),
            ports=_published(_mapping(_mapping(raw, "NetworkSettings"), "Ports")),
            mounts=tuple(_mount(m) for m in _items(raw, "Mounts")),
            user=config.user,
            env=config.env,
            health=_health(state),
        )


def _published(ports: Mapping[str, Any]) -> dict[int, int]:
    """Container TCP port -> the host port it is published on."""
    found: dict[int, int] = {}
    for key, bindings in ports.items():
        port, _, proto = str(key).partition("/")
        host = next((b.get("HostPort") for b in bindings or () if b.get("HostPort")), None)
        if proto == "tcp" and port.isdigit() and host:
            found[int(port)] = int(host)
    return found


def _mount(raw: Mapping[str, Any]) -> MountInfo:
    return MountInfo(
        _text(raw, "Type"), _text(raw, "Name") or _text(raw, "Source"), _text(raw, "Destination")
    )


def _health(state: Mapping[str, Any]) -> str:
    return str((state.get("Health") or {}).get("Status") or "")


@dataclass(frozen=True)
class ContainerSummary:
    id: str
    name: str
    labels: Mapping[str, str]
    running: bool


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class NetworkInfo:
    id: str
    name: str
    gateway: str  # the host's address on the network ("" when unknown)
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class BuildEvent:
    """One event of a `docker build`: a line of output, an error, or the image id."""

    stream: str = ""
    error: str = ""
    image_id: str = ""


@dataclass(frozen=True)
class ServerVersion:
    version: str
    api_version: str


class Docker(Protocol):
    """What nbs2i asks of an engine. `Engine` talks to a real one; tests fake it."""

    where: str

    @property
    def api_version(self) -> str: ...

    def server_version(self) -> ServerVersion: ...

    # images
    def inspect_image(self, ref: str) -> ImageInfo: ...
    def image_exists(self, ref: str) -> bool: ...
    def pull(self, ref: str) -> None: ...
    def push(self, ref: str) -> str: ...
    def tag(self, image: str, ref: str) -> None: ...
    def remove_image(self, ref: str, force: bool = False) -> None: ...
    def images(
        self, labels: Iterable[str] = (), dangling: bool | None = None
    ) -> list[ImageSummary]: ...
    def history(self, ref: str) -> list[HistoryEntry]: ...
    def export_image(self, ref: str) -> Iterator[bytes]: ...
    def load_image(self, archive: Iterable[bytes]) -> None: ...
    def build(self, spec: BuildSpec) -> Iterator[BuildEvent]: ...

    # containers
    def create_container(self, spec: ContainerSpec) -> str: ...
    def start(self, container: str) -> None: ...
    def wait(self, container: str, timeout: float | None = None) -> int: ...
    def logs(self, container: str, tail: int | None = None) -> str: ...
    def follow_logs(self, container: str) -> Iterator[bytes]: ...
    def attach(self, container: str, *, stderr: bool = True) -> Iterator[bytes]: ...
    def put_archive(self, container: str, path: str, data: bytes | Iterable[bytes]) -> None: ...
    def get_archive(self, container: str, path: str) -> Iterator[bytes]: ...
    def path_kind(self, container: str, path: str) -> str: ...
    def commit(self, container: str, ref: str, config: ImageConfig, message: str) -> str: ...
    def inspect_container(self, container: str) -> ContainerInfo: ...
    def stop(self, container: str, timeout: int = 10) -> None: ...
    def kill(self, container: str, signal: str = "KILL") -> None: ...
    def remove_container(self, container: str) -> None: ...
    def containers(self, labels: Iterable[str] = ()) -> list[ContainerSummary]: ...
    def exec(
        self,
        container: str,
        cmd: list[str],
        *,
        user: str = "",
        env: Mapping[str, str] | None = None,
        workdir: str = "",
    ) -> ExecResult: ...

    # volumes and networks
    def create_volume(
        self,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        driver_opts: Mapping[str, str] | None = None,
    ) -> str: ...
    def inspect_volume(self, name: str) -> VolumeInfo: ...
    def remove_volume(self, name: str) -> None: ...
    def volumes(self, labels: Iterable[str] = ()) -> list[VolumeInfo]: ...
    def create_network(self, name: str, labels: Mapping[str, str] | None = None) -> NetworkInfo: ...
    def remove_network(self, name: str) -> None: ...
    def networks(self, labels: Iterable[str] = ()) -> list[NetworkInfo]: ...


# -- between the engine's JSON and these types ---------------------------------------


def _text(raw: Mapping[str, Any], key: str) -> str:
    return str(raw.get(key) or "")


def _items(raw: Mapping[str, Any], key: str) -> tuple[Any, ...]:
    return tuple(raw.get(key) or ())


def _mapping(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    return dict(raw.get(key) or {})


def _none_if_empty(value: Any) -> Any:
    """The API's way of saying "the default": leave the field out."""
    return value or None


def _env(items: tuple[Any, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, _, value = str(item).partition("=")
        env[name] = value
    return env


def _host_config(spec: ContainerSpec) -> dict[str, Any]:
    """docker-py's host config arguments for a spec."""
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
    return {
        "binds": _none_if_empty(binds),
        "tmpfs": _none_if_empty(dict(spec.tmpfs)),
        "read_only": _none_if_empty(spec.read_only),
        "cap_drop": _none_if_empty(list(spec.cap_drop)),
        "security_opt": _none_if_empty(list(spec.security_opt)),
        "port_bindings": _none_if_empty(bindings),
        "network_mode": _none_if_empty(spec.network),
        "log_config": _log_config(spec.log_limit),
    }


def _log_config(limit: int) -> dict[str, Any] | None:
    """json-file with one file of at most `limit` bytes; Docker and Podman
    (k8s-file) both take max-size."""
    if not limit:
        return None
    return {"type": "json-file", "config": {"max-size": str(limit)}}


def _create_args(spec: ContainerSpec) -> dict[str, Any]:
    """docker-py's create_container arguments for a spec (but the host config)."""
    command = None if spec.command is None else list(spec.command)
    # docker-py drops an empty list; [""] is how the API clears an ENTRYPOINT.
    entrypoint = None if spec.entrypoint is None else list(spec.entrypoint) or [""]
    return {
        "command": command,
        "entrypoint": entrypoint,
        "user": _none_if_empty(spec.user),
        "environment": _none_if_empty([f"{k}={v}" for k, v in spec.env.items()]),
        "labels": dict(spec.labels),
        "name": _none_if_empty(spec.name),
        "working_dir": _none_if_empty(spec.working_dir),
        "ports": _none_if_empty([p.container_port for p in spec.ports]),
        "network_disabled": spec.network == "none",
        # docker-py sets StdinOnce only for a container it does not detach.
        "stdin_open": spec.stdin,
        "detach": not spec.stdin,
    }


# -- error handling ------------------------------------------------------------------


def _docker() -> Any:
    import docker
    import docker.errors

    return docker


def _requests() -> Any:
    import requests.exceptions

    return requests.exceptions


def _fault(exc: BaseException) -> ApiError | ConnectionFailed | None:
    """docker-py's and engine_socket's errors in one shape; None for anything else.
    docker-py is only asked when it is loaded: otherwise none of its errors can
    be in flight."""
    if isinstance(exc, ApiError | ConnectionFailed):
        return exc
    if "docker" not in sys.modules:
        return None
    errors, rex = _docker().errors, _requests()
    if isinstance(exc, rex.ConnectionError | rex.Timeout):
        return ConnectionFailed(str(exc))
    if isinstance(exc, errors.NotFound | errors.ImageNotFound):
        return ApiError(404, _explain(exc))
    if isinstance(exc, errors.APIError):
        return ApiError(exc.status_code, _explain(exc))
    return None


def is_transient(exc: BaseException) -> bool:
    """True for faults that a later attempt can cure."""
    fault = _fault(exc)
    if isinstance(fault, ConnectionFailed):
        return True
    if fault is None or fault.status_code not in TRANSIENT_STATUS:
        return False
    text = fault.explanation.lower()
    return not (fault.status_code == 500 and any(hint in text for hint in _PERMANENT_500_HINTS))


def translate(exc: BaseException, where: str) -> Exception:
    """Turn a docker-py, requests or engine_socket exception into an nbs2i error."""
    fault = _fault(exc)
    if isinstance(fault, ConnectionFailed):
        return EngineUnavailable(f"the Docker engine at {where} stopped answering", ENGINE_HINT)
    if fault is None:
        return EngineError(f"Docker error: {_explain(exc)}")
    text = " ".join(fault.explanation.split())
    if fault.status_code == 404:
        return NotFound(text, "check the name with `docker images` / `docker ps -a`")
    return EngineError(f"the Docker engine refused the request: {text}")


def _explain(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())


def _engine_exceptions() -> tuple[type[BaseException], ...]:
    ours: tuple[type[BaseException], ...] = (ApiError, ConnectionFailed)
    if "docker" not in sys.modules:
        return ours
    return (*ours, _docker().errors.DockerException, _requests().RequestException)


def call(fn: Callable[..., T], *args: Any, where: str = "", **kwargs: Any) -> T:
    """Run one engine request: retry transient faults, translate the rest.

    The first attempt is made directly; tenacity (and what it imports) is loaded
    only when the engine has a hiccup, so a healthy build never pays for it.
    """
    try:
        return fn(*args, **kwargs)
    except _engine_exceptions() as exc:
        if not is_transient(exc):
            raise translate(exc, where) from exc
    return _retry(fn, args, kwargs, where)


def _retry(fn: Callable[..., T], args: Any, kwargs: Any, where: str) -> T:
    """The attempts after a transient fault, bounded in number and time."""
    from tenacity import (
        Retrying,
        retry_if_exception,
        stop_after_attempt,
        stop_after_delay,
        wait_exponential,
    )

    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(RETRY_ATTEMPTS - 1) | stop_after_delay(RETRY_SECONDS),
        wait=wait_exponential(multiplier=0.25, max=4),
        reraise=True,
    )
    try:
        return retrying(fn, *args, **kwargs)
    except _engine_exceptions() as exc:
        raise translate(exc, where) from exc


def call_once(fn: Callable[..., T], *args: Any, where: str = "", **kwargs: Any) -> T:
    """Run one engine request that must not be repeated; translate its errors."""
    try:
        return fn(*args, **kwargs)
    except _engine_exceptions() as exc:
        raise translate(exc, where) from exc


def _env_kwargs() -> dict[str, Any]:
    """docker-py's connection settings from DOCKER_HOST, DOCKER_TLS_VERIFY and
    DOCKER_CERT_PATH."""
    docker = _docker()
    try:
        return dict(docker.utils.kwargs_from_env())
    except docker.errors.TLSParameterError as exc:
        raise EngineUnavailable(
            f"bad Docker TLS settings: {exc}", "check DOCKER_TLS_VERIFY and DOCKER_CERT_PATH"
        ) from exc


def _probe(version: Callable[..., dict[str, Any]], where: str) -> dict[str, Any]:
    """The engine's /version answer, or one line saying no engine answers there."""
    try:
        return call(version, api_version=False, where=where)
    except (EngineUnavailable, EngineError) as exc:
        raise EngineUnavailable(f"no Docker engine answers at {where}", ENGINE_HINT) from exc


def _default_where() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def negotiate_version(
    server_max: str, server_min: str | None = None, ours_max: str | None = None
) -> str:
    """The newest API version that both nbs2i and the engine speak."""
    ours_max = ours_max or NEWEST_API
    chosen = min(server_max, ours_max, key=_version_key)
    too_old = _version_key(chosen) < _version_key(MINIMUM_API)
    if too_old or (server_min and _version_key(chosen) < _version_key(server_min)):
        raise EngineUnavailable(
            f"the Docker engine speaks API {server_min or '?'}-{server_max}, nbs2i needs "
            f"{MINIMUM_API}-{ours_max}",
            "upgrade the engine (Docker 1.12 or newer)",
        )
    return chosen


# -- the real engine ------------------------------------------------------------------


class Engine:
    """A connected Docker engine. Create one with `Engine.connect()`.

    `_fast` serves the requests every build makes: `engine_socket` for a local
    engine, docker-py otherwise. docker-py itself (`_api`) is made on first use.
    """

    def __init__(
        self,
        where: str,
        make_client: Callable[[], docker.DockerClient],
        version: str,
        local: SocketApi | None = None,
    ) -> None:
        self.where = where
        self._make_client = make_client
        self._client: docker.DockerClient | None = None
        self._version = version
        self._local = local

    @classmethod
    def connect(cls, timeout: int = 120) -> Engine:
        """Connect from the environment, negotiating the API version."""
        where = _default_where()
        path = socket_path(os.environ.get("DOCKER_HOST", ""))
        if path is None:
            return cls._connect_remote(where, timeout)
        info = _probe(SocketApi(path, timeout=10).version, where)
        version = negotiate_version(info.get("ApiVersion", MINIMUM_API), info.get("MinAPIVersion"))

        def make_client() -> docker.DockerClient:
            return _docker().DockerClient(version=version, timeout=timeout, **_env_kwargs())

        return cls(where, make_client, version, SocketApi(path, timeout, version))

    @classmethod
    def _connect_remote(cls, where: str, timeout: int) -> Engine:
        """An engine only docker-py reaches (TCP, TLS, SSH)."""
        docker = _docker()
        env = _env_kwargs()
        try:
            probe = docker.APIClient(version=MINIMUM_API, timeout=10, **env)
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(
                f"no Docker engine answers at {where} ({exc})", ENGINE_HINT
            ) from exc
        try:
            info = _probe(probe.version, where)
        finally:
            probe.close()
        version = negotiate_version(info.get("ApiVersion", MINIMUM_API), info.get("MinAPIVersion"))
        client = docker.DockerClient(version=version, timeout=timeout, **env)
        return cls(where, lambda: client, version)

    @property
    def _api(self) -> Any:
        """docker-py's low-level client, made on first use."""
        if self._client is None:
            self._client = self._make_client()
        return self._client.api

    @property
    def _fast(self) -> Any:
        """The client for the requests every build makes."""
        return self._local if self._local is not None else self._api

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return call(fn, *args, where=self.where, **kwargs)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def api_version(self) -> str:
        return self._version

    def server_version(self) -> ServerVersion:
        raw = self._call(self._fast.version)
        return ServerVersion(str(raw.get("Version") or ""), str(raw.get("ApiVersion") or ""))

    # -- images ---------------------------------------------------------

    def inspect_image(self, ref: str) -> ImageInfo:
        """The engine's view of an image; NotFound when absent."""
        try:
            return ImageInfo.from_api(self._call(self._fast.inspect_image, ref))
        except NotFound as exc:
            raise NotFound(
                f"image {ref} is not in the engine",
                "build or pull it first, or check the name with `docker images`",
            ) from exc

    def image_exists(self, ref: str) -> bool:
        try:
            self.inspect_image(ref)
        except NotFound:
            return False
        return True

    def pull(self, ref: str) -> None:
        repo, tag = split(ref)
        try:
            self._call(self._api.pull, repo, tag=tag)
        except EngineError as exc:
            raise NotFound(
                f"cannot pull {ref} ({exc.problem})",
                "check the name and your registry access, or use --pull-policy never "
                "with a local image",
            ) from exc

    def push(self, ref: str) -> str:
        """Push with the credentials of the usual Docker config; the pushed digest."""
        repo, tag = split(ref)
        digest = ""
        stream = self._call(self._api.push, repo, tag=tag, stream=True, decode=True)
        for event in self._guard(stream):
            if event.get("error"):
                detail = (event.get("errorDetail") or {}).get("message") or event["error"]
                raise EngineError(f"pushing {ref} failed: {' '.join(str(detail).split())}")
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
        if not digest:
            raise EngineError(f"pushing {ref} ended without a digest")
        return digest

    def tag(self, image: str, ref: str) -> None:
        repo, tag = split(ref)
        self._call(self._api.tag, image, repo, tag=tag)

    def remove_image(self, ref: str, force: bool = False) -> None:
        """Remove an image; quietly does nothing when it is already gone."""
        with contextlib.suppress(NotFound):
            self._call(self._fast.remove_image, ref, force=force, noprune=False)

    def images(
        self, labels: Iterable[str] = (), dangling: bool | None = None
    ) -> list[ImageSummary]:
        filters: dict[str, Any] = {}
        if labels:
            filters["label"] = list(labels)
        if dangling is not None:
            filters["dangling"] = dangling
        return [
            ImageSummary(
                id=str(raw.get("Id") or ""),
                tags=tuple(t for t in raw.get("RepoTags") or () if t != "<none>:<none>"),
                labels=dict(raw.get("Labels") or {}),
                created=int(raw.get("Created") or 0),
                size=int(raw.get("Size") or 0),
            )
            for raw in self._call(self._api.images, filters=filters)
        ]

    def history(self, ref: str) -> list[HistoryEntry]:
        return [
            HistoryEntry(
                created=int(raw.get("Created") or 0),
                created_by=str(raw.get("CreatedBy") or ""),
                comment=str(raw.get("Comment") or ""),
                size=int(raw.get("Size") or 0),
            )
            for raw in self._call(self._fast.history, ref)
        ]

    def export_image(self, ref: str) -> Iterator[bytes]:
        """The `docker save` tar stream of one image."""
        return self._guard(self._call(self._api.get_image, ref))

    def load_image(self, archive: Iterable[bytes]) -> None:
        """`docker load` of a streamed archive; never replayed."""
        stream = call_once(self._fast.load_image, archive, where=self.where)
        for event in self._guard(stream):
            if isinstance(event, dict) and event.get("error"):
                detail = (event.get("errorDetail") or {}).get("message") or event["error"]
                raise EngineError(f"the engine refused the image: {' '.join(str(detail).split())}")

    def build(self, spec: BuildSpec) -> Iterator[BuildEvent]:
        """`docker build` as a stream of events. The stream is not retried: a build
        is not idempotent to resume."""
        import io

        stream = self._call(
            self._api.build,
            fileobj=io.BytesIO(spec.context),
            custom_context=True,
            tag=spec.tag,
            buildargs=dict(spec.buildargs),
            target=spec.target or None,
            nocache=spec.nocache,
            labels=dict(spec.labels) or None,
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        )
        for raw in self._guard(stream):
            error = raw.get("error")
            if error:
                detail = (raw.get("errorDetail") or {}).get("message") or error
                yield BuildEvent(error=" ".join(str(detail).split()))
                continue
            aux = raw.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                yield BuildEvent(image_id=str(aux["ID"]))
            if raw.get("stream"):
                yield BuildEvent(stream=str(raw["stream"]))

    # -- containers -----------------------------------------------------

    def create_container(self, spec: ContainerSpec) -> str:
        """Create a container; its id."""
        host = self._api.create_host_config(**_host_config(spec))
        result = self._call(
            self._api.create_container, spec.image, host_config=host, **_create_args(spec)
        )
        return str(result["Id"])

    def start(self, container: str) -> None:
        self._call(self._api.start, container)

    def wait(self, container: str, timeout: float | None = None) -> int:
        """Block until the container exits; its exit code."""
        rex = _requests()
        try:
            result = self._api.wait(container, timeout=timeout)
        except (rex.ReadTimeout, rex.ConnectionError) as exc:
            # A wait that outlives `timeout` surfaces from urllib3 as a
            # ConnectionError("Read timed out"), not always as ReadTimeout.
            if isinstance(exc, rex.ReadTimeout) or "timed out" in str(exc):
                raise EngineError(
                    f"container {container[:12]} did not finish in {timeout}s"
                ) from exc
            raise translate(exc, self.where) from exc
        except _engine_exceptions() as exc:
            raise translate(exc, self.where) from exc
        return int(result.get("StatusCode", -1))

    def logs(self, container: str, tail: int | None = None) -> str:
        """What the container printed so far (stdout and stderr), decoded."""
        raw = self._call(self._api.logs, container, stdout=True, stderr=True, tail=tail or "all")
        return bytes(raw).decode("utf-8", "replace")

    def follow_logs(self, container: str) -> Iterator[bytes]:
        """The container's output from the start, then as it comes, until it exits."""
        return self._guard(
            self._call(
                self._api.logs, container, stream=True, follow=True, stdout=True, stderr=True
            )
        )

    def attach(self, container: str, *, stderr: bool = True) -> Iterator[bytes]:
        """Raw output of a container, attached before it starts so nothing is missed.

        stdout alone (stderr=False) carries binary data intact (a tar from
        save-artifacts): the json-file log driver would mangle it. The same
        connection is the container's stdin when it was created with `stdin`.
        Closing the iterator closes the connection at once: the engine stops
        writing into it, and closes that stdin.
        """
        api = self._api
        from docker.types.daemon import CancellableStream

        def open_stream() -> Any:
            # docker-py's attach, with stdin: the engine ignores it for a
            # container without an open stdin.
            response = api._post(
                api._url("/containers/{0}/attach", container),
                headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                params={"stdin": 1, "stdout": 1, "stderr": int(stderr), "stream": 1, "logs": 1},
                stream=True,
            )
            return CancellableStream(api._read_from_socket(response, True, tty=False), response)

        return self._guard(self._call(open_stream))

    def put_archive(self, container: str, path: str, data: bytes | Iterable[bytes]) -> None:
        """Unpack a tar (bytes, or an iterable streamed chunk by chunk) at path.

        A stream cannot be replayed, so only a bytes payload is retried; a
        failed stream surfaces at once and the caller starts over.
        """
        if isinstance(data, bytes | bytearray):
            ok = self._call(self._api.put_archive, container, path, data)
        else:
            ok = call_once(self._api.put_archive, container, path, data, where=self.where)
        if not ok:
            raise EngineError(f"the engine did not accept the archive for {path}")

    def get_archive(self, container: str, path: str) -> Iterator[bytes]:
        stream, _stat = self._call(self._api.get_archive, container, path)
        return self._guard(stream)

    def path_kind(self, container: str, path: str) -> str:
        """What `path` is in a container's file system, without reading it: "dir",
        "file", "link", "other", or "" when there is nothing."""
        import base64
        import urllib.parse

        url = (
            f"{self._api.base_url}/v{self._api.api_version}/containers/"
            f"{urllib.parse.quote(container)}/archive"
        )
        # HEAD answers the stat header alone; a GET would stream the whole tree.
        response = self._call(self._api.head, url, params={"path": path})
        if response.status_code == 404:
            return ""
        if response.status_code != 200:
            raise EngineError(f"the engine answered {response.status_code} for {path}")
        header = response.headers.get("X-Docker-Container-Path-Stat", "")
        mode = int(json.loads(base64.b64decode(header) or b"{}").get("mode", 0))
        return _GO_FILE_KINDS.get(mode & _GO_TYPE_BITS, "other")

    def commit(self, container: str, ref: str, config: ImageConfig, message: str) -> str:
        """Commit a container as image `ref` with exactly `config`; the image id."""
        repo, tag = split(ref)
        result = self._call(
            self._api.commit,
            container,
            repository=repo,
            tag=tag,
            conf=config.to_api(),
            message=message,
        )
        return str(result["Id"])

    def inspect_container(self, container: str) -> ContainerInfo:
        return ContainerInfo.from_api(self._call(self._api.inspect_container, container))

    def stop(self, container: str, timeout: int = 10) -> None:
        self._call(self._api.stop, container, timeout=timeout)

    def kill(self, container: str, signal: str = "KILL") -> None:
        self._call(self._api.kill, container, signal=signal)

    def remove_container(self, container: str) -> None:
        """Force-remove a container with its anonymous volumes; gone is fine."""
        try:
            self._call(self._api.remove_container, container, force=True, v=True)
        except NotFound:
            pass
        except EngineError as exc:
            # "removal already in progress" means someone else is finishing it.
            if "in progress" not in exc.problem:
                raise

    def containers(self, labels: Iterable[str] = ()) -> list[ContainerSummary]:
        filters = {"label": list(labels)} if labels else None
        return [
            ContainerSummary(
                id=str(raw.get("Id") or ""),
                name=str((raw.get("Names") or [""])[0]).lstrip("/"),
                labels=dict(raw.get("Labels") or {}),
                running=raw.get("State") == "running",
            )
            for raw in self._call(self._fast.containers, all=True, filters=filters)
        ]

    def exec(
        self,
        container: str,
        cmd: list[str],
        *,
        user: str = "",
        env: Mapping[str, str] | None = None,
        workdir: str = "",
    ) -> ExecResult:
        """Run a command in a running container; its exit code and output."""
        exec_id = self._call(
            self._api.exec_create,
            container,
            cmd,
            user=user,
            environment=dict(env or {}) or None,
            workdir=workdir or None,
        )["Id"]
        output = self._call(self._api.exec_start, exec_id)
        code = self._call(self._api.exec_inspect, exec_id)["ExitCode"]
        return ExecResult(int(code if code is not None else -1), output.decode("utf-8", "replace"))

    # -- volumes and networks -------------------------------------------

    def create_volume(
        self,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        driver_opts: Mapping[str, str] | None = None,
    ) -> str:
        """A local volume; driver_opts e.g. {"type": "tmpfs", "device": "tmpfs", "o": ...}."""
        created = self._call(
            self._api.create_volume,
            name=name or None,
            labels=dict(labels or {}) or None,
            driver_opts=dict(driver_opts or {}) or None,
        )
        return str(created["Name"])

    def inspect_volume(self, name: str) -> VolumeInfo:
        raw = self._call(self._api.inspect_volume, name)
        return VolumeInfo(str(raw.get("Name") or name), dict(raw.get("Labels") or {}))

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(self._api.remove_volume, name, force=True)

    def volumes(self, labels: Iterable[str] = ()) -> list[VolumeInfo]:
        filters = {"label": list(labels)} if labels else None
        found = self._call(self._fast.volumes, filters=filters).get("Volumes") or []
        return [VolumeInfo(str(v.get("Name")), dict(v.get("Labels") or {})) for v in found]

    def create_network(self, name: str, labels: Mapping[str, str] | None = None) -> NetworkInfo:
        created = self._call(
            self._api.create_network, name, driver="bridge", labels=dict(labels or {})
        )
        return self._network(str(created["Id"]))

    def remove_network(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(self._api.remove_network, name)

    def networks(self, labels: Iterable[str] = ()) -> list[NetworkInfo]:
        filters = {"label": list(labels)} if labels else None
        return [
            self._network(str(raw["Id"])) for raw in self._call(self._api.networks, filters=filters)
        ]

    def _network(self, net_id: str) -> NetworkInfo:
        raw = self._call(self._api.inspect_network, net_id)
        configs = (raw.get("IPAM") or {}).get("Config") or [{}]
        return NetworkInfo(
            id=str(raw.get("Id") or net_id),
            name=str(raw.get("Name") or ""),
            gateway=str(configs[0].get("Gateway") or ""),
            labels=dict(raw.get("Labels") or {}),
        )

    # -- helpers --------------------------------------------------------

    def _guard(self, stream: Iterable[T]) -> Iterator[T]:
        """Translate errors raised while a stream is being read; close the stream
        (its connection) when reading ends, however it ends: an interrupt must
        not leave the engine writing into a connection no one reads."""
        try:
            yield from stream
        except _engine_exceptions() as exc:
            raise translate(exc, self.where) from exc
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                with contextlib.suppress(OSError, *_engine_exceptions()):
                    close()


class Leftovers:
    """Containers, volumes and networks that one operation created: `remove_all`
    removes them whatever happened (success, failure, Ctrl-C). What is handed
    over to the user is dropped from the lists first."""

    def __init__(self, engine: Docker) -> None:
        self.engine = engine
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.networks: list[str] = []

    def container(self, cid: str) -> str:
        self.containers.append(cid)
        return cid

    def volume(self, name: str) -> str:
        self.volumes.append(name)
        return name

    def drop(self, cid: str) -> None:
        """Remove one container now (it served its purpose)."""
        self.engine.remove_container(cid)
        self.containers.remove(cid)

    def remove_all(self) -> list[str]:
        """Remove everything (a running container is killed: force); what could
        not be removed, as "container ID" / "volume NAME" / "network NAME"."""
        left: list[str] = []
        steps = (
            ("container", self.containers, self.engine.remove_container),
            ("volume", self.volumes, self.engine.remove_volume),
            ("network", self.networks, self.engine.remove_network),
        )
        for kind, names, remove in steps:
            for name in reversed(names):
                try:
                    remove(name)
                except Nbs2iError:  # the engine refused, or stopped answering
                    left.append(f"{kind} {name[:12] if kind == 'container' else name}")
        self.containers, self.volumes, self.networks = [], [], []
        return left

"""The only module that talks to Docker.

Everything else asks an `Engine` for what it needs. The engine:

- connects from the standard environment (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`,
  `DOCKER_CERT_PATH`) and negotiates the API version, so Debian's docker.io
  (API 1.41) and newer engines both work;
- turns "no engine" into one line that says where it looked and what to do;
- retries transient faults (connection reset, 5xx, timeouts) with tenacity,
  bounded in attempts and time, and never retries a user error;
- translates docker-py's exceptions into `nbs2i.errors` types.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import docker.constants
import docker.errors
import requests.exceptions
from docker.utils import kwargs_from_env
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from nbs2i.errors import EngineError, EngineUnavailable, NotFound

T = TypeVar("T")

# Retry budget for one engine call: at most this many attempts and seconds.
RETRY_ATTEMPTS = 4
RETRY_SECONDS = 30.0
# Engine statuses that say "try again", not "you asked for something wrong".
TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
# A 500 that is really the caller's mistake; retrying cannot help.
_PERMANENT_500_HINTS = ("no such", "not found", "invalid", "executable file", "conflict")

ENGINE_HINT = (
    "start one with `scripts/ensure-engine` (root on Debian/Ubuntu), "
    "`sudo systemctl start docker`, or point DOCKER_HOST at a running engine"
)


def is_transient(exc: BaseException) -> bool:
    """True for faults that a later attempt can cure."""
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    if isinstance(exc, docker.errors.NotFound | docker.errors.ImageNotFound):
        return False
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code
        if status not in TRANSIENT_STATUS:
            return False
        text = str(exc.explanation or "").lower()
        return not (status == 500 and any(hint in text for hint in _PERMANENT_500_HINTS))
    return False


def translate(exc: BaseException, where: str) -> Exception:
    """Turn a docker-py/requests exception into an nbs2i error."""
    if isinstance(exc, docker.errors.ImageNotFound | docker.errors.NotFound):
        return NotFound(_explain(exc), "check the name with `docker images` / `docker ps -a`")
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return EngineUnavailable(f"the Docker engine at {where} stopped answering", ENGINE_HINT)
    if isinstance(exc, docker.errors.APIError):
        return EngineError(f"the Docker engine refused the request: {_explain(exc)}")
    if isinstance(exc, docker.errors.DockerException):
        return EngineError(f"Docker error: {exc}")
    return exc  # type: ignore[return-value]


def _explain(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())


def call(fn: Callable[..., T], *args: Any, where: str = "", **kwargs: Any) -> T:
    """Run one engine request: retry transient faults, translate the rest."""
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_after_delay(RETRY_SECONDS),
        wait=wait_exponential(multiplier=0.25, max=4),
        reraise=True,
    )
    try:
        return retrying(fn, *args, **kwargs)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise translate(exc, where) from exc


def call_once(fn: Callable[..., T], *args: Any, where: str = "", **kwargs: Any) -> T:
    """Run one engine request that must not be repeated; translate its errors."""
    try:
        return fn(*args, **kwargs)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise translate(exc, where) from exc


def _default_where() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def negotiate_version(server_max: str, server_min: str | None = None) -> str:
    """The newest API version that both docker-py and the engine speak."""
    ours_max = docker.constants.DEFAULT_DOCKER_API_VERSION
    ours_min = docker.constants.MINIMUM_DOCKER_API_VERSION

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    chosen = min(server_max, ours_max, key=key)
    if key(chosen) < key(ours_min) or (server_min and key(chosen) < key(server_min)):
        raise EngineUnavailable(
            f"the Docker engine speaks API {server_min or '?'}-{server_max}, nbs2i needs "
            f"{ours_min}-{ours_max}",
            "upgrade the engine (Docker 1.12 or newer)",
        )
    return chosen


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


class Engine:
    """A connected Docker engine. Create one with `Engine.connect()`."""

    def __init__(self, client: docker.DockerClient, where: str) -> None:
        self._client = client
        self._api = client.api
        self.where = where

    # -- connection -----------------------------------------------------

    @classmethod
    def connect(cls, timeout: int = 120) -> Engine:
        """Connect from the environment, negotiating the API version."""
        where = _default_where()
        try:
            env = kwargs_from_env()
        except docker.errors.TLSParameterError as exc:
            raise EngineUnavailable(
                f"bad Docker TLS settings: {exc}",
                "check DOCKER_TLS_VERIFY and DOCKER_CERT_PATH",
            ) from exc
        try:
            probe = docker.APIClient(
                version=docker.constants.MINIMUM_DOCKER_API_VERSION, timeout=10, **env
            )
            info = call(probe.version, api_version=False, where=where)
        except (EngineUnavailable, EngineError) as exc:
            raise EngineUnavailable(f"no Docker engine answers at {where}", ENGINE_HINT) from exc
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(
                f"no Docker engine answers at {where} ({exc})", ENGINE_HINT
            ) from exc
        finally:
            if "probe" in locals():
                probe.close()
        version = negotiate_version(info.get("ApiVersion", "1.24"), info.get("MinAPIVersion"))
        client = docker.DockerClient(version=version, timeout=timeout, **env)
        return cls(client, where)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return call(fn, *args, where=self.where, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def api_version(self) -> str:
        return str(self._api.api_version)

    def info(self) -> dict[str, Any]:
        return self._call(self._api.info)

    def server_version(self) -> dict[str, Any]:
        return self._call(self._api.version)

    # -- images ---------------------------------------------------------

    def inspect_image(self, ref: str) -> dict[str, Any]:
        """The engine's view of an image; raises NotFound when absent."""
        try:
            return self._call(self._api.inspect_image, ref)
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
        repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
        try:
            self._call(self._api.pull, repo, tag=tag)
        except EngineError as exc:
            raise NotFound(
                f"cannot pull {ref} ({exc.problem})",
                "check the name and your registry access, or use --pull-policy never "
                "with a local image",
            ) from exc

    def tag(self, ref: str, repository: str, tag: str) -> None:
        self._call(self._api.tag, ref, repository, tag=tag)

    def remove_image(self, ref: str, force: bool = False) -> None:
        """Remove an image; quietly does nothing when it is already gone."""
        with contextlib.suppress(NotFound):
            self._call(self._api.remove_image, ref, force=force, noprune=False)

    def images(self, labels: Iterable[str] = (), dangling: bool | None = None) -> list[dict]:
        filters: dict[str, Any] = {}
        if labels:
            filters["label"] = list(labels)
        if dangling is not None:
            filters["dangling"] = dangling
        return self._call(self._api.images, filters=filters)

    def history(self, ref: str) -> list[dict[str, Any]]:
        return self._call(self._api.history, ref)

    def export_image(self, ref: str) -> Iterator[bytes]:
        """The `docker save` tar stream of one image."""
        return self._call(self._api.get_image, ref)

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """`docker build` as a stream of decoded progress events.

        The stream itself is not retried: a build is not idempotent to resume.
        """
        kwargs.setdefault("decode", True)
        kwargs.setdefault("rm", True)
        kwargs.setdefault("forcerm", True)
        stream = self._call(self._api.build, **kwargs)
        return self._guard(stream)

    # -- containers -----------------------------------------------------

    def create_container(self, image: str, **kwargs: Any) -> str:
        """Create a container; returns its id. host_config=dict is accepted."""
        host_config = kwargs.pop("host_config", None)
        if isinstance(host_config, dict):
            host_config = self._api.create_host_config(**host_config)
        result = self._call(self._api.create_container, image, host_config=host_config, **kwargs)
        return str(result["Id"])

    def start(self, container: str) -> None:
        self._call(self._api.start, container)

    def wait(self, container: str, timeout: float | None = None) -> int:
        """Block until the container exits; its exit code."""
        try:
            result = self._api.wait(container, timeout=timeout)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
            # A wait that outlives `timeout` surfaces from urllib3 as a
            # ConnectionError("Read timed out"), not always as ReadTimeout.
            if isinstance(exc, requests.exceptions.ReadTimeout) or "timed out" in str(exc):
                raise EngineError(
                    f"container {container[:12]} did not finish in {timeout}s"
                ) from exc
            raise translate(exc, self.where) from exc
        except docker.errors.DockerException as exc:
            raise translate(exc, self.where) from exc
        return int(result.get("StatusCode", -1))

    def logs(
        self,
        container: str,
        *,
        follow: bool = False,
        tail: int | str = "all",
        stdout: bool = True,
        stderr: bool = True,
    ) -> Iterator[bytes] | bytes:
        if follow:
            return self._guard(
                self._call(
                    self._api.logs,
                    container,
                    stream=True,
                    follow=True,
                    stdout=stdout,
                    stderr=stderr,
                    tail=tail,
                )
            )
        return self._call(self._api.logs, container, stdout=stdout, stderr=stderr, tail=tail)

    def attach_output(self, container: str) -> Iterator[bytes]:
        """stdout and stderr of a running container, as they come."""
        return self._guard(
            self._call(
                self._api.attach, container, stream=True, logs=True, stdout=True, stderr=True
            )
        )

    def attach_stdout(self, container: str) -> Iterator[bytes]:
        """stdout alone, raw bytes (a tar from save-artifacts); attach before start.

        Logs would not do: the json-file log driver mangles bytes that are not UTF-8.
        """
        return self._guard(
            self._call(
                self._api.attach, container, stream=True, logs=True, stdout=True, stderr=False
            )
        )

    def put_archive(self, container: str, path: str, data: bytes | Iterable[bytes]) -> None:
        """Unpack a tar (bytes, or an iterable streamed chunk by chunk) at path.

        A stream cannot be replayed, so only a bytes payload is retried; a
        failed stream surfaces at once and the caller rebuilds from scratch.
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

    def commit(
        self,
        container: str,
        repository: str | None = None,
        tag: str | None = None,
        *,
        conf: dict[str, Any] | None = None,
        message: str | None = None,
        changes: str | list[str] | None = None,
    ) -> str:
        """Commit a container as an image; returns the image id."""
        result = self._call(
            self._api.commit,
            container,
            repository=repository,
            tag=tag,
            conf=conf,
            message=message,
            changes=changes,
        )
        return str(result["Id"])

    def inspect_container(self, container: str) -> dict[str, Any]:
        return self._call(self._api.inspect_container, container)

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

    def containers(self, labels: Iterable[str] = (), all: bool = True) -> list[dict[str, Any]]:
        filters = {"label": list(labels)} if labels else None
        return self._call(self._api.containers, all=all, filters=filters)

    def exec(
        self,
        container: str,
        cmd: str | list[str],
        *,
        user: str = "",
        environment: dict[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Run a command in a running container; its exit code and output."""
        exec_id = self._call(
            self._api.exec_create,
            container,
            cmd,
            user=user,
            environment=environment,
            workdir=workdir,
        )["Id"]
        output = self._call(self._api.exec_start, exec_id)
        code = self._call(self._api.exec_inspect, exec_id)["ExitCode"]
        return ExecResult(int(code if code is not None else -1), output.decode("utf-8", "replace"))

    # -- volumes --------------------------------------------------------

    def create_volume(
        self,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        driver_opts: dict[str, str] | None = None,
    ) -> str:
        """A local volume; driver_opts e.g. {"type": "tmpfs", "device": "tmpfs", "o": ...}."""
        created = self._call(
            self._api.create_volume, name=name, labels=labels, driver_opts=driver_opts
        )
        return str(created["Name"])

    def inspect_volume(self, name: str) -> dict[str, Any]:
        return self._call(self._api.inspect_volume, name)

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(self._api.remove_volume, name, force=True)

    def volumes(self, labels: Iterable[str] = ()) -> list[dict[str, Any]]:
        filters = {"label": list(labels)} if labels else None
        return self._call(self._api.volumes, filters=filters).get("Volumes") or []

    # -- helpers --------------------------------------------------------

    def _guard(self, stream: Iterable[T]) -> Iterator[T]:
        """Translate errors raised while a stream is being read."""
        try:
            yield from stream
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise translate(exc, self.where) from exc


class Leftovers:
    """Containers and volumes that one operation created: `remove_all` removes them,
    whatever happened (success, failure, Ctrl-C). What is handed over is dropped
    from the lists first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def remove_all(self) -> None:
        for cid in reversed(self.containers):
            with contextlib.suppress(EngineError):
                self.engine.remove_container(cid)
        for name in reversed(self.volumes):
            with contextlib.suppress(EngineError):
                self.engine.remove_volume(name)
        self.containers, self.volumes = [], []

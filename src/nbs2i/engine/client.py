"""`Engine`: the real `Docker`, every request sent through docker-py's APIClient.

Each method asks one thing of the engine and returns nbs2i's own types: the
answer is checked to be the JSON shape expected where it arrives
(`_object`, `_objects`, `_events`) and read by `nbs2i.engine.types`; faults
become `nbs2i.errors` types in `nbs2i.engine.faults`. docker-py is imported by
`Engine.connect()`, not by this module.
"""

from __future__ import annotations

import contextlib
import io
import math
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from nbs2i.engine.connection import open_client
from nbs2i.engine.faults import call, call_once, engine_exceptions, timed_out, translate
from nbs2i.engine.mapping import create_args, filters, host_config, pull_params, push_params
from nbs2i.engine.types import (
    BuildEvent,
    BuildSpec,
    ContainerInfo,
    ContainerSpec,
    ContainerSummary,
    EngineInfo,
    ExecResult,
    HistoryEntry,
    ImageConfig,
    ImageInfo,
    ImageSummary,
    Json,
    VolumeInfo,
    image_id,
    objects,
    path_kind,
    stream_digest,
    stream_error,
)
from nbs2i.errors import EngineError, NotFound
from nbs2i.reference import split

if TYPE_CHECKING:
    import docker

T = TypeVar("T")
# podman's own API, beside its Docker-compatible one (any 4.x serves this prefix).
LIBPOD_VERSION = "v4.0.0"


class Engine:
    """A connected engine. Create one with `Engine.connect()`."""

    def __init__(self, where: str, api: docker.APIClient, kind: str = "docker") -> None:
        self.where = where
        self.kind = kind  # "docker" or "podman", as its ping said
        self._api = api
        self._info: EngineInfo | None = None

    @classmethod
    def connect(cls, timeout: int = 120) -> Engine:
        """Connect from the environment, negotiating the API version."""
        return cls(*open_client(timeout))

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def api_version(self) -> str:
        return str(self._api.api_version)

    def describe(self) -> EngineInfo:
        """What answers; asked once per connection."""
        if self._info is None:
            version, info = self._object(self._api.version), self._object(self._api.info)
            self._info = EngineInfo.from_api(version, info)
        return self._info

    @property
    def keeps_manifests(self) -> bool:
        """Whether the image store keeps manifests (see EngineInfo). podman's never
        does, and is not asked: its /version and /info take 0.7 s, more than a
        whole notebook-only build."""
        return self.kind != "podman" and self.describe().keeps_manifests

    # -- images ---------------------------------------------------------

    def inspect_image(self, ref: str) -> ImageInfo:
        """The engine's view of an image; NotFound when absent."""
        try:
            raw = self._object(self._api.inspect_image, ref)
            if self.kind == "podman":
                raw = self._with_healthcheck(raw)
            return ImageInfo.from_api(raw)
        except NotFound as exc:
            raise NotFound(
                f"image {ref} is not in the engine",
                "build or pull it first, or check the name with `docker images`",
            ) from exc

    def _with_healthcheck(self, raw: Json) -> Json:
        """podman's Docker-compatible inspect leaves out the image's HEALTHCHECK;
        its own API has it, beside the config rather than in it."""
        config = raw.get("Config")
        if not isinstance(config, Mapping) or config.get("Healthcheck"):
            return raw
        api: Any = self._api
        bare = str(raw.get("Id") or "").removeprefix("sha256:")
        url = f"{api.base_url}/{LIBPOD_VERSION}/libpod/images/{urllib.parse.quote(bare)}/json"
        native = self._object(lambda: api._result(api._get(url), json=True))
        healthcheck = native.get("Healthcheck")
        if not isinstance(healthcheck, Mapping) or not healthcheck:
            return raw
        return {**raw, "Config": {**config, "Healthcheck": dict(healthcheck)}}

    def image_manifest(self, ref: str) -> bytes:
        """The manifest the engine keeps for the image (for its platform); b"" on a
        store that keeps none (the classic store and podman name an image by its
        config, and keep its layers by diff id)."""
        if not self.keeps_manifests:
            return b""
        from nbs2i.engine.manifests import manifest_in_save

        image = self.inspect_image(ref)
        api: Any = self._api
        response = self._call(api._get, api._url("/images/{0}/get", image.id), stream=True)
        try:
            call_once(api._raise_for_status, response, where=self.where)
            return manifest_in_save(self._guard(response.iter_content(1 << 16)), image)
        finally:
            # Read up to the manifest's blob only: closing the connection stops
            # the engine streaming the image's layers.
            response.close()

    def image_exists(self, ref: str) -> bool:
        try:
            self.inspect_image(ref)
        except NotFound:
            return False
        return True

    def pull(self, ref: str) -> None:
        """Pull with the credentials of the usual Docker config; NotFound when the
        engine could not, whether it says so by its status or in its stream."""
        repo, tag = split(ref)
        try:
            for event in self._events(self._call(self._pull_stream, repo, tag)):
                error = stream_error(event)
                if error:
                    raise EngineError(error)
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
        stream = self._call(self._push_stream, repo, tag)
        for event in self._events(stream):
            error = stream_error(event)
            if error:
                raise EngineError(f"pushing {ref} failed: {error}")
            digest = stream_digest(event) or digest
        if not digest:
            raise EngineError(f"pushing {ref} ended without a digest")
        return digest

    def _pull_stream(self, repo: str, tag: str) -> Iterator[Json]:
        """docker-py's pull, where this engine needs it (`pull_params`)."""
        api: Any = self._api
        path, params = pull_params(repo, tag, self.kind)
        libpod = path.startswith("/libpod/")
        url = f"{api.base_url}/{LIBPOD_VERSION}{path}" if libpod else api._url(path)
        response = api._post(url, params=params, headers=self._auth(repo), stream=True)
        api._raise_for_status(response)
        stream: Iterator[Json] = api._stream_helper(response, decode=True)
        return stream

    def _push_stream(self, repo: str, tag: str) -> Iterator[Json]:
        """docker-py's push, with the query this engine needs (`push_params`)."""
        api: Any = self._api
        params = push_params(repo, tag, self.kind)
        url = api._url("/images/{0}/push", repo)
        response = api._post_json(url, None, headers=self._auth(repo), stream=True, params=params)
        api._raise_for_status(response)
        stream: Iterator[Json] = api._stream_helper(response, decode=True)
        return stream

    def _auth(self, repo: str) -> dict[str, str | bytes]:
        """The registry credentials header, from the usual Docker config, as
        docker-py's pull and push send it."""
        from docker import auth

        header = auth.get_config_header(self._api, auth.resolve_repository_name(repo)[0])
        return {"X-Registry-Auth": header} if header else {}

    def tag(self, image: str, ref: str) -> None:
        repo, tag = split(ref)
        self._call(self._api.tag, image, repo, tag=tag)

    def remove_image(self, ref: str, force: bool = False) -> None:
        """Remove an image; quietly does nothing when it is already gone."""
        with contextlib.suppress(NotFound):
            self._call(self._api.remove_image, ref, force=force, noprune=False)

    def images(
        self, labels: Iterable[str] = (), dangling: bool | None = None
    ) -> list[ImageSummary]:
        found = self._objects(self._api.images, filters=filters(labels, dangling))
        return [ImageSummary.from_api(i) for i in found]

    def history(self, ref: str) -> list[HistoryEntry]:
        return [HistoryEntry.from_api(h) for h in self._objects(self._api.history, ref)]

    def load_image(self, archive: Iterable[bytes]) -> None:
        """`docker load` of a streamed archive; never replayed."""
        for event in self._events(call_once(self._api.load_image, archive, where=self.where)):
            error = stream_error(event)
            if error:
                raise EngineError(f"the engine refused the image: {error}")

    def build(self, spec: BuildSpec) -> Iterator[BuildEvent]:
        """`docker build` as a stream of events. The stream is not retried: a build
        is not idempotent to resume."""
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
        for raw in self._events(stream):
            yield from BuildEvent.from_api(raw)

    # -- containers -----------------------------------------------------

    def create_container(self, spec: ContainerSpec) -> str:
        """Create a container; its id."""
        host = self._api.create_host_config(**host_config(spec, self.kind))
        args = create_args(spec)
        return _id(self._object(self._api.create_container, spec.image, host_config=host, **args))

    def start(self, container: str) -> None:
        self._call(self._api.start, container)

    def wait(self, container: str, timeout: float | None = None) -> int:
        """Block until the container exits; its exit code."""
        try:
            seconds = None if timeout is None else math.ceil(timeout)
            result: object = self._api.wait(container, timeout=seconds)
        except engine_exceptions() as exc:
            if timed_out(exc):
                raise EngineError(
                    f"container {container[:12]} did not finish in {timeout}s"
                ) from exc
            raise translate(exc, self.where) from exc
        return int(_as_object(result).get("StatusCode", -1))

    def logs(self, container: str, tail: int | None = None) -> str:
        """What the container printed so far (stdout and stderr), decoded."""
        raw = self._call(lambda: self._api.logs(container, tail=tail or "all"))
        return raw.decode("utf-8", "replace")

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
        # docker-py's own attach, with stdin; its helpers for that are not in
        # the type stubs.
        api: Any = self._api
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
        api = self._api
        url = (
            f"{api.base_url}/v{api.api_version}/containers/{urllib.parse.quote(container)}/archive"
        )
        # HEAD answers the stat header alone; a GET would stream the whole tree.
        response = self._call(api.head, url, params={"path": path}, timeout=api.timeout)
        if response.status_code == 404:
            return ""
        if response.status_code != 200:
            raise EngineError(f"the engine answered {response.status_code} for {path}")
        return path_kind(response.headers.get("X-Docker-Container-Path-Stat", ""))

    def commit(self, container: str, ref: str, config: ImageConfig, message: str) -> str:
        """Commit a container as image `ref`, asking for `config`; the image id.
        What the image ends up with is the engine's merge (Docker adds the
        container's variables and labels that `config` lacks; podman's Docker
        API keeps the container's own): `nbs2i.building.commit` checks it."""
        repo, tag = split(ref)
        committed = self._object(
            self._api.commit, container, repo, tag, message=message, conf=config.to_api()
        )
        return image_id(_id(committed))

    def inspect_container(self, container: str) -> ContainerInfo:
        return ContainerInfo.from_api(self._object(self._api.inspect_container, container))

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
        found = self._objects(self._api.containers, all=True, filters=filters(labels))
        return [ContainerSummary.from_api(c) for c in found]

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
        created = self._object(
            self._api.exec_create,
            container,
            cmd,
            user=user,
            environment=dict(env or {}) or None,
            workdir=workdir or None,
        )
        exec_id = _id(created)
        output = bytes(self._call(self._api.exec_start, exec_id))
        code = self._object(self._api.exec_inspect, exec_id).get("ExitCode")
        return ExecResult(int(code if code is not None else -1), output.decode("utf-8", "replace"))

    # -- volumes --------------------------------------------------------

    def create_volume(
        self,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        driver_opts: Mapping[str, str] | None = None,
    ) -> str:
        """A local volume; driver_opts e.g. {"type": "tmpfs", "device": "tmpfs", "o": ...}."""
        created = self._object(
            self._api.create_volume,
            name=name or None,
            labels=dict(labels or {}) or None,
            driver_opts=dict(driver_opts or {}) or None,
        )
        return str(created["Name"])

    def inspect_volume(self, name: str) -> VolumeInfo:
        return VolumeInfo.from_api(self._object(self._api.inspect_volume, name))

    def remove_volume(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(self._api.remove_volume, name, force=True)

    def volumes(self, labels: Iterable[str] = ()) -> list[VolumeInfo]:
        found = objects(self._object(self._api.volumes, filters=filters(labels)), "Volumes")
        return [VolumeInfo.from_api(v) for v in found]

    # -- where the engine's answers arrive ------------------------------

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return call(fn, *args, where=self.where, **kwargs)

    def _object(self, fn: Callable[..., object], *args: Any, **kwargs: Any) -> Json:
        """A request whose answer is one JSON object."""
        return _as_object(self._call(fn, *args, **kwargs))

    def _objects(self, fn: Callable[..., object], *args: Any, **kwargs: Any) -> list[Json]:
        """A request whose answer is a list of JSON objects."""
        found = self._call(fn, *args, **kwargs)
        if not isinstance(found, list):
            raise EngineError(f"the engine's answer is not a list: {str(found)[:80]!r}")
        return [_as_object(item) for item in found]

    def _events(self, stream: Iterable[object]) -> Iterator[Json]:
        """The JSON objects of a streamed answer (build, push, load)."""
        for event in self._guard(stream):
            yield _as_object(event)

    def _guard(self, stream: Iterable[T]) -> Iterator[T]:
        """Translate errors raised while a stream is being read; close the stream
        (its connection) when reading ends, however it ends: an interrupt must
        not leave the engine writing into a connection no one reads."""
        try:
            yield from stream
        except engine_exceptions() as exc:
            raise translate(exc, self.where) from exc
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                with contextlib.suppress(OSError, *engine_exceptions()):
                    close()


def _as_object(value: object) -> Json:
    if not isinstance(value, Mapping):
        raise EngineError(f"the engine's answer is not a JSON object: {str(value)[:80]!r}")
    return value


def _id(created: Json) -> str:
    return str(created["Id"])

"""A fake Docker engine for unit tests of the order of steps and of clean-up.

It implements `nbs2i.engine.Docker` (a type checker accepts it as one) and
keeps just enough state to be believable: images by reference, containers
and volumes that exist until removed, the archives it was handed. It records
every call in order, and fails on demand (`fail_at`) to test each failure
point. It is only for unit tests: everything else runs on the real engine.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from nbs2i.engine import (
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
    VolumeInfo,
)
from nbs2i.errors import EngineError, Nbs2iError, NotFound


@dataclass
class FakeEngine:
    """State: images, live containers and volumes; `calls` in order."""

    store: dict[str, ImageInfo] = field(default_factory=dict)  # images by reference and id
    containers_: dict[str, ContainerSpec] = field(default_factory=dict)
    created: list[ContainerSpec] = field(default_factory=list)  # every container, in order
    volumes_: dict[str, Mapping[str, str]] = field(default_factory=dict)
    archives: dict[str, list[str]] = field(default_factory=dict)  # container -> member names
    calls: list[str] = field(default_factory=list)
    fail_at: str = ""  # "method" or "method#n": raise EngineError there
    failure: str = "injected failure"  # the engine's words for it
    paths: dict[str, str] = field(default_factory=dict)  # path_kind answers ("dir" else)
    exit_code: int = 0  # what every container exits with
    output: bytes = b"working\n"
    # What attach streams, when set (else `output` in one chunk); streams
    # attached and not yet closed.
    stream: Callable[[], Iterable[bytes]] | None = None
    attached_open: int = 0
    fail_with: type[Nbs2iError] = EngineError  # what `fail_at` raises
    push_digest: str = ""  # what a push answers ("": a digest of the reference)
    where: str = "fake://engine"
    # What kind of engine it plays: the classic store by default.
    info: EngineInfo = field(
        default_factory=lambda: EngineInfo(
            "docker", "20.10.24", "1.41", "overlay2", "linux", "amd64"
        )
    )
    # podman's Docker API: a commit keeps the container's command, user and
    # environment, whatever config it is asked for.
    commit_ignores_config: bool = False
    manifests: dict[str, bytes] = field(default_factory=dict)  # image id -> its manifest
    _counter: int = 0

    # -- bookkeeping -----------------------------------------------------------

    def _call(self, name: str) -> None:
        self.calls.append(name)
        count = sum(1 for c in self.calls if c == name)
        if self.fail_at in (name, f"{name}#{count}"):
            raise self.fail_with(f"{self.failure} in {name}")

    def _new_id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}{self._counter:04d}"

    def add_image(self, ref: str, config: ImageConfig, layers: tuple[str, ...] = ()) -> ImageInfo:
        digest = hashlib.sha256(ref.encode()).hexdigest()
        info = ImageInfo(f"sha256:{digest}", (ref,), config, layers or (f"sha256:{digest}",))
        self.store[ref] = self.store[info.id] = info
        return info

    def _tag(self, ref: str, info: ImageInfo) -> None:
        """Point ref at info; the image it pointed to before loses that tag."""
        old = self.store.get(ref)
        if old is not None and old.id != info.id:
            kept = replace(old, tags=tuple(t for t in old.tags if t != ref))
            for key in [k for k, v in self.store.items() if v.id == old.id and k != ref]:
                self.store[key] = kept
        self.store[ref] = self.store[info.id] = info

    @property
    def live(self) -> tuple[list[str], list[str]]:
        """Containers and volumes that exist now."""
        return list(self.containers_), list(self.volumes_)

    # -- Docker ----------------------------------------------------------------

    @property
    def api_version(self) -> str:
        return "1.41"

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def keeps_manifests(self) -> bool:
        return self.info.keeps_manifests

    def describe(self) -> EngineInfo:
        return self.info

    def inspect_image(self, ref: str) -> ImageInfo:
        self._call("inspect_image")
        if ref not in self.store:
            raise NotFound(f"image {ref} is not in the engine")
        return self.store[ref]

    def image_exists(self, ref: str) -> bool:
        return ref in self.store

    def pull(self, ref: str) -> None:
        self._call("pull")
        raise NotFound(f"cannot pull {ref}")

    def push(self, ref: str) -> str:
        self._call("push")
        return self.push_digest or "sha256:" + hashlib.sha256(ref.encode()).hexdigest()

    def tag(self, image: str, ref: str) -> None:
        self._call("tag")
        self._tag(ref, self.store[image])

    def remove_image(self, ref: str, force: bool = False) -> None:
        self._call("remove_image")
        info = self.store.pop(ref, None)
        if info is not None:
            for key in [k for k, v in self.store.items() if v.id == info.id]:
                del self.store[key]

    def images(
        self, labels: Iterable[str] = (), dangling: bool | None = None
    ) -> list[ImageSummary]:
        found = {i.id: i for i in self.store.values()}.values()
        return [ImageSummary(i.id, i.tags, i.config.labels) for i in found]

    def history(self, ref: str) -> list[HistoryEntry]:
        self._call("history")
        return [HistoryEntry(0, "base", "", 1) for _ in self.inspect_image(ref).layers]

    def image_manifest(self, ref: str) -> bytes:
        self._call("image_manifest")
        return self.manifests.get(self.inspect_image(ref).id, b"")

    def load_image(self, archive: Iterable[bytes]) -> None:
        """The classic store's reading (manifest.json), or, playing the containerd
        store, the OCI layout's: then the image's id is its manifest's digest."""
        self._call("load_image")
        with tarfile.open(fileobj=io.BytesIO(b"".join(archive))) as tar:
            manifest = json.loads(_member(tar, "manifest.json"))[0]
            raw = _member(tar, manifest["Config"])
            descriptor = json.loads(_member(tar, "index.json"))["manifests"][0]
            oci = _member(tar, "blobs/sha256/" + descriptor["digest"].removeprefix("sha256:"))
        document = json.loads(raw)
        of = oci if self.info.image_store == "containerd" else raw
        info = ImageInfo(
            "sha256:" + hashlib.sha256(of).hexdigest(),
            tuple(manifest["RepoTags"]),
            ImageConfig.from_api(document["config"]),
            tuple(document["rootfs"]["diff_ids"]),
        )
        self.manifests[info.id] = oci
        for ref in info.tags:
            self._tag(ref, info)

    def build(self, spec: BuildSpec) -> Iterator[BuildEvent]:
        self._call("build")
        self.add_image(spec.tag, ImageConfig())
        yield BuildEvent(image_id=self.store[spec.tag].id)

    def create_container(self, spec: ContainerSpec) -> str:
        self._call("create_container")
        if spec.image not in self.store:
            raise NotFound(f"No such image: {spec.image}")
        cid = self._new_id("c")
        self.containers_[cid] = spec
        self.created.append(spec)
        self.archives[cid] = []
        return cid

    def start(self, container: str) -> None:
        self._call("start")

    def wait(self, container: str, timeout: float | None = None) -> int:
        self._call("wait")
        return self.exit_code

    def logs(self, container: str, tail: int | None = None) -> str:
        return self.output.decode()

    def follow_logs(self, container: str) -> Iterator[bytes]:
        yield self.output

    def attach(self, container: str, *, stderr: bool = True) -> Iterator[bytes]:
        self._call("attach")  # attached now, before the container starts
        return self._attached(self.stream() if self.stream else [self.output])

    def _attached(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        self.attached_open += 1
        try:
            yield from chunks
        finally:
            self.attached_open -= 1
            self.calls.append("attach closed")

    def put_archive(self, container: str, path: str, data: bytes | Iterable[bytes]) -> None:
        self._call("put_archive")
        raw = data if isinstance(data, bytes) else b"".join(data)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            self.archives[container] += [f"{path}/{m.name}" for m in tar]

    def get_archive(self, container: str, path: str) -> Iterator[bytes]:
        yield b""

    def path_kind(self, container: str, path: str) -> str:
        self._call("path_kind")
        return self.paths.get(path, "dir")

    def commit(self, container: str, ref: str, config: ImageConfig, message: str) -> str:
        self._call("commit")
        spec = self.containers_[container]
        base = self.store[spec.image]
        if self.commit_ignores_config:
            env = {**base.config.env, "TERM": "xterm", "container": "podman", **spec.env}
            config = replace(
                base.config,
                entrypoint=spec.entrypoint or ("",),
                cmd=spec.command or (),
                user=spec.user,
                env=env,
            )
        info = replace(
            base,
            id="sha256:" + hashlib.sha256(f"{ref}{container}".encode()).hexdigest(),
            tags=(ref,),
            config=config,
            layers=(*base.layers, f"sha256:layer-of-{container}"),
        )
        self._tag(ref, info)
        return info.id

    def inspect_container(self, container: str) -> ContainerInfo:
        spec = self.containers_[container]
        return ContainerInfo(container, spec.name, spec.image, spec.labels, False, 0, {})

    def stop(self, container: str, timeout: int = 10) -> None:
        self._call("stop")

    def kill(self, container: str, signal: str = "KILL") -> None:
        self._call("kill")

    def remove_container(self, container: str) -> None:
        self._call("remove_container")
        self.containers_.pop(container, None)

    def containers(self, labels: Iterable[str] = ()) -> list[ContainerSummary]:
        return [
            ContainerSummary(cid, spec.name, spec.labels, False)
            for cid, spec in self.containers_.items()
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
        return ExecResult(0, "")

    def create_volume(
        self,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        driver_opts: Mapping[str, str] | None = None,
    ) -> str:
        self._call("create_volume")
        name = name or self._new_id("v")
        self.volumes_[name] = dict(labels or {})
        return name

    def inspect_volume(self, name: str) -> VolumeInfo:
        if name not in self.volumes_:
            raise NotFound(f"no volume {name}")
        return VolumeInfo(name, self.volumes_[name])

    def remove_volume(self, name: str) -> None:
        self._call("remove_volume")
        self.volumes_.pop(name, None)

    def volumes(self, labels: Iterable[str] = ()) -> list[VolumeInfo]:
        return [VolumeInfo(name, lbl) for name, lbl in self.volumes_.items()]


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    assert handle is not None, name
    return handle.read()

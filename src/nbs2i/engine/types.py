"""The values that cross the engine seam, and their mapping from and to the
engine's JSON, written once.

What goes in (`ContainerSpec`, `BuildSpec`, ...) and what comes out
(`ImageInfo`, `ContainerInfo`, `EngineInfo`, ...) are small frozen dataclasses;
each reads itself from the engine's answer (`from_api`), so no caller ever sees
a raw dict. The engine's JSON is loose (fields absent, null or empty alike):
every reader here treats the three the same.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbs2i.errors import EngineError

# An object as the engine sends it: the one place JSON is typed loosely.
Json = Mapping[str, Any]

# The line a push ends with: "TAG: digest: sha256:... size: N".
_PUSHED = re.compile(r"(?:^|: )digest: (sha256:[0-9a-f]{64}) size: [0-9]+$")
# How the engine lists an image that has no tag.
_UNTAGGED = "<none>:<none>"
# The /info DriverStatus entry of Docker's containerd image store (Docker 24+).
_CONTAINERD_STORE = ("driver-type", "io.containerd.snapshotter.v1")
# The type bits of a Go os.FileMode, as the engine reports a path's mode.
_GO_TYPE_BITS = 1 << 31 | 1 << 27 | 1 << 26 | 1 << 25 | 1 << 24 | 1 << 21 | 1 << 19
_GO_FILE_KINDS = {0: "file", 1 << 31: "dir", 1 << 27: "link"}


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


@dataclass(frozen=True)
class Tmpfs:
    """A tmpfs at `target`, owned by root with `mode`, empty on every engine (a
    platform's emptyDir is): podman would otherwise copy what the image has at
    that path into it.

    `volume`: it stands for a fresh volume, whose mode is `mode` whatever the
    image has at that path. Docker's runtime gives a plain tmpfs the mode of
    the image's directory instead; there it is a tmpfs-backed anonymous
    volume, removed with its container."""

    target: str
    mode: int = 0o1777
    size: int = 0  # bytes; 0: the engine's default
    exec: bool = False  # Docker's default for a tmpfs is noexec; a volume is not
    volume: bool = False

    def options(self) -> str:
        """Its mount options as Docker's `--tmpfs` and HostConfig.Tmpfs spell them."""
        found = ["rw", "nosuid", "nodev", "exec" if self.exec else "noexec"]
        found.append(f"mode={self.mode:04o}")
        if self.size:
            found.append(f"size={self.size}")
        return ",".join(found)


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
    tmpfs: tuple[Tmpfs, ...] = ()
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
    def from_api(cls, raw: Json | None) -> ImageConfig:
        raw = raw or {}
        return cls(
            user=_text(raw, "User"),
            entrypoint=_strings(raw, "Entrypoint"),
            cmd=_strings(raw, "Cmd"),
            env=_env(_strings(raw, "Env")),
            labels=_labels(raw),
            working_dir=_text(raw, "WorkingDir"),
            exposed_ports=tuple(sorted(_object(raw, "ExposedPorts"))),
            volumes=tuple(sorted(_object(raw, "Volumes"))),
            stop_signal=_text(raw, "StopSignal"),
            healthcheck=_object(raw, "Healthcheck") or None,
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
    def from_api(cls, raw: Json) -> ImageInfo:
        return cls(
            id=image_id(_text(raw, "Id")),
            tags=_tags(raw),
            config=ImageConfig.from_api(_object(raw, "Config")),
            layers=_strings(_object(raw, "RootFS"), "Layers"),
            created=_text(raw, "Created"),
            architecture=_text(raw, "Architecture"),
            os=_text(raw, "Os"),
            size=_int(raw, "Size"),
        )


@dataclass(frozen=True)
class ImageSummary:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]

    @classmethod
    def from_api(cls, raw: Json) -> ImageSummary:
        return cls(image_id(_text(raw, "Id")), _tags(raw), _labels(raw))


@dataclass(frozen=True)
class HistoryEntry:
    """One line of `docker history`, newest first as the engine gives them."""

    created: int  # epoch seconds
    created_by: str
    comment: str
    size: int

    @classmethod
    def from_api(cls, raw: Json) -> HistoryEntry:
        return cls(
            _int(raw, "Created"), _text(raw, "CreatedBy"), _text(raw, "Comment"), _int(raw, "Size")
        )


@dataclass(frozen=True)
class MountInfo:
    kind: str  # "volume", "bind", "tmpfs"
    name: str  # the volume's name, or the host path
    destination: str

    @classmethod
    def from_api(cls, raw: Json) -> MountInfo:
        name = _text(raw, "Name") or _text(raw, "Source")
        return cls(_text(raw, "Type"), name, _text(raw, "Destination"))


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
    def from_api(cls, raw: Json) -> ContainerInfo:
        state = _object(raw, "State")
        config = ImageConfig.from_api(_object(raw, "Config"))
        running = bool(state.get("Running"))
        return cls(
            id=_text(raw, "Id"),
            name=_text(raw, "Name").lstrip("/"),
            image_id=_text(raw, "Image"),
            labels=config.labels,
            running=running,
            exit_code=None if running else _int(state, "ExitCode"),
            ports=_published(_object(_object(raw, "NetworkSettings"), "Ports")),
            mounts=tuple(MountInfo.from_api(m) for m in objects(raw, "Mounts")),
            user=config.user,
            env=config.env,
            health=_text(_object(state, "Health"), "Status"),
        )


@dataclass(frozen=True)
class ContainerSummary:
    id: str
    name: str
    labels: Mapping[str, str]
    running: bool

    @classmethod
    def from_api(cls, raw: Json) -> ContainerSummary:
        names = _strings(raw, "Names") or ("",)
        return cls(
            _text(raw, "Id"), names[0].lstrip("/"), _labels(raw), raw.get("State") == "running"
        )


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    labels: Mapping[str, str]

    @classmethod
    def from_api(cls, raw: Json) -> VolumeInfo:
        return cls(_text(raw, "Name"), _labels(raw))


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

    @classmethod
    def from_api(cls, raw: Json) -> list[BuildEvent]:
        """What one message of the build's stream says (an error alone, or an
        image id and a line of output, either or both)."""
        error = stream_error(raw)
        if error:
            return [cls(error=error)]
        found = []
        built = image_id(_text(_object(raw, "aux"), "ID"))
        if built:
            found.append(cls(image_id=built))
        if raw.get("stream"):
            found.append(cls(stream=_text(raw, "stream")))
        return found


@dataclass(frozen=True)
class EngineInfo:
    """What kind of engine answers, and how it keeps images."""

    kind: str  # "docker" or "podman"
    version: str  # the engine's own ("20.10.24+dfsg1", "4.3.1")
    api_version: str  # the newest Docker API version the engine speaks
    image_store: str  # "containerd", else the storage driver ("overlay2", "overlay")
    os: str  # "linux"
    arch: str  # "amd64", as image platforms name it

    @property
    def keeps_manifests(self) -> bool:
        """The store keeps each image's manifest, and names the image by its digest
        (Docker's containerd image store); the others name it by its config's."""
        return self.image_store == "containerd"

    @property
    def store(self) -> str:
        """The image store in words."""
        return store_words(self.kind, self.keeps_manifests, self.image_store)

    @classmethod
    def from_api(cls, version: Json, info: Json) -> EngineInfo:
        """From the answers to /version and /info."""
        components = {_text(c, "Name") for c in objects(version, "Components")}
        status = {tuple(_texts(pair)) for pair in _items(info, "DriverStatus")}
        return cls(
            kind="podman" if "Podman Engine" in components else "docker",
            version=_text(version, "Version"),
            api_version=_text(version, "ApiVersion"),
            image_store="containerd" if _CONTAINERD_STORE in status else _text(info, "Driver"),
            os=_text(version, "Os"),
            arch=_text(version, "Arch"),
        )


def store_words(kind: str, keeps_manifests: bool, driver: str = "") -> str:
    """An engine's image store in words: Docker's containerd image store, Docker's
    classic one, or podman's (with the storage driver, when known)."""
    if keeps_manifests:
        return "Docker's containerd image store"
    named = f" ({driver})" if driver else ""
    return (
        f"podman's image store{named}"
        if kind == "podman"
        else f"Docker's classic image store{named}"
    )


# -- readers of the engine's JSON ----------------------------------------------------


def image_id(text: str) -> str:
    """An image id as Docker writes it, `sha256:<hex>`: podman's commit (and its
    libpod answers) give the bare hex, so that a short id would not be a prefix."""
    bare = len(text) == 64 and all(c in "0123456789abcdef" for c in text)
    return f"sha256:{text}" if bare else text


def stream_error(raw: Json) -> str:
    """The error a streamed answer (build, push, load) reports in one line, or ""."""
    if not raw.get("error"):
        return ""
    detail = _text(_object(raw, "errorDetail"), "message") or _text(raw, "error")
    return " ".join(detail.split())


def stream_digest(raw: Json) -> str:
    """The digest a push reports when it is done, or "": Docker's classic store
    says it in an `aux` object too, the containerd store and podman only in the
    line "TAG: digest: sha256:... size: N"."""
    said = _text(_object(raw, "aux"), "Digest")
    if said:
        return said
    found = _PUSHED.search(_text(raw, "status"))
    return found.group(1) if found else ""


def path_kind(stat_header: str) -> str:
    """What a path is by the engine's stat of it (an archive request's
    X-Docker-Container-Path-Stat header, base64 JSON): "dir", "file", "link"
    or "other"."""
    try:
        stat = json.loads(base64.b64decode(stat_header) or b"{}")
    except (binascii.Error, ValueError) as exc:
        raise EngineError(
            f"the engine's stat of a path is unreadable: {stat_header[:80]!r}"
        ) from exc
    mode = _int(stat, "mode") if isinstance(stat, Mapping) else 0
    return _GO_FILE_KINDS.get(mode & _GO_TYPE_BITS, "other")


def _tags(raw: Json) -> tuple[str, ...]:
    return tuple(t for t in _strings(raw, "RepoTags") if t != _UNTAGGED)


def _labels(raw: Json) -> dict[str, str]:
    return {str(k): str(v) for k, v in _object(raw, "Labels").items()}


def _published(ports: Json) -> dict[int, int]:
    """Container TCP port -> the host port it is published on."""
    found: dict[int, int] = {}
    for key, bindings in ports.items():
        port, _, proto = str(key).partition("/")
        hosts = [_text(b, "HostPort") for b in bindings or () if isinstance(b, Mapping)]
        host = next((h for h in hosts if h), "")
        if proto == "tcp" and port.isdigit() and host.isdigit():
            found[int(port)] = int(host)
    return found


def _env(items: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def _text(raw: Json, key: str) -> str:
    return str(raw.get(key) or "")


def _int(raw: Json, key: str) -> int:
    return int(raw.get(key) or 0)


def _items(raw: Json, key: str) -> tuple[Any, ...]:
    value = raw.get(key) or ()
    return tuple(value) if isinstance(value, list | tuple) else ()


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _strings(raw: Json, key: str) -> tuple[str, ...]:
    return tuple(str(v) for v in _items(raw, key))


def _object(raw: Json, key: str) -> Json:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def objects(raw: Json, key: str) -> tuple[Json, ...]:
    """The JSON objects listed under `key`."""
    return tuple(v for v in _items(raw, key) if isinstance(v, Mapping))

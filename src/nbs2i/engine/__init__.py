"""The only package that talks to an engine.

Everything else asks a `Docker` (the Protocol; `Engine` is the real one, tests
bring fakes) for what it needs, in nbs2i's own types: a `ContainerSpec` in, an
`ImageInfo` or `ContainerInfo` out, one return type per call. Raw engine JSON,
docker-py and its exceptions never leave this package.

- `types`: the values that go in and come out, and their mapping from and to
  the engine's JSON;
- `mapping`: nbs2i's specs as docker-py's arguments, for the engine that answers;
- `manifests`: the manifest an engine keeps for an image, from its save;
- `protocol`: the `Docker` Protocol;
- `faults`: retries of transient faults (tenacity), and docker-py's and
  requests' exceptions said as `nbs2i.errors`;
- `connection`: finding the engine, negotiating the API version;
- `client`: `Engine`, every request through docker-py's APIClient.

docker-py (and requests under it) is imported when an engine is connected, not
when this package is: `nbs2i --help`, and `--as-dockerfile` where no engine
runs, never pay for it.
"""

from nbs2i.engine.client import Engine
from nbs2i.engine.protocol import Docker
from nbs2i.engine.types import (
    LOG_LIMIT,
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
    Mount,
    MountInfo,
    PortBinding,
    Tmpfs,
    VolumeInfo,
)

__all__ = [
    "LOG_LIMIT",
    "BuildEvent",
    "BuildSpec",
    "ContainerInfo",
    "ContainerSpec",
    "ContainerSummary",
    "Docker",
    "Engine",
    "EngineInfo",
    "ExecResult",
    "HistoryEntry",
    "ImageConfig",
    "ImageInfo",
    "ImageSummary",
    "Mount",
    "MountInfo",
    "PortBinding",
    "Tmpfs",
    "VolumeInfo",
]

"""What only the tests ask of the engine, through docker-py directly.

nbs2i itself never saves an image (`docker save`) nor makes a network, so its
engine seam has neither; the tests need both (to read an image's layers as
the engine stores them, and to give a JupyterHub a network of its own). They
go to the same engine, found the way nbs2i finds it, and fail with nbs2i's
errors.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbs2i.engine.connection import open_client
from nbs2i.engine.faults import call
from nbs2i.errors import NotFound

if TYPE_CHECKING:
    import docker


@functools.cache
def _client() -> docker.APIClient:
    return open_client(timeout=600)[1]


def save(image: str) -> Iterator[bytes]:
    """The `docker save` tar stream of one image."""
    yield from _client().get_image(image)


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    gateway: str  # the host's address on the network ("" when unknown)


def create_network(name: str, labels: Mapping[str, str]) -> Network:
    """A bridge network carrying `labels`."""
    created = call(_client().create_network, name, driver="bridge", labels=dict(labels))
    raw = call(_client().inspect_network, created["Id"])
    configs = (raw.get("IPAM") or {}).get("Config") or [{}]
    return Network(str(raw["Id"]), str(raw["Name"]), str(configs[0].get("Gateway") or ""))


def remove_network(name: str) -> None:
    """Remove a network; gone is fine."""
    with contextlib.suppress(NotFound):
        call(_client().remove_network, name)


def networks(labels: Iterable[str] = ()) -> list[str]:
    """The names of the networks that carry every one of `labels`."""
    filters = {"label": list(labels)} if labels else None
    return [str(n["Name"]) for n in call(_client().networks, filters=filters)]

"""What one operation created in the engine, removed whatever happens.

A build, a run or a verify remembers each container and volume it creates in
a `Leftovers`, and removes them all when it ends: on success, on failure, on
Ctrl-C. What survives a SIGKILL or a crash is `nbs2i prune`'s to find (by the
owner in its name, see `nbs2i.prune`); this is the part of that clean-up
policy that runs while the owner is alive, so every command that creates
something shares it.
"""

from __future__ import annotations

import contextlib

from nbs2i.engine import Docker
from nbs2i.errors import EngineError


class Leftovers:
    """Containers and volumes that one operation created: `remove_all` removes
    them whatever happened (success, failure, Ctrl-C); `drop` removes one that
    served its purpose. What an operation hands over to the user (the server
    `nbs2i run` started) it keeps by not calling `remove_all`."""

    def __init__(self, engine: Docker) -> None:
        self.engine = engine
        self.containers: list[str] = []
        self.volumes: list[str] = []

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

    def remove_all(self) -> None:
        for cid in reversed(self.containers):
            with contextlib.suppress(EngineError):
                self.engine.remove_container(cid)
        for name in reversed(self.volumes):
            with contextlib.suppress(EngineError):
                self.engine.remove_volume(name)
        self.containers, self.volumes = [], []

"""What one operation created in the engine, removed whatever happens.

A build, a run or a verify remembers each container and volume it creates in
a `Leftovers`, and removes them all when it ends: on success, on failure, on
Ctrl-C. What survives a SIGKILL or a crash is `nbs2i prune`'s to find (by the
owner in its name, see `nbs2i.prune`); this is the part of that clean-up
policy that runs while the owner is alive, so every command that creates
something shares it.
"""

from __future__ import annotations

from nbs2i.engine import Docker
from nbs2i.errors import Nbs2iError


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

    def remove_all(self) -> list[str]:
        """Remove everything (a running container is killed: force); what could
        not be removed, as "container ID" / "volume NAME"."""
        left: list[str] = []
        steps = (
            ("container", self.containers, self.engine.remove_container),
            ("volume", self.volumes, self.engine.remove_volume),
        )
        for kind, names, remove in steps:
            for name in reversed(names):
                try:
                    remove(name)
                except Nbs2iError:  # the engine refused, or stopped answering
                    left.append(f"{kind} {name[:12] if kind == 'container' else name}")
        self.containers, self.volumes = [], []
        return left

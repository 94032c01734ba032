"""Remember what a test created in the engine, and remove exactly that."""

from __future__ import annotations

import contextlib

from nbs2i.engine import Docker
from nbs2i.errors import Nbs2iError


class Tracker:
    """Containers, images and volumes one test (or session) created;
    `cleanup()` removes them, also after a failure. A test tracks only what it
    made: a cache it merely reused (a dependency layer) is someone else's."""

    def __init__(self, engine: Docker) -> None:
        self.engine = engine
        self._containers: list[str] = []
        self._images: list[str] = []
        self._volumes: list[str] = []

    def container(self, cid: str) -> str:
        self._containers.append(cid)
        return cid

    def image(self, ref: str) -> str:
        self._images.append(ref)
        return ref

    def volume(self, name: str) -> str:
        self._volumes.append(name)
        return name

    def cleanup(self) -> None:
        for remove, items in (
            (self.engine.remove_container, self._containers),
            (lambda ref: self.engine.remove_image(ref, force=True), self._images),
            (self.engine.remove_volume, self._volumes),
        ):
            for item in reversed(items):
                with contextlib.suppress(Nbs2iError):
                    remove(item)
            items.clear()

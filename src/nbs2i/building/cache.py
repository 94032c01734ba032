"""The dependency layers in a registry, for runners that start empty.

A dependency layer's cache entry is `REPO:deps-KEY` (`REPO:apt-KEY` for the
Debian packages' layer below it), KEY the cache key of the local image
`nbs2i-cache/deps:KEY`: the builder, the assemble script, the environment and
the dependency files, nothing about the machine. So any runner with the same
inputs looks for the same tag.

- `--cache-from REPO` (repeatable): before a layer is made, the first of
  these repositories that holds its entry is used (a HEAD of the manifest:
  nothing is downloaded to find out). With an engine the entry is pulled
  through it and tagged as the local cache image; with none, `direct.py`
  builds on it inside the registry.
- `--cache-to REPO`: every layer a build uses is pushed there (through the
  engine) unless REPO already has it.

Each hit, miss, pull and push is an event of kind "cache" (for `--json`);
`origin()` is the one line a person reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from nbs2i import labels, registry
from nbs2i.building.plan import DepsStep
from nbs2i.building.request import BuildRequest
from nbs2i.engine import Docker
from nbs2i.errors import BuildError
from nbs2i.progress import Event, Reporter
from nbs2i.registry import Registry, Repository

DEPS = "deps"
APT = "apt"


@dataclass(frozen=True)
class Entry:
    """One cached layer: its kind, its key, the local image that holds it."""

    kind: str
    key: str
    local: str

    def tag(self) -> str:
        return f"{self.kind}-{self.key}"

    def ref(self, repository: str) -> str:
        return f"{repository}:{self.tag()}"


def deps_entry(step: DepsStep) -> Entry:
    return Entry(DEPS, step.key, step.tag)


def apt_entry(step: DepsStep) -> Entry | None:
    if step.apt is None:
        return None
    return Entry(APT, step.apt.tag.rpartition(":")[2], step.apt.tag)


def origin(local: str, how: str, pushed: str = "") -> Event:
    """The one line that says where a layer came from."""
    also = f", pushed to {pushed}" if pushed else ""
    return Event("step", f"Dependency layer {local}: {how}{also}")


class Cache:
    """The registries of one build's --cache-from and --cache-to, one session each."""

    def __init__(self, req: BuildRequest, reporter: Reporter) -> None:
        self.sources = req.cache_from
        self.target = req.cache_to
        self._access = req.registry_access
        self._reporter = reporter
        self._registries: dict[str, Registry] = {}

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        for found in self._registries.values():
            found.__exit__(None, None, None)
        self._registries.clear()

    def repository(self, name: str) -> Repository:
        host, path = registry.locate(name)
        if host not in self._registries:
            self._registries[host] = Registry(host, self._access)
        return self._registries[host].repository(path)

    def _event(self, action: str, entry: Entry, ref: str, message: str) -> None:
        data = {"action": action, "layer": entry.kind, "key": entry.key, "ref": ref}
        self._reporter(Event("cache", message, data))

    def find(self, entry: Entry) -> str:
        """The first --cache-from reference that holds `entry`; "" when none does."""
        for source in self.sources:
            ref = entry.ref(source)
            if self.repository(source).manifest_digest(entry.tag()) is not None:
                self._event("hit", entry, ref, f"cache hit: {ref}")
                return ref
        if self.sources:
            where = ", ".join(self.sources)
            self._event("miss", entry, "", f"cache miss: {entry.tag()} is in none of {where}")
        return ""

    def pull(self, engine: Docker, entry: Entry, ref: str) -> None:
        """Pull `ref` through the engine and tag it as the local cache image."""
        self._event("pull", entry, ref, f"pulling {ref}")
        engine.pull(ref)
        try:
            found = engine.inspect_image(ref).config.labels.get(labels.DEPS_KEY, entry.key)
            if entry.kind == DEPS and found != entry.key:
                raise BuildError(
                    f"{ref} is not the dependency layer {entry.key} (its label says {found})",
                    "remove that tag from the cache repository",
                )
            engine.tag(ref, entry.local)
        finally:
            engine.remove_image(ref)  # the local name stays; only the registry's goes

    def push(self, engine: Docker, entry: Entry) -> str:
        """Push the local image of `entry` to --cache-to unless it is there; the
        reference it has there ("" without --cache-to)."""
        if not self.target:
            return ""
        ref = entry.ref(self.target)
        if self.repository(self.target).manifest_digest(entry.tag()) is not None:
            self._event("hit", entry, ref, f"{ref} is already in the cache")
            return ref
        engine.tag(entry.local, ref)
        try:
            registry.push(engine, ref)
        finally:
            engine.remove_image(ref)
        self._event("push", entry, ref, f"pushed {ref}")
        return ref

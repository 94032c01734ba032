"""A CI setting for tests and benchmarks: a real registry on loopback that holds
the builder (pushed once, as the README's CI section says), a Docker config
for it, and the arguments every `nbs2i build` of a CI job gives."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from nbs2i import registry as image_registry
from nbs2i.engine import Engine
from tests.support.registry import Registry
from tests.support.session import SESSION_ID

# A socket nobody listens on: DOCKER_HOST for a runner with no engine.
NO_ENGINE = "unix:///nonexistent/nbs2i-test/docker.sock"


@dataclass(frozen=True)
class Setting:
    registry: Registry
    docker_config: Path
    builder: str  # the builder's reference in the registry

    @property
    def cache(self) -> str:
        return f"{self.registry.host}/course/cache"

    def image(self, tag: str) -> str:
        return f"{self.registry.host}/course/lectures:{tag}"

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_CONFIG": str(self.docker_config)}

    @property
    def no_engine(self) -> dict[str, str]:
        return {**self.env, "DOCKER_HOST": NO_ENGINE}

    def args(self, source: str, tag: str, *extra: str) -> list[str]:
        """`nbs2i build` arguments of a CI job: the builder from the registry, the
        registry cache both ways, --push, one JSON event a line."""
        tls = ["--registry-ca", str(self.registry.ca)] if self.registry.secure else []
        return [
            "build", source, self.image(tag),
            "--builder", self.builder,
            "--cache-from", self.cache,
            "--cache-to", self.cache,
            "--push", "--json", *tls, *extra,
        ]  # fmt: skip


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values`, for in-process code (docker-py reads DOCKER_CONFIG
    when its client is made); restored afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def push_builder(engine: Engine, builder: str, reg: Registry, docker_config: Path) -> str:
    """The builder pushed to the registry once, as a CI setup job does; the local
    tag that push needed is gone again (a runner pulls it)."""
    ref = f"{reg.host}/nbs2i/builder:{SESSION_ID}"
    engine.tag(builder, ref)
    try:
        with environment({"DOCKER_CONFIG": str(docker_config)}), Engine.connect() as pusher:
            image_registry.push(pusher, ref)
    finally:
        engine.remove_image(ref)
    return ref


@contextlib.contextmanager
def setting(engine: Engine, builder: str, reg: Registry, workdir: Path) -> Iterator[Setting]:
    config = reg.docker_config(workdir / "docker") if reg.secure else workdir / "docker"
    config.mkdir(parents=True, exist_ok=True)
    yield Setting(reg, config, push_builder(engine, builder, reg, config))

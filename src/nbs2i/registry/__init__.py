"""Registries: the push between a build and a cluster, and the image store CI
keeps between runners that start empty.

A cluster pulls what a registry holds, and a tag there can move under it: a
class of 300 must not get two different images because the teacher pushed
again in the middle of a morning. So a push returns the reference pinned by
digest (`registry/name@sha256:...`), which `nbs2i deploy` writes into the
manifests.

Two ways in:

- `push(engine, ref)`: the engine pushes an image it holds (`--push` with an
  engine; the dependency-layer cache with an engine pulls and pushes the same way).
- `Registry` (`client.py`): nbs2i speaks the distribution API itself, for a
  runner with no engine: manifests and configs read, blobs mounted or
  uploaded, a manifest written, the tag last. The protocol is python-dxf's
  (`access.py` says how hosts, CAs and credentials are chosen).
"""

from __future__ import annotations

from nbs2i.engine import Docker
from nbs2i.errors import EngineError, UsageError
from nbs2i.reference import DIGEST, ImageRef
from nbs2i.registry.access import Access
from nbs2i.registry.client import Registry, Repository

__all__ = ["Access", "ImageRef", "Registry", "Repository", "locate", "push"]


def push(engine: Docker, ref: str) -> str:
    """Push `ref` with the credentials of the usual Docker config; the pinned reference."""
    parsed = ImageRef.parse(ref)
    if parsed.digest:
        raise UsageError(
            f"cannot push {ref}: a reference with a digest names an image already pushed",
            "push a tag (registry/name:tag)",
        )
    digest = engine.push(str(parsed))
    if not DIGEST.fullmatch(digest):
        raise EngineError(f"the registry answered the push of {ref} with a bad digest {digest!r}")
    return str(parsed.pinned(digest))


def locate(repository: str) -> tuple[str, str]:
    """(registry host, repository path) of a repository name, as Docker reads it:
    the first part is a host when it has a "." or ":" or is localhost; else
    Docker Hub, where a single name lives under library/."""
    first, sep, rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first, rest
    return "docker.io", repository if sep else f"library/{repository}"

"""The push between a build and a cluster.

A cluster pulls what a registry holds, and a tag there can move under it: a
class of 300 must not get two different images because the teacher pushed
again in the middle of a morning. So a push returns the reference pinned by
digest (`registry/name@sha256:...`), which `nbs2i deploy` writes into the
manifests.
"""

from __future__ import annotations

from nbs2i.engine import Docker
from nbs2i.errors import EngineError, UsageError
from nbs2i.reference import DIGEST, ImageRef


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

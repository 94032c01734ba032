"""Image references and the push between a build and a cluster.

A cluster pulls what a registry holds, and a tag there can move under it: a
class of 300 must not get two different images because the teacher pushed
again in the middle of a morning. So a push returns the reference pinned by
digest (`registry/name@sha256:...`), which `nbs2i deploy` writes into the
manifests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nbs2i.engine import Docker
from nbs2i.errors import EngineError, UsageError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Docker's grammar for one path component of a repository, and for a tag.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")


@dataclass(frozen=True)
class ImageRef:
    """`[host[:port]/]path[:tag][@sha256:...]`, split and checked."""

    repository: str  # with the registry host, if any
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        rest, _, digest = ref.strip().partition("@")
        if digest and not DIGEST.fullmatch(digest):
            raise _bad(ref, f"the digest {digest!r} is not sha256: and 64 hex digits")
        head, _, last = rest.rpartition("/")
        repository, tag = rest, ""
        if ":" in last:
            name, _, tag = last.rpartition(":")
            repository = f"{head}/{name}" if head else name
            if not _TAG.fullmatch(tag):
                raise _bad(ref, f"the tag {tag!r} is not a valid tag")
        _check_repository(ref, repository)
        return cls(repository, tag, digest)

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def pinned(self, digest: str = "") -> ImageRef:
        """The same repository by digest alone: what a cluster should pull."""
        digest = digest or self.digest
        if not DIGEST.fullmatch(digest):
            raise _bad(str(self), "no sha256 digest to pin it by")
        return ImageRef(self.repository, "", digest)


def pinned(ref: str, digest: str) -> str:
    """`registry/name@sha256:...` for `registry/name:tag` and the digest it was pushed as."""
    return str(ImageRef.parse(ref).pinned(digest))


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


def _check_repository(ref: str, repository: str) -> None:
    parts = repository.split("/")
    if len(parts) > 1 and (
        "." in parts[0] or ":" in parts[0] or parts[0] == "localhost" or parts[0].startswith("[")
    ):
        host, parts = parts[0], parts[1:]
        if not _HOST.fullmatch(host):
            raise _bad(ref, f"{host!r} is not a registry host")
    if not parts or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise _bad(ref, "the name must be lower-case letters, digits and . _ - between slashes")


def _bad(ref: str, why: str) -> UsageError:
    return UsageError(
        f"{ref!r} is not an image reference: {why}",
        "give it as [registry[:port]/]name[:tag][@sha256:...]",
    )

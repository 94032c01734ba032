"""Image references, parsed once for every command: `[host[:port]/]name[:tag][@sha256:...]`.

Docker's grammar: lower-case path components separated by slashes, a first
part that is a registry host only when it has a "." or a ":" (or is
`localhost`, or an IPv6 address in brackets), a tag of at most 128
characters, a sha256 digest.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from nbs2i.errors import UsageError

# The longest repository name an engine accepts (Docker's NameTotalLengthMax).
NAME_MAX = 255
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# Docker's grammar for one path component of a repository, and for a tag.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_LOOPBACK_NAMES = ("localhost",)


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
        if len(repository) > NAME_MAX:
            raise _bad(ref, f"the name is longer than {NAME_MAX} characters")
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


def check_tag(ref: str, what: str) -> ImageRef:
    """A reference an image can be tagged as: no digest."""
    parsed = ImageRef.parse(ref)
    if parsed.digest:
        raise UsageError(
            f"{what} {ref!r} has a digest, which names an image already built",
            "give NAME[:TAG], e.g. myclass/lectures:2026",
        )
    return parsed


def split(ref: str) -> tuple[str, str]:
    """(repository, tag) as the engine's API takes them: the tag "latest" when none
    is given, the digest in the tag's place for `name@sha256:...` (a pull by digest)."""
    name, at, digest = ref.partition("@")
    if at:
        return split(name)[0], digest
    last = name.rpartition("/")[2]
    if ":" in last:
        repo, _, tag = name.rpartition(":")
        return repo, tag
    return name, "latest"


def registry_host(repository: str) -> str:
    """The registry host a repository names first, "" when it names none (Docker
    Hub): a first part with a "." or a ":", `localhost`, or an IPv6 address."""
    first, slash, _ = repository.partition("/")
    named = "." in first or ":" in first or first == "localhost" or first.startswith("[")
    return first if slash and named else ""


def hostname(host: str) -> str:
    """HOST without its port; an IPv6 address without its brackets."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    """A registry host on this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    name = hostname(host)
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_repository(ref: str, repository: str) -> None:
    parts = repository.split("/")
    host = registry_host(repository)
    if host:
        parts = parts[1:]
        if not _HOST.fullmatch(host):
            raise _bad(ref, f"{host!r} is not a registry host")
    if not parts or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise _bad(ref, "the name must be lower-case letters, digits and . _ - between slashes")


def _bad(ref: str, why: str) -> UsageError:
    return UsageError(
        f"{ref!r} is not an image reference: {why}",
        "give it as [registry[:port]/]name[:tag][@sha256:...]",
    )

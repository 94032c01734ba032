"""Read an image's filesystem without running anything in it.

A container is created from the image but never started, the engine streams
its root filesystem as a tar, and we read the headers as they pass: modes,
owners, set-id bits, world-writable entries, symlinks, package caches, plus
the text of a few small files we ask for (e.g. /etc/passwd). Nothing runs as
root, nothing runs at all.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nbs2i.archive import readable
from nbs2i.engine import ContainerSpec, Docker

# Files bigger than this are never read into memory, whatever was asked.
MAX_TEXT_BYTES = 1 << 20
# A chain of symlinks longer than this is treated as broken (loops exist).
MAX_SYMLINK_HOPS = 20
# Never started; the name only makes the intent obvious in `docker ps -a`.
NOT_STARTED = ("/nbs2i-verify-never-started",)
# Where anyone may write by design (scratch space), or what the engine mounts
# over at run time anyway: world-writable entries there are not findings.
SCRATCH = ("/tmp", "/var/tmp", "/dev", "/proc", "/sys", "/run/lock", "/var/lock")
STICKY = 0o1000
WORLD_WRITE = 0o002


@dataclass(frozen=True)
class Entry:
    path: str  # absolute, normalised: "/etc/passwd"
    kind: str  # "file", "dir", "symlink", "hardlink" or "other"
    mode: int  # permission bits, with the set-id and sticky bits
    uid: int
    gid: int
    target: str = ""  # what a symlink or hard link points at

    @property
    def setid(self) -> bool:
        return bool(self.mode & 0o6000)


@dataclass(frozen=True)
class CacheArea:
    name: str  # e.g. "apt lists"
    where: str  # e.g. "/var/lib/apt/lists"
    files: int
    size: int


@dataclass(frozen=True)
class FileFacts:
    """What a scan saw: every directory and symlink, plus the paths asked for."""

    entries: Mapping[str, Entry]
    setid_files: tuple[Entry, ...]
    caches: tuple[CacheArea, ...]
    texts: Mapping[str, str] = field(default_factory=dict)
    scanned: int = 0
    world_writable: tuple[Entry, ...] = ()

    def lookup(self, path: str) -> Entry | None:
        """The entry at path, following symlinks in any component (bounded:
        loops exist); None when absent."""
        pending = _parts(normalise(path))
        resolved = "/"
        hops = 0
        while pending:
            candidate = normalise(posixpath.join(resolved, pending.pop(0)))
            entry = self.entries.get(candidate)
            if entry is not None and entry.kind == "symlink":
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    return None
                # A relative target is relative to the link's directory.
                pending = _parts(normalise(posixpath.join(resolved, entry.target))) + pending
                resolved = "/"
                continue
            resolved = candidate
        return self.entries.get(resolved)


def _parts(path: str) -> list[str]:
    return [] if path == "/" else path.strip("/").split("/")


def normalise(name: str) -> str:
    """Tar member names ("", "/etc", "./etc/") as absolute paths ("/", "/etc")."""
    clean = posixpath.normpath("/" + name.lstrip("./").lstrip("/"))
    return "/" if clean in ("/", "//", "/.") else clean


# Where package managers leave caches behind: (name, directory, files to ignore).
_CACHE_AREAS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("apt lists", "/var/lib/apt/lists", frozenset({"lock"})),
    ("apt archives", "/var/cache/apt", frozenset({"lock"})),
)
_PIP_CACHE = "/.cache/pip/"


def cache_area(entry: Entry) -> tuple[str, str] | None:
    """(name, directory) of the package cache a file belongs to, if any."""
    if entry.kind != "file":
        return None
    for name, where, ignored in _CACHE_AREAS:
        if entry.path.startswith(where + "/") and posixpath.basename(entry.path) not in ignored:
            return name, where
    if _PIP_CACHE in entry.path:
        return "pip cache", entry.path[: entry.path.index(_PIP_CACHE) + len(_PIP_CACHE) - 1]
    return None


def is_world_writable(entry: Entry) -> bool:
    """Anyone may change it, and it is not scratch space: a finding.

    A symlink's mode means nothing; a world-writable directory with the sticky
    bit is a /tmp-like place by design (only owners may delete or rename)."""
    if entry.kind in ("symlink", "hardlink") or not entry.mode & WORLD_WRITE:
        return False
    if entry.kind == "dir" and entry.mode & STICKY:
        return False
    return not any(entry.path == d or entry.path.startswith(d + "/") for d in SCRATCH)


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.isfile():
        return "file"
    return "other"


class _Scan:
    """What one pass over the tar collects."""

    def __init__(self, want: Iterable[str], read: Iterable[str]) -> None:
        self.to_read = {normalise(p) for p in read}
        self.wanted = {normalise(p) for p in want} | self.to_read
        self.entries: dict[str, Entry] = {}
        self.setid: list[Entry] = []
        self.world_writable: list[Entry] = []
        self.caches: dict[tuple[str, str], list[int]] = {}
        self.texts: dict[str, str] = {}
        self.scanned = 0

    def add(self, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        self.scanned += 1
        path = normalise(member.name)
        kind = _kind(member)
        entry = Entry(path, kind, member.mode & 0o7777, member.uid, member.gid, member.linkname)
        if kind in ("dir", "symlink") or path in self.wanted:
            self.entries[path] = entry
        if kind in ("file", "hardlink") and entry.setid:
            self.setid.append(entry)
        if is_world_writable(entry):
            self.world_writable.append(entry)
        area = cache_area(entry)
        if area is not None:
            tally = self.caches.setdefault(area, [0, 0])
            tally[0] += 1
            tally[1] += member.size
        if path in self.to_read and kind == "file" and member.size <= MAX_TEXT_BYTES:
            handle = archive.extractfile(member)
            if handle is not None:
                self.texts[path] = handle.read().decode("utf-8", "replace")

    def facts(self) -> FileFacts:
        areas = tuple(
            CacheArea(name, where, n, size) for (name, where), (n, size) in self.caches.items()
        )
        return FileFacts(
            self.entries,
            tuple(self.setid),
            areas,
            self.texts,
            self.scanned,
            tuple(self.world_writable),
        )


def scan_tar(
    chunks: Iterable[bytes], *, want: Iterable[str] = (), read: Iterable[str] = ()
) -> FileFacts:
    """Scan a tar stream once. `want`: paths whose entries to keep (directories
    and symlinks are always kept); `read`: small files whose text to keep."""
    scan = _Scan(want, read)
    stream = readable(chunks)
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            scan.add(member, archive)
    return scan.facts()


def read_image_files(
    engine: Docker,
    image: str,
    *,
    want: Iterable[str] = (),
    read: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
) -> FileFacts:
    """Scan an image's filesystem through a created, never started container."""
    spec = ContainerSpec(
        image=image,
        entrypoint=NOT_STARTED,
        command=(),
        labels=dict(labels or {}),
        network="none",
    )
    cid = engine.create_container(spec)
    try:
        return scan_tar(engine.get_archive(cid, "/"), want=want, read=read)
    finally:
        engine.remove_container(cid)

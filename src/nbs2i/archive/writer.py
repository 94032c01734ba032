"""The tar writer: headers through tarfile, contents streamed in blocks.

Owners are numeric, group bits equal user bits, set-id and sticky bits go,
times are clamped to the epoch (see the package docstring). A file is read
through the descriptor it was opened with, relative to its directory's
descriptor, without following a link swapped in since the walk.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbs2i.archive.walk import walk
from nbs2i.errors import SourceError
from nbs2i.source.dirfd import FILE_FLAGS, open_path, open_root

# Bytes read from a file at a time, and the size the stream's chunks grow to
# before they are handed on. Peak memory is a small multiple of this.
CHUNK = 1024 * 1024
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_CHANGING_FIX = "build again when nothing is writing to the source"


@dataclass(frozen=True)
class TarFile:
    """An extra file to put into a stream (scripts, injected files, env files).

    Give `data` (in memory) or `path` (read as the stream goes; a directory is
    added with everything under it). `name` is the entry's path in the archive.
    `mode` is the entry's permission (for a directory `path`, its files keep their
    own). Group bits become the user bits as for every entry.
    """

    name: str
    data: bytes | None = None
    path: Path | None = None
    mode: int = 0o644


@dataclass(frozen=True)
class DirEntry:
    """A directory written with exactly this owner and mode (parents of a layer's
    files must match the image below, or they would shadow it)."""

    name: str
    uid: int
    gid: int
    mode: int


def tar_mode(mode: int) -> int:
    """Permission bits for the archive: group = user, other kept, no setuid/setgid/sticky."""
    user = mode & 0o700
    return user | (user >> 3) | (mode & 0o007)


def clean_name(name: str) -> str:
    path = PurePosixPath(name.lstrip("/"))
    if ".." in path.parts or not path.parts:
        raise ValueError(f"archive entry name {name!r} must be a relative path without '..'")
    return "/".join(p for p in path.parts if p != ".")


class _Chunks:
    """Collects small pieces (headers, small files) into chunks of about CHUNK bytes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self.total = 0

    def add(self, data: bytes) -> Iterator[bytes]:
        self._parts.append(data)
        self._size += len(data)
        self.total += len(data)
        if self._size >= CHUNK:
            yield from self.flush()

    def flush(self) -> Iterator[bytes]:
        if self._parts:
            data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
            self._parts, self._size = [], 0
            yield data


class Writer:
    """Writes tar members into a `_Chunks`: headers via tarfile, contents streamed."""

    def __init__(self, uid: int, gid: int, epoch: int | None) -> None:
        self.uid, self.gid, self.epoch = uid, gid, epoch
        self.out = _Chunks()
        self.dirs: set[str] = set()

    def _mtime(self, mtime: float | None) -> int:
        if mtime is None:
            return self.epoch if self.epoch is not None else int(time.time())
        seconds = max(0, int(mtime))
        return min(seconds, self.epoch) if self.epoch is not None else seconds

    def header(
        self,
        name: str,
        kind: bytes,
        mode: int,
        mtime: float | None,
        *,
        size: int = 0,
        link: str = "",
        owner: tuple[int, int] | None = None,
    ) -> Iterator[bytes]:
        """One entry's header; an explicit `owner` keeps `mode` exactly as given."""
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode & 0o7777 if owner else tar_mode(mode)
        info.uid, info.gid = owner or (self.uid, self.gid)
        info.uname = info.gname = ""
        info.mtime = self._mtime(mtime)
        info.size = size
        info.linkname = link
        if kind == tarfile.DIRTYPE:
            self.dirs.add(name)
        yield from self.out.add(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def parents(self, name: str) -> Iterator[bytes]:
        """Directory entries for the parents of `name` not written yet."""
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in self.dirs:
                yield from self.header(parent, tarfile.DIRTYPE, 0o755, None)

    def contents(self, fd: int, size: int, shown: str) -> Iterator[bytes]:
        """A file's data, read in CHUNK blocks from an open descriptor."""
        left = size
        while left > 0:
            block = os.read(fd, min(CHUNK, left))
            if not block:
                raise SourceError(f"file {shown} got shorter while it was read", _CHANGING_FIX)
            left -= len(block)
            if len(block) >= CHUNK:
                yield from self.out.flush()
                self.out.total += len(block)
                yield block
            else:
                yield from self.out.add(block)
        yield from self.padding(size)

    def padding(self, size: int) -> Iterator[bytes]:
        if size % _BLOCK:
            yield from self.out.add(b"\0" * (_BLOCK - size % _BLOCK))

    def file_at(
        self, dir_fd: int, name: str, entry: str, shown: str, mode: int | None = None
    ) -> Iterator[bytes]:
        """The regular file `name` of the directory `dir_fd`, with its own
        permission bits unless `mode` is given; anything else by now is skipped
        (as the walk skips it), a symlink refused."""
        fd = _open_file(dir_fd, name, shown)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            kept = st.st_mode if mode is None else mode
            yield from self.header(entry, tarfile.REGTYPE, kept, st.st_mtime, size=st.st_size)
            yield from self.contents(fd, st.st_size, shown)
        finally:
            os.close(fd)

    def tree(
        self, root: Path, prefix: str, excludes: Sequence[str], shown_root: str = ""
    ) -> Iterator[bytes]:
        """`prefix` (unless "" or written already) and every selected entry of root
        under it, all read through descriptors from the root's."""
        root_fd = open_root(root)
        try:
            if prefix and prefix not in self.dirs:
                yield from self.parents(prefix)
                st = os.fstat(root_fd)
                yield from self.header(prefix, tarfile.DIRTYPE, st.st_mode, st.st_mtime)
            for entry in walk(root_fd, excludes, shown_root):
                name = f"{prefix}/{entry.rel}" if prefix else entry.rel
                shown = f"{shown_root}/{entry.rel}" if shown_root else entry.rel
                if entry.kind == "file":
                    yield from self.file_at(entry.parent, entry.name, name, shown)
                    continue
                assert entry.stat is not None
                kind = tarfile.DIRTYPE if entry.kind == "dir" else tarfile.SYMTYPE
                mode = entry.stat.st_mode if entry.kind == "dir" else 0o777
                yield from self.header(name, kind, mode, entry.stat.st_mtime, link=entry.target)
        finally:
            os.close(root_fd)

    def directory(self, entry: DirEntry) -> Iterator[bytes]:
        name = clean_name(entry.name)
        owner = (entry.uid, entry.gid)
        yield from self.header(name, tarfile.DIRTYPE, entry.mode, None, owner=owner)

    def extra(self, item: TarFile) -> Iterator[bytes]:
        name = clean_name(item.name)
        if (item.data is None) == (item.path is None):
            raise ValueError(f"TarFile {item.name}: give exactly one of data or path")
        yield from self.parents(name)
        if item.data is not None:
            yield from self.header(name, tarfile.REGTYPE, item.mode, None, size=len(item.data))
            yield from self.out.add(item.data)
            yield from self.padding(len(item.data))
            return
        # The caller named this file or directory: links to it are followed,
        # once, here; what is under it is read through descriptors.
        path = Path(item.path).resolve()  # type: ignore[arg-type]
        if path.is_dir():
            yield from self.tree(path, name, (), shown_root=str(item.path))
            return
        dir_fd = _open_parent(path, str(item.path))
        try:
            yield from self.file_at(dir_fd, path.name, name, str(item.path), item.mode)
        finally:
            os.close(dir_fd)

    def end(self) -> Iterator[bytes]:
        """Two zero blocks, then zeros up to a whole record, as tar writes."""
        yield from self.out.add(b"\0" * (2 * _BLOCK))
        if self.out.total % _RECORD:
            yield from self.out.add(b"\0" * (_RECORD - self.out.total % _RECORD))
        yield from self.out.flush()


def _open_file(dir_fd: int, name: str, shown: str) -> int:
    try:
        return os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SourceError(
                f"file {shown} became a symlink while it was read", _CHANGING_FIX
            ) from None
        raise SourceError(
            f"cannot read {shown}: {exc.strerror}",
            "make it readable, or leave it out with --exclude or .s2iignore",
        ) from None


def _open_parent(path: Path, shown: str) -> int:
    try:
        return open_path(path.parent)
    except OSError as exc:
        raise SourceError(f"cannot read {shown}: {exc.strerror}", "give a readable file") from None

"""Stream the source as a tar, generated on the fly from the files.

The build hands `tar_stream()` straight to the engine's put_archive: tar headers
are written here and file contents are read in blocks of `CHUNK` bytes as the
engine consumes them. The whole repository is never in memory and never copied
to disk, so peak memory does not grow with the size of the repository.

What arrives in the container, whatever the files looked like on disk:

- every entry is owned by the numeric `uid:gid` (no user or group names, so
  nothing is looked up in the container's /etc/passwd);
- group permission bits equal the user bits (0644 -> 0664, 0755 -> 0775), other
  bits are kept, setuid/setgid/sticky bits are dropped: an arbitrary UID in
  group 0 can then edit everything, as OpenShift's restricted SCC needs;
- times are clamped to `epoch` (the commit time, SOURCE_DATE_EPOCH), so a
  rebuild of the same commit gives the same layer;
- symlinks stay symlinks when they resolve inside the source; one that points
  outside (absolute, or through `..`) is refused: it would be dangling, or worse,
  read something of the build machine or the image that the author did not mean;
- hard links become regular files (each name gets its own copy);
- fifos, sockets and device files are skipped: Git cannot hold them and they
  are never notebook content;
- the tree is read through directory descriptors (`walk`, `nbs2i.source.dirfd`):
  a directory swapped for a symlink while the stream is read is refused, or
  read as it was; never followed out of the source.

The parts: `ignore` (what `--exclude` and `.s2iignore` select), `walk` (the
tree through descriptors, links checked), `writer` (the tar), `reading` (the
other way: an engine's tar stream as a file).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from nbs2i import defaults
from nbs2i.archive.ignore import compile_excludes
from nbs2i.archive.reading import readable
from nbs2i.archive.walk import walk
from nbs2i.archive.writer import CHUNK, DirEntry, TarFile, Writer, clean_name, tar_mode
from nbs2i.source.dirfd import open_root

__all__ = [
    "CHUNK",
    "DEFAULT_EXCLUDE",
    "DirEntry",
    "TarFile",
    "check_source",
    "compile_excludes",
    "files_tar",
    "readable",
    "tar_mode",
    "tar_stream",
]

DEFAULT_EXCLUDE = defaults.EXCLUDE


def check_source(root: Path, excludes: Sequence[str] = (DEFAULT_EXCLUDE,)) -> None:
    """Raise what `tar_stream` would raise about the tree, before anything is sent.

    Cheap (one walk, no file is read): lets a build refuse a bad source before it
    creates a container.
    """
    root_fd = open_root(root)
    try:
        for _entry in walk(root_fd, excludes):
            pass
    finally:
        os.close(root_fd)


def tar_stream(
    root: Path,
    *,
    uid: int,
    gid: int = 0,
    epoch: int | None,
    prefix: str = "src",
    excludes: Sequence[str] = (DEFAULT_EXCLUDE,),
    extra: Sequence[TarFile] = (),
    dirs: Sequence[DirEntry] = (),
) -> Iterator[bytes]:
    """The source under root as a tar (PAX format), in chunks, generated as it is consumed.

    Entries: `dirs` exactly as given, then `<prefix>` itself (unless among
    `dirs`), then `<prefix>/<rel>` for every selected entry (see the module docstring),
    then `extra`. Raises SourceError (while streaming) for a symlink that points
    outside root, a file that cannot be read, or a directory that changed.
    `root` is absolute and resolved (`nbs2i.source` resolves it once): it is
    opened without following a link.
    """
    writer = Writer(uid, gid, epoch)
    for entry in dirs:
        yield from writer.directory(entry)
    yield from writer.tree(Path(root), clean_name(prefix) if prefix else "", excludes)
    for item in extra:
        yield from writer.extra(item)
    yield from writer.end()


def files_tar(
    files: Sequence[TarFile] = (),
    *,
    uid: int,
    gid: int = 0,
    epoch: int | None = None,
    dirs: Sequence[str] = (),
) -> Iterator[bytes]:
    """A tar of only the given entries (no tree walked): empty directories `dirs`
    (mode 0775), then `files`; owners, modes and times as in `tar_stream`."""
    import tarfile

    writer = Writer(uid, gid, epoch)
    for name in dirs:
        clean = clean_name(name)
        yield from writer.parents(clean)
        yield from writer.header(clean, tarfile.DIRTYPE, 0o755, None)
    for item in files:
        yield from writer.extra(item)
    yield from writer.end()

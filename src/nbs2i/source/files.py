"""Reading the files of an untrusted source that steer the build.

`read_control_file()` is how nbs2i reads every file whose content steers the
build (ignore rules, environment, scripts, dependency files): never through a
link that leaves the source, never a special file (a FIFO would hang the
build, /dev/zero would never end), never more than a bounded number of bytes.
The path is followed through directory descriptors (`dirfd`), so a directory
swapped for a symlink meanwhile cannot lead the read out of the source.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from nbs2i.errors import SourceError
from nbs2i.source.dirfd import FILE_FLAGS, LinkLoop, Outside, beneath, changed, open_path, open_root

# Bytes nbs2i reads at most from a file that steers the build.
CONTROL_FILE_LIMIT = 1 << 20


def read_control_file(root: Path, rel: str, *, limit: int = CONTROL_FILE_LIMIT) -> bytes | None:
    """The bytes of a small regular file of the source; None when there is none.

    Refuses (SourceError naming the file) a path that leads outside the
    source, anything but a regular file, and more than `limit` bytes. Links
    inside the source are followed; `root` is opened as `dirfd.open_root` says.
    """
    root_fd = open_root(root)
    try:
        return read_control_file_at(root_fd, rel, limit=limit)
    finally:
        os.close(root_fd)


def read_control_file_at(
    root_fd: int, rel: str, *, limit: int = CONTROL_FILE_LIMIT
) -> bytes | None:
    """`read_control_file` under a root already open."""
    try:
        with beneath((root_fd,), rel) as place:
            if place is None:
                return None
            return _read_at(place[0], place[1], rel, limit)
    except Outside:
        raise SourceError(
            f"{rel} links outside the source",
            f"replace the link with the file itself or remove {rel}",
        ) from None
    except LinkLoop:
        raise SourceError(
            f"{rel} goes through too many symlinks", f"replace the links with the file {rel}"
        ) from None


def read_regular_file(
    path: str | Path, shown: str, *, limit: int = CONTROL_FILE_LIMIT
) -> bytes | None:
    """At most `limit` bytes of a regular file of this machine that the user
    named; None when it does not exist. `path` is resolved by the caller, and
    opened without following a link from there on. Non-blocking open and a
    type check first: a FIFO or a device is refused, never read."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        dir_fd = open_path(folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(
            f"cannot read {shown}: {exc.strerror}", f"make {shown} a readable file"
        ) from None
    try:
        return _read_at(dir_fd, name, shown, limit)
    finally:
        os.close(dir_fd)


def _read_at(dir_fd: int, name: str, shown: str, limit: int) -> bytes | None:
    """At most `limit` bytes of the regular file `name` in `dir_fd`."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise changed(shown) from None
        raise SourceError(
            f"cannot read {shown}: {exc.strerror}", f"make {shown} a readable file"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError(
                f"{shown} is not a regular file", f"make {shown} a plain file or remove it"
            )
        data = _read_up_to(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise SourceError(
            f"{shown} is larger than {limit // 1024} KiB",
            f"keep {shown} small: nbs2i reads at most that",
        )
    return data


def _read_up_to(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        block = os.read(fd, size - len(data))
        if not block:
            break
        data += block
    return data

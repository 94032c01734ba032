"""Reading the files of an untrusted source that steer the build.

`read_control_file()` is how nbs2i reads every file whose content steers the
build (ignore rules, environment, scripts, dependency files): never through a
link that leaves the source, never a special file (a FIFO would hang the
build, /dev/zero would never end), never more than a bounded number of bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nbs2i.errors import SourceError

# Bytes nbs2i reads at most from a file that steers the build.
CONTROL_FILE_LIMIT = 1 << 20


def read_control_file(root: Path, rel: str, *, limit: int = CONTROL_FILE_LIMIT) -> bytes | None:
    """The bytes of a small regular file of the source; None when there is none.

    Refuses (SourceError naming the file) a path that resolves outside the
    source, anything but a regular file, and more than `limit` bytes. Opened
    non-blocking and without following a final link swapped in meanwhile.
    """
    path = Path(root) / rel
    try:
        path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise SourceError(
            f"{rel} links outside the source",
            f"replace the link with the file itself or remove {rel}",
        )
    return read_regular_file(real, rel, limit=limit)


def read_regular_file(
    path: str | Path, shown: str, *, limit: int = CONTROL_FILE_LIMIT
) -> bytes | None:
    """At most `limit` bytes of a regular file; None when it does not exist.
    Non-blocking open and a type check first: a FIFO or a device is refused,
    never read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SourceError(
            f"cannot read {shown}: {exc.strerror}", f"make {shown} a readable file"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError(
                f"{shown} is not a regular file", f"make {shown} a plain file or remove it"
            )
        data = b""
        while len(data) <= limit:
            block = os.read(fd, limit + 1 - len(data))
            if not block:
                break
            data += block
    finally:
        os.close(fd)
    if len(data) > limit:
        raise SourceError(
            f"{shown} is larger than {limit // 1024} KiB",
            f"keep {shown} small: nbs2i reads at most that",
        )
    return data

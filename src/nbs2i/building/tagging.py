"""Moving a tag to the image a build made, one build at a time, truthfully.

- Builds of one tag on one machine take turns here (a lock file per tag), so
  each knows exactly which image its tag pointed to before and removes it when
  nothing else uses it: parallel builds of one tag leave no untagged images.
- Stop signals are held while the engine moves the tag: an interrupt then
  takes effect afterwards, and the message says where the tag points.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from nbs2i import interrupts
from nbs2i.engine import Docker
from nbs2i.errors import Nbs2iError, NotFound
from nbs2i.localcache import cache_dir


class BuildInterrupted(Nbs2iError):
    """Interrupted while the tag moved: the image was made and is tagged."""

    exit_code = 130


@contextlib.contextmanager
def tag_lock(tag: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Exclusive while held, for builds of `tag` on this machine. `on_wait` is
    called once when another process holds it, before waiting.

    The lock file is removed by its holder, so that one file per tag ever built
    does not pile up; whoever waited on a removed file opens the path anew."""
    directory = cache_dir("locks")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (hashlib.sha256(tag.encode()).hexdigest()[:32] + ".lock")
    handle = _acquire(path, on_wait)
    try:
        yield
    finally:
        # Removed while still held: the path never names a file someone holds
        # that a newcomer could lock too.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        handle.close()  # releases the lock


def _acquire(path: Path, on_wait: Callable[[], None] | None) -> IO[str]:
    """The open, locked lock file that `path` names."""
    while True:
        handle = path.open("a")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                    on_wait = None
                fcntl.flock(handle, fcntl.LOCK_EX)
            if _still_at(handle, path):
                return handle
        except BaseException:
            handle.close()
            raise
        handle.close()  # the holder before removed it: lock the path's new file


def _still_at(handle: IO[str], path: Path) -> bool:
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(handle.fileno())
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def current(engine: Docker, tag: str) -> str:
    """The id the tag points to, "" when none."""
    try:
        return engine.inspect_image(tag).id
    except NotFound:
        return ""


def replace(engine: Docker, tag: str, make: Callable[[], str]) -> str:
    """`make()` tags a new image as `tag`; the image the tag pointed to before is
    removed when that left it untagged. The new image's id."""
    with tag_lock(tag):
        previous = current(engine, tag)
        image_id = ""
        try:
            with interrupts.deferred():
                image_id = make()
                if previous and previous != image_id:
                    _drop_if_untagged(engine, previous)
        except KeyboardInterrupt:
            if not image_id:
                raise
            raise BuildInterrupted(
                f"interrupted after the image was made: {tag} is now {image_id[7:19]}",
                "nothing else was left behind; remove it with `docker rmi` if unwanted",
            ) from None
    return image_id


def _drop_if_untagged(engine: Docker, image: str) -> None:
    with contextlib.suppress(Nbs2iError):
        if not engine.inspect_image(image).tags:
            engine.remove_image(image)

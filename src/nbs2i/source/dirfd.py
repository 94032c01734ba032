"""A source's files, reached through directory descriptors.

Once nbs2i has checked a part of a path, it does not hand that path to the
kernel again: each directory is opened relative to its parent's descriptor
(O_DIRECTORY | O_NOFOLLOW) and each file relative to its directory's
(O_NOFOLLOW), in the way of openat(2). A directory of the source renamed and
replaced by a symlink while nbs2i reads it is then refused or harmless: met
before nbs2i entered it, the open fails (a symlink is never a directory
here); met after, nbs2i goes on reading the directory it opened, which holds
what the source held. The source's root is opened from `/` the same way:
whoever chose it resolved it once (a root given through a symlink is the
user's choice), so a symlink that appears on its path later is refused too.

`beneath()` follows the links of a relative path the way the kernel would,
one component at a time, and refuses the path as soon as it would leave the
directory it started under.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import PurePosixPath

from nbs2i.errors import SourceError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Non-blocking: a FIFO opens at once (and is then refused by its type).
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Links followed in one path at most, as the kernel's ELOOP limit.
MAX_LINKS = 40
# Directories nested deeper than this are refused: each level holds a
# descriptor while nbs2i is below it.
MAX_DEPTH = 256
# What open() says when a directory it expects is something else by now.
_SWAPPED = frozenset({errno.ELOOP, errno.ENOTDIR, errno.ENOENT})
CHANGED_FIX = "build again when nothing is changing the source"


class Outside(Exception):
    """A path that leads out of the directory it is resolved under."""


class LinkLoop(Exception):
    """A path that follows more than MAX_LINKS links (a loop, as a rule)."""


def changed(shown: str) -> SourceError:
    return SourceError(f"{shown} changed while nbs2i read the source", CHANGED_FIX)


def too_deep(shown: str) -> SourceError:
    return SourceError(
        f"{shown} is nested more than {MAX_DEPTH} directories deep",
        "flatten the tree, or leave that part out with --exclude or .s2iignore",
    )


def open_path(path: str | os.PathLike[str]) -> int:
    """A descriptor of the directory `path` (made absolute, never resolved),
    opened from / one component at a time without following any link;
    OSError as the failing open raised it."""
    fd = os.open("/", DIR_FLAGS)
    try:
        for name in PurePosixPath(os.path.abspath(path)).parts[1:]:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_root(path: str | os.PathLike[str]) -> int:
    """The source's root as a descriptor: see `open_path`."""
    try:
        return open_path(path)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SourceError(
                f"the source directory {path} changed since the build started: its path "
                "now goes through a symlink",
                CHANGED_FIX,
            ) from None
        raise SourceError(
            f"cannot open the source directory {path}: {exc.strerror}",
            "give a readable directory",
        ) from None


def open_dir(parent: int, name: str, shown: str) -> int:
    """The directory `name` in `parent`; refused (one line) once it is anything
    else, a symlink included."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in _SWAPPED:
            raise changed(shown) from None
        if exc.errno == errno.EMFILE:
            raise too_deep(shown) from None
        raise SourceError(
            f"cannot read directory {shown} of the source: {exc.strerror}",
            "make it readable, or leave it out with --exclude or .s2iignore",
        ) from None


@contextmanager
def beneath(chain: Sequence[int], rel: str) -> Iterator[tuple[int, str] | None]:
    """Where `rel` leads from the directory chain[-1], every link followed:
    (the descriptor of the directory that holds the last component, its
    name), or None when a component does not exist. `chain` holds the
    descriptors from the top (chain[0]) down; the path may not leave the top:
    Outside. LinkLoop past MAX_LINKS links. Descriptors opened here are
    closed on leaving."""
    walk = _Resolution(chain)
    try:
        yield walk.resolve(rel)
    finally:
        walk.close()


class _Resolution:
    """The state of one `beneath()`: the directories entered so far, and how
    many components past the last existing one (followed by name alone, as
    realpath does)."""

    def __init__(self, chain: Sequence[int]) -> None:
        self.stack = [(fd, False) for fd in chain]  # (descriptor, opened here)
        self.missing = 0
        self.links = 0
        self.shown = ""

    def resolve(self, rel: str) -> tuple[int, str] | None:
        self.shown = rel
        todo = _components(rel)
        while todo:
            name = todo.pop()
            if name == "..":
                self._up()
                continue
            if self.missing:
                self.missing += 1
                continue
            found = self._step(name, todo)
            if found is not None:
                return found
        return None

    def _up(self) -> None:
        if self.missing:
            self.missing -= 1
            return
        if len(self.stack) == 1:
            raise Outside
        fd, owned = self.stack.pop()
        if owned:
            os.close(fd)

    def _step(self, name: str, todo: list[str]) -> tuple[int, str] | None:
        """Look `name` up; the place it names when it is the last component."""
        here = self.stack[-1][0]
        mode = self._kind(here, name)
        if mode is None or (todo and not (stat.S_ISDIR(mode) or stat.S_ISLNK(mode))):
            self.missing += 1  # "file/.." is the file's directory, as realpath has it
            return None
        if stat.S_ISLNK(mode):
            todo.extend(_components(self._follow(here, name)))
            return None
        if not todo:
            return here, name
        if len(self.stack) > MAX_DEPTH:
            raise too_deep(self.shown)
        self.stack.append((open_dir(here, name, self.shown), True))
        return None

    def _kind(self, here: int, name: str) -> int | None:
        """The mode of `name` in `here`, not following a link; None when absent."""
        try:
            return os.stat(name, dir_fd=here, follow_symlinks=False).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SourceError(
                f"cannot read {self.shown}: {exc.strerror}", "make it readable"
            ) from None

    def _follow(self, here: int, name: str) -> str:
        """A link's target, which must stay relative."""
        self.links += 1
        if self.links > MAX_LINKS:
            raise LinkLoop
        try:
            target = os.readlink(name, dir_fd=here)
        except OSError:
            raise changed(self.shown) from None
        if target.startswith("/"):
            raise Outside
        return target

    def close(self) -> None:
        for fd, owned in self.stack:
            if owned:
                os.close(fd)
        self.stack = []


def _components(rel: str) -> list[str]:
    """The names of a relative path, last first (popped in order)."""
    return [part for part in reversed(rel.split("/")) if part not in ("", ".")]

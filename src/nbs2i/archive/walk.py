"""The walk of a source's tree, through directory descriptors.

Each directory is listed once, through the descriptor it was opened with;
each entry is reached by name relative to its directory's descriptor. A
directory is opened (O_DIRECTORY | O_NOFOLLOW) when the walk selects it, and
the walk stays inside that directory until it is done with it, whatever
happens to its name meanwhile: a directory renamed and replaced by a symlink
before the walk reaches it is refused, one replaced after is read as it was.

Entries come sorted by name, a directory before what it holds. Symlinks are
checked here, for the walk's every user: one that leaves the source (as
written, or on disk through other links) is refused. Fifos, sockets and
devices are skipped: Git cannot hold them and they are never notebook content.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from nbs2i.archive.ignore import IGNORE_FILE, Ignore, Selection, compile_excludes
from nbs2i.errors import SourceError
from nbs2i.source.dirfd import (
    MAX_DEPTH,
    LinkLoop,
    Outside,
    beneath,
    changed,
    open_dir,
    too_deep,
)
from nbs2i.source.files import read_control_file_at


@dataclass(frozen=True)
class Entry:
    """One selected entry. `parent` is the descriptor of the directory that
    holds it, open until the walk goes on past it."""

    rel: str  # the POSIX path relative to the root
    kind: str  # "dir", "file" or "link"
    parent: int
    name: str
    # A directory's own (of the directory the walk opened), a link's; None
    # for a file: its reader takes the status of what it opens.
    stat: os.stat_result | None = None
    target: str = ""  # a link's, checked to stay inside


@dataclass
class _Level:
    """A directory the walk is in."""

    parts: tuple[str, ...]
    chain: tuple[int, ...]  # descriptors from the root down to this directory
    entries: Iterator[tuple[str, str]]
    owned: bool = True

    @property
    def fd(self) -> int:
        return self.chain[-1]


def walk(root_fd: int, excludes: Sequence[str], shown_root: str = "") -> Iterator[Entry]:
    """Every selected entry under the open directory `root_fd`, parents
    first; SourceError for a link out, or a directory that changed."""
    selection = Selection(
        tuple(compile_excludes(excludes)), Ignore.parse(read_control_file_at(root_fd, IGNORE_FILE))
    )
    return _Walk(root_fd, selection, shown_root).entries()


class _Walk:
    def __init__(self, root_fd: int, selection: Selection, shown_root: str) -> None:
        self.selection = selection
        self.shown_root = shown_root
        root = _Level((), (root_fd,), iter(_scan(root_fd, shown_root or ".")), owned=False)
        self.levels = [root]
        # Held directories are emitted only when something inside them is.
        self.pending: list[Entry] = []

    def entries(self) -> Iterator[Entry]:
        try:
            while self.levels:
                yield from self._next()
        finally:
            for level in self.levels:
                if level.owned:
                    os.close(level.fd)
            self.levels = []

    def _next(self) -> Iterator[Entry]:
        level = self.levels[-1]
        nxt = next(level.entries, None)
        if nxt is None:
            self._leave()
            return
        name, kind = nxt
        verdict = self.selection.verdict((*level.parts, name), kind)
        if verdict == "skip":
            return
        entry = self._enter(level, name, kind)
        if verdict == "hold":
            self.pending.append(entry)
            return
        yield from self.pending
        self.pending.clear()
        yield entry

    def _leave(self) -> None:
        level = self.levels.pop()
        if level.owned:
            os.close(level.fd)
        if self.pending and self.pending[-1].rel == "/".join(level.parts):
            self.pending.pop()

    def _enter(self, level: _Level, name: str, kind: str) -> Entry:
        """The entry, its directory opened and entered, or its link read and checked."""
        parts = (*level.parts, name)
        rel = "/".join(parts)
        if kind == "file":
            return Entry(rel, kind, level.fd, name)
        if kind == "link":
            st, target = self._link(level, name, rel)
            return Entry(rel, kind, level.fd, name, st, target)
        if len(self.levels) > MAX_DEPTH:
            raise too_deep(self.shown(rel))
        fd = open_dir(level.fd, name, self.shown(rel))
        try:
            st = os.fstat(fd)
            entries = iter(_scan(fd, self.shown(rel)))
        except BaseException:
            os.close(fd)
            raise
        self.levels.append(_Level(parts, (*level.chain, fd), entries))
        return Entry(rel, kind, level.fd, name, st)

    def _link(self, level: _Level, name: str, rel: str) -> tuple[os.stat_result, str]:
        try:
            st = os.stat(name, dir_fd=level.fd, follow_symlinks=False)
            target = os.readlink(name, dir_fd=level.fd)
        except OSError:
            raise changed(self.shown(rel)) from None
        if not link_inside(level.chain, rel, target):
            raise SourceError(
                f"symlink {self.shown(rel)} points outside the source (-> {target})",
                "remove it or replace it with the file",
            )
        return st, target

    def shown(self, rel: str) -> str:
        return f"{self.shown_root}/{rel}" if self.shown_root else rel


def link_inside(chain: Sequence[int], rel: str, target: str) -> bool:
    """True if a symlink at `rel` (in the directory chain[-1]) with `target`
    stays under chain[0], both as written (so it works wherever the tree is
    unpacked) and on disk (so no link in the chain leaves the tree). A loop
    stays inside: it leads nowhere, here as in the image."""
    if os.path.isabs(target):
        return False
    lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if lexical == ".." or lexical.startswith("../"):
        return False
    try:
        with beneath(chain, target):
            return True
    except Outside:
        return False
    except LinkLoop:
        return True


def _scan(fd: int, shown: str) -> list[tuple[str, str]]:
    """(name, kind) of a directory's entries, sorted by name; kind is dir/file/link."""
    found = []
    try:
        with os.scandir(fd) as it:
            for item in it:
                if item.is_symlink():
                    found.append((item.name, "link"))
                elif item.is_dir(follow_symlinks=False):
                    found.append((item.name, "dir"))
                elif item.is_file(follow_symlinks=False):
                    found.append((item.name, "file"))
                # fifos, sockets, devices: skipped
    except OSError as exc:
        raise SourceError(
            f"cannot read directory {shown} of the source: {exc.strerror}",
            "make it readable, or leave it out with --exclude or .s2iignore",
        ) from None
    return sorted(found)

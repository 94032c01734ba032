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
  are never notebook content.

Selection: `excludes` are Python regexes searched in the
path relative to the root (upstream s2i's `--exclude`, default `.git`); a
matching directory is not entered. Then `.s2iignore` in the root, as upstream
reads it: one glob a line (`*`, `?`, `[...]`, never crossing `/`), relative to
the root, `#` comments and blank lines ignored; a pattern that matches a
directory leaves out everything under it. On top of upstream, `!pattern`
brings back what an earlier pattern left out (the last matching line wins).
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import tarfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from nbs2i import defaults
from nbs2i.errors import SourceError, UsageError
from nbs2i.source import read_control_file

DEFAULT_EXCLUDE = defaults.EXCLUDE
IGNORE_FILE = ".s2iignore"
# Bytes read from a file at a time, and the size the stream's chunks grow to
# before they are handed on. Peak memory is a small multiple of this.
CHUNK = 1024 * 1024
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE


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


# -- selection ---------------------------------------------------------------


def compile_excludes(excludes: Sequence[str]) -> list[re.Pattern[str]]:
    """The exclude regexes, compiled; "" excludes nothing (as upstream)."""
    compiled = []
    for pattern in excludes:
        if not pattern:
            continue
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise UsageError(
                f"--exclude {pattern!r} is not a valid regular expression ({exc})",
                "give a Python regular expression, e.g. '(^|/)(\\.git|data)(/|$)'",
            ) from None
    return compiled


# A repository's .s2iignore may hold at most this many rules: each is tried on
# every path of every walk.
MAX_IGNORE_RULES = 1_000


@dataclass(frozen=True)
class _Char:
    """One character of a glob: a literal, `?`, or a `[...]` class."""

    chars: str = ""  # the literal, or the class's single characters
    ranges: tuple[tuple[str, str], ...] = ()
    anything: bool = False  # `?`
    negate: bool = False

    def matches(self, c: str) -> bool:
        if self.anything:
            return True
        found = c in self.chars or any(lo <= c <= hi for lo, hi in self.ranges)
        return found != self.negate


_STAR = None  # a `*` in a parsed glob


@dataclass(frozen=True)
class Glob:
    """One path segment of a glob, with Go's filepath.Match syntax: `*`, `?`,
    `[a-z]`, `[^a-z]` (or `[!a-z]`), and `\\` escaping the next character.
    Matching is linear in the pattern times the name (no backtracking regex:
    a repository's pattern must not be able to hang the build)."""

    tokens: tuple[_Char | None, ...]

    @classmethod
    def parse(cls, glob: str) -> Glob:
        tokens: list[_Char | None] = []
        i = 0
        while i < len(glob):
            c = glob[i]
            if c == "\\" and i + 1 < len(glob):
                tokens.append(_Char(glob[i + 1]))
                i += 2
            elif c == "*":
                if tokens[-1:] != [_STAR]:  # `**` is `*`
                    tokens.append(_STAR)
                i += 1
            elif c == "?":
                tokens.append(_Char(anything=True))
                i += 1
            elif c == "[" and (end := glob.find("]", i + 2)) != -1:
                tokens.append(_char_class(glob[i + 1 : end]))
                i = end + 1
            else:
                tokens.append(_Char(c))
                i += 1
        return cls(tuple(tokens))

    def match(self, name: str) -> bool:
        """Greedy, going back only to the last `*`: O(len(pattern) * len(name))."""
        tokens = self.tokens
        t = n = 0
        star_t, star_n = -1, 0
        while n < len(name):
            token = tokens[t] if t < len(tokens) else False
            if token is _STAR:
                star_t, star_n, t = t, n, t + 1
            elif token and token.matches(name[n]):
                t, n = t + 1, n + 1
            elif star_t >= 0:
                star_n += 1
                t, n = star_t + 1, star_n
            else:
                return False
        return all(token is _STAR for token in tokens[t:])


def _char_class(body: str) -> _Char:
    negate = body[:1] in ("!", "^")
    body = body[1:] if negate else body
    chars: list[str] = []
    ranges: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        c = body[i + 1] if body[i] == "\\" and i + 1 < len(body) else body[i]
        i += 2 if body[i] == "\\" and i + 1 < len(body) else 1
        if i + 1 < len(body) and body[i] == "-":
            ranges.append((c, body[i + 1]))
            i += 2
        else:
            chars.append(c)
    return _Char("".join(chars), tuple(ranges), negate=negate)


@dataclass(frozen=True)
class _Rule:
    parts: tuple[Glob, ...]
    negate: bool

    def matches(self, parts: tuple[str, ...]) -> bool:
        """True if the glob matches the path or one of its parent directories."""
        n = len(self.parts)
        return len(parts) >= n and all(
            glob.match(name) for name, glob in zip(parts[:n], self.parts, strict=True)
        )

    def may_match_below(self, parts: tuple[str, ...]) -> bool:
        """True if the glob could match something inside the directory `parts`."""
        k = len(parts)
        return len(self.parts) > k and all(
            glob.match(name) for name, glob in zip(parts, self.parts[:k], strict=True)
        )


class _Ignore:
    """The rules of a `.s2iignore`."""

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def read(cls, root: Path) -> _Ignore:
        data = read_control_file(root, IGNORE_FILE)
        if data is None:
            return cls(())
        text = data.decode("utf-8", errors="surrogateescape")
        rules = [rule for line in text.splitlines() if (rule := _parse_rule(line))]
        if len(rules) > MAX_IGNORE_RULES:
            raise SourceError(
                f"{IGNORE_FILE} has {len(rules)} rules, more than the {MAX_IGNORE_RULES} nbs2i "
                "reads",
                f"ignore directories rather than files, or use fewer patterns in {IGNORE_FILE}",
            )
        return cls(rules)

    def ignored(self, parts: tuple[str, ...]) -> bool:
        result = False
        for rule in self.rules:
            if rule.matches(parts):
                result = not rule.negate
        return result

    def may_include_below(self, parts: tuple[str, ...]) -> bool:
        return any(rule.negate and rule.may_match_below(parts) for rule in self.rules)


def _parse_rule(line: str) -> _Rule | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    text = text.removeprefix("!").strip().strip("/")
    parts = tuple(p for p in PurePosixPath(text).parts if p not in (".", ""))
    if not parts:
        return None
    return _Rule(tuple(Glob.parse(p) for p in parts), negate)


def _scan(root: Path, parts: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, kind) of a directory's entries, sorted by name; kind is dir/file/link."""
    path = root.joinpath(*parts)
    try:
        with os.scandir(path) as it:
            found = []
            for entry in it:
                if entry.is_symlink():
                    found.append((entry.name, "link"))
                elif entry.is_dir(follow_symlinks=False):
                    found.append((entry.name, "dir"))
                elif entry.is_file(follow_symlinks=False):
                    found.append((entry.name, "file"))
                # fifos, sockets, devices: skipped (see module docstring)
    except OSError as exc:
        raise SourceError(
            f"cannot read directory {'/'.join(parts) or '.'} of the source: {exc.strerror}",
            "make it readable, or leave it out with --exclude or .s2iignore",
        ) from None
    return sorted(found)


def _verdict(
    regexes: Sequence[re.Pattern[str]], ignore: _Ignore, child: tuple[str, ...], kind: str
) -> str:
    """ "take" an entry, "skip" it, or "hold" an ignored directory that a `!` rule
    may bring something back from."""
    if any(rx.search("/".join(child)) for rx in regexes):
        return "skip"
    if not ignore.ignored(child):
        return "take"
    return "hold" if kind == "dir" and ignore.may_include_below(child) else "skip"


def _walk(root: Path, excludes: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(relative POSIX path, kind) of every selected entry, parents before children."""
    regexes = compile_excludes(excludes)
    ignore = _Ignore.read(root)
    stack: list[tuple[tuple[str, ...], Iterator[tuple[str, str]]]] = [((), iter(_scan(root, ())))]
    # Held directories are emitted only when something inside them is.
    pending: list[str] = []
    while stack:
        parts, entries = stack[-1]
        nxt = next(entries, None)
        if nxt is None:
            stack.pop()
            if pending and pending[-1] == "/".join(parts):
                pending.pop()
            continue
        name, kind = nxt
        child = (*parts, name)
        verdict = _verdict(regexes, ignore, child, kind)
        if verdict == "skip":
            continue
        if verdict == "hold":
            pending.append("/".join(child))
        else:
            yield from ((parent, "dir") for parent in pending)
            pending.clear()
            yield "/".join(child), kind
        if kind == "dir":
            stack.append((child, iter(_scan(root, child))))


# -- checks ------------------------------------------------------------------


def link_target_inside(root: Path, rel: str, target: str) -> bool:
    """True if a symlink at `rel` with `target` resolves inside root, both as
    written (so it works wherever the tree is unpacked) and on disk (so no link
    in the chain leaves the tree)."""
    if os.path.isabs(target):
        return False
    lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if lexical == ".." or lexical.startswith("../"):
        return False
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, os.path.dirname(rel), target))
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


def _outside_error(rel: str, target: str) -> SourceError:
    return SourceError(
        f"symlink {rel} points outside the source (-> {target})",
        "remove it or replace it with the file",
    )


def check_source(root: Path, excludes: Sequence[str] = (DEFAULT_EXCLUDE,)) -> None:
    """Raise what `tar_stream` would raise about the tree, before anything is sent.

    Cheap (one walk, no file is read): lets a build refuse a bad source before it
    creates a container.
    """
    root = Path(root)
    for rel, kind in _walk(root, excludes):
        if kind == "link":
            target = _readlink(root, rel)
            if not link_target_inside(root, rel, target):
                raise _outside_error(rel, target)


def _readlink(root: Path, rel: str) -> str:
    try:
        return os.readlink(root / rel)
    except OSError as exc:
        raise SourceError(
            f"cannot read symlink {rel}: {exc.strerror}", "check the source is not being changed"
        ) from None


# -- the tar -----------------------------------------------------------------


def tar_mode(mode: int) -> int:
    """Permission bits for the archive: group = user, other kept, no setuid/setgid/sticky."""
    user = mode & 0o700
    return user | (user >> 3) | (mode & 0o007)


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


class _Writer:
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
                raise SourceError(
                    f"file {shown} got shorter while it was read",
                    "build again when nothing is writing to the source",
                )
            left -= len(block)
            if len(block) >= CHUNK:
                yield from self.out.flush()
                self.out.total += len(block)
                yield block
            else:
                yield from self.out.add(block)
        if size % _BLOCK:
            yield from self.out.add(b"\0" * (_BLOCK - size % _BLOCK))

    def file(self, name: str, path: Path, shown: str, mode: int | None = None) -> Iterator[bytes]:
        """A regular file, opened without following a symlink swapped in since the walk,
        with its own permission bits unless `mode` is given."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SourceError(
                    f"file {shown} became a symlink while it was read",
                    "build again when nothing is writing to the source",
                ) from None
            raise SourceError(
                f"cannot read {shown}: {exc.strerror}",
                "make it readable, or leave it out with --exclude or .s2iignore",
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            yield from self.header(
                name,
                tarfile.REGTYPE,
                st.st_mode if mode is None else mode,
                st.st_mtime,
                size=st.st_size,
            )
            yield from self.contents(fd, st.st_size, shown)
        finally:
            os.close(fd)

    def tree(
        self, root: Path, prefix: str, excludes: Sequence[str], shown_root: str = ""
    ) -> Iterator[bytes]:
        """`prefix` (unless "" or written already) and every selected entry of root
        under it."""
        if prefix and prefix not in self.dirs:
            yield from self.parents(prefix)
            st = _lstat(root, "")
            yield from self.header(prefix, tarfile.DIRTYPE, st.st_mode, st.st_mtime)
        for rel, _kind in _walk(root, excludes):
            name = f"{prefix}/{rel}" if prefix else rel
            shown = f"{shown_root}/{rel}" if shown_root else rel
            st = _lstat(root, rel)
            if stat.S_ISDIR(st.st_mode):
                yield from self.header(name, tarfile.DIRTYPE, st.st_mode, st.st_mtime)
            elif stat.S_ISLNK(st.st_mode):
                target = _readlink(root, rel)
                if not link_target_inside(root, rel, target):
                    raise _outside_error(shown, target)
                yield from self.header(name, tarfile.SYMTYPE, 0o777, st.st_mtime, link=target)
            elif stat.S_ISREG(st.st_mode):
                yield from self.file(name, root / rel, shown)
            # anything else appeared since the walk: skipped like at walk time

    def directory(self, entry: DirEntry) -> Iterator[bytes]:
        name = _clean_name(entry.name)
        owner = (entry.uid, entry.gid)
        yield from self.header(name, tarfile.DIRTYPE, entry.mode, None, owner=owner)

    def extra(self, item: TarFile) -> Iterator[bytes]:
        name = _clean_name(item.name)
        if (item.data is None) == (item.path is None):
            raise ValueError(f"TarFile {item.name}: give exactly one of data or path")
        yield from self.parents(name)
        if item.data is not None:
            yield from self.header(name, tarfile.REGTYPE, item.mode, None, size=len(item.data))
            yield from self.out.add(item.data)
            if len(item.data) % _BLOCK:
                yield from self.out.add(b"\0" * (_BLOCK - len(item.data) % _BLOCK))
            return
        path = Path(item.path)  # type: ignore[arg-type]
        if path.is_dir():
            yield from self.tree(path, name, (), shown_root=str(path))
            return
        # The caller named this file: follow a symlink to it (O_NOFOLLOW is for the walk).
        yield from self.file(name, path.resolve(), str(path), item.mode)

    def end(self) -> Iterator[bytes]:
        """Two zero blocks, then zeros up to a whole record, as tar writes."""
        yield from self.out.add(b"\0" * (2 * _BLOCK))
        if self.out.total % _RECORD:
            yield from self.out.add(b"\0" * (_RECORD - self.out.total % _RECORD))
        yield from self.out.flush()


def _lstat(root: Path, rel: str) -> os.stat_result:
    try:
        return os.lstat(root / rel if rel else root)
    except OSError as exc:
        raise SourceError(
            f"cannot read {rel or root} of the source: {exc.strerror}",
            "build again when nothing is changing the source",
        ) from None


def _clean_name(name: str) -> str:
    path = PurePosixPath(name.lstrip("/"))
    if ".." in path.parts or not path.parts:
        raise ValueError(f"archive entry name {name!r} must be a relative path without '..'")
    return "/".join(p for p in path.parts if p != ".")


def readable(chunks: Iterable[bytes], buffer: int = CHUNK) -> io.BufferedReader:
    """A read-once file over a stream of byte chunks (an engine's tar stream), for
    tarfile's stream mode: read as it arrives, never held whole."""
    return io.BufferedReader(_ChunkReader(chunks), buffer_size=buffer)


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


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
    outside root or a file that cannot be read.
    """
    writer = _Writer(uid, gid, epoch)
    for entry in dirs:
        yield from writer.directory(entry)
    yield from writer.tree(Path(root), _clean_name(prefix) if prefix else "", excludes)
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
    writer = _Writer(uid, gid, epoch)
    for name in dirs:
        clean = _clean_name(name)
        yield from writer.parents(clean)
        yield from writer.header(clean, tarfile.DIRTYPE, 0o755, None)
    for item in files:
        yield from writer.extra(item)
    yield from writer.end()

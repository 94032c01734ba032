"""Reading a course's source as untrusted input, and the one-line refusal.

Part of the dependency-file definition the builder image carries: the standard
library only.
"""

from __future__ import annotations

import os
import stat

# The most any dependency file may hold.
LIMIT = 1 << 20


class Refused(Exception):
    """A file nbs2i will not build from: the problem and what to do instead."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.problem}: {self.fix}"


class Tree:
    """A source directory, read as untrusted input."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)

    def _inside(self, rel: str) -> str:
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(os.path.join(self.root, rel))
        if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
            raise Refused(
                f"{rel} links outside the source",
                f"replace the link with the file itself or remove {rel}",
            )
        return real

    def kind(self, rel: str) -> str:
        """One of "dir", "file", "other", or "" when absent; a link is followed
        inside the source only."""
        try:
            os.lstat(os.path.join(self.root, rel))
            mode = os.stat(self._inside(rel)).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return ""
        if stat.S_ISDIR(mode):
            return "dir"
        return "file" if stat.S_ISREG(mode) else "other"

    def names(self, rel: str) -> list[str]:
        return sorted(os.listdir(self._inside(rel)))

    def read(self, rel: str) -> bytes | None:
        """The bytes of a regular file of the source, None when there is none."""
        try:
            os.lstat(os.path.join(self.root, rel))
            fd = os.open(self._inside(rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise Refused(
                f"cannot read {rel}: {exc.strerror}", f"make {rel} a readable file"
            ) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Refused(
                    f"{rel} is not a regular file", f"make {rel} a plain file or remove it"
                )
            data = b""
            while len(data) <= LIMIT:
                block = os.read(fd, LIMIT + 1 - len(data))
                if not block:
                    break
                data += block
        finally:
            os.close(fd)
        if len(data) > LIMIT:
            raise Refused(f"{rel} is larger than {LIMIT // 1024} KiB", f"keep {rel} small")
        return data


def shown(text: str, limit: int = 200) -> str:
    """Text from the repository, printable on one line."""
    return "".join(c if c.isprintable() and c != "\t" else "?" for c in text)[:limit]

"""A commit as image labels describe it: pure, from the commit's own fields.

Upstream s2i writes the author date in git's default format and the subject
cut at 80 columns (`git log --format=%ad` and `%<(80,trunc)%s`); these
functions give the same text from what GitPython reads, so labels do not
change with the tool that read the commit.
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass

# Columns of the subject label, as upstream s2i cuts it; a cut one ends in "..".
SUBJECT_COLUMNS = 80
_CUT_MARK = ".."
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# What git counts as white space at a line's end (not \v or \f).
_GIT_SPACE = " \t\n\r"
# A terminal colour sequence: git gives it no width and never cuts it.
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Commit:
    sha: str = ""
    author: str = ""  # "Name <email>"
    date: str = ""  # author date in git's default format
    message: str = ""  # the subject, cut as upstream s2i labels it
    epoch: int | None = None  # commit time: embedded times are clamped to it


def git_date(when: int, east: int) -> str:
    """`when` (Unix seconds) at a zone `east` seconds east of UTC, as git's
    default date format writes it; git's own fallback for a time out of range."""
    try:
        local = time.gmtime(when + east)
    except (OverflowError, OSError, ValueError):
        local, east = time.gmtime(0), 0
    hours, minutes = divmod(abs(east) // 60, 60)
    return (
        f"{_DAYS[local.tm_wday]} {_MONTHS[local.tm_mon - 1]} {local.tm_mday} "
        f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} {local.tm_year} "
        f"{'-' if east < 0 else '+'}{hours:02d}{minutes:02d}"
    )


def subject(message: str) -> str:
    """The first paragraph of a message on one line, as git's %s gives it."""
    lines = message.split("\n")
    while lines and not lines[0].rstrip(_GIT_SPACE):
        lines.pop(0)
    taken: list[str] = []
    for line in lines:
        line = line.rstrip(_GIT_SPACE)
        if not line:
            break
        taken.append(line)
    return " ".join(taken)


def cut_subject(text: str, columns: int = SUBJECT_COLUMNS) -> str:
    """`text` in `columns` terminal columns, as git's `%<(N,trunc)` cuts it:
    when it is wider, every character that starts at column N - 2 or later is
    dropped and ".." stands where the first one was; characters and colour
    sequences without width stay where they are."""
    pieces = _pieces(text)
    if sum(width for _piece, width in pieces) <= columns:
        return text
    kept: list[str] = []
    used, mark = 0, _CUT_MARK
    for piece, width in pieces:
        if width and used >= columns - len(_CUT_MARK):
            kept.append(mark)
            mark = ""
        else:
            kept.append(piece)
        used += width
    return "".join(kept)


def _pieces(text: str) -> list[tuple[str, int]]:
    """The text split into colour sequences (no width) and characters with theirs."""
    pieces: list[tuple[str, int]] = []
    at = 0
    while at < len(text):
        colour = _COLOUR.match(text, at)
        if colour:
            pieces.append((colour.group(), 0))
            at = colour.end()
            continue
        pieces.append((text[at], _width(text[at])))
        at += 1
    return pieces


def _width(char: str) -> int:
    """Terminal columns of one character, by the rules git's tables follow."""
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0:
        return 0
    if char != "\u00ad" and unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    if 0x1160 <= code <= 0x11FF:
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1

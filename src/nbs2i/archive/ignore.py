"""Which entries of the source are selected: `--exclude` and `.s2iignore`.

`excludes` are Python regexes searched in the path relative to the root
(upstream s2i's `--exclude`, default `.git`); a matching directory is not
entered. Then `.s2iignore` in the root, as upstream reads it: one glob a line
(`*`, `?`, `[...]`, never crossing `/`), relative to the root, `#` comments
and blank lines ignored; a pattern that matches a directory leaves out
everything under it. On top of upstream, `!pattern` brings back what an
earlier pattern left out (the last matching line wins).

Everything here is pure: the walk reads the ignore file and asks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from nbs2i.errors import SourceError, UsageError

IGNORE_FILE = ".s2iignore"
# A repository's .s2iignore may hold at most this many rules: each is tried on
# every path of every walk.
MAX_IGNORE_RULES = 1_000


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
            elif isinstance(token, _Char) and token.matches(name[n]):
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


class Ignore:
    """The rules of a `.s2iignore`."""

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self.rules = tuple(rules)

    @classmethod
    def parse(cls, data: bytes | None) -> Ignore:
        """The rules of the file's bytes (None: no file, no rules)."""
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


@dataclass(frozen=True)
class Selection:
    """What the walk takes: the exclude regexes and the ignore rules."""

    regexes: tuple[re.Pattern[str], ...]
    ignore: Ignore

    def verdict(self, child: tuple[str, ...], kind: str) -> str:
        """ "take" an entry, "skip" it, or "hold" an ignored directory that a `!`
        rule may bring something back from."""
        if any(rx.search("/".join(child)) for rx in self.regexes):
            return "skip"
        if not self.ignore.ignored(child):
            return "take"
        return "hold" if kind == "dir" and self.ignore.may_include_below(child) else "skip"

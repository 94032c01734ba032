"""Random source trees and what nbs2i must make of them, computed independently.

`trees()` is a Hypothesis strategy for a `Tree`: directories, files (odd
names: spaces, unicode, leading dashes, newlines, glob characters; any mode,
set-id bits included), FIFOs, and links: inside (to another entry, possibly a
link), dangling inside, and out of the source (absolute, or up through
`..`). `.s2iignore` rules name some entries literally or by a prefix glob,
some negated with `!`, among comments and blank lines.

`expected()` says what the stream must hold, from the documented rules alone
(not from nbs2i's code): `.git` left out by the default exclude, FIFOs
skipped, the last matching ignore rule wins (a rule matches a path or any of
its parents), the parents of anything kept are kept; a kept link that leaves
the source fails the build; entries are owned by the assemble user and group
0 with group bits equal to user bits and no set-id or sticky bit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

# Names nbs2i reads for itself at the root; the tree leaves them to other tests.
RESERVED = {
    ".s2iignore",
    ".s2i",
    "requirements.txt",
    "install.R",
    "apt.txt",
    "binder",
    ".binder",
    "environment.yml",
    "Pipfile",
    "runtime.txt",
    "postBuild",
    "start",
}
NAME_CHARS = "abcXYZ019 -_.#!*?[]\\'\"$é中🙂\t\n"
FILE_MODES = (0o644, 0o600, 0o755, 0o700, 0o640, 0o4755, 0o2750, 0o1777, 0o444)
DIR_MODES = (0o755, 0o700, 0o775, 0o750)
GLOB_SPECIAL = "*?[]\\"


@dataclass(frozen=True)
class Node:
    path: tuple[str, ...]
    kind: str  # "dir", "file", "fifo", "link"
    mode: int = 0o644
    data: bytes = b""
    target: str = ""  # a link's target, as written
    leaves: bool = False  # a link meant to point out of the source

    @property
    def rel(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True)
class Rule:
    text: str  # the line as written in .s2iignore
    parts: tuple[str, ...]  # literal segments; the last may end in a `*` prefix glob
    prefix: bool  # the last segment is "<literal>*"
    negate: bool

    def matches(self, path: tuple[str, ...]) -> bool:
        n = len(self.parts)
        if len(path) < n or path[: n - 1] != self.parts[: n - 1]:
            return False
        last = path[n - 1]
        return last.startswith(self.parts[-1]) if self.prefix else last == self.parts[-1]


@dataclass(frozen=True)
class Tree:
    nodes: tuple[Node, ...]
    rules: tuple[Rule, ...]
    ignore_text: str

    def node(self, path: tuple[str, ...]) -> Node:
        return next(n for n in self.nodes if n.path == path)


@dataclass
class Expected:
    kept: dict[str, Node] = field(default_factory=dict)  # rel -> node, parents included
    links_out: list[str] = field(default_factory=list)


def _escape(segment: str) -> str:
    escaped = "".join("\\" + c if c in GLOB_SPECIAL else c for c in segment)
    return "\\" + escaped if escaped[:1] in ("!", "#") else escaped


def _writable_in_rule(segment: str) -> bool:
    """Literal segments a line of .s2iignore can say (it is stripped and split on
    line breaks)."""
    return segment == segment.strip() and not any(c in segment for c in "\n\r\t/")


names = st.text(alphabet=st.sampled_from(NAME_CHARS), min_size=1, max_size=10).filter(
    lambda n: n not in (".", "..")
) | st.sampled_from([".git", "-rf", "--help", " lead", "trail ", "a\nb", "é", "x.ipynb"])


@st.composite
def trees(draw: st.DrawFn, outside: str = "/outside/secret", max_nodes: int = 14) -> Tree:
    nodes: list[Node] = []
    dirs: list[tuple[str, ...]] = [()]
    count = draw(st.integers(1, max_nodes))
    for _ in range(count):
        parent = draw(st.sampled_from(dirs))
        name = draw(names)
        path = (*parent, name)
        if (not parent and name in RESERVED) or any(n.path == path for n in nodes):
            continue
        kind = draw(st.sampled_from(["file", "file", "dir", "link", "fifo"]))
        if kind == "dir":
            nodes.append(Node(path, "dir", draw(st.sampled_from(DIR_MODES))))
            dirs.append(path)
        elif kind == "file":
            data = draw(st.binary(max_size=64))
            nodes.append(Node(path, "file", draw(st.sampled_from(FILE_MODES)), data))
        elif kind == "fifo":
            nodes.append(Node(path, "fifo", 0o644))
        else:
            nodes.append(_draw_link(draw, path, nodes, outside))
    rules = _draw_rules(draw, nodes)
    lines = ["# generated", ""]
    lines += [r.text for r in rules]
    return Tree(tuple(nodes), tuple(rules), "\n".join(lines) + "\n")


def _draw_link(draw: st.DrawFn, path: tuple[str, ...], nodes: list[Node], outside: str) -> Node:
    up = "../" * (len(path) - 1)  # from the link's directory up to the root
    how = draw(st.sampled_from(["in", "in", "dangling", "out-absolute", "out-relative"]))
    if how == "in" and nodes:
        other = draw(st.sampled_from(nodes))
        return Node(path, "link", target=up + other.rel)
    if how == "out-absolute":
        return Node(path, "link", target=outside, leaves=True)
    if how == "out-relative":
        return Node(path, "link", target=up + "../" * 3 + outside.lstrip("/"), leaves=True)
    return Node(path, "link", target=up + "no-such-entry")


def _draw_rules(draw: st.DrawFn, nodes: list[Node]) -> list[Rule]:
    rules = []
    sayable = [n for n in nodes if all(_writable_in_rule(s) for s in n.path)]
    for _ in range(draw(st.integers(0, 4)) if sayable else 0):
        node = draw(st.sampled_from(sayable))
        negate = draw(st.booleans()) and bool(rules)
        prefix = draw(st.booleans())
        parts = node.path
        if prefix:
            cut = draw(st.integers(0, len(parts[-1])))
            parts = (*parts[:-1], parts[-1][:cut])
        glob = "/".join(_escape(p) for p in parts) + ("*" if prefix else "")
        if not glob.strip("/").strip():
            continue
        text = ("!" if negate else "") + glob
        rules.append(Rule(text, parts, prefix, negate))
    return rules


# -- on disk --------------------------------------------------------------------------


def materialize(tree: Tree, root: Path) -> None:
    root.mkdir(parents=True)
    ignore = root / ".s2iignore"
    ignore.write_bytes(tree.ignore_text.encode())
    ignore.chmod(0o644)
    for node in sorted(tree.nodes, key=lambda n: len(n.path)):
        path = root.joinpath(*node.path)
        if node.kind == "dir":
            path.mkdir()
        elif node.kind == "file":
            path.write_bytes(node.data)
        elif node.kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to(node.target)
    # Modes last: a directory made read-only first would still be filled (root),
    # but the order keeps the tree the same as drawn for any user.
    for node in tree.nodes:
        if node.kind in ("dir", "file"):
            os.chmod(root.joinpath(*node.path), node.mode)


# -- what must come out ---------------------------------------------------------------


def tar_mode(mode: int) -> int:
    """Group bits = user bits; other bits kept; no set-id or sticky bits."""
    user = mode & 0o700
    return user | (user >> 3) | (mode & 0o007)


def _ignored(rules: tuple[Rule, ...], path: tuple[str, ...]) -> bool:
    result = False
    for rule in rules:
        if rule.matches(path):
            result = not rule.negate
    return result


def _leaves(root: Path, node: Node) -> bool:
    if os.path.isabs(node.target):
        return True
    lexical = os.path.normpath(os.path.join(os.path.dirname(node.rel), node.target))
    if lexical == ".." or lexical.startswith("../"):
        return True
    real_root = os.path.realpath(root)
    real = os.path.realpath(root.joinpath(*node.path[:-1]) / node.target)
    return not (real == real_root or real.startswith(real_root + "/"))


def expected(tree: Tree, root: Path) -> Expected:
    found = Expected()
    # The ignore file is course material too, unless it ignores itself.
    ignore_file = Node((".s2iignore",), "file", 0o644, tree.ignore_text.encode())
    for node in sorted((*tree.nodes, ignore_file), key=lambda n: n.path):
        if ".git" in node.path or node.kind == "fifo":
            continue
        if _ignored(tree.rules, node.path):
            continue
        for i in range(1, len(node.path)):
            parent = tree.node(node.path[:i])
            found.kept.setdefault(parent.rel, parent)
        found.kept[node.rel] = node
        if node.kind == "link" and _leaves(root, node):
            found.links_out.append(node.rel)
    return found
